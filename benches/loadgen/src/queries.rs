//! The query data set (one service, several instances, 10 s profiles over days), generated
//! once and reused, and query latencies over it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kiln_proto::querier::v1::{DiffRequest, SelectMergeStacktracesRequest, SelectSeriesRequest};
use kiln_proto::types::v1::LabelValuesRequest;
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::push::{self, gzip};
use crate::workload::{ServiceModel, WorkloadConfig};

const PROFILE_SECONDS: i64 = 10;
const NANOS: i64 = 1_000_000_000;
/// Index of the service model used for the query data set.
const SERVICE_INDEX: usize = 1000;

/// Version 2: locations have one address per function name, as in a real binary (version 1
/// gave them per-profile addresses, so merged pprof grew with every profile).
pub(crate) const GENERATOR: u32 = 2;

/// The data set's shape; stored beside the data so that a run reuses a matching one.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Dataset {
    /// The generator's version: data sets of older generators are made again.
    #[serde(default)]
    pub(crate) generator: u32,
    pub(crate) instances: usize,
    pub(crate) minutes: i64,
    /// End of the data, unix seconds.
    pub(crate) end_seconds: i64,
    pub(crate) samples_per_profile: usize,
}

impl Dataset {
    pub(crate) fn service(&self) -> ServiceModel {
        ServiceModel::new(SERVICE_INDEX, &self.workload())
    }

    fn workload(&self) -> WorkloadConfig {
        WorkloadConfig {
            samples_per_profile: self.samples_per_profile,
            ..WorkloadConfig::default()
        }
    }

    fn profiles_per_instance(&self) -> i64 {
        self.minutes * 60 / PROFILE_SECONDS
    }

    /// The profile `index` (0 is the oldest) of `instance`, the same every time.
    fn profile(
        &self,
        model: &ServiceModel,
        instance: usize,
        index: i64,
    ) -> kiln_proto::google::v1::Profile {
        let mut rng = StdRng::seed_from_u64(((instance as u64) << 32) | index as u64);
        let start = self.end_seconds - self.minutes * 60;
        model.cpu_profile(&mut rng, (start + index * PROFILE_SECONDS) * NANOS)
    }

    fn marker(dir: &Path) -> PathBuf {
        dir.join("dataset.json")
    }

    /// The data set already stored in `dir`, if it matches.
    pub(crate) fn load(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::marker(dir)).ok()?).ok()
    }

    /// Pushes the whole data set through push.v1 (`batch` profiles of one instance per request,
    /// `in_flight` requests at once, each built on its own task so that both cores generate) and
    /// marks `dir`.
    pub(crate) async fn generate(
        &self,
        base: &str,
        dir: &Path,
        in_flight: usize,
        batch: usize,
    ) -> anyhow::Result<u64> {
        let model = Arc::new(self.service());
        let client = reqwest::Client::builder().http2_prior_knowledge().build()?;
        let batch = batch.max(1) as i64;
        let batches = (0..self.instances).flat_map(|instance| {
            (0..self.profiles_per_instance())
                .step_by(batch as usize)
                .map(move |index| (instance, index))
        });
        let mut tasks = tokio::task::JoinSet::new();
        let mut samples = 0u64;
        for (instance, index) in batches {
            if tasks.len() >= in_flight.max(1) {
                samples += tasks.join_next().await.expect("a task")??;
            }
            let (dataset, model, client) = (self.clone(), model.clone(), client.clone());
            let base = base.to_string();
            tasks.spawn(async move {
                let end = (index + batch).min(dataset.profiles_per_instance());
                let profiles: Vec<_> = (index..end)
                    .map(|i| dataset.profile(&model, instance, i))
                    .collect();
                let payload =
                    push::push_payload(push::labels(&model, instance, "process_cpu"), &profiles);
                let status = push::send(&client, &base, &payload).await;
                anyhow::ensure!(
                    status == 200,
                    "generating the data set: push answered {status}"
                );
                Ok(payload.samples as u64)
            });
        }
        while let Some(result) = tasks.join_next().await {
            samples += result??;
        }
        std::fs::write(Self::marker(dir), serde_json::to_vec(self)?)?;
        Ok(samples)
    }

    /// Writes the profiles of the last `minutes` as gzipped pprof files, for `go tool pprof`.
    pub(crate) fn write_profiles(&self, minutes: i64, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let model = self.service();
        let count = minutes * 60 / PROFILE_SECONDS;
        let mut files = Vec::new();
        for instance in 0..self.instances {
            for index in self.profiles_per_instance() - count..self.profiles_per_instance() {
                let path = dir.join(format!("{instance}-{index}.pb.gz"));
                if !path.exists() {
                    std::fs::write(
                        &path,
                        gzip(&self.profile(&model, instance, index).encode_to_vec()),
                    )?;
                }
                files.push(path);
            }
        }
        Ok(files)
    }
}

