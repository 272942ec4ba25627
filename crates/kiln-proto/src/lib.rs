//! Protobuf types for Kiln's APIs, generated at build time from the workspace's proto/ folder.
//!
//! The wire-compatible packages keep Pyroscope's names (`push.v1`, `querier.v1`, `types.v1`,
//! `google.v1`) so that existing clients talk to Kiln unchanged. [`json`] transcodes any of
//! them to and from the protobuf JSON mapping, for the Connect protocol.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// pprof's profile.proto.
pub mod google {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("google.v1");
    }
}

/// Shared types of Pyroscope's APIs.
pub mod types {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("types.v1");
    }
}

/// Pyroscope's push API.
pub mod push {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("push.v1");
    }
}

/// Pyroscope's query API.
pub mod querier {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("querier.v1");
    }
}

pub mod json;
