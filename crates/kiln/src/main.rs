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

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment overrides
/// them): one arena per CPU, each thread allocating from the arena of the CPU it runs on, instead
/// of four arenas per CPU assigned to threads round robin. Every arena keeps the pages freed in
/// it for reuse for 10 s, so with 8 arenas on 2 cores the server held the peaks of many threads
/// at once: peak RSS at 256 profiles/s 260–286 → 187–206 MiB at the same CPU per profile
/// (docs/benchmarks.md, "One jemalloc arena per CPU"). The symbol carries tikv-jemalloc-sys's
/// `_rjem_` prefix, and the value is a pointer to a C string, as jemalloc's `malloc_conf` is.
/// Linux only: jemalloc finds the current CPU with `sched_getcpu` and does not offer the option
/// where that is missing.
#[cfg(target_os = "linux")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 20] = b"percpu_arena:percpu\0";

fn main() -> std::process::ExitCode {
    cli::run()
}
