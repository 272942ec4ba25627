//! Integration tests: every module starts the real `kiln` binary and talks to it over the
//! network with real clients. `support` holds what they share; kiln-testkit starts the
//! processes, clusters and emulators.

mod amplification;
mod bad_input;
mod budgets;
mod cli;
mod cloud_storage;
mod cluster;
mod compaction;
mod compaction_cluster;
mod deploy;
mod formats;
mod golden;
mod lifecycle;
mod limits;
mod metastore_cluster;
mod otlp;
mod query;
mod query_api;
mod query_cluster;
mod retention;
mod sdk;
mod security;
mod sql;
mod support;
mod tenants;
mod ui;
mod write_path;
