//! Reading only the samples a query can match: the samples section's footer (Parquet
//! metadata) tells, by the statistics of its `dataset` and `profile` columns, which row groups
//! hold which profiles; only those row groups' column chunks are fetched and decoded.
//!
//! Profiles are sorted by series and time in a compacted block, and samples by profile, so a
//! query of one profile type, a few series or part of the block's time range touches few row
//! groups. A reader puts a region together from its head (series and profiles, see
//! [`crate::fetch::HEAD`]), its symbols ([`crate::fetch::SYMBOLS`]) and those samples with
//! [`assemble`].

use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;
use bytes::Bytes;
use kiln_model::BlockMeta;
use kiln_objstore::Storage;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::FOOTER_SIZE;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use crate::data::{DatasetData, Symbols};
use crate::fetch::{RegionDirectory, RegionRange};
use crate::sections;
use crate::{BlockError, Result};

/// Bytes read from the end of the samples section to find its footer: each row group takes
/// about 800 bytes of it (seven column chunks with their statistics), so one read covers a
/// section of up to about 20 row groups and a larger one takes a second read.
const FOOTER_READ_BYTES: u64 = 16 * 1024;

/// The largest footer a reader accepts, so that a damaged length never makes it fetch more.
const MAX_FOOTER_BYTES: u64 = 16 << 20;

/// Selected row groups closer than this are fetched with one GET (cheaper than another request).
const COALESCE_GAP: u64 = 64 * 1024;

/// The samples section's footer: where its row groups lie and what their statistics say.
#[derive(Debug)]
pub struct SamplesFooter {
    metadata: ArrowReaderMetadata,
    /// The section's byte range within its region.
    section: Range<u64>,
    datasets: usize,
}

impl SamplesFooter {
    /// The number of row groups in the section.
    pub fn row_group_count(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }

    /// An estimate of the bytes the footer holds in memory, for a cache's weigher.
    pub fn memory_bytes(&self) -> usize {
        self.metadata.metadata().memory_size()
    }

    /// The row groups that may hold a sample of a profile `wanted` asks for: it is called with
    /// a dataset (its position in the region) and a range of profile rows of that dataset, and
    /// answers whether it wants any profile in the range. A row group without statistics is
    /// always kept.
    pub fn matching_row_groups(
        &self,
        wanted: impl Fn(u32, RangeInclusive<u32>) -> bool,
    ) -> Result<Vec<usize>> {
        let bounds = |column: &str| -> Result<Vec<Option<(u32, u32)>>> {
            let converter = StatisticsConverter::try_new(
                column,
                self.metadata.schema(),
                self.metadata.metadata().file_metadata().schema_descr(),
            )
            .map_err(|source| BlockError::Parquet {
                section: "samples",
                source,
            })?;
            let groups = self.metadata.metadata().row_groups();
            let stats = |array: arrow::array::ArrayRef| {
                array
                    .as_primitive_opt::<UInt32Type>()
                    .cloned()
                    .ok_or_else(|| {
                        BlockError::Corrupt(format!("samples column {column} is not u32"))
                    })
            };
            let parquet = |source| BlockError::Parquet {
                section: "samples",
                source,
            };
            let mins = stats(converter.row_group_mins(groups).map_err(parquet)?)?;
            let maxes = stats(converter.row_group_maxes(groups).map_err(parquet)?)?;
            Ok((0..groups.len())
                .map(|i| {
                    (mins.is_valid(i) && maxes.is_valid(i)).then(|| (mins.value(i), maxes.value(i)))
                })
                .collect())
        };
        let (datasets, profiles) = (bounds("dataset")?, bounds("profile")?);
        let mut kept = Vec::new();
        for (group, (dataset, profile)) in datasets.into_iter().zip(profiles).enumerate() {
            let keep = match (dataset, profile) {
                (Some((first, last)), Some((low, high))) => {
                    if last as usize >= self.datasets || first > last || low > high {
                        return Err(BlockError::Corrupt(format!(
                            "samples row group {group} has statistics out of range"
                        )));
                    }
                    // A row's dataset and profile each lie within their column's bounds.
                    (first..=last).any(|dataset| wanted(dataset, low..=high))
                }
                _ => true,
            };
            if keep {
                kept.push(group);
            }
        }
        Ok(kept)
    }

