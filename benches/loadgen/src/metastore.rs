//! `kiln-loadgen metastore`: block registrations per second on a loopback metastore group, single
//! and batched, and index query latency with a large index.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kiln_contract::metastore::{BlockQuery, Metastore, MetastoreClient};
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_testkit::cluster::{MetastoreGroup, Network};

use crate::figures::{Figures, kiln_binary};
use crate::server;

/// Flags of the metastore benchmark.
#[derive(Debug, clap::Args)]
pub(crate) struct MetastoreArgs {
    /// The kiln binary (default: beside this one).
    #[arg(long)]
    kiln_bin: Option<PathBuf>,
    /// Scratch directory for the nodes' data.
    #[arg(long, default_value = "target/bench-metastore")]
    data_dir: PathBuf,
    /// Nodes in the group.
    #[arg(long, default_value = "3")]
    nodes: usize,
    /// Registrations of one block each, for the single-registration figure.
    #[arg(long, default_value = "4000")]
    single: usize,
    /// Blocks registered in batches, for the batched figure.
    #[arg(long, default_value = "100000")]
    batched: usize,
    /// Blocks per batch.
    #[arg(long, default_value = "1000")]
    batch: usize,
    /// Calls in flight at most.
    #[arg(long, default_value = "32")]
    concurrency: usize,
    /// Blocks in the index when its queries are timed (loaded in batches).
    #[arg(long, default_value = "1000000")]
    index_blocks: usize,
    /// Timed queries per query kind.
    #[arg(long, default_value = "200")]
    queries: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Blocks `from..from + count` of one tenant over 8 services: 10 s segments, a million of them
/// spread over 30 days (several ingesters flushing in parallel).
fn blocks(from: usize, count: usize) -> Vec<BlockMeta> {
    const SPACING_NANOS: i64 = 2_592_000_000_000_000 / 1_000_000; // 30 days over a million blocks
    (from..from + count)
        .map(|n| {
            let start = n as i64 * SPACING_NANOS;
            let end = start + 10_000_000_000;
            BlockMeta {
                id: format!("{n:010}"),
                path: format!("segments/{}/{n:010}/block.bin", n % 16),
                shard: (n % 16) as u32,
                compaction_level: 0,
                min_time_nanos: start,
                max_time_nanos: end,
                size_bytes: 200_000,
                datasets: vec![DatasetMeta {
                    tenant: "bench".to_string(),
                    service_name: format!("service-{}", n % 8),
                    min_time_nanos: start,
                    max_time_nanos: end,
                    profile_types: vec!["process_cpu:cpu:nanoseconds:cpu:nanoseconds".into()],
                    label_names: vec!["service_name".into(), "instance".into()],
                    series: 4,
                    profiles: 4,
                    samples: 4_000,
                    ..DatasetMeta::default()
                }],
                ..BlockMeta::default()
            }
        })
        .collect()
}

async fn register(
    client: &Arc<MetastoreClient>,
    batches: Vec<Vec<BlockMeta>>,
    concurrency: usize,
) -> anyhow::Result<(Duration, Histogram<u64>)> {
    use futures::StreamExt;
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<u64>> = futures::stream::iter(batches)
        .map(|batch| {
            let client = Arc::clone(client);
            async move {
                let t = Instant::now();
                client.add_blocks(batch).await?;
                Ok(t.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut histogram = Histogram::new(3)?;
    for latency in latencies {
        histogram.record(latency?)?;
    }
    Ok((elapsed, histogram))
}

pub(crate) async fn run(args: MetastoreArgs) -> anyhow::Result<()> {
    let binary = kiln_binary(args.kiln_bin.as_ref())?;
    let _ = std::fs::remove_dir_all(&args.data_dir);
    std::fs::create_dir_all(&args.data_dir)?;
    let metastores = MetastoreGroup::start(
        &server::command(&binary, &args.data_dir),
        args.nodes,
        Network::Direct,
    )
    .await?;
    let client = Arc::new(MetastoreClient::new(
        metastores.peers().to_vec(),
        Duration::from_secs(60),
    )?);
    wait_ready(&client).await?;
    let mut figures = Figures::default();

    let single: Vec<Vec<BlockMeta>> = blocks(0, args.single)
        .into_iter()
        .map(|b| vec![b])
        .collect();
    let (elapsed, latency) = register(&client, single, args.concurrency).await?;
    let group = format!("{}-node group", args.nodes);
    figures.add(
        format!(
            "single registrations/s ({group}, {} in flight)",
            args.concurrency
        ),
        args.single as f64 / elapsed.as_secs_f64(),
        "blocks/s",
    );
    figures.add(
        "single registration latency p50",
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        "ms",
    );
    figures.add(
        "single registration latency p99",
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        "ms",
    );

    let batched: Vec<Vec<BlockMeta>> = blocks(args.single, args.batched)
        .chunks(args.batch)
        .map(<[BlockMeta]>::to_vec)
        .collect();
    let (elapsed, latency) = register(&client, batched, args.concurrency.min(8)).await?;
    figures.add(
        format!("batched registrations/s (batches of {})", args.batch),
        args.batched as f64 / elapsed.as_secs_f64(),
        "blocks/s",
    );
    figures.add(
        "batch latency p50",
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        "ms",
    );
    figures.add(
        "batch latency p99",
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        "ms",
    );

    let loaded = args.single + args.batched;
    if args.index_blocks > loaded {
        let rest: Vec<Vec<BlockMeta>> = blocks(loaded, args.index_blocks - loaded)
            .chunks(args.batch)
            .map(<[BlockMeta]>::to_vec)
            .collect();
        let started = Instant::now();
        register(&client, rest, 4).await?;
        println!(
            "loaded the index to {} blocks in {:.1?}",
            args.index_blocks,
            started.elapsed()
        );
    }
    let total = args.index_blocks.max(loaded);
    let spacing = 2_592_000_000_000_000_i64 / 1_000_000;
    let span_end = total as i64 * spacing;
    for (label, window) in [("1 h", 3_600_000_000_000_i64), ("24 h", 86_400_000_000_000)] {
        for (service, matchers) in [("all services", false), ("one service", true)] {
            let mut histogram = Histogram::<u64>::new(3)?;
            let mut found = 0;
            for q in 0..args.queries {
                let start = (span_end - window) * q as i64 / args.queries as i64;
                let mut query = BlockQuery::new("bench", start, start + window);
                if matchers {
                    query.matchers.push(kiln_model::LabelMatcher::new(
                        "service_name",
                        kiln_model::MatchOp::Equal,
                        "service-3",
                    )?);
                }
                let t = Instant::now();
                found += client.query_blocks(&query).await?.len();
                histogram.record(t.elapsed().as_micros() as u64)?;
            }
            let name = format!("query {label}, {service}, {total} blocks in the index");
            figures.add(
                format!("{name}: p50"),
                histogram.value_at_quantile(0.5) as f64 / 1000.0,
                "ms",
            );
            figures.add(
                format!("{name}: p99"),
                histogram.value_at_quantile(0.99) as f64 / 1000.0,
                "ms",
            );
            figures.add(
                format!("{name}: blocks returned per query"),
                found as f64 / args.queries as f64,
                "blocks",
            );
        }
    }
    let nodes: Vec<_> = metastores.nodes.into_iter().flatten().collect();
    for (index, node) in nodes.iter().enumerate() {
        figures.add(
            format!("node {index} peak RSS"),
            server::peak_rss_mib(node),
            "MiB",
        );
        figures.add(format!("node {index} CPU"), server::cpu_seconds(node), "s");
    }
    figures.write_json(args.json.as_deref())?;
    for node in nodes {
        server::stop(node);
    }
    Ok(())
}

async fn wait_ready(client: &MetastoreClient) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.is_ready().await {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the metastore group never became ready"
        );
    }
    Ok(())
}
