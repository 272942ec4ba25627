//! Compaction of one data set on a split deployment: a metastore process, a process with the
//! distributor, ingester and querier, and a compactor process started once the data is in.
//!
//! Measures the compactor's throughput (bytes of source objects read per CPU-second of its
//! process), stored bytes per sample at every level, and the objects in the bucket and the
//! metastore's memory after a restart, before and after compaction.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_contract::metastore::Metastore;
use kiln_testkit::process::KilnServer;

use super::watch::{self, BlockLog};
use crate::figures::Figures;
use crate::queries::{Dataset, GENERATOR};
use crate::server;

/// What the split run measures on.
#[derive(Debug)]
pub(crate) struct SplitConfig<'a> {
    pub(crate) binary: &'a Path,
    pub(crate) dir: &'a Path,
    /// `--compaction.levels` of the metastore and the compactor.
    pub(crate) levels: &'a str,
    /// Minutes of data (the suite's generator: one service, 10 s profiles).
    pub(crate) minutes: i64,
    pub(crate) instances: usize,
    pub(crate) samples_per_profile: usize,
    /// Profiles per push request while the data set is pushed.
    pub(crate) profiles_per_push: usize,
    /// Pushes in flight while the data set is pushed.
    pub(crate) pushes_in_flight: usize,
    /// `--ingester.flush-interval` of the ingester (None: the server's default).
    pub(crate) flush_interval: Option<&'a str>,
    /// `--metastore.snapshot-logs` of the metastore (None: the server's default).
    pub(crate) snapshot_logs: Option<u64>,
    /// Longest wait for compaction to reach the final level.
    pub(crate) timeout: Duration,
}

/// The bucket and the metastore at one point.
#[derive(Debug)]
struct Snapshot {
    objects: u64,
    object_bytes: u64,
    /// Resident memory of the metastore process after a restart.
    metastore_rss_mib: f64,
    /// The metastore's redb file.
    metastore_disk_bytes: u64,
}

/// Restarts the metastore, waits for its state to load, and notes the bucket and its memory.
async fn snapshot(
    metastore: KilnServer,
    objects_dir: &Path,
) -> anyhow::Result<(KilnServer, Snapshot)> {
    let command = metastore.command().clone();
    server::stop(metastore);
    let metastore = command.start().await?;
    // Ready means the log was replayed; let the allocator settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snapshot = Snapshot {
        objects: server::file_count(objects_dir),
        object_bytes: server::dir_size(objects_dir),
        metastore_rss_mib: server::rss_mib(&metastore),
        metastore_disk_bytes: server::dir_size(&metastore.data_dir().join("metastore")),
    };
    Ok((metastore, snapshot))
}