    /// The byte ranges (relative to the section) holding the column chunks of `row_groups`,
    /// merged where they touch or nearly do.
    fn chunk_ranges(&self, row_groups: &[usize]) -> Result<Vec<Range<u64>>> {
        let metadata = self.metadata.metadata();
        let section_len = self.section.end - self.section.start;
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for &group in row_groups {
            let group = metadata.row_groups().get(group).ok_or_else(|| {
                BlockError::Corrupt(format!("samples section has no row group {group}"))
            })?;
            for column in group.columns() {
                let (start, length) = column.byte_range();
                let end = start
                    .checked_add(length)
                    .filter(|&end| end <= section_len)
                    .ok_or_else(|| {
                        BlockError::Corrupt("samples column chunk out of range".to_string())
                    })?;
                match ranges.last_mut() {
                    Some(last) if start >= last.start && start <= last.end + COALESCE_GAP => {
                        last.end = last.end.max(end);
                    }
                    _ => ranges.push(start..end),
                }
            }
        }
        Ok(ranges)
    }
}

/// The footer of the samples section of region `range` of `block`, located by `directory`:
/// one ranged GET of the section's end (two when the footer is larger than 16 KiB). Returns it
/// with the number of bytes read.
pub async fn fetch_samples_footer(
    storage: &Storage,
    block: &BlockMeta,
    range: &RegionRange,
    directory: &RegionDirectory,
) -> Result<(SamplesFooter, u64)> {
    let section = directory
        .toc
        .section_span(&["samples"], directory.toc_start)?;
    let section_len = section.end - section.start;
    let corrupt = |what: &str| BlockError::Corrupt(format!("{}: samples {what}", block.path));
    let mut tail_len = section_len.min(FOOTER_READ_BYTES);
    let mut read = 0;
    loop {
        if tail_len < FOOTER_SIZE as u64 {
            return Err(corrupt("section too short for a footer"));
        }
        let (tail, bytes) = directory
            .read(storage, block, range, section.end - tail_len..section.end)
            .await?;
        read += bytes;
        let trailer: [u8; FOOTER_SIZE] = tail[tail.len() - FOOTER_SIZE..]
            .try_into()
            .map_err(|_| corrupt("footer"))?;
        let footer = FooterTail::try_new(&trailer).map_err(|source| BlockError::Parquet {
            section: "samples",
            source,
        })?;
        let needed = (footer.metadata_length() as u64)
            .checked_add(FOOTER_SIZE as u64)
            .filter(|&n| n <= section_len && n <= MAX_FOOTER_BYTES)
            .ok_or_else(|| corrupt("footer length out of range"))?;
        if needed > tail_len {
            tail_len = needed;
            continue;
        }
        let metadata_bytes = &tail[tail.len() - needed as usize..tail.len() - FOOTER_SIZE];
        let parquet = |source| BlockError::Parquet {
            section: "samples",
            source,
        };
        let metadata = ParquetMetaDataReader::decode_metadata(metadata_bytes).map_err(parquet)?;
        let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())
            .map_err(parquet)?;
        let footer = SamplesFooter {
            metadata,
            section,
            datasets: directory.dataset_count(),
        };
        return Ok((footer, read));
    }
}

/// Some row groups of a samples section, fetched: decode them with [`assemble`].
#[derive(Debug)]
pub struct SampleRowGroups {
    footer: Arc<SamplesFooter>,
    row_groups: Vec<usize>,
    chunks: SparseSection,
}

