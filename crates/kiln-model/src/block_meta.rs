//! What the block index knows about a stored object (segment or block), shared by the writers
//! and the index without the block format itself (no Arrow or Parquet).

use serde::{Deserialize, Serialize};

/// The span of time a compacted block may cover: compaction never merges data of different
/// partitions, so that retention can drop whole blocks and a query skips blocks outside its
/// range.
pub const PARTITION_NANOS: i64 = 3_600 * 1_000_000_000;

/// The partition (its start, unix nanoseconds) of a profile stamped `time_nanos`.
pub fn partition_of(time_nanos: i64) -> i64 {
    time_nanos.div_euclid(PARTITION_NANOS) * PARTITION_NANOS
}

/// What the block index knows about one object: enough to plan a query without opening it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block's ULID, unique across the cluster; its time is when the object was written.
    pub id: String,
    /// The one tenant of a compacted block; empty for a segment, which holds any tenants.
    #[serde(default)]
    pub tenant: String,
    /// Path of the object relative to the storage prefix.
    pub path: String,
    /// The ingester shard that wrote it.
    pub shard: u32,
    /// 0 for segments; compaction raises it.
    pub compaction_level: u32,
    /// Earliest profile time in the block, unix nanoseconds.
    pub min_time_nanos: i64,
    /// Latest profile time in the block, unix nanoseconds (inclusive).
    pub max_time_nanos: i64,
    /// Size of the object in bytes.
    pub size_bytes: u64,
    /// One entry per (tenant, service).
    pub datasets: Vec<DatasetMeta>,
}

impl BlockMeta {
    /// Milliseconds since the epoch when the object was written (the time part of its ULID), or
    /// `None` when the id is not a ULID.
    pub fn created_millis(&self) -> Option<i64> {
        ulid_millis(&self.id)
    }

    /// True when some dataset of `tenant` overlaps `[start, end)`.
    pub fn overlaps(&self, tenant: &str, start_nanos: i64, end_nanos: i64) -> bool {
        self.datasets
            .iter()
            .any(|d| d.tenant == tenant && d.overlaps(start_nanos, end_nanos))
    }
}

/// The summary of one dataset (tenant and service) inside a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// The tenant.
    pub tenant: String,
    /// The service (`service_name` label).
    pub service_name: String,
    /// Earliest profile time, unix nanoseconds.
    pub min_time_nanos: i64,
    /// Latest profile time, unix nanoseconds (inclusive).
    pub max_time_nanos: i64,
    /// Profile type ids present.
    pub profile_types: Vec<String>,
    /// Label names present on any series.
    pub label_names: Vec<String>,
    /// Number of series.
    pub series: u64,
    /// Number of profile rows (one per series and profile).
    pub profiles: u64,
    /// Number of stored samples.
    pub samples: u64,
    /// Offset of the region of the object that holds the dataset. With `region_length` 0 (objects
    /// written before regions existed) the whole object is read.
    #[serde(default)]
    pub region_offset: u64,
    /// Length of that region in bytes.
    #[serde(default)]
    pub region_length: u64,
    /// Offset of the region's series section (label sets), relative to the region's start, so
    /// that label calls read it with one ranged GET. With `series_length` 0 (objects written
    /// before it was recorded) the region's table of contents locates it.
    #[serde(default)]
    pub series_offset: u64,
    /// Length of that series section in bytes.
    #[serde(default)]
    pub series_length: u64,
}

impl DatasetMeta {
    /// True when the dataset has data in `[start, end)`.
    pub fn overlaps(&self, start_nanos: i64, end_nanos: i64) -> bool {
        self.min_time_nanos < end_nanos && self.max_time_nanos >= start_nanos
    }
}

/// The time part of a ULID (its first 10 Crockford base-32 characters, 48 bits of milliseconds).
fn ulid_millis(id: &str) -> Option<i64> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if id.len() != 26 {
        return None;
    }
    let mut millis: u64 = 0;
    for byte in id.bytes().take(10) {
        let digit = ALPHABET
            .iter()
            .position(|&c| c == byte.to_ascii_uppercase())?;
        millis = millis.checked_mul(32)?.checked_add(digit as u64)?;
    }
    // The first character may only carry 3 bits: 48 bits in all.
    (millis < 1 << 48).then_some(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ulid_tells_when_its_block_was_written() {
        // The ULID specification's example: 01ARZ3NDEK is 1469922850259 ms.
        let block = BlockMeta {
            id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string(),
            ..BlockMeta::default()
        };
        assert_eq!(block.created_millis(), Some(1_469_922_850_259));
        let not_ulid = BlockMeta {
            id: "b0".to_string(),
            ..BlockMeta::default()
        };
        assert_eq!(not_ulid.created_millis(), None);
    }
}