/// Runs the split measurement and adds its figures.
pub(crate) async fn run(config: &SplitConfig<'_>, figures: &mut Figures) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(config.dir);
    std::fs::create_dir_all(config.dir)?;
    let objects_dir = std::path::absolute(config.dir.join("objects"))?;
    let storage = format!("--storage=file://{}", objects_dir.display());
    let levels = format!("--compaction.levels={}", config.levels);
    let final_level = watch::final_level(config.levels);

    // A fixed gRPC port, so that the other processes find the metastore after its restarts.
    let metastore_addr = format!("127.0.0.1:{}", kiln_testkit::ports::free_port()?);
    let peers = format!("--metastore.peers={metastore_addr}");
    let mut metastore = server::command(config.binary, &config.dir.join("metastore"))
        .grpc_addr(&metastore_addr)
        .args(["--target", "metastore", &levels]);
    if let Some(logs) = config.snapshot_logs {
        metastore = metastore.arg(format!("--metastore.snapshot-logs={logs}"));
    }
    let mut metastore = metastore.start().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let empty_rss = server::rss_mib(&metastore);
    let mut roles = server::command(config.binary, &config.dir.join("roles")).args([
        "--target",
        "distributor,ingester,querier",
        &peers,
        &storage,
    ]);
    if let Some(interval) = config.flush_interval {
        roles = roles.arg(format!("--ingester.flush-interval={interval}"));
    }
    let roles = roles.start().await?;

    let dataset = Dataset {
        generator: GENERATOR,
        instances: config.instances,
        minutes: config.minutes,
        end_seconds: crate::now_nanos() / 1_000_000_000 / 3600 * 3600,
        samples_per_profile: config.samples_per_profile,
    };
    let started = Instant::now();
    let samples = dataset
        .generate(
            &roles.url(""),
            config.dir,
            config.pushes_in_flight,
            config.profiles_per_push,
        )
        .await?;
    eprintln!(
        "split: pushed {samples} samples in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let client = watch::client(&metastore_addr)?;
    let mut log = BlockLog::default();
    log.record(&client).await?;
    let (restarted, before) = snapshot(metastore, &objects_dir).await?;
    metastore = restarted;

    let compactor = server::command(config.binary, &config.dir.join("compactor"))
        .args(["--target", "compactor", &peers, &storage, &levels])
        .arg("--compactor.deletion-delay=5s")
        .start()
        .await?;
    let cpu_start = server::cpu_seconds(&compactor);
    let read_start = compactor.metric("kiln_compactor_read_bytes_total").await?;
    let written_start = compactor
        .metric("kiln_compactor_written_bytes_total")
        .await?;
    let waited = watch::wait_compacted(&client, final_level, &mut log, config.timeout).await?;
    let cpu = server::cpu_seconds(&compactor) - cpu_start;
    let read = compactor.metric("kiln_compactor_read_bytes_total").await? - read_start;
    let written = compactor
        .metric("kiln_compactor_written_bytes_total")
        .await?
        - written_start;
    watch::wait_deleted(&client, Duration::from_secs(900)).await?;
    let (metastore, after) = snapshot(metastore, &objects_dir).await?;

    figures.add("compaction: samples pushed", samples as f64, "samples");
    figures.add(
        format!("compaction: wall time until every block is at level {final_level}"),
        waited.as_secs_f64(),
        "s",
    );
    figures.add("compaction: compactor CPU", cpu, "CPU-s");
    figures.add("compaction: source bytes read", read / 1e6, "MB");
    figures.add("compaction: block bytes written", written / 1e6, "MB");
    figures.add(
        "compaction: throughput, source MB read per compactor CPU-s",
        read / 1e6 / cpu.max(1e-9),
        "MB/CPU-s",
    );
    for (level, totals) in log.levels() {
        let name = format!("compaction: level {level}");
        figures.add(format!("{name} blocks"), totals.blocks as f64, "blocks");
        figures.add(format!("{name} bytes"), totals.bytes as f64 / 1e6, "MB");
        figures.add(format!("{name} samples"), totals.samples as f64, "samples");
        figures.add(
            format!("{name} stored bytes per sample"),
            totals.bytes_per_sample(),
            "B/sample",
        );
    }
    for (name, snapshot) in [("before", &before), ("after", &after)] {
        figures.add(
            format!("compaction: objects in the bucket {name}"),
            snapshot.objects as f64,
            "objects",
        );
        figures.add(
            format!("compaction: bucket bytes {name}"),
            snapshot.object_bytes as f64 / 1e6,
            "MB",
        );
        figures.add(
            format!("compaction: metastore RSS after a restart, {name}"),
            snapshot.metastore_rss_mib,
            "MiB",
        );
        figures.add(
            format!("compaction: metastore index memory (RSS over the empty node's), {name}"),
            snapshot.metastore_rss_mib - empty_rss,
            "MiB",
        );
        figures.add(
            format!("compaction: metastore redb file {name}"),
            snapshot.metastore_disk_bytes as f64 / 1e6,
            "MB",
        );
    }
    figures.add(
        "compaction: metastore RSS of the empty node",
        empty_rss,
        "MiB",
    );
    let blocks = client.list_blocks(None).await?;
    figures.add(
        "compaction: blocks in the index after",
        blocks.len() as f64,
        "blocks",
    );
    server::stop(compactor);
    server::stop(roles);
    server::stop(metastore);
    Ok(())
}
