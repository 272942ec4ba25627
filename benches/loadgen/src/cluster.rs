//! `kiln-loadgen cluster`: ingest through a loopback cluster of separate processes (3 metastore
//! nodes, 2 ingesters, 2 distributors) on a real S3-compatible server, beside an all-in-one
//! server on the same S3 server and the S3 server's own PUT latency, all in one run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kiln_contract::metastore::{Metastore, MetastoreClient};
use kiln_objstore::object_store::{ObjectStoreExt, PutPayload};
use kiln_testkit::cluster::{Cluster, Network};
use kiln_testkit::emulators::Moto;
use kiln_testkit::process::KilnServer;

use crate::driver::{self, LoadConfig, LoadResult};
use crate::figures::{Figures, kiln_binary};
use crate::push::Protocol;
use crate::server;
use crate::workload::WorkloadConfig;

/// Flags of the cluster benchmark.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// The kiln binary (default: beside this one).
    #[arg(long)]
    kiln_bin: Option<PathBuf>,
    /// moto's S3 server (`pip install "moto[server]==5.2.5"`).
    #[arg(long, default_value = "tests/s3/.venv/bin/moto_server")]
    moto_server: PathBuf,
    /// Scratch directory.
    #[arg(long, default_value = "target/bench-cluster")]
    data_dir: PathBuf,
    /// How long each ingest run pushes.
    #[arg(long, default_value = "20")]
    seconds: u64,
    /// Pushes in flight (split over the distributors).
    #[arg(long, default_value = "64")]
    concurrency: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// PUT latency of the S3 server itself for objects of `size` bytes, through object_store.
async fn put_latency(endpoint: &str, size: usize, count: usize) -> anyhow::Result<Histogram<u64>> {
    let storage = kiln_objstore::open(
        "s3://bench/put-latency",
        &kiln_objstore::StorageOptions {
            s3: kiln_objstore::S3Options {
                endpoint: Some(endpoint.to_string()),
                region: Some("us-east-1".into()),
                force_path_style: true,
                allow_http: true,
                access_key_id: Some("test".into()),
                secret_access_key: Some("test".into()),
            },
            ..Default::default()
        },
    )?;
    let body = PutPayload::from(vec![7_u8; size]);
    let mut histogram = Histogram::new(3)?;
    for n in 0..count {
        let started = Instant::now();
        storage
            .store
            .put(&storage.path(&format!("object-{n}")), body.clone())
            .await?;
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(histogram)
}

/// A metric of `server`'s, 0 when it cannot be read.
async fn metric(server: &KilnServer, name: &str) -> f64 {
    server.metric(name).await.unwrap_or(0.0)
}

/// CPU seconds the servers have used so far, together.
fn cpu<'a>(servers: impl IntoIterator<Item = &'a KilnServer>) -> f64 {
    servers.into_iter().map(server::cpu_seconds).sum()
}

fn load(seconds: u64, concurrency: usize) -> LoadConfig {
    LoadConfig {
        protocol: Protocol::Push,
        services: 8,
        instances: 4,
        duration: Duration::from_secs(seconds),
        rate: 0.0,
        concurrency,
        pool: 256,
        workload: WorkloadConfig::default(),
    }
}

pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let binary = kiln_binary(args.kiln_bin.as_ref())?;
    let _ = std::fs::remove_dir_all(&args.data_dir);
    std::fs::create_dir_all(&args.data_dir)?;
    let moto = Moto::start_with(&args.moto_server, "bench").await?;
    let mut figures = Figures::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;

    // The S3 server alone: PUTs of a typical segment size.
    let puts = put_latency(moto.endpoint(), 512 << 10, 200).await?;
    figures.add(
        "S3 server PUT 512 KiB p50",
        puts.value_at_quantile(0.5) as f64 / 1000.0,
        "ms",
    );
    figures.add(
        "S3 server PUT 512 KiB p99",
        puts.value_at_quantile(0.99) as f64 / 1000.0,
        "ms",
    );

    // All-in-one on the same S3 server.
    let server = server::command(&binary, &args.data_dir.join("all-in-one"))
        .args(moto.kiln_flags("all-in-one"))
        .start()
        .await?;
    let config = load(args.seconds, args.concurrency);
    let payloads = Arc::new(driver::payload_pool(&config, now));
    let cpu_before = server::cpu_seconds(&server);
    let result = driver::run(&server.url(""), &config, Arc::clone(&payloads)).await;
    let cpu_spent = server::cpu_seconds(&server) - cpu_before;
    report_ingest(&mut figures, "all-in-one", &[&result], cpu_spent);
    figures.add("all-in-one peak RSS", server::peak_rss_mib(&server), "MiB");
    let segments = metric(&server, "kiln_ingester_segments_flushed_total").await;
    figures.add(
        "all-in-one objects written/s",
        segments / result.seconds,
        "objects/s",
    );
    server::stop(server);

    // The cluster.
    let flags = moto.kiln_flags("cluster");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Cluster {
        ingesters,
        distributors,
        metastores,
        ..
    } = Cluster::builder(&server::cluster_command(&binary, &args.data_dir))
        .metastores(3, Network::Direct, &[])
        .ingesters(2, &flags)
        .distributors(2, &[])
        .start()
        .await?;
    let ingesters: Vec<KilnServer> = ingesters.into_iter().flatten().collect();
    let client = MetastoreClient::new(metastores.peers().to_vec(), Duration::from_secs(30))?;
    let metastores: Vec<KilnServer> = metastores.nodes.into_iter().flatten().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .members(Some(kiln_contract::Role::Ingester))
        .await
        .map(|m| m.len())
        .unwrap_or(0)
        < 2
    {
        anyhow::ensure!(Instant::now() < deadline, "the ingesters never joined");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Distributors refresh their ingester list every second.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = (cpu(&distributors), cpu(&ingesters), cpu(&metastores));
    let half = load(args.seconds, args.concurrency / 2);
    let bases = [distributors[0].url(""), distributors[1].url("")];
    let (a, b) = tokio::join!(
        driver::run(&bases[0], &half, Arc::clone(&payloads)),
        driver::run(&bases[1], &half, Arc::clone(&payloads)),
    );
    let spent = (
        cpu(&distributors) - before.0,
        cpu(&ingesters) - before.1,
        cpu(&metastores) - before.2,
    );
    report_ingest(
        &mut figures,
        "cluster",
        &[&a, &b],
        spent.0 + spent.1 + spent.2,
    );
    figures.add("cluster distributor CPU (both)", spent.0, "s");
    figures.add("cluster ingester CPU (both)", spent.1, "s");
    figures.add("cluster metastore CPU (all three)", spent.2, "s");
    for (i, s) in distributors.iter().enumerate() {
        figures.add(
            format!("cluster distributor {i} peak RSS"),
            server::peak_rss_mib(s),
            "MiB",
        );
    }
    for (i, s) in ingesters.iter().enumerate() {
        figures.add(
            format!("cluster ingester {i} peak RSS"),
            server::peak_rss_mib(s),
            "MiB",
        );
    }
    let mut segments = 0.0;
    for s in &ingesters {
        segments += metric(s, "kiln_ingester_segments_flushed_total").await;
    }
    figures.add(
        "cluster objects written/s",
        segments / a.seconds.max(b.seconds),
        "objects/s",
    );

    figures.write_json(args.json.as_deref())?;
    for s in distributors.into_iter().chain(ingesters).chain(metastores) {
        server::stop(s);
    }
    Ok(())
}

fn report_ingest(figures: &mut Figures, label: &str, results: &[&LoadResult], cpu: f64) {
    let seconds = results.iter().map(|r| r.seconds).fold(0.0, f64::max);
    let decoded: u64 = results.iter().map(|r| r.decoded_bytes).sum();
    let requests: u64 = results.iter().map(|r| r.requests).sum();
    let ok: u64 = results
        .iter()
        .map(|r| r.statuses.get(&200).copied().unwrap_or(0))
        .sum();
    figures.add(
        format!("{label} pushes/s (push.v1, acknowledged)"),
        ok as f64 / seconds,
        "req/s",
    );
    figures.add(
        format!("{label} decoded MB/s"),
        decoded as f64 / 1e6 / seconds,
        "MB/s",
    );
    figures.add(
        format!("{label} decoded MB per server CPU-s"),
        decoded as f64 / 1e6 / cpu.max(1e-9),
        "MB/CPU-s",
    );
    figures.add(
        format!("{label} failed pushes"),
        (requests - ok) as f64,
        "requests",
    );
    for (i, r) in results.iter().enumerate() {
        let via = if results.len() > 1 {
            format!(" via distributor {i}")
        } else {
            String::new()
        };
        figures.add(format!("{label} ack p50{via}"), r.ack_p50_ms, "ms");
        figures.add(format!("{label} ack p99{via}"), r.ack_p99_ms, "ms");
    }
}
