//! The querier's contract with other queriers: a querier that plans a query hands parts of it
//! (a time window and the blocks overlapping it) to the live queriers and merges what they
//! return (ADR 0005). The querier implements [`QueryParts`] in process (`kiln-querier`);
//! [`QueryPartClient`] implements it over gRPC (`kiln.querier.v1.QueryPartService`).

mod client;
mod error;

use async_trait::async_trait;
use kiln_proto::kiln::querier::v1::{ExecutePartRequest, ExecutePartResponse};

pub use client::QueryPartClient;
pub use error::PartError;

/// Runs parts of queries.
#[async_trait]
pub trait QueryParts: Send + Sync + std::fmt::Debug {
    /// Folds the part `request` describes and returns its partial result, untruncated.
    async fn execute(&self, request: ExecutePartRequest) -> Result<ExecutePartResponse, PartError>;
}
