//! The deployment kit (deploy/): every metric its dashboards and alert rules name is exposed
//! from the start, and moves when its event happens.

use std::path::Path;
use std::process::Command;

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
