//! Time from a push's acknowledgement to the first level-1 block holding its profile, on an
//! all-in-one server with the default compaction settings: idle, then under a steady load.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_contract::metastore::{Metastore, MetastoreClient};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::watch;
use crate::driver::{self, LoadConfig};
use crate::figures::Figures;
use crate::push::{self, Protocol};
use crate::workload::{ServiceModel, WorkloadConfig};

/// The probes' service, apart from the load's.
const PROBE_SERVICE: usize = 2000;
/// A probe gives up after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(180);

/// Pushes one profile of a service of its own, stamped now, and returns the seconds from its
/// acknowledgement until the index holds a block of level 1 or more covering it.
async fn probe(
    base: &str,
    client: &MetastoreClient,
    model: &ServiceModel,
    instance: usize,
) -> anyhow::Result<f64> {
    let time = crate::now_nanos();
    let mut rng = StdRng::seed_from_u64(instance as u64);
    let payload = push::push_payload(
        push::labels(model, instance, "process_cpu"),
        &[model.cpu_profile(&mut rng, time)],
    );
    let http = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let status = push::send(&http, base, &payload).await;
    let acked = Instant::now();
    anyhow::ensure!(status == 200, "the probe's push answered {status}");
    loop {
        let covered = client.list_blocks(None).await?.iter().any(|block| {
            block.compaction_level >= 1
                && block.datasets.iter().any(|d| {
                    d.service_name == model.name
                        && d.min_time_nanos <= time
                        && time <= d.max_time_nanos
                })
        });
        if covered {
            return Ok(acked.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            acked.elapsed() < PROBE_TIMEOUT,
            "no level-1 block holds the probe after {PROBE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `probes` probes one after the other on a fresh server (default compaction settings),
/// first with nothing else pushed, then beside a load of `load_rate` requests per second; adds
/// each probe's time and the spread.
pub(crate) async fn run(
    binary: &Path,
    dir: &Path,
    probes: usize,
    load_rate: f64,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let server = crate::server::start(binary, dir).await?;
    let client = watch::client(server.grpc_addr())?;
    let model = ServiceModel::new(PROBE_SERVICE, &WorkloadConfig::default());
    for (phase, rate) in [("idle", 0.0), ("under load", load_rate)] {
        let load = (rate > 0.0).then(|| {
            let config = LoadConfig {
                protocol: Protocol::Push,
                services: 4,
                instances: 4,
                duration: PROBE_TIMEOUT * probes as u32,
                rate,
                concurrency: 8,
                pool: 64,
                workload: WorkloadConfig::default(),
            };
            let payloads = Arc::new(driver::payload_pool(&config, crate::now_nanos()));
            let base = server.url("");
            tokio::spawn(async move { driver::run(&base, &config, payloads).await })
        });
        if load.is_some() {
            // Let the load reach its steady state (segments queued at level 0) first.
            tokio::time::sleep(Duration::from_secs(40)).await;
        }
        let mut times = Vec::new();
        for n in 0..probes {
            let instance = n + if rate > 0.0 { probes } else { 0 };
            let seconds = probe(&server.url(""), &client, &model, instance).await?;
            eprintln!("ack to level 1, {phase}, probe {n}: {seconds:.1} s");
            figures.add(
                format!("ack to first level-1 block, {phase}, probe {n}"),
                seconds,
                "s",
            );
            times.push(seconds);
        }
        if let Some(load) = load {
            load.abort();
        }
        times.sort_by(f64::total_cmp);
        figures.add(
            format!("ack to first level-1 block, {phase}, min"),
            times[0],
            "s",
        );
        figures.add(
            format!("ack to first level-1 block, {phase}, max"),
            times[times.len() - 1],
            "s",
        );
    }
    crate::server::stop(server);
    Ok(())
}
