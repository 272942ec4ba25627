//! Protobuf types for Kiln's APIs, generated at build time from the workspace's proto/ folder.
//!
//! The wire-compatible packages keep Pyroscope's names (`push.v1`, `querier.v1`, `types.v1`,
//! `google.v1`) so that existing clients talk to Kiln unchanged. [`json`] transcodes any of
//! them to and from the protobuf JSON mapping, for the Connect protocol.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// pprof's profile.proto (`google.v1`) and `google.rpc.Status`.
pub mod google {
    /// pprof, version 1.
    pub mod v1 {
        tonic::include_proto!("google.v1");
    }
    /// The error body of OTLP/HTTP.
    pub mod rpc {
        tonic::include_proto!("google.rpc");
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

/// Pyroscope's settings API, which Grafana's Profiles Drilldown calls.
pub mod settings {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("settings.v1");
    }
}

/// OpenTelemetry's protocol: the profiles signal (v1.10/v1.11 layout) and what it uses.
pub mod opentelemetry {
    /// `opentelemetry.proto`.
    pub mod proto {
        /// Common types.
        pub mod common {
            /// Version 1.
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        /// Resources.
        pub mod resource {
            /// Version 1.
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        /// The profiles signal.
        pub mod profiles {
            /// The development version.
            pub mod v1development {
                tonic::include_proto!("opentelemetry.proto.profiles.v1development");
            }
        }
        /// Collector services.
        pub mod collector {
            /// The profiles collector service.
            pub mod profiles {
                /// The development version.
                pub mod v1development {
                    tonic::include_proto!("opentelemetry.proto.collector.profiles.v1development");
                }
            }
        }
    }
}

/// The Pyroscope Java agent's JFR context labels.
pub mod io {
    /// `io.pyroscope`.
    pub mod pyroscope {
        /// `io.pyroscope.labels`.
        pub mod labels {
            /// `io.pyroscope.labels.pb`.
            pub mod pb {
                tonic::include_proto!("io.pyroscope.labels.pb");
            }
        }
    }
}

pub mod json;

/// Kiln's own services between its roles.
pub mod kiln {
    /// Raft traffic between metastore nodes.
    pub mod raft {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("kiln.raft.v1");
        }
    }
    /// The ingester's push API, for distributors.
    pub mod ingester {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("kiln.ingester.v1");
        }
    }
    /// Parts of queries, run by one querier for another.
    pub mod querier {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("kiln.querier.v1");
        }
    }
    /// The metastore's client and admin API.
    pub mod metastore {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("kiln.metastore.v1");
        }
    }
}
