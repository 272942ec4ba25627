//! Process lifecycle: help and version, readiness, metrics, graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{decode, go_profiles, input_totals, kiln, stored_totals};

#[test]
fn help_and_version_describe_the_binary() {
    let version = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("kiln {}", env!("CARGO_PKG_VERSION"))
    );
    let help = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["server", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--target",
        "--data-dir",
        "--http-addr",
        "--grpc-addr",
        "--otlp-grpc-addr",
        "--otlp-http-addr",
        "--storage",
        "--ingester.flush-interval",
        "--limits.max-body-bytes",
        "--limits.max-decompressed-bytes",
        "--log-format",
        "--metastore.peers",
        "--metastore.advertise-addr",
        "--metastore.snapshot-logs",
        "KILN_INGESTER_FLUSH_INTERVAL",
        "KILN_METASTORE_PEERS",
    ] {
        assert!(help.contains(flag), "server --help lacks {flag}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_allocator_runs_one_arena_per_cpu_unless_the_environment_says_otherwise() {
    // jemalloc prints its options at exit with `stats_print`: the binary's own `malloc_conf`
    // must reach it (under tikv-jemalloc-sys's `_rjem_` prefix, or it is silently ignored), and
    // the environment must still override it.
    let options = |conf: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--version")
            .env("_RJEM_MALLOC_CONF", conf)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let default = options("stats_print:true");
    assert!(
        default.contains("opt.percpu_arena: \"percpu\""),
        "{default}"
    );
    let overridden = options("stats_print:true,percpu_arena:disabled");
    assert!(
        overridden.contains("opt.percpu_arena: \"disabled\""),
        "{overridden}"
    );
}

#[test]
fn roles_that_cannot_run_are_refused_clearly() {
    let kiln = kiln();
    let refused = |target: &str| {
        let output = kiln.clone().args(["--target", target]).output().unwrap();
        assert!(!output.status.success(), "--target {target} started");
        String::from_utf8(output.stderr).unwrap()
    };
    // A role apart from the metastore must be told where the metastore is.
    let stderr = refused("distributor");
    assert!(stderr.contains("needs --metastore.peers"), "{stderr}");
    let stderr = refused("compactor");
    assert!(stderr.contains("needs --metastore.peers"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ingester_answers_429_with_retry_after_and_keeps_what_it_took() {
    let kiln = kiln();
    let server = kiln
        .clone()
        .args([
            "--ingester.flush-interval=1h",
            "--ingester.max-buffered-samples=100",
        ])
        .start()
        .await
        .unwrap();
    let (_, gzipped) = go_profiles().remove(0);
    let first = tokio::spawn(
        reqwest::Client::new()
            .post(server.url("/ingest?name=first&format=pprof"))
            .body(gzipped.clone())
            .send(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .metric("kiln_ingester_buffered_samples")
        .await
        .unwrap()
        == 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the first push never reached the buffer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The buffer is over its limit: HTTP and gRPC are refused with a retryable status.
    let refused = reqwest::Client::new()
        .post(server.url("/ingest?name=second&format=pprof"))
        .body(gzipped.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let message = refused.text().await.unwrap();
    assert!(
        message.contains("overloaded") && message.contains("limit 100"),
        "{message}"
    );
    let mut grpc =
        kiln_proto::push::v1::pusher_service_client::PusherServiceClient::connect(server.url(""))
            .await
            .unwrap();
    let request = kiln_proto::push::v1::PushRequest {
        series: vec![kiln_proto::push::v1::RawProfileSeries {
            labels: vec![kiln_proto::types::v1::LabelPair {
                name: "service_name".into(),
                value: "second-grpc".into(),
            }],
            samples: vec![kiln_proto::push::v1::RawSample {
                raw_profile: gzipped.clone(),
                id: String::new(),
            }],
            annotations: vec![],
        }],
    };
    let status = grpc.push(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    let rejected = server
        .metric(
            "kiln_distributor_rejected_requests_total{protocol=\"ingest\",tenant=\"anonymous\",reason=\"overloaded\"}",
        )
        .await
        .unwrap();
    assert_eq!(rejected, 1.0);

    // The push that was taken is acknowledged on shutdown, and only it is stored.
    server.terminate().unwrap();
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    let mut server = server;
    assert!(server.wait().unwrap().success());
    let server = kiln.start().await.unwrap();
    let stored = stored_totals(&server).await;
    assert!(
        stored.keys().all(|(_, service, _)| service == "first"),
        "{stored:?}"
    );
    let expected: Vec<i64> = input_totals(&decode(&gzipped)).into_values().collect();
    assert_eq!(stored.values().copied().collect::<Vec<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_acknowledges_requests_in_flight_and_exits_zero() {
    let kiln = kiln();
    // A long flush interval keeps the push waiting in the buffer when SIGTERM arrives.
    let server = kiln
        .clone()
        .arg("--ingester.flush-interval=1h")
        .start()
        .await
        .unwrap();
    let (_, gzipped) = go_profiles().remove(0);
    let request = reqwest::Client::new()
        .post(server.url("/ingest?name=in-flight&format=pprof"))
        .body(gzipped.clone())
        .send();
    let pending = tokio::spawn(request);

    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .metric("kiln_ingester_buffered_samples")
        .await
        .unwrap()
        == 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the push never reached the buffer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.terminate().unwrap();
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut server = server;
    assert!(server.wait().unwrap().success());

    // What was acknowledged is there after a restart.
    let server = kiln.start().await.unwrap();
    let stored: Vec<i64> = stored_totals(&server).await.values().copied().collect();
    let expected: Vec<i64> = input_totals(&decode(&gzipped)).into_values().collect();
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_metrics_and_empty_profiles() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let ready = reqwest::get(server.url("/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);

    // A profile without samples is accepted and stores nothing.
    let empty = kiln_proto::google::v1::Profile {
        string_table: vec![String::new()],
        ..Default::default()
    };
    let response = reqwest::Client::new()
        .post(server.url("/ingest?name=empty&format=pprof"))
        .body(prost::Message::encode_to_vec(&empty))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(stored_totals(&server).await.is_empty());

    let metrics = server.metrics_text().await.unwrap();
    assert!(
        metrics.contains("kiln_distributor_received_profiles_total{protocol=\"ingest\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE kiln_ingester_flush_duration_seconds histogram"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_does_not_block_shutdown_past_the_timeout() {
    use std::io::Write;

    let server = kiln().arg("--shutdown-timeout=1s").start().await.unwrap();
    // A client that announces a body it never sends keeps its request in flight.
    let mut stalled = std::net::TcpStream::connect(server.http_addr()).unwrap();
    write!(
        stalled,
        "POST /ingest?name=stalled&format=pprof HTTP/1.1\r\nHost: kiln\r\nContent-Length: 1000\r\n\r\npartial"
    )
    .unwrap();
    stalled.flush().unwrap();
    // The request is in flight once the server reads from it; /ready answering proves the
    // server is past accepting this connection.
    assert_eq!(
        reqwest::get(server.url("/ready")).await.unwrap().status(),
        200
    );
    server.terminate().unwrap();
    let mut server = server;
    let status = server.wait().unwrap();
    assert!(status.success(), "kiln exited with {status}");
    drop(stalled);
}

/// A power loss, approximated: the process is killed (SIGKILL) right after the last
/// acknowledgement; everything acknowledged is readable after a restart on the same data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_survives_a_kill_right_after_the_acknowledgement() {
    let command = kiln();
    let server = command.start().await.unwrap();
    let profiles = go_profiles();
    let client = reqwest::Client::new();
    let mut expected = std::collections::BTreeMap::new();
    for (index, (_, bytes)) in profiles.iter().enumerate() {
        let response = client
            .post(server.url(&format!("/ingest?name=durable&format=pprof&from={index}")))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        for (profile_type, total) in input_totals(&decode(bytes)) {
            *expected
                .entry(("anonymous".to_string(), "durable".to_string(), profile_type))
                .or_insert(0) += total;
        }
    }
    server.kill();
    let server = command.start().await.unwrap();
    assert_eq!(stored_totals(&server).await, expected);
}

/// A registered block whose object is lost fails the queries that need it with an error naming
/// it; `kiln admin blocks remove` takes it out of the index, and queries answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_block_fails_its_queries_by_name_until_an_admin_removes_it() {
    let server = kiln()
        .arg("--compaction.levels=1000000/1000h")
        .start()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    // Two pushes, two flushes: each service in a segment of its own.
    for service in ["lost", "kept"] {
        let response = client
            .post(server.url(&format!("/ingest?name={service}&format=pprof")))
            .body(crate::support::cpu_profile())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let blocks = crate::support::registered_blocks(&server).await;
    let lost: Vec<_> = blocks
        .iter()
        .filter(|b| b.datasets.iter().any(|d| d.service_name == "lost"))
        .collect();
    assert_eq!(lost.len(), 1, "{blocks:?}");
    assert!(!lost[0].datasets.iter().any(|d| d.service_name == "kept"));
    let id = lost[0].id.clone();
    std::fs::remove_file(server.data_dir().join("objects").join(&lost[0].path)).unwrap();

    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let query = |service: &'static str| {
        let body = serde_json::json!({
            "profileTypeID": cpu,
            "labelSelector": format!("{{service_name=\"{service}\"}}"),
            "start": "0",
            "end": (crate::support::UNTIL_SECONDS * 1000).to_string(),
        });
        client
            .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let response = query("lost").await.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(&format!("cannot read block {id}"))
            && text.contains(&format!("kiln admin blocks remove {id}")),
        "{text}"
    );
    assert_eq!(query("kept").await.unwrap().status(), 200);

    let remove = || {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["admin", "blocks", "remove", &id])
            .arg(format!("--metastore.peers={}", server.grpc_addr()))
            .output()
            .unwrap()
    };
    let output = remove();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("removed {id}\n")
    );
    assert_eq!(query("lost").await.unwrap().status(), 200);
    assert!(
        !crate::support::registered_blocks(&server)
            .await
            .iter()
            .any(|b| b.id == id)
    );
    // Removing it again names the id that is not there.
    let output = remove();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("no block with id {id}")),
        "{output:?}"
    );
}
