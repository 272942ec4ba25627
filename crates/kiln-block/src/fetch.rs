//! Reading datasets from object storage: only the regions that hold the wanted datasets, each
//! with one ranged GET.

use std::ops::Range;

use bytes::Bytes;
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_objstore::Storage;
use kiln_objstore::object_store::{GetOptions, GetRange};

use crate::container::SegmentReader;
use crate::data::DatasetData;
use crate::region::decode_region;
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
