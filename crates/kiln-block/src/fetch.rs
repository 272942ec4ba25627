//! Reading datasets from object storage: only the regions that hold the wanted datasets, each
//! with one ranged GET.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_objstore::Storage;
use kiln_objstore::object_store::{GetOptions, GetRange};

use crate::container::SegmentReader;
use crate::data::DatasetData;
use crate::region::{RegionToc, TocTail, decode_region, toc_from_tail};
use crate::{BlockError, Result};

/// A part of an object to fetch: one region, or the whole object for objects written before
/// regions existed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegionRange {
    /// The whole object (format 1, or metadata without regions).
    Whole,
    /// A region's byte range.
    Bytes(Range<u64>),
}

impl RegionRange {
    /// The range holding `dataset` of its block.
    pub fn of(dataset: &DatasetMeta) -> Self {
        if dataset.region_length == 0 {
            RegionRange::Whole
        } else {
            RegionRange::Bytes(dataset.region_offset..dataset.region_offset + dataset.region_length)
        }
    }

    /// Bytes to fetch, when known without the object (`None` for the whole object).
    pub fn byte_len(&self) -> Option<u64> {
        match self {
            RegionRange::Whole => None,
            RegionRange::Bytes(range) => Some(range.end - range.start),
        }
    }
}

/// The distinct ranges holding the datasets of `block` that `wanted` selects, in object order.
pub fn ranges_of(block: &BlockMeta, wanted: impl Fn(&DatasetMeta) -> bool) -> Vec<RegionRange> {
    let mut ranges: Vec<RegionRange> = Vec::new();
    for dataset in block.datasets.iter().filter(|d| wanted(d)) {
        let range = RegionRange::of(dataset);
        if !ranges.contains(&range) {
            ranges.push(range);
        }
    }
    ranges
}

/// Bytes read from the end of a region to find its table of contents: a compacted block's
/// region names one dataset (well under a kilobyte); a segment's names each of its datasets,
/// about 60 bytes each, so that one of more than about 60 datasets takes a second read.
pub const TOC_READ_BYTES: u64 = 4 * 1024;

/// A region's directory: its table of contents and where it starts, read from the region's end
/// ([`fetch_directory`]). Small enough to cache: it locates every section of the region, so
/// that a later read of one section is a single ranged GET.
#[derive(Debug)]
pub struct RegionDirectory {
    pub(crate) toc: RegionToc,
    pub(crate) toc_start: u64,
    /// The whole region, when it was smaller than one tail read.
    whole: Option<Bytes>,
}

impl RegionDirectory {
    /// An estimate of the bytes the directory holds in memory, for a cache's weigher.
    pub fn memory_bytes(&self) -> usize {
        self.toc.memory_bytes() + self.whole.as_ref().map_or(0, Bytes::len) + 64
    }
}

/// Sections of a region fetched together: decode them (CPU work) where the caller runs such
/// work.
#[derive(Debug)]
pub struct SectionBytes {
    directory: Arc<RegionDirectory>,
    names: &'static [&'static str],
    /// The bytes from `start` (relative to the region) holding the sections.
    bytes: Bytes,
    start: u64,
}

impl SectionBytes {
    /// The region's datasets with only what these sections hold (for [`SERIES`], their label
    /// sets and profile types), references between sections unchecked.
    pub fn decode(self) -> Result<Vec<DatasetData>> {
        let toc = &self.directory.toc;
        toc.decode_named(toc.slice_named(&self.bytes, self.start, self.names)?)
    }
}

/// The series section: the datasets' label sets and profile types.
pub const SERIES: &[&str] = &["series"];
/// The series and profiles sections (next to each other): what a reader needs to choose the
/// samples it wants.
pub const HEAD: &[&str] = &["series", "profiles"];
/// The sections of the symbols (next to each other).
pub const SYMBOLS: &[&str] = &["strings", "mappings", "functions", "locations", "stacks"];

/// The directory of a region: its table of contents, from the region's end, with one ranged
/// GET (two when the table is larger than [`TOC_READ_BYTES`]). Returns it with the number of
/// bytes read; `None` for objects without regions, which are only read whole.
pub async fn fetch_directory(
    storage: &Storage,
    block: &BlockMeta,
    range: &RegionRange,
) -> Result<Option<(RegionDirectory, u64)>> {
    let RegionRange::Bytes(region) = range else {
        return Ok(None);
    };
    let region_len = region.end - region.start;
    let mut tail_len = region_len.min(TOC_READ_BYTES);
    let mut read = 0;
    loop {
        let tail = get(storage, block, region.end - tail_len..region.end).await?;
        read += tail.len() as u64;
        match toc_from_tail(&tail, region_len)? {
            TocTail::Complete(toc, toc_start) => {
                let whole = (tail_len == region_len).then_some(tail);
                return Ok(Some((
                    RegionDirectory {
                        toc,
                        toc_start,
                        whole,
                    },
                    read,
                )));
            }
            TocTail::Needs(needed) if needed > tail_len => tail_len = needed,
            TocTail::Needs(_) => {
                return Err(BlockError::Corrupt(format!(
                    "{}: region table of contents out of range",
                    block.path
                )));
            }
        }
    }
}

/// The sections `names` of the region `range` of `block`, located by `directory`: one ranged
/// GET of the span from the first to the last, none for a region the directory holds whole.
/// Returns them with the number of bytes read.
pub async fn fetch_sections(
    storage: &Storage,
    block: &BlockMeta,
    range: &RegionRange,
    directory: Arc<RegionDirectory>,
    names: &'static [&'static str],
) -> Result<(SectionBytes, u64)> {
    let span = directory.toc.section_span(names, directory.toc_start)?;
    let (bytes, read) = directory.read(storage, block, range, span.clone()).await?;
    Ok((
        SectionBytes {
            directory,
            names,
            bytes,
            start: span.start,
        },
        read,
    ))
}

