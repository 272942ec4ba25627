//! The suite's results: a Markdown table with each figure beside its baseline, and JSON.

use std::path::Path;

use std::collections::BTreeMap;

use crate::compaction::watch::LevelTotals;
use crate::driver::LoadResult;
use crate::queries::QueryLatency;

#[derive(Debug, serde::Serialize)]
pub(crate) struct IngestFigures {
    pub(crate) label: String,
    /// Single-thread gunzip and decode of this workload's payloads, MB/s, in the same run.
    pub(crate) decode_baseline_mb_s: f64,
    pub(crate) load: LoadResult,
    pub(crate) server_cpu_seconds: f64,
    /// Segments written during the run (objects of the write path).
    pub(crate) segments: f64,
    pub(crate) server_peak_rss_mib: f64,
    pub(crate) object_bytes: u64,
    pub(crate) metastore_bytes: u64,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Report {
    pub(crate) kiln_binary: String,
    pub(crate) smoke: bool,
    pub(crate) ingest: Vec<IngestFigures>,
    pub(crate) queries: Vec<QueryLatency>,
    pub(crate) query_peak_rss_mib: f64,
    /// The query data set's blocks per compaction level when the queries ran.
    pub(crate) query_levels: BTreeMap<u32, LevelTotals>,
    /// (minutes, files, milliseconds) of `go tool pprof -proto` merges.
    pub(crate) go_merge: Vec<(i64, usize, f64)>,
}

impl Report {
    pub(crate) fn new(binary: &Path, smoke: bool) -> Self {
        Self {
            kiln_binary: binary.display().to_string(),
            smoke,
            ingest: Vec::new(),
            queries: Vec::new(),
            query_peak_rss_mib: 0.0,
            query_levels: BTreeMap::new(),
            go_merge: Vec::new(),
        }
    }

    pub(crate) fn ingest(
        &mut self,
        label: &str,
        decode_baseline_mb_s: f64,
        load: LoadResult,
        cpu: f64,
        segments: f64,
        rss: f64,
        (objects, metastore): (u64, u64),
    ) {
        self.ingest.push(IngestFigures {
            label: label.to_string(),
            decode_baseline_mb_s,
            load,
            server_cpu_seconds: cpu,
            segments,
            server_peak_rss_mib: rss,
            object_bytes: objects,
            metastore_bytes: metastore,
        });
    }

    /// The Markdown table.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| Ingest | profiles/s | samples/s | decoded MB/s | wire MB/s | decoded MB per server CPU-s (target ≥ 40) | vs. single-thread decode of the same payloads | ack p50 / p99 / max ms (target ≤ 300 / 800) | segments/s | server CPU-s | server CPU ms per profile | peak RSS MiB | stored bytes/sample | errors |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for figures in &self.ingest {
            let load = &figures.load;
            let seconds = load.seconds.max(1e-9);
            let decoded_mb = load.decoded_bytes as f64 / 1e6;
            let per_cpu = decoded_mb / figures.server_cpu_seconds.max(1e-9);
            let ratio = if figures.decode_baseline_mb_s > 0.0 {
                per_cpu / figures.decode_baseline_mb_s
            } else {
                0.0
            };
            let stored = (figures.object_bytes + figures.metastore_bytes) as f64
                / (load.samples.max(1)) as f64;
            let errors: u64 = load
                .statuses
                .iter()
                .filter(|(s, _)| **s != 200)
                .map(|(_, n)| n)
                .sum();
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2}× of {:.0} MB/s | {:.0} / {:.0} / {:.0} | {:.1} | {:.1} | {:.2} | {:.0} | {:.2} | {} |\n",
                figures.label,
                load.profiles as f64 / seconds,
                load.samples as f64 / seconds,
                decoded_mb / seconds,
                load.wire_bytes as f64 / 1e6 / seconds,
                per_cpu,
                ratio,
                figures.decode_baseline_mb_s,
                load.ack_p50_ms,
                load.ack_p99_ms,
                load.ack_max_ms,
                figures.segments / seconds,
                figures.server_cpu_seconds,
                figures.server_cpu_seconds * 1000.0 / (load.profiles.max(1)) as f64,
                figures.server_peak_rss_mib,
                stored,
                errors,
            ));
        }
        out.push('\n');
        out.push_str("| Query | range | profiles merged | runs | cold ms | p50 ms | p99 ms | go tool pprof -proto ms | Kiln speed-up (target ≥ 20× at 24 h) |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for q in &self.queries {
            let peer = self.go_merge.iter().find(|(m, _, _)| {
                *m == q.minutes && ["flamegraph", "pprof"].contains(&q.query.as_str())
            });
            let (peer_ms, speedup) = match peer {
                Some((_, _, ms)) => (
                    format!("{ms:.0}"),
                    format!("{:.1}×", ms / q.p50_ms.max(1e-9)),
                ),
                None => ("n/a".to_string(), "n/a".to_string()),
            };
            let range = if q.minutes % 60 == 0 {
                format!("{} h", q.minutes / 60)
            } else {
                format!("{} min", q.minutes)
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} |\n",
                q.query, range, q.profiles, q.runs, q.cold_ms, q.p50_ms, q.p99_ms, peer_ms, speedup
            ));
        }
        out.push_str(&format!(
            "\nQuery server peak RSS: {:.0} MiB.\n",
            self.query_peak_rss_mib
        ));
        for (level, totals) in &self.query_levels {
            out.push_str(&format!(
                "Query data set, level {level}: {} blocks, {:.1} MB, {} samples, {:.2} bytes/sample.\n",
                totals.blocks,
                totals.bytes as f64 / 1e6,
                totals.samples,
                totals.bytes_per_sample()
            ));
        }
        out
    }
}