/// Fetches the column chunks of `row_groups` (from [`SamplesFooter::matching_row_groups`]) of
/// the samples section of region `range` of `block`: one ranged GET per run of nearby row
/// groups, run at once. Returns them with the number of bytes read.
pub async fn fetch_row_groups(
    storage: &Storage,
    block: &BlockMeta,
    range: &RegionRange,
    directory: &RegionDirectory,
    footer: Arc<SamplesFooter>,
    row_groups: Vec<usize>,
) -> Result<(SampleRowGroups, u64)> {
    let ranges = footer.chunk_ranges(&row_groups)?;
    let section_start = footer.section.start;
    let fetched = futures::future::try_join_all(ranges.iter().map(|chunk| {
        directory.read(
            storage,
            block,
            range,
            section_start + chunk.start..section_start + chunk.end,
        )
    }))
    .await?;
    let read = fetched.iter().map(|(_, read)| read).sum();
    let chunks = SparseSection {
        len: footer.section.end - footer.section.start,
        chunks: ranges
            .into_iter()
            .zip(fetched)
            .map(|(range, (bytes, _))| (range.start, bytes))
            .collect(),
    };
    Ok((
        SampleRowGroups {
            footer,
            row_groups,
            chunks,
        },
        read,
    ))
}

/// The datasets of a region put together from its `head` (series and profiles, decoded from
/// [`crate::fetch::HEAD`]), its `symbols` (one per dataset, decoded from
/// [`crate::fetch::SYMBOLS`]) and `samples`, checked as a whole region is. CPU work.
pub fn assemble(
    head: &[DatasetData],
    symbols: &[Arc<Symbols>],
    samples: SampleRowGroups,
) -> Result<Vec<DatasetData>> {
    if head.len() != symbols.len() || head.len() != samples.footer.datasets {
        return Err(BlockError::Corrupt(format!(
            "region parts disagree: {} datasets with profiles, {} with symbols, {} with samples",
            head.len(),
            symbols.len(),
            samples.footer.datasets
        )));
    }
    let mut datasets: Vec<DatasetData> = head
        .iter()
        .zip(symbols)
        .map(|(head, symbols)| DatasetData {
            tenant: head.tenant.clone(),
            service_name: head.service_name.clone(),
            series: head.series.clone(),
            profiles: head.profiles.clone(),
            samples: Vec::new(),
            symbols: Arc::clone(symbols),
        })
        .collect();
    sections::decode_samples(
        samples.chunks,
        samples.footer.metadata.clone(),
        samples.row_groups,
        &mut datasets,
    )?;
    for dataset in &datasets {
        sections::check_references(dataset)?;
    }
    Ok(datasets)
}

/// Parts of a Parquet file held in memory: the reader asks only for the column chunks of the
/// row groups it reads, which are exactly the parts held.
#[derive(Debug)]
struct SparseSection {
    len: u64,
    /// `(offset, bytes)`, sorted by offset and apart.
    chunks: Vec<(u64, Bytes)>,
}

impl SparseSection {
    /// The bytes held from `start` to the end of the part holding it.
    fn from(&self, start: u64) -> parquet::errors::Result<Bytes> {
        let index = self.chunks.partition_point(|(offset, _)| *offset <= start);
        let missing = || {
            parquet::errors::ParquetError::General(format!(
                "samples bytes at {start} were not fetched"
            ))
        };
        let (offset, bytes) = index
            .checked_sub(1)
            .and_then(|i| self.chunks.get(i))
            .ok_or_else(missing)?;
        let skip = (start - offset) as usize;
        if skip >= bytes.len() {
            return Err(missing());
        }
        Ok(bytes.slice(skip..))
    }
}

impl Length for SparseSection {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SparseSection {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(bytes::Buf::reader(self.from(start)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self.from(start)?;
        if length > bytes.len() {
            return Err(parquet::errors::ParquetError::General(format!(
                "samples bytes {start}..{} were not all fetched",
                start + length as u64
            )));
        }
        Ok(bytes.slice(..length))
    }
}