/// A series section located by the block index, fetched without the region's table of
/// contents: decode it (CPU work) where the caller runs such work.
#[derive(Debug)]
pub struct IndexedSeries {
    /// (tenant, service) of the region's datasets, in the index's (the region's) order.
    names: Vec<(String, String)>,
    bytes: Bytes,
}

impl IndexedSeries {
    /// The region's datasets with only their series (label sets and profile types).
    pub fn decode(self) -> Result<Vec<DatasetData>> {
        let mut datasets: Vec<DatasetData> = self
            .names
            .into_iter()
            .map(|(tenant, service_name)| DatasetData {
                tenant,
                service_name,
                ..DatasetData::default()
            })
            .collect();
        crate::sections::decode_unchecked(vec![("series", self.bytes)], &mut datasets)?;
        Ok(datasets)
    }
}

/// The series section of region `range` of `block` where the block index records it (every
/// dataset of the region naming the same range): one ranged GET, without the region's table of
/// contents. `None` when the index does not record it (objects written before it did). Returns
/// it with the number of bytes read.
pub async fn fetch_indexed_series(
    storage: &Storage,
    block: &BlockMeta,
    range: &RegionRange,
) -> Result<Option<(IndexedSeries, u64)>> {
    let RegionRange::Bytes(region) = range else {
        return Ok(None);
    };
    let datasets: Vec<&DatasetMeta> = block
        .datasets
        .iter()
        .filter(|d| RegionRange::of(d) == *range)
        .collect();
    let Some(first) = datasets.first() else {
        return Ok(None);
    };
    let Some(end) = first
        .series_offset
        .checked_add(first.series_length)
        .filter(|&end| end <= region.end - region.start)
    else {
        return Ok(None);
    };
    let series = first.series_offset..end;
    let recorded = first.series_length > 0
        && datasets
            .iter()
            .all(|d| d.series_offset == series.start && d.series_length == first.series_length);
    if !recorded {
        return Ok(None);
    }
    let bytes = get(
        storage,
        block,
        region.start + series.start..region.start + series.end,
    )
    .await?;
    let read = bytes.len() as u64;
    let names = datasets
        .iter()
        .map(|d| (d.tenant.clone(), d.service_name.clone()))
        .collect();
    Ok(Some((IndexedSeries { names, bytes }, read)))
}

impl RegionDirectory {
    /// The number of datasets the region holds.
    pub fn dataset_count(&self) -> usize {
        self.toc.dataset_count()
    }

    /// The byte range `span` of region `range` (relative to the region's start): from the
    /// whole region when the directory holds it, else with one ranged GET. Returns the bytes
    /// with the number read from storage.
    pub(crate) async fn read(
        &self,
        storage: &Storage,
        block: &BlockMeta,
        range: &RegionRange,
        span: Range<u64>,
    ) -> Result<(Bytes, u64)> {
        if let Some(whole) = &self.whole {
            if span.end > whole.len() as u64 {
                return Err(BlockError::Corrupt(format!(
                    "{}: section out of its region",
                    block.path
                )));
            }
            return Ok((whole.slice(span.start as usize..span.end as usize), 0));
        }
        let RegionRange::Bytes(region) = range else {
            return Err(BlockError::Corrupt(format!(
                "{}: a whole object has no region directory",
                block.path
            )));
        };
        let bytes = get(
            storage,
            block,
            region.start + span.start..region.start + span.end,
        )
        .await?;
        let read = bytes.len() as u64;
        Ok((bytes, read))
    }
}

/// Fetches exactly `bytes` of `block`'s object.
pub(crate) async fn get(storage: &Storage, block: &BlockMeta, bytes: Range<u64>) -> Result<Bytes> {
    fetch(storage, block, &RegionRange::Bytes(bytes)).await
}

/// Fetches the bytes of `range` of `block`'s object.
pub async fn fetch(storage: &Storage, block: &BlockMeta, range: &RegionRange) -> Result<Bytes> {
    let path = storage.path(&block.path);
    let failed =
        |e: kiln_objstore::object_store::Error| BlockError::Storage(format!("{}: {e}", block.path));
    let options = match range {
        RegionRange::Whole => GetOptions::default(),
        RegionRange::Bytes(bytes) => GetOptions {
            range: Some(GetRange::Bounded(bytes.clone())),
            ..GetOptions::default()
        },
    };
    let bytes = storage
        .store
        .get_opts(&path, options)
        .await
        .map_err(failed)?
        .bytes()
        .await
        .map_err(failed)?;
    if let Some(expected) = range.byte_len()
        && bytes.len() as u64 != expected
    {
        return Err(BlockError::Corrupt(format!(
            "{}: asked for {expected} bytes of a region, got {}",
            block.path,
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes what [`fetch`] returned for `range`: every dataset of the region (or object).
/// CPU work: call it off the async executor.
pub fn decode(bytes: Bytes, range: &RegionRange) -> Result<Vec<DatasetData>> {
    match range {
        RegionRange::Whole => SegmentReader::parse(bytes)?.read_all(),
        RegionRange::Bytes(_) => decode_region(bytes),
    }
}

/// Fetches and decodes `range` of `block`, decoding on a blocking thread.
pub async fn load(
    storage: &Storage,
    block: &BlockMeta,
    range: &RegionRange,
) -> Result<Vec<DatasetData>> {
    let bytes = fetch(storage, block, range).await?;
    let range = range.clone();
    tokio::task::spawn_blocking(move || decode(bytes, &range))
        .await
        .map_err(|e| BlockError::Corrupt(format!("decoding failed: {e}")))?
}
