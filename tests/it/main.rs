//! Integration tests: every module starts the real `kiln` binary and talks to it over the
//! network with real clients.

mod bad_input;
mod cloud_storage;
mod cluster;
mod formats;
mod golden;
mod harness;
mod lifecycle;
mod limits;
mod metastore_cluster;
mod otlp;
mod proxy;
mod query;
mod reference;
mod s3;
mod sdk;
mod tenants;
mod write_path;
