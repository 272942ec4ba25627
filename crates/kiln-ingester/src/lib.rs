//! The ingester, Kiln's segment writer.
//!
//! Profiles pushed to an ingester wait in a per-shard buffer; every flush interval the buffer
//! becomes one segment object holding all its tenants and services, the object is written to
//! storage, registered with the metastore, and only then are the pushes acknowledged.
//! Distributors call ingesters through the [`Ingester`] trait, in process or over the network.

mod error;
mod metrics;
pub mod recovery;
mod segment_writer;
mod service;
mod wire;

use async_trait::async_trait;
use kiln_model::{NormalizedProfile, TenantId};

pub use error::IngestError;
pub use metrics::IngesterMetrics;
pub use segment_writer::{SegmentWriter, SegmentWriterConfig};
pub use service::{IngesterClient, IngesterGrpc};
pub use wire::{profile_from_pb, profile_to_pb};

/// Accepts normalized profiles and returns once they are durable and registered.
#[async_trait]
pub trait Ingester: Send + Sync + std::fmt::Debug {
    /// Stores `profiles` of `tenant`; `Ok` means every one is durable and queryable.
    async fn push(
        &self,
        tenant: TenantId,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError>;
}
