//! Kiln's block format.
//!
//! A segment (what an ingester flushes) and a block (what the compactor writes) share one
//! layout: a single immutable object holding several Parquet files ("sections") and a footer
//! that lists them together with the [`kiln_model::BlockMeta`]. One object can hold many tenants and
//! services; each (tenant, service) pair is a dataset with its own symbol tables, so that a
//! service's symbols are deduplicated together. docs/block-format.md describes the layout.

mod builder;
mod container;
mod data;
mod error;
mod sections;
#[cfg(test)]
mod tests;

pub use builder::{DatasetBuilder, SegmentBuilder};
pub use container::{SegmentReader, encode_segment, object_path};
pub use data::{
    DatasetData, Function, Location, Mapping, ProfileRow, SampleRow, SeriesRow, Symbols,
};
pub use error::{BlockError, Result};
