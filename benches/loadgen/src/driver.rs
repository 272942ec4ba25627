//! Pushes payloads at a fixed rate or as fast as the server accepts, with bounded concurrency
//! and duration, and records what happened.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::push::{self, Payload, Protocol};
use crate::workload::{ServiceModel, WorkloadConfig};

/// What to push.
#[derive(Clone, Debug)]
pub(crate) struct LoadConfig {
    pub(crate) protocol: Protocol,
    pub(crate) services: usize,
    pub(crate) instances: usize,
    pub(crate) duration: Duration,
    /// Requests per second; 0 means as fast as the server accepts.
    pub(crate) rate: f64,
    pub(crate) concurrency: usize,
    /// Distinct payloads generated up front and cycled through.
    pub(crate) pool: usize,
    pub(crate) workload: WorkloadConfig,
}

/// Outcome of a load run.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct LoadResult {
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) profiles: u64,
    pub(crate) samples: u64,
    pub(crate) decoded_bytes: u64,
    pub(crate) wire_bytes: u64,
    pub(crate) ack_p50_ms: f64,
    pub(crate) ack_p99_ms: f64,
    pub(crate) ack_max_ms: f64,
    pub(crate) statuses: BTreeMap<u16, u64>,
}

/// Generates a pool of payloads covering every service and instance.
pub(crate) fn payload_pool(config: &LoadConfig, now_nanos: i64) -> Vec<Payload> {
    let models: Vec<ServiceModel> = (0..config.services)
        .map(|i| ServiceModel::new(i, &config.workload))
        .collect();
    let mut rng = StdRng::seed_from_u64(42);
    (0..config.pool.max(1))
        .map(|i| {
            let model = &models[i % models.len()];
            let instance = (i / models.len()) % config.instances.max(1);
            let time = now_nanos - (i as i64 % 360) * 10_000_000_000;
            match config.protocol {
                Protocol::Push => {
                    let profile = if i % 4 == 3 {
                        model.heap_profile(&mut rng, time)
                    } else {
                        model.cpu_profile(&mut rng, time)
                    };
                    let name = if i % 4 == 3 { "memory" } else { "process_cpu" };
                    push::push_payload(push::labels(model, instance, name), &[profile])
                }
                Protocol::Ingest => {
                    push::ingest_payload(model, instance, &model.cpu_profile(&mut rng, time))
                }
                Protocol::Otlp => push::otlp_payload(model, instance, &mut rng, time),
            }
        })
        .collect()
}

/// Pushes `payloads` round robin according to `config`.
pub(crate) async fn run(
    base: &str,
    config: &LoadConfig,
    payloads: Arc<Vec<Payload>>,
) -> LoadResult {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let totals = Arc::new(Mutex::new(LoadResult::default()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + config.duration;
    let interval = (config.rate > 0.0)
        .then(|| Duration::from_secs_f64(config.concurrency as f64 / config.rate));
    let workers = (0..config.concurrency.max(1)).map(|worker| {
        let (client, histogram, totals, next, payloads) = (
            client.clone(),
            histogram.clone(),
            totals.clone(),
            next.clone(),
            payloads.clone(),
        );
        let base = base.to_string();
        async move {
            // Each worker paces itself, so the total rate is concurrency / interval.
            let mut ticker = interval.map(|i| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now()
                        + i.mul_f64(worker as f64 / config.concurrency.max(1) as f64),
                    i,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
            loop {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                if Instant::now() >= deadline {
                    break;
                }
                let index =
                    next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % payloads.len();
                let payload = &payloads[index];
                let sent = Instant::now();
                let status = push::send(&client, &base, payload).await;
                let micros = sent.elapsed().as_micros() as u64;
                histogram
                    .lock()
                    .expect("histogram")
                    .record(micros.max(1))
                    .expect("in range");
                let mut totals = totals.lock().expect("totals");
                totals.requests += 1;
                *totals.statuses.entry(status).or_insert(0) += 1;
                if status == 200 {
                    totals.profiles += payload.profiles as u64;
                    totals.samples += payload.samples as u64;
                    totals.decoded_bytes += payload.decoded_bytes as u64;
                    totals.wire_bytes += payload.body.len() as u64;
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    let mut result = std::mem::take(&mut *totals.lock().expect("totals"));
    let histogram = histogram.lock().expect("histogram");
    result.seconds = started.elapsed().as_secs_f64();
    result.ack_p50_ms = histogram.value_at_quantile(0.5) as f64 / 1000.0;
    result.ack_p99_ms = histogram.value_at_quantile(0.99) as f64 / 1000.0;
    result.ack_max_ms = histogram.max() as f64 / 1000.0;
    result
}
