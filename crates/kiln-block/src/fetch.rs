//! Reading datasets from object storage: only the regions that hold the wanted datasets, each
//! with one ranged GET.

use std::ops::Range;

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
    toc: RegionToc,
    toc_start: u64,
    /// The whole region, when it was smaller than one tail read.
    whole: Option<Bytes>,
}

impl RegionDirectory {
    /// An estimate of the bytes the directory holds in memory, for a cache's weigher.
    pub fn memory_bytes(&self) -> usize {
        self.toc.memory_bytes() + self.whole.as_ref().map_or(0, Bytes::len) + 64
    }
}

/// The series section of a region, fetched: decode it (CPU work) where the caller runs such
/// work.
#[derive(Debug)]
pub struct SeriesSection {
    directory: std::sync::Arc<RegionDirectory>,
    bytes: Bytes,
}

impl SeriesSection {
    /// The region's datasets with only their series (label sets and profile types).
    pub fn decode(self) -> Result<Vec<DatasetData>> {
        self.directory.toc.decode_series(self.bytes)
    }
}

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

/// The series section of the region `range` of `block` (its datasets' label sets and profile
/// types, nothing else), located by `directory`: one ranged GET, none for a region the
/// directory holds whole. Returns it with the number of bytes read.
pub async fn fetch_series(
    storage: &Storage,
    block: &BlockMeta,
    range: &RegionRange,
    directory: std::sync::Arc<RegionDirectory>,
) -> Result<(SeriesSection, u64)> {
    let series = directory.toc.series_range(directory.toc_start)?;
    let (bytes, read) = match (&directory.whole, range) {
        (Some(whole), _) => (whole.slice(series.start as usize..series.end as usize), 0),
        (None, RegionRange::Bytes(region)) => {
            let bytes = get(
                storage,
                block,
                region.start + series.start..region.start + series.end,
            )
            .await?;
            let read = bytes.len() as u64;
            (bytes, read)
        }
        (None, RegionRange::Whole) => {
            return Err(BlockError::Corrupt(format!(
                "{}: a whole object has no region directory",
                block.path
            )));
        }
    };
    Ok((SeriesSection { directory, bytes }, read))
}

/// Fetches exactly `bytes` of `block`'s object.
async fn get(storage: &Storage, block: &BlockMeta, bytes: Range<u64>) -> Result<Bytes> {
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