/// Latencies of one query kind over one range, in milliseconds.
#[derive(Debug, serde::Serialize)]
pub(crate) struct QueryLatency {
    pub(crate) query: String,
    pub(crate) minutes: i64,
    pub(crate) profiles: i64,
    pub(crate) runs: usize,
    pub(crate) cold_ms: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The query kinds timed, in the order the table shows them: `label values` is Grafana's
/// dropdown (LabelValues of `instance`), `diff` compares the range's first half with its second,
/// `sql top` is the top-functions SQL query (`POST /api/v1/sql`: self per function, the 20
/// largest) over the same profiles as the flame graph.
pub(crate) const KINDS: [&str; 6] = [
    "flamegraph",
    "series",
    "pprof",
    "label values",
    "diff",
    "sql top",
];

/// The top-functions SQL query of the CPU profiles of `selector`'s service (all services when
/// it names none) over `[start_ms, end_ms)`.
pub(crate) fn sql_top(selector: &str, start_ms: i64, end_ms: i64) -> String {
    let service = selector
        .split_once("service_name=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(service, _)| format!(" AND service_name = '{}'", service.replace('\'', "''")))
        .unwrap_or_default();
    format!(
        "SELECT function, sum(value) AS self FROM samples \
         WHERE time >= to_timestamp_millis({start_ms}) AND time < to_timestamp_millis({end_ms}) \
         AND profile_type = '{CPU_PROFILE_TYPE}'{service} \
         GROUP BY function ORDER BY self DESC, function LIMIT 20"
    )
}

/// The CPU profile type of the generated and the Go test profiles.
pub(crate) const CPU_PROFILE_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// An HTTP/2 client for queries (a 7-day merge may take minutes).
pub(crate) fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(3600))
        .build()?)
}

/// One query of `kind` (one of [`KINDS`]) of the CPU profiles matching
/// `selector` over `[start_ms, end_ms)`; returns the milliseconds until the whole answer was
/// read, and fails unless it answered 200.
pub(crate) async fn time_query(
    client: &reqwest::Client,
    base: &str,
    kind: &str,
    selector: &str,
    start_ms: i64,
    end_ms: i64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let response = match kind {
        "flamegraph" => {
            let request = SelectMergeStacktracesRequest {
                profile_type_id: CPU_PROFILE_TYPE.to_string(),
                label_selector: selector.to_string(),
                start: start_ms,
                end: end_ms,
                ..Default::default()
            };
            client
                .post(format!(
                    "{base}/querier.v1.QuerierService/SelectMergeStacktraces"
                ))
                .header("content-type", "application/proto")
                .body(request.encode_to_vec())
                .send()
                .await?
        }
        "series" => {
            let request = SelectSeriesRequest {
                profile_type_id: CPU_PROFILE_TYPE.to_string(),
                label_selector: selector.to_string(),
                start: start_ms,
                end: end_ms,
                step: ((end_ms - start_ms) / 1000 / 360).max(10) as f64,
                group_by: vec!["instance".to_string()],
                ..Default::default()
            };
            client
                .post(format!("{base}/querier.v1.QuerierService/SelectSeries"))
                .header("content-type", "application/proto")
                .body(request.encode_to_vec())
                .send()
                .await?
        }
        "label values" => {
            let request = LabelValuesRequest {
                name: "instance".to_string(),
                matchers: vec![selector.to_string()],
                start: start_ms,
                end: end_ms,
            };
            client
                .post(format!("{base}/querier.v1.QuerierService/LabelValues"))
                .header("content-type", "application/proto")
                .body(request.encode_to_vec())
                .send()
                .await?
        }
        "diff" => {
            let middle = start_ms + (end_ms - start_ms) / 2;
            let side = |start, end| SelectMergeStacktracesRequest {
                profile_type_id: CPU_PROFILE_TYPE.to_string(),
                label_selector: selector.to_string(),
                start,
                end,
                ..Default::default()
            };
            let request = DiffRequest {
                left: Some(side(start_ms, middle)),
                right: Some(side(middle, end_ms)),
            };
            client
                .post(format!("{base}/querier.v1.QuerierService/Diff"))
                .header("content-type", "application/proto")
                .body(request.encode_to_vec())
                .send()
                .await?
        }
        "sql top" => {
            client
                .post(format!("{base}/api/v1/sql"))
                .json(&serde_json::json!({ "query": sql_top(selector, start_ms, end_ms) }))
                .send()
                .await?
        }
        _ => {
            let query = format!("{CPU_PROFILE_TYPE}{selector}");
            client
                .get(format!("{base}/api/v1/pprof"))
                .query(&[
                    ("query", query.as_str()),
                    ("from", &(start_ms / 1000).to_string()),
                    ("until", &(end_ms / 1000).to_string()),
                ])
                .send()
                .await?
        }
    };
    let status = response.status();
    let body = response.bytes().await.context("reading the query answer")?;
    anyhow::ensure!(
        status == 200,
        "{kind} query answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Runs every kind of query over the last `minutes` of the data set.
pub(crate) async fn measure(
    base: &str,
    dataset: &Dataset,
    minutes: i64,
    runs: usize,
) -> anyhow::Result<Vec<QueryLatency>> {
    let client = client()?;
    let end_ms = dataset.end_seconds * 1000;
    let start_ms = end_ms - minutes * 60_000;
    let selector = format!("{{service_name=\"{}\"}}", dataset.service().name);
    let mut results = Vec::new();
    for kind in KINDS {
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            let elapsed = time_query(&client, base, kind, &selector, start_ms, end_ms)
                .await
                .with_context(|| format!("{kind} over {minutes} min"))?;
            // Progress on stderr: a long suite shows where it is, and a failure later keeps
            // what was measured.
            eprintln!("{kind} over {minutes} min: {elapsed:.0} ms");
            times.push(elapsed);
        }
        let cold = times[0];
        times.sort_by(f64::total_cmp);
        results.push(QueryLatency {
            query: kind.to_string(),
            minutes,
            profiles: minutes * 60 / PROFILE_SECONDS * dataset.instances as i64,
            runs: times.len(),
            cold_ms: cold,
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
        });
    }
    Ok(results)
}
