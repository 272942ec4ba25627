//! What Kiln's integration tests (`tests/it`) and load generator (`benches/loadgen`) share, and
//! the library crates' tests and benchmarks use for test data. Dev-only.
//!
//! - [`testdata`]: the shared test profiles (`../shared/testdata` beside the repository, or
//!   `KILN_TESTDATA`).
//! - [`ports`]: free loopback ports.
//!
//! With the feature `servers`:
//!
//! - `process`: starting `kiln server` processes (all-in-one or single roles), waiting for their
//!   listeners and `/ready`, signals, restarts; `KILN_TEST_LOGS=1` prints their logs.
//! - `cluster`: metastore groups, and clusters of ingesters, distributors and queriers around
//!   one, as separate processes on loopback.
//! - `emulators`: moto's S3 server (`tests/s3/.venv`) and Azurite (`tests/cloud`).

use std::path::PathBuf;

#[cfg(feature = "servers")]
pub mod cluster;
#[cfg(feature = "servers")]
pub mod emulators;
pub mod ports;
#[cfg(feature = "servers")]
pub mod process;
pub mod testdata;

/// The repository's top folder (the Cargo workspace).
///
/// cargo and nextest set the running crate's manifest dir at run time (every member sits two
/// levels down: `crates/*`, `benches/loadgen`); a build reused from a checkout at another path
/// would carry that path in the compile-time value, which is the fallback (a program started
/// without cargo).
pub fn workspace_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}
