//! `kiln-loadgen`: Kiln's load generator (`run`), system benchmark suite (`suite`) and the
//! metastore, cluster and compaction benchmarks.
//! docs/benchmarks.md records the figures with the command that produced them.

mod baseline;
mod cluster;
mod compaction;
mod driver;
mod figures;
mod metastore;
mod push;
mod queries;
mod real;
mod report;
mod server;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln_contract::metastore::Metastore;

use crate::driver::LoadConfig;
use crate::push::Protocol;
use crate::workload::WorkloadConfig;

/// Kiln's load generator and benchmark suite.
#[derive(Debug, Parser)]
#[command(name = "kiln-loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Push generated profiles to a running server and report what happened.
    Run(RunArgs),
    /// Start a server, run the whole suite, print the table with baselines and ratios.
    Suite(SuiteArgs),
    /// Start a metastore group, time registrations and index queries.
    Metastore(metastore::MetastoreArgs),
    /// Start a loopback cluster on an S3 server, ingest through it and beside all-in-one.
    Cluster(cluster::ClusterArgs),
    /// Compaction: throughput, latency to level 1, bytes per sample per level, objects and
    /// metastore memory, and real Go profiles against `go tool pprof`.
    Compaction(compaction::CompactionArgs),
}

/// What the pushed profiles are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
enum Profiles {
    /// Generated profiles of 1,000 samples (CPU, and heap for push.v1) with synthetic stacks.
    Generated,
    /// Real Go CPU profiles of 8 to 32 KB from the test data, one per push.v1 request: what a
    /// quiet service's SDK sends every 10 to 15 s.
    GoSmall,
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// What to push (`go-small` pushes with push.v1 only).
    #[arg(long, value_enum, default_value = "generated")]
    profiles: Profiles,
    /// The test data folder of `--profiles go-small` (default: `../shared/testdata` beside the
    /// repository, or `KILN_TESTDATA`).
    #[arg(long)]
    testdata: Option<PathBuf>,
    /// Protocol to push with.
    #[arg(long, value_enum, default_value = "push")]
    protocol: Protocol,
    /// Services (each with its own function and stack pools).
    #[arg(long, default_value = "4")]
    services: usize,
    /// Instances per service (the `instance` label).
    #[arg(long, default_value = "4")]
    instances: usize,
    /// How long to push.
    #[arg(long, default_value = "20s", value_parser = humantime_duration)]
    duration: Duration,
    /// Requests per second; 0 pushes as fast as the server accepts.
    #[arg(long, default_value = "0")]
    rate: f64,
    /// Requests in flight at most.
    #[arg(long, default_value = "8")]
    concurrency: usize,
    /// Distinct payloads generated up front.
    #[arg(long, default_value = "256")]
    pool: usize,
    /// Distinct values of the `label_0` label.
    #[arg(long, default_value = "10")]
    label_values: usize,
    /// Fraction of samples with a span id.
    #[arg(long, default_value = "0.1")]
    span_fraction: f64,
}

impl LoadArgs {
    fn config(&self) -> LoadConfig {
        LoadConfig {
            protocol: self.protocol,
            services: self.services,
            instances: self.instances,
            duration: self.duration,
            rate: self.rate,
            concurrency: self.concurrency,
            pool: self.pool,
            workload: WorkloadConfig {
                label_values: self.label_values,
                span_fraction: self.span_fraction,
                ..WorkloadConfig::default()
            },
        }
    }
}

/// The payloads of `profiles` to cycle through for `config` (`testdata`: the shared test data,
/// for real profiles).
fn payloads(
    profiles: Profiles,
    config: &LoadConfig,
    testdata: &std::path::Path,
) -> anyhow::Result<Vec<push::Payload>> {
    match profiles {
        Profiles::Generated => Ok(driver::payload_pool(config, now_nanos())),
        Profiles::GoSmall => {
            anyhow::ensure!(
                config.protocol == Protocol::Push,
                "--profiles go-small pushes with --protocol push only"
            );
            real::small_go_payloads(
                testdata,
                config.services,
                config.instances,
                config.pool,
                now_nanos(),
            )
        }
    }
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("invalid duration {text:?}: use ms, s or m")),
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:4040")]
    target: String,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, clap::Args)]
