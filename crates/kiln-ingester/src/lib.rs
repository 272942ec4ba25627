//! The ingester, Kiln's segment writer.
//!
//! Profiles pushed to an ingester wait in a buffer; every flush interval the buffer becomes one
//! segment object holding all its tenants and services, the object is written to storage,
//! registered with the metastore, and only then are the pushes acknowledged. Distributors call
//! ingesters through `kiln_contract::ingester::Ingester`: [`SegmentWriter`] in process, or this
//! crate's [`IngesterGrpc`] service behind the contract's gRPC client.

mod metrics;
pub mod recovery;
mod segment_writer;
mod service;
#[cfg(test)]
mod writer_tests;

pub use metrics::IngesterMetrics;
pub use segment_writer::{SegmentWriter, SegmentWriterConfig};
pub use service::IngesterGrpc;
