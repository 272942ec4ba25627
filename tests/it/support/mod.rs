//! What the integration tests share: `kiln server` on a temporary data dir (through
//! kiln-testkit, which starts every process, cluster and emulator), the test profiles, and the
//! reference figures and stored totals the tests compare exactly.

pub(crate) mod certs;
pub(crate) mod heap;
pub(crate) mod metastore;
pub(crate) mod reference;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use kiln_block::SegmentReader;
use kiln_model::BlockMeta;
use kiln_proto::google::v1::Profile;
pub(crate) use kiln_testkit::process::{KilnCommand, KilnServer};
use prost::Message;

use crate::support::reference::json_i64;

/// End of every query range (2100-01-01), far after the test data.
pub(crate) const UNTIL_SECONDS: i64 = 4_102_444_800;

/// `kiln server` (this build's binary) on a new temporary data dir, keeping data for ever: the
/// test profiles carry the times they were recorded at, which fall out of any retention period
/// as the calendar moves.
pub(crate) fn kiln() -> KilnCommand {
    KilnCommand::in_tempdir(env!("CARGO_BIN_EXE_kiln"))
        .expect("a temporary data dir")
        .arg("--retention-period=0")
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

/// POSTs `request` to `path` as Connect protobuf, checks that it is answered 200, and decodes
/// the answer.
pub(crate) async fn post_proto<Resp: Message + Default>(
    server: &KilnServer,
    path: &str,
    request: &impl Message,
) -> Resp {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/proto")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    Resp::decode(response.bytes().await.unwrap()).unwrap()
}

/// A pprof, gzipped as clients send it.
pub(crate) fn gzip_profile(profile: &Profile) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &profile.encode_to_vec()).unwrap();
    Bytes::from(encoder.finish().unwrap())
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
/// the objects themselves (in the server's data dir).
pub(crate) async fn stored_totals(server: &KilnServer) -> BTreeMap<(String, String, String), i64> {
    let mut totals = BTreeMap::new();
    for block in registered_blocks(server).await {
        let objects = server.data_dir().join("objects");
        let bytes = std::fs::read(objects.join(&block.path)).unwrap();
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

/// Every block of every tenant, from the server's metastore through the admin API on its
/// gRPC port (an all-in-one server serves nothing else there).
pub(crate) async fn registered_blocks(server: &KilnServer) -> Vec<BlockMeta> {
    use kiln_contract::metastore::MetastoreClient;
    let client = MetastoreClient::new(
        vec![server.grpc_addr().to_string()],
        Duration::from_secs(10),
    )
    .unwrap();
    client.admin_list_blocks(None).await.unwrap()
}

/// POSTs `body` as Connect JSON to `path`: the status and the JSON answer.
pub(crate) async fn connect(
    server: &KilnServer,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
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
        "end": (UNTIL_SECONDS * 1000).to_string(),
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

/// The total of `profile_type` for `service`, as the server (a querier) merges it.
pub(crate) async fn stored_total(server: &KilnServer, profile_type: &str, service: &str) -> i64 {
    flamegraph_json(server, None, profile_type, service, 1)
        .await
        .get("total")
        .map(json_i64)
        .unwrap_or_default()
}

/// Waits until `metric` reads `value` (30 s at most).
pub(crate) async fn wait_for_metric(server: &KilnServer, metric: &str, value: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if server.metric(metric).await.ok() == Some(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{metric} never reached {value}: {:?}",
            server.metric(metric).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
