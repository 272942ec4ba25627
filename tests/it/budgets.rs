//! Query budgets and the querier's safety: per-tenant limits on blocks and merge memory, the
//! concurrency limit (429), the deadline, and a client that goes away.
//!
//! A slow query is made deterministic by replacing the object of one block with a named pipe
//! (FIFO): reading it blocks until someone opens the pipe for writing, which nobody does, so the
//! query waits on storage for as long as the test needs, as it would on a hung object store.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_proto::querier::v1::SelectMergeStacktracesRequest;
use kiln_proto::querier::v1::querier_service_client::QuerierServiceClient;
use prost::Message;
use serde_json::{Value, json};

use crate::support::{
    KilnServer, UNTIL_SECONDS, cpu_profile, kiln, registered_blocks, wait_for_metric,
};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// No compaction while a test runs: the blocks stay the segments the pushes wrote.
const NO_COMPACTION: &str = "--compaction.levels=1000/24h";

/// Pushes one CPU profile of `service` as `tenant`; returns once it is stored and registered.
async fn push(server: &KilnServer, tenant: &str, service: &str) {
    let request = crate::support::push_request(&[("service_name", service)], &cpu_profile(), "");
    let response = reqwest::Client::new()
        .post(server.url("/push.v1.PusherService/Push"))
        .header("X-Scope-OrgID", tenant)
        .header("content-type", "application/proto")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// A Connect JSON `SelectMergeStacktraces` over all time of `service`: status, `Retry-After`
/// and the answer.
async fn flamegraph(
    client: &reqwest::Client,
    server: &KilnServer,
    tenant: &str,
    service: &str,
) -> (u16, Option<String>, Value) {
    let body = json!({
        "profileTypeID": CPU,
        "labelSelector": format!("{{service_name=\"{service}\"}}"),
        "start": "0",
        "end": (UNTIL_SECONDS * 1000).to_string(),
    });
    let response = client
        .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

/// The same query over gRPC.
async fn flamegraph_grpc(
    server: &KilnServer,
    tenant: &str,
    service: &str,
) -> Result<(), tonic::Status> {
    let mut client = QuerierServiceClient::connect(server.url("")).await.unwrap();
    let mut request = tonic::Request::new(SelectMergeStacktracesRequest {
        profile_type_id: CPU.to_string(),
        label_selector: format!("{{service_name=\"{service}\"}}"),
        start: 0,
        end: UNTIL_SECONDS * 1000,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-scope-orgid", tenant.parse().unwrap());
    client.select_merge_stacktraces(request).await.map(|_| ())
}

/// `/pyroscope/render` of `service`: status and body.
async fn render(server: &KilnServer, tenant: &str, service: &str) -> (u16, String) {
    let query = format!("{CPU}{{service_name=\"{service}\"}}");
    let url = server.url(&format!(
        "/pyroscope/render?query={}&from=0&until={UNTIL_SECONDS}",
        crate::query::url_encode(&query)
    ));
    let response = reqwest::Client::new()
        .get(url)
        .header("X-Scope-OrgID", tenant)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

async fn outcome(server: &KilnServer, outcome: &str) -> f64 {
    server
        .metric(&format!(
            "kiln_querier_queries_total{{outcome=\"{outcome}\"}}"
        ))
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_a_tenant_budget_are_refused_naming_the_limit() {
    let kiln = kiln();
    let runtime = kiln.data_dir().join("runtime.yaml");
    std::fs::write(
        &runtime,
        "overrides:\n  few-blocks:\n    max_query_blocks: 1\n  small-merge:\n    max_query_merge_bytes: 1000\n",
    )
    .unwrap();
    let server = kiln
        .args(["--auth.multitenancy-enabled", NO_COMPACTION])
        .arg(format!("--runtime-config={}", runtime.display()))
        .start()
        .await
        .unwrap();
    // Two pushes, two segments.
    push(&server, "few-blocks", "svc").await;
    push(&server, "few-blocks", "svc").await;
    push(&server, "small-merge", "svc").await;
    let client = reqwest::Client::new();

    let (status, _, answer) = flamegraph(&client, &server, "few-blocks", "svc").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], "resource_exhausted");
    assert_eq!(
        answer["message"],
        "tenant few-blocks: query would read 2 blocks, over max_query_blocks 1; narrow the time range or the selector"
    );
    let status = flamegraph_grpc(&server, "few-blocks", "svc")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("over max_query_blocks 1"),
        "{status:?}"
    );

    let (status, _, answer) = flamegraph(&client, &server, "small-merge", "svc").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["code"], "resource_exhausted");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.starts_with("tenant small-merge: query merge holds about ")
            && message.contains("bytes, over max_query_merge_bytes 1000;"),
        "{message}"
    );
    let (status, text) = render(&server, "small-merge", "svc").await;
    assert_eq!(status, 422);
    assert!(text.contains("over max_query_merge_bytes 1000"), "{text}");

    // Other tenants keep the defaults.
    push(&server, "roomy", "svc").await;
    push(&server, "roomy", "svc").await;
    let (status, _, answer) = flamegraph(&client, &server, "roomy", "svc").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcome(&server, "over_budget").await, 4.0);
    assert_eq!(outcome(&server, "ok").await, 1.0);
}

