//! The contracts between Kiln's roles.
//!
//! For every role that other roles call, this crate holds what a caller needs and nothing more:
//! the trait it calls the role through, the request and response types, the error (with its
//! gRPC status mapping) and the gRPC client. No storage engine sits behind any of it, so a crate
//! that calls a role compiles neither that role's server nor its engine: the distributor
//! reaches ingesters and the metastore through this crate alone (ADR 0004).
//!
//! Each trait has an in-process implementation in the role's own crate (all-in-one mode makes
//! no network hop) and a gRPC client here.

mod channel;
pub mod ingester;
pub mod metastore;
pub mod querier;
mod role;
pub mod trace_context;

pub use channel::{ChannelPool, ClusterTls};
pub use role::{Role, UnknownRole};
