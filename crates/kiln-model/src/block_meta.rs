//! What the block index knows about a stored object (segment or block), shared by the writers
//! and the index without the block format itself (no Arrow or Parquet).

use serde::{Deserialize, Serialize};

/// What the block index knows about one object: enough to plan a query without opening it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block's ULID, unique across the cluster.
    pub id: String,
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
    /// True when some dataset of `tenant` overlaps `[start, end)`.
    pub fn overlaps(&self, tenant: &str, start_nanos: i64, end_nanos: i64) -> bool {
        self.datasets
            .iter()
            .any(|d| d.tenant == tenant && d.overlaps(start_nanos, end_nanos))
    }
}

/// The summary of one dataset (tenant and service) inside a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl DatasetMeta {
    /// True when the dataset has data in `[start, end)`.
    pub fn overlaps(&self, start_nanos: i64, end_nanos: i64) -> bool {
        self.min_time_nanos < end_nanos && self.max_time_nanos >= start_nanos
    }
}