/// An all-in-one server admitting one query at a time, with services `slow` (whose block is a
/// named pipe: queries of it wait on storage) and `fast` (in another block), and the pipe.
async fn server_with_a_slow_block(args: &[&str]) -> (KilnServer, PathBuf) {
    let server = kiln()
        .args(["--auth.multitenancy-enabled", NO_COMPACTION])
        .args(args)
        .start()
        .await
        .unwrap();
    push(&server, "t", "slow").await;
    push(&server, "t", "fast").await;
    let blocks = registered_blocks(&server).await;
    let slow: Vec<_> = blocks
        .iter()
        .filter(|b| b.datasets.iter().any(|d| d.service_name == "slow"))
        .collect();
    assert_eq!(slow.len(), 1, "{blocks:?}");
    assert!(!slow[0].datasets.iter().any(|d| d.service_name == "fast"));
    let object = server.data_dir().join("objects").join(&slow[0].path);
    make_fifo(&object);
    (server, object)
}

/// Replaces the file at `path` with a named pipe.
fn make_fifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

/// Starts a query of `slow` from its own client, and waits until the server runs it.
async fn start_slow_query(server: &KilnServer) -> tokio::task::JoinHandle<(u16, Value)> {
    let url = server.url("");
    let in_flight = server
        .metric("kiln_querier_queries_in_flight")
        .await
        .unwrap();
    let task = tokio::spawn({
        let server_url = url.clone();
        async move {
            let body = json!({
                "profileTypeID": CPU,
                "labelSelector": "{service_name=\"slow\"}",
                "start": "0",
                "end": (UNTIL_SECONDS * 1000).to_string(),
            });
            let response = reqwest::Client::new()
                .post(format!(
                    "{server_url}/querier.v1.QuerierService/SelectMergeStacktraces"
                ))
                .header("content-type", "application/json")
                .header("X-Scope-OrgID", "t")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
    });
    wait_for_metric(server, "kiln_querier_queries_in_flight", in_flight + 1.0).await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_querier_answers_429_while_another_querier_and_ingestion_proceed() {
    // --cluster.insecure: the all-in-one server also serves the member API, for the querier below.
    let (server, _pipe) =
        server_with_a_slow_block(&["--querier.max-concurrent=1", "--cluster.insecure"]).await;
    // A second querier on the same index and objects, with a short deadline.
    let objects = server.data_dir().join("objects");
    let other = kiln()
        .args([
            "--target=querier",
            "--auth.multitenancy-enabled",
            "--querier.timeout=2s",
            "--cluster.insecure",
        ])
        .arg(format!("--metastore.peers={}", server.grpc_addr()))
        .arg(format!("--storage=file://{}", objects.display()))
        .start()
        .await
        .unwrap();
    let slow = start_slow_query(&server).await;
    let client = reqwest::Client::new();

    // The full querier refuses at once, on Connect, gRPC and HTTP alike.
    let (status, retry, answer) = flamegraph(&client, &server, "t", "fast").await;
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{answer}");
    assert_eq!(
        answer,
        json!({
            "code": "resource_exhausted",
            "message": "querier is running its maximum of 1 concurrent queries (--querier.max-concurrent); retry later",
        })
    );
    let status = flamegraph_grpc(&server, "t", "fast").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let (status, text) = render(&server, "t", "fast").await;
    assert_eq!(status, 429, "{text}");
    assert_eq!(outcome(&server, "overloaded").await, 3.0);
    // What Profiles Drilldown asks for when it starts is answered even so.
    let settings = client
        .post(server.url("/settings.v1.SettingsService/Get"))
        .header("content-type", "application/json")
        .header("X-Scope-OrgID", "t")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 200);

    // Meanwhile the other querier answers, and the full one still ingests and is ready.
    let (status, _, answer) = flamegraph(&client, &other, "t", "fast").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["flamegraph"]["total"].as_str().is_some(), "{answer}");
    push(&server, "t", "fast").await;
    let ready = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // On the other querier, the slow query stops at its deadline: 504, deadline_exceeded.
    let (status, _, answer) = flamegraph(&client, &other, "t", "slow").await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(
        answer,
        json!({
            "code": "deadline_exceeded",
            "message": "query stopped after its timeout of 2s (--querier.timeout)",
        })
    );
    assert_eq!(outcome(&other, "timeout").await, 1.0);
    assert!(!slow.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_whose_client_disconnects_stops_and_frees_its_slot() {
    let (server, _pipe) = server_with_a_slow_block(&["--querier.max-concurrent=1"]).await;
    let slow = start_slow_query(&server).await;
    let client = reqwest::Client::new();
    let (status, _, _) = flamegraph(&client, &server, "t", "fast").await;
    assert_eq!(status, 429);

    // The client goes away while the query waits on storage, which never answers.
    slow.abort();
    wait_for_metric(
        &server,
        "kiln_querier_queries_total{outcome=\"cancelled\"}",
        1.0,
    )
    .await;
    wait_for_metric(&server, "kiln_querier_queries_in_flight", 0.0).await;
    // Its slot is free although its read never finished.
    let (status, _, answer) = flamegraph(&client, &server, "t", "fast").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(outcome(&server, "ok").await, 1.0);
}

/// Pushes one CPU profile as `tenant`, with a `pod` label; the status.
async fn push_labelled(
    client: &reqwest::Client,
    server: &KilnServer,
    tenant: &str,
    pod: &str,
) -> u16 {
    let request =
        crate::support::push_request(&[("service_name", "svc"), ("pod", pod)], &cpu_profile(), "");
    let response = client
        .post(server.url("/push.v1.PusherService/Push"))
        .header("X-Scope-OrgID", tenant)
        .header("content-type", "application/proto")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// The distinct `tenant` label values of `kiln_distributor_*` series, and the series that name
/// `tenant`, summed by metric name.
async fn tenant_labels(
    server: &KilnServer,
) -> std::collections::BTreeMap<String, Vec<(String, f64)>> {
    let text = server.metrics_text().await.unwrap();
    let mut tenants: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
    for line in text.lines().filter(|l| l.starts_with("kiln_distributor_")) {
        let Some((_, rest)) = line.split_once("tenant=\"") else {
            continue;
        };
        let tenant = rest.split('"').next().unwrap().to_string();
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap().to_string();
        tenants
            .entry(tenant)
            .or_default()
            .push((name, value.parse().unwrap()));
    }
    tenants
}

/// Sends, for each of `tenants` (from `first`), one accepted push and one refused by the
/// tenant's `max_label_value_length`, 32 at a time.
async fn random_tenants(server: &KilnServer, first: usize, tenants: usize) {
    let client = reqwest::Client::new();
    let ids: Vec<String> = (first..first + tenants)
        .map(|i| format!("random-{i:05}-{}", i * 7919 % 10007))
        .collect();
    for chunk in ids.chunks(32) {
        let requests = chunk.iter().map(|tenant| {
            let client = &client;
            async move {
                assert_eq!(push_labelled(client, server, tenant, "p").await, 200);
                assert_eq!(
                    push_labelled(
                        client,
                        server,
                        tenant,
                        "a-pod-name-that-is-well-over-the-limit-of-forty-eight-bytes"
                    )
                    .await,
                    400
                );
            }
        });
        futures::future::join_all(requests).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_random_tenants_keep_metric_series_and_maps_bounded() {
    let server = kiln()
        .args([
            "--auth.multitenancy-enabled",
            NO_COMPACTION,
            "--tenants.max-tracked=50",
            "--tenants.idle-timeout=1h",
            "--limits.ingestion-rate-mb=1000",
            "--limits.max-label-value-length=48",
            "--ingester.flush-interval=20ms",
        ])
        .start()
        .await
        .unwrap();
    random_tenants(&server, 0, 1500).await;

    // 50 tenants have their own series; the other 1450 refusals are counted as `#other`.
    let labels = tenant_labels(&server).await;
    assert_eq!(labels.len(), 51, "{:?}", labels.keys().collect::<Vec<_>>());
    let other = &labels["#other"];
    assert_eq!(
        other,
        &vec![
            (
                "kiln_distributor_rejected_requests_total".to_string(),
                1450.0
            ),
            (
                "kiln_distributor_discarded_profiles_total".to_string(),
                1450.0
            ),
        ]
    );
    // Active-series counts and rate-limit buckets for at most 50 tenants.
    let tracked = |map: &str| format!("kiln_distributor_tracked_tenants{{map=\"{map}\"}}");
    assert_eq!(
        server.metric(&tracked("active_series")).await.unwrap(),
        50.0
    );
    assert!(server.metric(&tracked("rate_limit")).await.unwrap() <= 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tenants_leave_the_metrics_and_free_their_place() {
    let server = kiln()
        .args([
            "--auth.multitenancy-enabled",
            NO_COMPACTION,
            "--tenants.max-tracked=5",
            "--tenants.idle-timeout=1s",
            "--limits.max-label-value-length=48",
            "--ingester.flush-interval=20ms",
        ])
        .start()
        .await
        .unwrap();
    random_tenants(&server, 0, 20).await;
    let labels = tenant_labels(&server).await;
    assert!(
        labels.len() <= 6 && labels.contains_key("#other"),
        "{labels:?}"
    );

    // Once idle, their series go, only `#other` stays, and a new tenant gets its own label.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tenant_labels(&server).await.len() > 1 {
        assert!(Instant::now() < deadline, "idle tenants never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_metric(
        &server,
        "kiln_distributor_tracked_tenants{map=\"metric_labels\"}",
        0.0,
    )
    .await;
    random_tenants(&server, 100, 1).await;
    let labels = tenant_labels(&server).await;
    assert!(labels.contains_key("random-00100-1347"), "{labels:?}");
}
