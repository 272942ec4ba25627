//! The `kiln` binary: parses the command line and wires the roles together.

mod admin;
mod cli;
mod client;
mod ops;
mod panics;
mod roles;
mod security;
mod server;
mod telemetry;

/// jemalloc: on the ingest path (many short-lived buffers freed on other threads) it takes
/// 10-14 % less CPU per profile than glibc's malloc at the same peak RSS (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
