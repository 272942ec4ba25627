//! The ingester's contract: distributors hand normalized profiles to an [`Ingester`] and get an
//! answer once they are durable and registered. The segment writer implements it in process
//! (`kiln-ingester`); [`IngesterClient`] implements it over gRPC.

mod client;
mod error;
mod wire;

use async_trait::async_trait;
use kiln_model::{NormalizedProfile, TenantId};

pub use client::IngesterClient;
pub use error::IngestError;
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
