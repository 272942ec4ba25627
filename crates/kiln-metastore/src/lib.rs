//! The metastore: the cluster's block index.
//!
//! Other roles talk to it through the [`Metastore`] trait. [`EmbeddedMetastore`] is the
//! single-node implementation used in all-in-one mode: an append-only, fsynced log of block
//! registrations under the data directory, replayed on start. The Raft group replaces it
//! behind the same trait.

mod embedded;
mod error;

use async_trait::async_trait;
use kiln_block::BlockMeta;

pub use embedded::EmbeddedMetastore;
pub use error::MetastoreError;

/// The block index, as every other role sees it.
#[async_trait]
pub trait Metastore: Send + Sync + std::fmt::Debug {
    /// Registers a block; registering the same block id again is a no-op.
    async fn add_block(&self, block: BlockMeta) -> Result<(), MetastoreError>;

    /// The blocks holding data of `tenant` that overlaps `[start_nanos, end_nanos)`.
    async fn query_blocks(
        &self,
        tenant: &str,
        start_nanos: i64,
        end_nanos: i64,
    ) -> Result<Vec<BlockMeta>, MetastoreError>;

    /// True while the metastore can serve reads and writes.
    async fn is_ready(&self) -> bool;
}
