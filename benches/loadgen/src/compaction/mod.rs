//! `kiln-loadgen compaction`: the compaction figures of docs/benchmarks.md.
//!
//! - `split` ([`split`]): one data set of the suite's generator pushed into a split deployment,
//!   then compacted by a compactor process of its own: throughput per compactor CPU-second,
//!   stored bytes per sample per level, objects and metastore memory before and after.
//! - `latency` ([`latency`]): acknowledgement to the first level-1 block, default settings.
//! - `real` ([`real`]): copies of the Go CPU profiles of the test data merged by Kiln before and
//!   after compaction, against `go tool pprof -proto` on the same files.
//!
//! [`watch`] follows the index; the suite uses it too (`suite --compacted`).

mod latency;
mod real;
mod split;
pub(crate) mod watch;

use std::path::PathBuf;
use std::time::Duration;

use crate::figures::{Figures, kiln_binary};

/// The parts of the compaction benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Throughput, bytes per sample per level, objects and metastore memory.
    Split,
    /// Acknowledgement to the first level-1 block.
    Latency,
    /// Real Go profiles against `go tool pprof`.
    Real,
}

/// Flags of the compaction benchmark.
#[derive(Debug, clap::Args)]
pub(crate) struct CompactionArgs {
    /// The kiln binary (default: beside this one).
    #[arg(long)]
    kiln_bin: Option<PathBuf>,
    /// Scratch directory for the servers' data.
    #[arg(long, default_value = "target/bench-compaction")]
    data_dir: PathBuf,
    /// The parts to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "split,latency,real"
    )]
    parts: Vec<Part>,
    /// `--compaction.levels` for the split and real parts: short ages, so that data reaches the
    /// final level in minutes (bytes per sample do not depend on the ages). The latency part
    /// keeps the server's defaults.
    #[arg(long, default_value = "20/10s,10/10s,10/10s")]
    levels: String,
    /// Days of the split part's data set (the suite's generator: one service, 10 s profiles).
    #[arg(long, default_value = "1")]
    days: i64,
    /// Instances of that data set.
    #[arg(long, default_value = "1")]
    instances: usize,
    /// Profiles per push request of the split part's data set: 60 backfills a day in about 76
    /// segments; 1, with a short `--flush-interval`, writes about one segment per profile, as
    /// live ingestion does (a segment every 500 ms per busy ingester).
    #[arg(long, default_value = "60")]
    profiles_per_push: usize,
    /// Pushes in flight while the split part's data set is pushed.
    #[arg(long, default_value = "4")]
    pushes_in_flight: usize,
    /// `--ingester.flush-interval` of the split part's ingester (default: the server's, 250ms).
    #[arg(long)]
    flush_interval: Option<String>,
    /// `--metastore.snapshot-logs` of the split part's metastore (default: the server's,
    /// 10000). A restarted metastore replays the log kept since its last snapshot, so a small
    /// value makes its memory after a restart that of the index rather than of its history.
    #[arg(long)]
    metastore_snapshot_logs: Option<u64>,
    /// Probes of the latency part, per phase (idle, under load).
    #[arg(long, default_value = "3")]
    probes: usize,
    /// Requests per second of the load beside the latency probes.
    #[arg(long, default_value = "20")]
    load_rate: f64,
    /// Copies of the Go CPU profiles in the real part.
    #[arg(long, default_value = "600")]
    real_profiles: usize,
    /// Runs of each timed query and of `go tool pprof` in the real part.
    #[arg(long, default_value = "3")]
    runs: usize,
    /// The test data folder (default: `../shared/testdata` beside the repository, or
    /// `KILN_TESTDATA`).
    #[arg(long)]
    testdata: Option<PathBuf>,
    /// A quick run on tiny data (minutes of data, few probes and copies), to check the tool.
    #[arg(long)]
    smoke: bool,
    /// Write the figures as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the selected parts, printing each figure as measured.
pub(crate) async fn run(args: CompactionArgs) -> anyhow::Result<()> {
    let binary = kiln_binary(args.kiln_bin.as_ref())?;
    std::fs::create_dir_all(&args.data_dir)?;
    let testdata = args
        .testdata
        .clone()
        .unwrap_or_else(kiln_testkit::testdata::dir);
    let mut figures = Figures::default();
    for part in &args.parts {
        match part {
            Part::Split => {
                let config = split::SplitConfig {
                    binary: &binary,
                    dir: &args.data_dir.join("split"),
                    levels: &args.levels,
                    // A smoke run pushes an hour of data whatever --days says.
                    minutes: if args.smoke { 60 } else { args.days * 24 * 60 },
                    instances: args.instances,
                    samples_per_profile: if args.smoke { 200 } else { 1000 },
                    profiles_per_push: args.profiles_per_push,
                    pushes_in_flight: args.pushes_in_flight,
                    flush_interval: args.flush_interval.as_deref(),
                    snapshot_logs: args.metastore_snapshot_logs,
                    timeout: Duration::from_secs(if args.smoke { 300 } else { 7200 }),
                };
                split::run(&config, &mut figures).await?;
            }
            Part::Latency => {
                latency::run(
                    &binary,
                    &args.data_dir.join("latency"),
                    if args.smoke { 1 } else { args.probes },
                    args.load_rate,
                    &mut figures,
                )
                .await?;
            }
            Part::Real => {
                real::run(
                    &binary,
                    &args.data_dir.join("real"),
                    &testdata,
                    &args.levels,
                    if args.smoke { 24 } else { args.real_profiles },
                    if args.smoke { 1 } else { args.runs },
                    &mut figures,
                )
                .await?;
            }
        }
    }
    figures.write_json(args.json.as_deref())
}
