//! Compaction through the real binary: every query answers the same before and after the
//! segments are merged into per-tenant blocks, duplicates still count once, and the admin
//! commands show the blocks and the jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kiln_contract::metastore::{JobState, MetastoreClient};
use serde_json::{Value, json};

use crate::support::reference::{FunctionTotals, json_flamegraph_figures, pprof_function_totals};
use kiln_proto::push::v1::PushResponse;

use crate::support::{
    KilnServer, UNTIL_SECONDS, cpu_profile, kiln, post_proto, push_request, testdata,
};

/// Compaction settings that merge within a second or two: levels 0 and 1 are compacted, level 2
/// is final.
pub(crate) const FAST_COMPACTION: [&str; 4] = [
    "--compaction.levels=4/1s,4/1s",
    "--compactor.poll-interval=100ms",
    "--compactor.deletion-delay=1s",
    "--compactor.retention-interval=1s",
];

/// Compaction that never starts within a test.
const NO_COMPACTION: &str = "--compaction.levels=1000000/1000h";

/// A client of the server's metastore.
pub(crate) fn metastore(server: &KilnServer) -> MetastoreClient {
    MetastoreClient::new(
        vec![server.grpc_addr().to_string()],
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Waits until every block of the index is at `level` and no job is planned or running.
pub(crate) async fn wait_until_compacted(metastore: &MetastoreClient, level: u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let blocks = metastore.admin_list_blocks(None).await.unwrap();
        let status = metastore.admin_compaction_status().await.unwrap();
        let busy = status.jobs.iter().any(|j| j.state != JobState::Parked);
        if !blocks.is_empty() && blocks.iter().all(|b| b.compaction_level == level) && !busy {
            assert!(
                status.jobs.is_empty(),
                "no job may be parked: {:?}",
                status.jobs
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted to level {level} within 120 s: levels {:?}, jobs {:?}",
            blocks
                .iter()
                .map(|b| b.compaction_level)
                .collect::<Vec<_>>(),
            status.jobs
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_json(server: &KilnServer, method: &str, body: Value) -> Value {
    let path = format!("/querier.v1.QuerierService/{method}");
    let (status, answer) = crate::support::connect(server, &path, body).await;
    assert_eq!(status, 200, "{method}");
    answer
}

fn range() -> (String, String) {
    ("0".to_string(), (UNTIL_SECONDS * 1000).to_string())
}

/// Every figure the query API gives for the server's data, in a form that does not depend on
/// the order of blocks: labels and series as sets, flame graphs and pprof as per-function self
/// and total values, time series as points.
#[derive(Debug, PartialEq)]
struct Answers {
    profile_types: BTreeSet<String>,
    label_names: BTreeSet<String>,
    services: BTreeSet<String>,
    series: BTreeSet<String>,
    flame_graphs: BTreeMap<(String, String), (i64, FunctionTotals)>,
    pprofs: BTreeMap<(String, String), FunctionTotals>,
    time_series: BTreeMap<String, BTreeSet<String>>,
}

async fn answers(server: &KilnServer) -> Answers {
    let (start, end) = range();
    let types = connect_json(server, "ProfileTypes", json!({"start": start, "end": end})).await;
    let profile_types: BTreeSet<String> = types["profileTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ID"].as_str().unwrap().to_string())
        .collect();
    let names = connect_json(server, "LabelNames", json!({"start": start, "end": end})).await;
    let label_names = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let values = connect_json(
        server,
        "LabelValues",
        json!({"name": "service_name", "start": start, "end": end}),
    )
    .await;
    let services: BTreeSet<String> = values["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let series_answer = connect_json(
        server,
        "Series",
        json!({"matchers": ["{}"], "start": start, "end": end}),
    )
    .await;
    let series = series_answer["labelsSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut flame_graphs = BTreeMap::new();
    let mut pprofs = BTreeMap::new();
    let mut time_series = BTreeMap::new();
    for profile_type in &profile_types {
        let points = connect_json(
            server,
            "SelectSeries",
            json!({
                "profileTypeID": profile_type,
                "labelSelector": "{}",
                "start": start,
                "end": end,
                "step": 10.0,
                "groupBy": ["service_name"],
            }),
        )
        .await;
        let points: BTreeSet<String> = points["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        time_series.insert(profile_type.clone(), points);
        for service in &services {
            let selector = format!("{{service_name=\"{service}\"}}");
            let graph = connect_json(
                server,
                "SelectMergeStacktraces",
                json!({
                    "profileTypeID": profile_type,
                    "labelSelector": selector,
                    "start": start,
                    "end": end,
                    "maxNodes": "0",
                }),
            )
            .await;
            let figures = json_flamegraph_figures(&graph["flamegraph"]);
            if figures.0 == 0 {
                continue;
            }
            flame_graphs.insert((profile_type.clone(), service.clone()), figures);
            let request = kiln_proto::querier::v1::SelectMergeProfileRequest {
                profile_type_id: profile_type.clone(),
                label_selector: selector,
                start: 0,
                end: UNTIL_SECONDS * 1000,
                ..Default::default()
            };
            let profile: kiln_proto::google::v1::Profile = crate::support::post_proto(
                server,
                "/querier.v1.QuerierService/SelectMergeProfile",
                &request,
            )
            .await;
            pprofs.insert(
                (profile_type.clone(), service.clone()),
                pprof_function_totals(&profile, 0),
            );
        }
    }
    Answers {
        profile_types,
        label_names,
        services,
        series,
        flame_graphs,
        pprofs,
        time_series,
    }
}

/// Pushes the real Go profiles (each as its own service), the JFR recording, and one CPU
/// profile twice under the same profile id.
async fn push_real_profiles(server: &KilnServer) {
    crate::query::push_every_profile(server).await;
    let recording = std::fs::read(testdata("jfr/java17-cpu-alloc-locks.jfr")).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "jfr",
        reqwest::multipart::Part::bytes(recording).file_name("jfr"),
    );
    let response = reqwest::Client::new()
        .post(server.url("/ingest?name=java-app&format=jfr&from=1795700000&until=1795700010"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let cpu = cpu_profile();
    for _ in 0..2 {
        let request = push_request(&[("service_name", "twice")], &cpu, "the-same-id");
        post_proto::<PushResponse>(server, "/push.v1.PusherService/Push", &request).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_answers_the_same_before_and_after_compaction() {
    let base = kiln();
    let server = base.clone().arg(NO_COMPACTION).start().await.unwrap();
    push_real_profiles(&server).await;
    let before = answers(&server).await;
    assert!(
        before.flame_graphs.len() >= 70,
        "{}",
        before.flame_graphs.len()
    );
    let client = metastore(&server);
    let segments = client.admin_list_blocks(None).await.unwrap();
    assert!(segments.iter().all(|b| b.compaction_level == 0));

    // The same data dir with compaction on: segments become level-1, then level-2 blocks.
    server.stop().unwrap();
    let server = base.args(FAST_COMPACTION).start().await.unwrap();
    let client = metastore(&server);
    wait_until_compacted(&client, 2).await;
    let blocks = client.admin_list_blocks(None).await.unwrap();
    assert!(!segments.is_empty());
    for block in &blocks {
        assert_eq!(block.tenant, "anonymous", "one tenant per block");
        assert!(
            block.path.starts_with("blocks/0/anonymous/"),
            "{}",
            block.path
        );
    }

    let after = answers(&server).await;
    assert_eq!(before, after);
    // The profile pushed twice under one id counts once.
    let once: i64 = crate::support::input_totals(&crate::support::decode(&cpu_profile()))["process_cpu:cpu:nanoseconds:cpu:nanoseconds"];
    let twice = &after.flame_graphs[&(
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
        "twice".to_string(),
    )];
    assert_eq!(twice.0, once);

    // The admin commands see the same blocks and no jobs.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["admin", "blocks", "list", "--output", "json"])
        .arg(format!("--metastore.peers={}", server.grpc_addr()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(listed.len(), blocks.len());
    for line in &listed {
        let block = blocks.iter().find(|b| b.id == line["id"]).unwrap();
        assert_eq!(line["tenants"], json!(["anonymous"]));
        assert_eq!(line["level"], 2);
        assert_eq!(line["min_time"], block.min_time_nanos.div_euclid(1_000_000));
        assert_eq!(line["max_time"], block.max_time_nanos.div_euclid(1_000_000));
        assert_eq!(line["path"], block.path);
        assert_eq!(line["size"], block.size_bytes);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["admin", "compaction", "status", "--output", "json"])
        .arg(format!("--metastore.peers={}", server.grpc_addr()))
        .output()
        .unwrap();
    assert!(output.status.success());
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["jobs"], json!([]));
    assert_eq!(status["lag_seconds"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_of_one_type_and_part_of_the_range_reads_only_its_row_groups() {
    use crate::query_api::metric;
    use crate::support::{decode, gzip_profile, input_totals};

    // No samples stay cached, so that each query's reads show.
    let server = kiln()
        .args(FAST_COMPACTION)
        .arg("--querier.cache-bytes=0")
        .start()
        .await
        .unwrap();
    // Sixteen heap profiles 10 s apart, of 4 types each: compacted regions of several row
    // groups of samples, sorted by series and time.
    let mut heap = decode(&std::fs::read(testdata("pprof/go_parser.heap.pb.gz")).unwrap());
    let start_nanos = 1_795_000_000_000_000_000;
    for i in 0..16 {
        heap.time_nanos = start_nanos + i * 10_000_000_000;
        let request = push_request(
            &[("service_name", "parser")],
            &gzip_profile(&heap),
            &format!("heap-{i}"),
        );
        post_proto::<PushResponse>(&server, "/push.v1.PusherService/Push", &request).await;
    }
    wait_until_compacted(&metastore(&server), 2).await;
    let samples_read = r#"kiln_querier_fetched_bytes_total{what="samples"}"#;
    let totals = input_totals(&heap);
    let flame_graph_total = |profile_type: &str, profiles: i64| {
        let query = json!({
            "profileTypeID": profile_type,
            "labelSelector": "{service_name=\"parser\"}",
            "start": (start_nanos / 1_000_000).to_string(),
            "end": ((start_nanos + profiles * 10_000_000_000) / 1_000_000).to_string(),
            "maxNodes": "0",
        });
        let server = &server;
        async move {
            let graph = connect_json(server, "SelectMergeStacktraces", query).await;
            json_flamegraph_figures(&graph["flamegraph"]).0
        }
    };

    // Every type over the whole range: every sample is read.
    assert_eq!(totals.len(), 4);
    for (profile_type, total) in &totals {
        assert_eq!(flame_graph_total(profile_type, 16).await, 16 * total);
    }
    let all_read = metric(&server, samples_read).await;
    // In-use space of the first eight profiles: an eighth of the samples, and of the bytes
    // read for them a quarter at most (row groups at the edges are read whole).
    let inuse = "memory:inuse_space:bytes:space:bytes";
    assert_eq!(flame_graph_total(inuse, 8).await, 8 * totals[inuse]);
    let part_read = metric(&server, samples_read).await - all_read;
    assert!(
        part_read > 0 && part_read * 4 < all_read,
        "read {part_read} bytes of samples for an eighth of them, {all_read} for all"
    );
}