struct SuiteArgs {
    /// The kiln binary; default: the one next to this executable.
    #[arg(long)]
    kiln_bin: Option<PathBuf>,
    /// Where the query data set lives (generated once, reused while its shape matches).
    #[arg(long, default_value = "target/kiln-bench-data")]
    data_dir: PathBuf,
    /// A run under a minute with tiny data, for CI.
    #[arg(long)]
    smoke: bool,
    /// Instances of the query data set's service.
    #[arg(long, default_value = "2")]
    query_instances: usize,
    /// Days of the query data set.
    #[arg(long, default_value = "7")]
    query_days: i64,
    /// Runs of each query over 24 h and more (over 1 h: twice as many).
    #[arg(long, default_value = "3")]
    query_runs: usize,
    /// Seconds of each ingest run.
    #[arg(long, default_value = "20")]
    ingest_seconds: u64,
    /// Skip the ingest runs (measure queries only).
    #[arg(long)]
    skip_ingest: bool,
    /// Longest range `go tool pprof` merges, in minutes (it takes over 20 minutes for 24 h
    /// of 10 s profiles here).
    #[arg(long, default_value = "1440")]
    go_merge_max_minutes: i64,
    /// `--compaction.levels` of the servers that generate and query the query data set (default:
    /// the server's own).
    #[arg(long)]
    compaction_levels: Option<String>,
    /// Time the queries only once every block of the query data set is at the final level of
    /// `--compaction-levels` (the server's default ages take hours to reach it).
    #[arg(long, requires = "compaction_levels")]
    compacted: bool,
    /// Requests in flight while generating the query data set.
    #[arg(long, default_value = "4")]
    generate_in_flight: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let config = args.load.config();
                let testdata =
                    (args.load.testdata.clone()).unwrap_or_else(kiln_testkit::testdata::dir);
                let payloads = Arc::new(payloads(args.load.profiles, &config, &testdata)?);
                let result = driver::run(&args.target, &config, payloads).await;
                println!("{}", serde_json::to_string_pretty(&result)?);
                Ok(())
            }
            Command::Suite(args) => suite(args).await,
            Command::Metastore(args) => metastore::run(args).await,
            Command::Cluster(args) => cluster::run(args).await,
            Command::Compaction(args) => compaction::run(args).await,
        }
    })
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The server of the query data set: all-in-one, with the suite's compaction levels.
async fn query_server(
    binary: &std::path::Path,
    dir: &std::path::Path,
    args: &SuiteArgs,
) -> anyhow::Result<kiln_testkit::process::KilnServer> {
    let mut command = server::command(binary, dir);
    if let Some(levels) = &args.compaction_levels {
        command = command.arg(format!("--compaction.levels={levels}"));
    }
    command.start().await
}

async fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    let binary = figures::kiln_binary(args.kiln_bin.as_ref())?;
    std::fs::create_dir_all(&args.data_dir)?;
    let mut report = report::Report::new(&binary, args.smoke);

    // Ingest, one fresh server per protocol.
    let seconds = if args.smoke { 2 } else { args.ingest_seconds };
    let ingest_runs = if args.skip_ingest {
        Vec::new()
    } else {
        vec![
            (
                Protocol::Push,
                0.0,
                Profiles::Generated,
                "push.v1, max rate",
            ),
            (
                Protocol::Ingest,
                0.0,
                Profiles::Generated,
                "/ingest, max rate",
            ),
            (
                Protocol::Otlp,
                0.0,
                Profiles::Generated,
                "OTLP/HTTP, max rate",
            ),
            (
                Protocol::Push,
                20.0,
                Profiles::Generated,
                "push.v1, 20 req/s",
            ),
            (
                Protocol::Push,
                0.0,
                Profiles::GoSmall,
                "push.v1, 48 clients, small Go profiles",
            ),
        ]
    };
    let mut decode_baselines = std::collections::HashMap::new();
    for (protocol, rate, profiles, label) in ingest_runs {
        let dir = args
            .data_dir
            .join(format!("ingest-{label}").replace([' ', ',', '/', '.'], "_"));
        let _ = std::fs::remove_dir_all(&dir);
        let pool = if args.smoke { 8 } else { 256 };
        let (config, command) = match profiles {
            Profiles::Generated => (
                LoadConfig {
                    protocol,
                    services: 4,
                    instances: 4,
                    duration: Duration::from_secs(seconds),
                    rate,
                    // Every push waits for a flush, so throughput needs many pushes in flight.
                    concurrency: if rate == 0.0 { 64 } else { 8 },
                    pool,
                    workload: WorkloadConfig::default(),
                },
                server::command(&binary, &dir),
            ),
            // 48 clients, each waiting for its acknowledgement before its next push, over 50
            // services; retention on, as users run the server.
            Profiles::GoSmall => (
                LoadConfig {
                    protocol,
                    services: 50,
                    instances: 2,
                    duration: Duration::from_secs(seconds),
                    rate,
                    concurrency: 48,
                    pool,
                    workload: WorkloadConfig::default(),
                },
                server::retaining_command(&binary, &dir),
            ),
        };
        let payloads = payloads(profiles, &config, &kiln_testkit::testdata::dir())?;
        let server = command.start().await?;
        let payloads = Arc::new(payloads);
        // Each workload's rows are read against a decode of its own payloads: real Go profiles
        // decode slower per byte than the generated ones, whose samples outweigh their symbols.
        if protocol == Protocol::Push {
            decode_baselines.entry(profiles).or_insert_with(|| {
                baseline::decode_mb_per_second(&payloads, if args.smoke { 0.2 } else { 2.0 })
            });
        }
        let cpu_before = server::cpu_seconds(&server);
        let segments_before = server::segments_flushed(&server).await;
        let result = driver::run(&server.url(""), &config, payloads).await;
        let cpu = server::cpu_seconds(&server) - cpu_before;
        let segments = server::segments_flushed(&server).await - segments_before;
        // Let the last flush land before measuring storage.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (objects, metastore) = server::stored_bytes(&server);
        report.ingest(
            label,
            decode_baselines.get(&profiles).copied().unwrap_or(0.0),
            result,
            cpu,
            segments,
            server::peak_rss_mib(&server),
            (objects, metastore),
        );
        server::stop(server);
    }

    // Queries over the reused data set.
    let dataset_dir = args
        .data_dir
        .join(if args.smoke { "query-smoke" } else { "query" });
    let wanted = queries::Dataset {
        generator: queries::GENERATOR,
        instances: if args.smoke { 1 } else { args.query_instances },
        minutes: if args.smoke {
            5
        } else {
            args.query_days * 24 * 60
        },
        end_seconds: 0,
        samples_per_profile: if args.smoke { 200 } else { 1000 },
    };
    let existing = queries::Dataset::load(&dataset_dir).filter(|d| {
        d.generator == wanted.generator
            && d.instances == wanted.instances
            && d.minutes == wanted.minutes
            && d.samples_per_profile == wanted.samples_per_profile
    });
    let dataset = match existing {
        Some(dataset) => dataset,
        None => {
            let _ = std::fs::remove_dir_all(&dataset_dir);
            std::fs::create_dir_all(&dataset_dir)?;
            let dataset = queries::Dataset {
                end_seconds: now_nanos() / 1_000_000_000 / 3600 * 3600,
                ..wanted
            };
            let server = query_server(&binary, &dataset_dir, &args).await?;
            let started = std::time::Instant::now();
            let samples = dataset
                .generate(&server.url(""), &dataset_dir, args.generate_in_flight, 60)
                .await
                .context("generating the query data set")?;
            eprintln!(
                "generated the query data set: {samples} samples in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            server::stop(server);
            dataset
        }
    };
    let server = query_server(&binary, &dataset_dir, &args).await?;
    if let (true, Some(levels)) = (args.compacted, &args.compaction_levels) {
        let client = compaction::watch::client(server.grpc_addr())?;
        let mut log = compaction::watch::BlockLog::default();
        let final_level = compaction::watch::final_level(levels);
        let waited = compaction::watch::wait_compacted(
            &client,
            final_level,
            &mut log,
            Duration::from_secs(4 * 3600),
        )
        .await?;
        eprintln!(
            "the query data set is at level {final_level} (waited {:.0} s)",
            waited.as_secs_f64()
        );
    }
    let blocks = compaction::watch::client(server.grpc_addr())?
        .list_blocks(None)
        .await?;
    report.query_levels = compaction::watch::by_level(&blocks);
    let runs = args.query_runs.max(1);
    let ranges: Vec<(i64, usize)> = [(60, runs * 2), (24 * 60, runs), (7 * 24 * 60, runs)]
        .into_iter()
        .filter(|(minutes, _)| *minutes <= dataset.minutes)
        .collect();
    let ranges = if ranges.is_empty() {
        vec![(dataset.minutes, 2)]
    } else {
        ranges
    };
    for &(minutes, runs) in &ranges {
        for latency in queries::measure(&server.url(""), &dataset, minutes, runs).await? {
            report.queries.push(latency);
        }
    }
    report.query_peak_rss_mib = server::peak_rss_mib(&server);
    server::stop(server);

    // The merge peer: go tool pprof merging the same profiles as the flame graph queries.
    for &(minutes, _) in ranges
        .iter()
        .filter(|(minutes, _)| *minutes <= args.go_merge_max_minutes)
    {
        let files = dataset.write_profiles(minutes, &dataset_dir.join("pprof-files"))?;
        let out = args.data_dir.join("merged.pb.gz");
        if let Some(seconds) = baseline::go_pprof_merge_seconds(&files, &out) {
            report
                .go_merge
                .push((minutes, files.len(), seconds * 1000.0));
        }
    }

    let table = report.table();
    println!("{table}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
