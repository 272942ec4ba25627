//! Kiln's block format.
//!
//! A segment (what an ingester flushes) and a block (what the compactor writes) share one
//! layout: a single immutable object holding regions of Parquet files ("sections") and a footer
//! that lists them together with the [`kiln_model::BlockMeta`]. Each (tenant, service) pair is a
//! dataset with its own symbol tables, so that a service's symbols are deduplicated together. A
//! segment keeps all its datasets (of any tenants) in one region; a compacted block holds one
//! tenant, a region per large dataset and shared regions for small ones
//! ([`SHARED_REGION_ROWS`]), merged by [`DatasetMerger`]. docs/block-format.md
//! describes the layout.

mod builder;
mod container;
mod data;
mod error;
pub mod fetch;
mod intern;
mod merge;
pub mod pruned;
mod region;
mod sections;
#[cfg(test)]
mod tests;

pub use builder::{DatasetBuilder, SegmentBuilder};
pub use container::{
    OBJECT_PREFIXES, ObjectWriter, RECOVERY_PREFIX, SHARED_REGION_ROWS, SegmentReader,
    block_id_of_path, block_path, encode_segment, object_path, recovery_path,
};
pub use data::{
    DatasetData, Function, Location, Mapping, ProfileRow, SampleRow, SeriesRow, Symbols,
};
pub use error::{BlockError, Result};
pub use merge::DatasetMerger;
pub use region::decode_region;
