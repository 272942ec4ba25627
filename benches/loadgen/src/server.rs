//! The kiln servers the benchmarks start (through kiln-testkit), and what they cost.

use std::path::Path;

use kiln_testkit::process::{KilnCommand, KilnServer};

/// Benchmark servers log warnings and kiln's own events (which report the listeners).
const LOG_FILTER: &str = "warn,kiln=info";

/// `binary server` on `data_dir`, with loopback listeners on free ports. Retention is off
/// (`--retention-period=0`): the query data sets are backdated by days, and a server refuses
/// pushes older than its retention period.
pub(crate) fn command(binary: &Path, data_dir: &Path) -> KilnCommand {
    cluster_command(binary, data_dir)
        // Every process of a benchmark runs on loopback: no cluster TLS (docs/security.md).
        .arg("--cluster.insecure")
}

/// [`command`] for the processes of a `kiln_testkit` cluster, which adds `--cluster.insecure`
/// itself (a flag given twice is refused).
pub(crate) fn cluster_command(binary: &Path, data_dir: &Path) -> KilnCommand {
    logged(binary, data_dir).arg("--retention-period=0")
}

/// [`command`] with the server's default retention (30 days), as users run it: for workloads
/// of current profiles only.
pub(crate) fn retaining_command(binary: &Path, data_dir: &Path) -> KilnCommand {
    logged(binary, data_dir).arg("--cluster.insecure")
}

/// `binary server` on `data_dir` with the benchmarks' log filter.
fn logged(binary: &Path, data_dir: &Path) -> KilnCommand {
    KilnCommand::new(binary, data_dir).rust_log(LOG_FILTER)
}

/// Starts an all-in-one server on `data_dir` and waits until it is ready.
pub(crate) async fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<KilnServer> {
    command(binary, data_dir).start().await
}

/// Stops a server with SIGTERM; a server that does not exit in time is killed, with a warning.
pub(crate) fn stop(server: KilnServer) {
    if let Err(e) = server.stop() {
        eprintln!("warning: {e:#}");
    }
}

/// CPU seconds (user + system) the server has used so far.
pub(crate) fn cpu_seconds(server: &KilnServer) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// Segments the server's ingesters have written so far (0 when `/metrics` cannot be read).
pub(crate) async fn segments_flushed(server: &KilnServer) -> f64 {
    server
        .metric("kiln_ingester_segments_flushed_total")
        .await
        .unwrap_or(0.0)
}

/// Peak resident memory in MiB.
pub(crate) fn peak_rss_mib(server: &KilnServer) -> f64 {
    status_mib(server, "VmHWM:")
}

/// Resident memory now, in MiB.
pub(crate) fn rss_mib(server: &KilnServer) -> f64 {
    status_mib(server, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`, in MiB.
fn status_mib(server: &KilnServer, field: &str) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Bytes under the data directory's object store and metastore.
pub(crate) fn stored_bytes(server: &KilnServer) -> (u64, u64) {
    (
        dir_size(&server.data_dir().join("objects")),
        dir_size(&server.data_dir().join("metastore")),
    )
}

/// Files under `dir` (objects of a file:// bucket), at any depth.
pub(crate) fn file_count(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() { file_count(&path) } else { 1 }
        })
        .sum()
}

/// Bytes of the files under `dir`, at any depth.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
