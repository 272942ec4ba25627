//! The deployment kit (deploy/): every metric its dashboards and alert rules name is exposed
//! from the start, and moves when its event happens.

use std::path::Path;
use std::process::Command;

use kiln_testkit::emulators::TraceSink;
use kiln_testkit::workspace_dir;

use crate::support::{
    KilnServer, UNTIL_SECONDS, cpu_profile, kiln, post_proto, push_request, stored_total,
    wait_for_metric,
};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Runs tests/kubernetes/check_metrics_named.py on the `/metrics` of `servers`: the names the
/// dashboards and alert rules use that none of them exposes.
async fn names_not_exposed(servers: &[&KilnServer], dir: &Path) -> String {
    let mut files = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let text = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let file = dir.join(format!("metrics-{i}.txt"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let output = Command::new("python3")
        .arg(workspace_dir().join("tests/kubernetes/check_metrics_named.py"))
        .args(&files)
        .arg("--root")
        .arg(workspace_dir())
        .output()
        .expect("python3 runs");
    let missing = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.success(),
        missing.trim().is_empty(),
        "check_metrics_named.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alerts_name_is_exposed_before_and_after_use() {
    let server = kiln().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Before any push or query: every labelled family is listed already.
    assert_eq!(names_not_exposed(&[&server], dir.path()).await, "");

    let profile = cpu_profile();
    let _: kiln_proto::push::v1::PushResponse = post_proto(
        &server,
        "/push.v1.PusherService/Push",
        &push_request(&[("service_name", "deploy")], &profile, ""),
    )
    .await;
    assert!(stored_total(&server, CPU, "deploy").await > 0);
    let render = format!(
        "/pyroscope/render?query={CPU}{{service_name=\"deploy\"}}&from=0&until={UNTIL_SECONDS}"
    );
    assert_eq!(
        reqwest::get(server.url(&render)).await.unwrap().status(),
        200
    );

    // The push was acknowledged once stored: one answer timed, one object put at least.
    let pushes = r#"kiln_distributor_request_duration_seconds_count{protocol="push"}"#;
    assert_eq!(server.metric(pushes).await.unwrap(), 1.0);
    let puts = r#"kiln_objstore_requests_total{operation="put"}"#;
    assert!(server.metric(puts).await.unwrap() >= 1.0);
    for endpoint in ["SelectMergeStacktraces", "render"] {
        let series =
            format!(r#"kiln_querier_request_duration_seconds_count{{endpoint="{endpoint}"}}"#);
        assert_eq!(server.metric(&series).await.unwrap(), 1.0, "{series}");
    }
    // The gauges of Raft are refreshed every few seconds.
    wait_for_metric(&server, "kiln_metastore_is_leader", 1.0).await;
    assert!(server.metric("kiln_metastore_term").await.unwrap() >= 1.0);
    assert!(
        server
            .metric("kiln_metastore_write_duration_seconds_count")
            .await
            .unwrap()
            >= 1.0
    );
    assert_eq!(names_not_exposed(&[&server], dir.path()).await, "");
}

/// One span as tests/otlp/trace_sink.py writes it.
#[derive(Debug)]
struct ExportedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    /// The `kiln.target` of the process that sent it.
    target: String,
    /// Its `path` attribute (request spans).
    path: String,
}

/// The spans `sink` has received so far.
fn exported_spans(sink: &TraceSink) -> Vec<ExportedSpan> {
    sink.spans()
        .iter()
        .map(|line| {
            let span: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_string();
            ExportedSpan {
                trace_id: text(&span["trace_id"]),
                span_id: text(&span["span_id"]),
                parent_span_id: text(&span["parent_span_id"]),
                name: text(&span["name"]),
                target: text(&span["target"]),
                path: text(&span["attributes"]["path"]),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_one_trace_from_the_distributor_to_object_storage_and_the_metastore() {
    let dir = tempfile::tempdir().unwrap();
    let sink = TraceSink::start(&dir.path().join("spans.jsonl"))
        .await
        .unwrap();
    let endpoint = format!("--tracing.otlp-endpoint={}", sink.endpoint());
    // Export each batch of spans after 100 ms rather than the default 5 s.
    let command = kiln().arg(&endpoint).env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let cluster = kiln_testkit::cluster::Cluster::builder(&command)
        .metastores(1, kiln_testkit::cluster::Network::Direct, &[])
        .ingesters(1, &["--ingester.flush-interval=100ms"])
        .distributors(1, &[])
        .start()
        .await
        .unwrap();
    crate::cluster::wait_for_ingesters(&cluster, 1).await;
    let _: kiln_proto::push::v1::PushResponse = post_proto(
        &cluster.distributors[0],
        "/push.v1.PusherService/Push",
        &push_request(&[("service_name", "traced")], &cpu_profile(), ""),
    )
    .await;

    // The push's trace: the distributor's store, the ingester's push, its flush's upload and
    // registration, and the metastore's AddBlocks, each in its own process.
    let wanted = |spans: &[ExportedSpan]| -> Option<String> {
        let store = spans.iter().find(|s| s.name == "distributor.store")?;
        let in_trace = |name: &str, target: &str| {
            spans
                .iter()
                .any(|s| s.trace_id == store.trace_id && s.name == name && s.target == target)
        };
        let add_blocks = spans.iter().any(|s| {
            s.trace_id == store.trace_id
                && s.target == "metastore"
                && s.path.ends_with("/AddBlocks")
        });
        (store.target == "distributor"
            && in_trace("ingester.push", "ingester")
            && in_trace("ingester.flush", "ingester")
            && in_trace("ingester.upload", "ingester")
            && in_trace("objstore", "ingester")
            && in_trace("ingester.register", "ingester")
            && add_blocks)
            .then(|| store.trace_id.clone())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let trace_id = loop {
        let spans = exported_spans(&sink);
        if let Some(trace_id) = wanted(&spans) {
            break trace_id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the push's trace never reached the sink: {spans:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Every span of the trace but its root has its parent in the trace.
    let spans = exported_spans(&sink);
    let trace: Vec<&ExportedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let roots: Vec<&&ExportedSpan> = trace
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "{trace:#?}");
    assert_eq!(roots[0].target, "distributor", "{trace:#?}");
    for span in &trace {
        assert!(
            span.parent_span_id.is_empty()
                || trace.iter().any(|p| p.span_id == span.parent_span_id),
            "{span:?} has no parent in {trace:#?}"
        );
    }
}
