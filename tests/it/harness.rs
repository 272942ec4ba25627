//! Starting and stopping `kiln server` processes, and reading back what they stored.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use kiln_block::{BlockMeta, SegmentReader};
use kiln_proto::google::v1::Profile;
use prost::Message;

/// How long a server may take to start or stop before the test fails.
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// A running `kiln server`.
pub(crate) struct KilnServer {
    child: Child,
    /// The bound HTTP address.
    pub(crate) addr: String,
    /// The bound OTLP gRPC and OTLP/HTTP addresses.
    pub(crate) otlp_grpc_addr: String,
    /// The cluster-internal gRPC listener (metastore).
    pub(crate) grpc_addr: String,
    pub(crate) otlp_http_addr: String,
}

impl KilnServer {
    /// Starts `kiln server` on `data_dir` with a random HTTP port and `extra` flags, and waits
    /// until /ready answers 200.
    pub(crate) async fn start(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let server = Self::spawn(data_dir, extra)?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Starts `kiln server` and waits for its listeners only (a metastore node of a group is
    /// ready only once a quorum runs).
    pub(crate) fn spawn(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_with_env(data_dir, extra, &[])
    }

    /// [`KilnServer::spawn`] with extra environment variables.
    pub(crate) fn spawn_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--log-format", "json"])
            .args([
                "--grpc-addr",
                "127.0.0.1:0",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start kiln")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, receiver) = mpsc::channel();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(addr) = event["fields"]["addr"].as_str()
                    && let Some(listener) = event["fields"]["listener"].as_str()
                {
                    let _ = sender.send((listener.to_string(), addr.to_string()));
                }
                if std::env::var_os("KILN_TEST_LOGS").is_some() {
                    eprintln!("{line}");
                }
            }
        });
        let mut addrs = std::collections::HashMap::new();
        // The HTTP listener is bound last, in every mode.
        while !addrs.contains_key("http") {
            match receiver.recv_timeout(PROCESS_DEADLINE) {
                Ok((listener, addr)) => {
                    addrs.insert(listener, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    bail!("kiln did not report its listeners: {:?}", child.wait()?);
                }
            }
        }
        let server = Self {
            child,
            addr: addrs["http"].clone(),
            otlp_grpc_addr: addrs.get("otlp-grpc").cloned().unwrap_or_default(),
            otlp_http_addr: addrs.get("otlp-http").cloned().unwrap_or_default(),
            grpc_addr: addrs.get("grpc").cloned().unwrap_or_default(),
        };
        Ok(server)
    }

    /// The base URL of the HTTP listener.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until /ready answers 200.
    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(self.url("/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("kiln at {} never became ready", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of an unlabelled metric from /metrics.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("kill -9 the server");
        self.child.wait().expect("reap the server");
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.terminate();
        self.wait()
    }

    /// Waits for the process to exit.
    pub(crate) fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("kiln did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KilnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `push.v1` request with one series of `labels` and one raw profile with client id `id`
/// (empty for none).
pub(crate) fn push_request(
    labels: &[(&str, &str)],
    gzipped: &Bytes,
    id: &str,
) -> kiln_proto::push::v1::PushRequest {
    use kiln_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
    use kiln_proto::types::v1::LabelPair;
    PushRequest {
        series: vec![RawProfileSeries {
            labels: labels
                .iter()
                .map(|(name, value)| LabelPair {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            samples: vec![RawSample {
                raw_profile: gzipped.clone(),
                id: id.to_string(),
            }],
            annotations: vec![],
        }],
    }
}

/// The first Go CPU profile of the test data (gzipped).
pub(crate) fn cpu_profile() -> Bytes {
    go_profiles()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .find(|bytes| {
            input_totals(&decode(bytes)).contains_key("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
        })
        .expect("a CPU profile in the test data")
}

/// A file of the shared test data (`../shared/testdata` beside the repository).
pub(crate) fn testdata(relative: &str) -> PathBuf {
    kiln_testkit::testdata::path(relative)
}

/// The Go pprof files of the test data: (file name, gzipped bytes).
pub(crate) fn go_profiles() -> Vec<(String, Bytes)> {
    let files: Vec<(String, Bytes)> = kiln_testkit::testdata::pprof_files()
        .into_iter()
        .map(|(name, bytes)| (name, Bytes::from(bytes)))
        .collect();
    assert!(
        files.len() >= 20,
        "expected the Go CPU and heap profiles in {}",
        kiln_testkit::testdata::dir().display()
    );
    files
}

/// Decodes a gzipped pprof.
pub(crate) fn decode(gzipped: &[u8]) -> Profile {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gzipped), &mut raw).unwrap();
    Profile::decode(raw.as_slice()).unwrap()
}

/// `__name__` of a Go profile as Pyroscope names it.
pub(crate) fn go_profile_name(profile: &Profile) -> &'static str {
    let period = profile.period_type.as_ref().map(|t| t.r#type).unwrap_or(0);
    if profile.string_table[period as usize] == "cpu" {
        "process_cpu"
    } else {
        "memory"
    }
}

/// The per-sample-type sums of a pprof, keyed by profile type id: the reference totals.
pub(crate) fn input_totals(profile: &Profile) -> BTreeMap<String, i64> {
    let s = |i: i64| profile.string_table[i as usize].as_str();
    let period = profile.period_type.unwrap_or_default();
    let mut totals = BTreeMap::new();
    for (index, sample_type) in profile.sample_type.iter().enumerate() {
        let id = format!(
            "{}:{}:{}:{}:{}",
            go_profile_name(profile),
            s(sample_type.r#type),
            s(sample_type.unit),
            s(period.r#type),
            s(period.unit)
        );
        let sum: i64 = profile
            .sample
            .iter()
            .map(|sample| sample.value[index])
            .sum();
        *totals.entry(id).or_insert(0) += sum;
    }
    totals
}

/// Totals per (tenant, service, profile type) of everything the block index lists, read from
/// the objects themselves.
pub(crate) async fn stored_totals(
    server: &KilnServer,
    data_dir: &Path,
) -> BTreeMap<(String, String, String), i64> {
    let mut totals = BTreeMap::new();
    for block in server.registered_blocks().await {
        let bytes = std::fs::read(data_dir.join("objects").join(&block.path)).unwrap();
        let reader = SegmentReader::parse(Bytes::from(bytes)).unwrap();
        assert_eq!(reader.meta(), &block, "footer and index disagree");
        for dataset in reader.read_all().unwrap() {
            for sample in &dataset.samples {
                let profile = &dataset.profiles[sample.profile as usize];
                let series = &dataset.series[profile.series as usize];
                let key = (
                    dataset.tenant.clone(),
                    dataset.service_name.clone(),
                    series.profile_type.clone(),
                );
                *totals.entry(key).or_insert(0) += sample.value;
            }
        }
    }
    totals
}

impl KilnServer {
    /// Every block of every tenant, from the server's metastore over gRPC.
    pub(crate) async fn registered_blocks(&self) -> Vec<BlockMeta> {
        use kiln_metastore::{BlockQuery, Metastore, MetastoreClient};
        let client =
            MetastoreClient::new(vec![self.grpc_addr.clone()], Duration::from_secs(10)).unwrap();
        let mut blocks = Vec::new();
        for tenant in client.tenants().await.unwrap() {
            let query = BlockQuery::new(&tenant.id, i64::MIN, i64::MAX);
            for block in client.query_blocks(&query).await.unwrap() {
                if !blocks.iter().any(|b: &BlockMeta| b.id == block.id) {
                    blocks.push(block);
                }
            }
        }
        blocks
    }
}

/// The `flamegraph` of a Connect JSON `SelectMergeStacktraces` over all time for one service,
/// as `tenant` when given (else without a tenant header), with at most `max_nodes` nodes.
pub(crate) async fn flamegraph_json(
    server: &KilnServer,
    tenant: Option<&str>,
    profile_type: &str,
    service: &str,
    max_nodes: i64,
) -> serde_json::Value {
    let body = serde_json::json!({
        "profileTypeID": profile_type,
        "labelSelector": format!("{{service_name=\"{service}\"}}"),
        "start": "0",
        "end": (crate::query::UNTIL_SECONDS * 1000).to_string(),
        "maxNodes": max_nodes.to_string(),
    });
    let mut request = reqwest::Client::new()
        .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut answer: serde_json::Value = response.json().await.unwrap();
    answer["flamegraph"].take()
}

/// A loopback port free now, for a test server that takes its port on the command line.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}
