//! The query API through the real binary: exact per-function figures for every input file and
//! sample type, on every surface.

use std::collections::BTreeMap;
use std::process::Command;

use bytes::Bytes;
use kiln_proto::google::v1::Profile;
use kiln_proto::querier::v1::querier_service_client::QuerierServiceClient;
use kiln_proto::querier::v1::{SelectMergeStacktracesRequest, SelectMergeStacktracesResponse};
use prost::Message;
use serde_json::{Value, json};

use crate::support::reference::{
    FunctionTotals, flamegraph_function_totals, json_flamegraph_figures, json_i64,
    pprof_function_totals,
};
use crate::support::{
    KilnServer, UNTIL_SECONDS, decode, flamegraph_json, go_profile_name, go_profiles, kiln,
    post_proto,
};

/// Pushes every Go test profile as its own service (the file name) and returns them decoded.
pub(crate) async fn push_every_profile(server: &KilnServer) -> Vec<(String, Profile)> {
    let client = reqwest::Client::new();
    let files = go_profiles();
    let pushes = files.iter().map(|(name, bytes)| {
        let url = server.url(&format!("/ingest?name={}&format=pprof", service_of(name)));
        client.post(url).body(bytes.clone()).send()
    });
    for response in futures::future::join_all(pushes).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    files
        .into_iter()
        .map(|(name, bytes)| (service_of(&name), decode(&bytes)))
        .collect()
}

pub(crate) fn service_of(file: &str) -> String {
    file.trim_end_matches(".pb.gz").to_string()
}

/// Profile type ids of a Go profile, in sample type order.
pub(crate) fn profile_types(profile: &Profile) -> Vec<String> {
    let s = |i: i64| profile.string_table[i as usize].as_str();
    let period = profile.period_type.unwrap();
    profile
        .sample_type
        .iter()
        .map(|t| {
            format!(
                "{}:{}:{}:{}:{}",
                go_profile_name(profile),
                s(t.r#type),
                s(t.unit),
                s(period.r#type),
                s(period.unit)
            )
        })
        .collect()
}

fn request(profile_type: &str, service: &str) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: profile_type.to_string(),
        label_selector: format!("{{service_name=\"{service}\"}}"),
        start: 0,
        end: UNTIL_SECONDS * 1000,
        max_nodes: Some(0),
        ..Default::default()
    }
}

async fn via_connect_json(
    server: &KilnServer,
    profile_type: &str,
    service: &str,
) -> FunctionTotals {
    json_flamegraph_figures(&flamegraph_json(server, None, profile_type, service, 0).await).1
}

async fn via_connect_proto(
    server: &KilnServer,
    profile_type: &str,
    service: &str,
) -> FunctionTotals {
    let answer: SelectMergeStacktracesResponse = post_proto(
        server,
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        &request(profile_type, service),
    )
    .await;
    let graph = answer.flamegraph.unwrap();
    let levels: Vec<Vec<i64>> = graph.levels.into_iter().map(|l| l.values).collect();
    flamegraph_function_totals(&graph.names, &levels)
}

async fn via_grpc(server: &KilnServer, profile_type: &str, service: &str) -> FunctionTotals {
    let mut client = QuerierServiceClient::connect(server.url("")).await.unwrap();
    let answer = client
        .select_merge_stacktraces(request(profile_type, service))
        .await
        .unwrap()
        .into_inner();
    let graph = answer.flamegraph.unwrap();
    let levels: Vec<Vec<i64>> = graph.levels.into_iter().map(|l| l.values).collect();
    flamegraph_function_totals(&graph.names, &levels)
}

async fn via_select_merge_profile(
    server: &KilnServer,
    profile_type: &str,
    service: &str,
) -> FunctionTotals {
    let request = kiln_proto::querier::v1::SelectMergeProfileRequest {
        profile_type_id: profile_type.to_string(),
        label_selector: format!("{{service_name=\"{service}\"}}"),
        start: 0,
        end: UNTIL_SECONDS * 1000,
        ..Default::default()
    };
    let profile: Profile = post_proto(
        server,
        "/querier.v1.QuerierService/SelectMergeProfile",
        &request,
    )
    .await;
    assert_eq!(profile.sample_type.len(), 1, "only the queried sample type");
    pprof_function_totals(&profile, 0)
}

fn query_param(profile_type: &str, service: &str) -> String {
    let query = format!("{profile_type}{{service_name=\"{service}\"}}");
    url_encode(&query)
}

pub(crate) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn via_render(server: &KilnServer, profile_type: &str, service: &str) -> FunctionTotals {
    let url = server.url(&format!(
        "/pyroscope/render?query={}&from=0&until={UNTIL_SECONDS}&format=json&max-nodes=0",
        query_param(profile_type, service)
    ));
    let answer: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let graph = &answer["flamebearer"];
    let (_, totals) = json_flamegraph_figures(graph);
    // The timeline adds up to the flame graph.
    let timeline: i64 = answer["timeline"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(json_i64)
        .sum();
    assert_eq!(timeline, json_i64(&graph["numTicks"]));
    totals
}

async fn via_pprof(
    server: &KilnServer,
    profile_type: &str,
    service: &str,
    dir: &std::path::Path,
) -> FunctionTotals {
    let url = server.url(&format!(
        "/api/v1/pprof?query={}&from=0&until={UNTIL_SECONDS}",
        query_param(profile_type, service)
    ));
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let gzipped: Bytes = response.bytes().await.unwrap();
    let ours = decode(&gzipped);
    assert_eq!(ours.sample_type.len(), 1, "only the queried sample type");

    // go tool pprof must read it; its re-encoding must carry the same figures.
    let input = dir.join(format!(
        "{service}-{}.pb.gz",
        profile_type.replace(':', "_")
    ));
    std::fs::write(&input, &gzipped).unwrap();
    let output = Command::new("go")
        .args(["tool", "pprof", "-proto"])
        .arg(&input)
        .output()
        .expect("go tool pprof runs (install Debian's golang-go)");
    assert!(
        output.status.success(),
        "go tool pprof: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reencoded = decode(&output.stdout);
    let totals = pprof_function_totals(&reencoded, 0);
    assert_eq!(pprof_function_totals(&ours, 0), totals);
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surface_returns_exact_function_figures() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let profiles = push_every_profile(&server).await;
    let exports = tempfile::tempdir().unwrap();

    let mut checked = 0;
    let mut expected_checks = 0;
    for (service, profile) in &profiles {
        expected_checks += profile.sample_type.len();
        for (index, profile_type) in profile_types(profile).iter().enumerate() {
            let expected = pprof_function_totals(profile, index);
            let context = format!("{service} {profile_type}");
            assert_eq!(
                via_connect_json(&server, profile_type, service).await,
                expected,
                "connect json: {context}"
            );
            assert_eq!(
                via_connect_proto(&server, profile_type, service).await,
                expected,
                "connect proto: {context}"
            );
            assert_eq!(
                via_grpc(&server, profile_type, service).await,
                expected,
                "grpc: {context}"
            );
            assert_eq!(
                via_select_merge_profile(&server, profile_type, service).await,
                expected,
                "SelectMergeProfile: {context}"
            );
            assert_eq!(
                via_render(&server, profile_type, service).await,
                expected,
                "render: {context}"
            );
            assert_eq!(
                via_pprof(&server, profile_type, service, exports.path()).await,
                expected,
                "pprof: {context}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, expected_checks);
    assert!(checked >= 60, "only {checked} profile types checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_across_profiles_and_counts_a_profile_id_once() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let profiles = push_every_profile(&server).await;

    // A regex over every CPU service merges 13 profiles exactly.
    let cpu_type = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let mut expected = FunctionTotals::new();
    for (_, profile) in profiles.iter().filter(|(s, _)| s.ends_with(".cpu")) {
        for (name, (self_value, total)) in pprof_function_totals(profile, 1) {
            let entry = expected.entry(name).or_default();
            entry.0 += self_value;
            entry.1 += total;
        }
    }
    let mut client = QuerierServiceClient::connect(server.url("")).await.unwrap();
    let mut merged = request(cpu_type, "");
    merged.label_selector = r#"{service_name=~".*\\.cpu"}"#.to_string();
    let graph = client
        .select_merge_stacktraces(merged.clone())
        .await
        .unwrap()
        .into_inner()
        .flamegraph
        .unwrap();
    let levels: Vec<Vec<i64>> = graph.levels.iter().map(|l| l.values.clone()).collect();
    assert_eq!(flamegraph_function_totals(&graph.names, &levels), expected);

    // max_nodes keeps the total and bounds the graph with "other" nodes.
    merged.max_nodes = Some(50);
    let small = client
        .select_merge_stacktraces(merged)
        .await
        .unwrap()
        .into_inner()
        .flamegraph
        .unwrap();
    assert_eq!(small.total, graph.total);
    let nodes: usize = small.levels.iter().map(|l| l.values.len() / 4).sum();
    assert!(nodes <= 50 + small.levels.len() * 8, "{nodes} nodes");
    assert!(small.names.iter().any(|n| n == "other"));

    // The same profile pushed again under the same id is counted once; under a new id, twice.
    let (_, gzipped) = go_profiles()
        .into_iter()
        .find(|(n, _)| n == "strings.cpu.pb.gz")
        .unwrap();
    let push = |id: &str| {
        let request = kiln_proto::push::v1::PushRequest {
            series: vec![kiln_proto::push::v1::RawProfileSeries {
                labels: vec![
                    kiln_proto::types::v1::LabelPair {
                        name: "service_name".into(),
                        value: "dedupe".into(),
                    },
                    kiln_proto::types::v1::LabelPair {
                        name: "__name__".into(),
                        value: "process_cpu".into(),
                    },
                ],
                samples: vec![kiln_proto::push::v1::RawSample {
                    raw_profile: gzipped.clone(),
                    id: id.to_string(),
                }],
                annotations: vec![],
            }],
        };
        reqwest::Client::new()
            .post(server.url("/push.v1.PusherService/Push"))
            .header("content-type", "application/proto")
            .body(request.encode_to_vec())
            .send()
    };
    for id in [
        "11111111-1111-1111-1111-111111111111",
        "11111111-1111-1111-1111-111111111111",
    ] {
        assert_eq!(push(id).await.unwrap().status(), 200);
    }
    let single = decode(&gzipped);
    let once: i64 = single.sample.iter().map(|s| s.value[1]).sum();
    let total = |client: &mut QuerierServiceClient<tonic::transport::Channel>| {
        let request = request(cpu_type, "dedupe");
        let mut client = client.clone();
        async move {
            client
                .select_merge_stacktraces(request)
                .await
                .unwrap()
                .into_inner()
                .flamegraph
                .unwrap()
                .total
        }
    };
    assert_eq!(total(&mut client).await, once);
    assert_eq!(
        push("22222222-2222-2222-2222-222222222222")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(total(&mut client).await, 2 * once);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_series_and_time_series() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let profiles = push_every_profile(&server).await;
    let client = reqwest::Client::new();
    let call = |method: &str, body: Value| {
        client
            .post(server.url(&format!("/querier.v1.QuerierService/{method}")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let range = json!({"start": "0", "end": (UNTIL_SECONDS * 1000).to_string()});
    let with_range = |mut body: Value| {
        body["start"] = range["start"].clone();
        body["end"] = range["end"].clone();
        body
    };

    let values: Value = call(
        "LabelValues",
        with_range(json!({"name": "service_name", "matchers": ["{service_name!~\".*heap\"}"]})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // Services with data: a profile without samples (text_template.cpu) stores nothing.
    let cpu_services: Vec<String> = profiles
        .iter()
        .filter(|(s, p)| s.ends_with(".cpu") && !p.sample.is_empty())
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(
        values["names"].as_array().unwrap().len(),
        cpu_services.len()
    );

    let names: Value = call("LabelNames", with_range(json!({})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for expected in ["__name__", "__profile_type__", "service_name"] {
        assert!(names.contains(&expected), "{names:?}");
    }

    let types: Value = call("ProfileTypes", with_range(json!({})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(types["profileTypes"].as_array().unwrap().len(), 6);

    let series: Value = call("Series", with_range(json!({"matchers": ["{service_name=\"bytes.heap\"}"], "labelNames": ["service_name", "__profile_type__"]})))
        .await.unwrap().json().await.unwrap();
    assert_eq!(series["labelsSet"].as_array().unwrap().len(), 4);

    // One point per profile time; SUM equals the profiles' totals.
    let heap_type = "memory:alloc_space:bytes:space:bytes";
    let answer: Value = call("SelectSeries", with_range(json!({
        "profileTypeID": heap_type, "labelSelector": "{}", "step": 1.0, "groupBy": ["service_name"], "limit": "3",
    }))).await.unwrap().json().await.unwrap();
    let series = answer["series"].as_array().unwrap();
    assert_eq!(series.len(), 3, "limit keeps the top 3");
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (service, profile) in profiles.iter().filter(|(s, _)| s.ends_with(".heap")) {
        expected.insert(
            service.clone(),
            profile.sample.iter().map(|s| s.value[1]).sum(),
        );
    }
    let mut top: Vec<(i64, String)> = expected.iter().map(|(s, v)| (*v, s.clone())).collect();
    top.sort_by(|a, b| b.cmp(a));
    for (s, (value, service)) in series.iter().zip(top) {
        assert_eq!(s["labels"][0]["value"].as_str().unwrap(), service);
        let sum: f64 = s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_f64().unwrap())
            .sum();
        assert_eq!(sum, value as f64);
    }

    // AVERAGE over one step covering everything: the mean of the heap profiles' totals.
    let answer: Value = call(
        "SelectSeries",
        with_range(json!({
            "profileTypeID": heap_type, "labelSelector": "{}", "step": (UNTIL_SECONDS as f64),
            "aggregation": "TIME_SERIES_AGGREGATION_TYPE_AVERAGE",
        })),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let points = answer["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    let heap_totals: Vec<i64> = expected.values().copied().filter(|v| *v != 0).collect();
    let mean = heap_totals.iter().sum::<i64>() as f64 / heap_totals.len() as f64;
    assert_eq!(points[0]["value"].as_f64().unwrap(), mean);

    // Bad selectors are 400 with the reason.
    let bad = call(
        "SelectMergeStacktraces",
        with_range(json!({"profileTypeID": heap_type, "labelSelector": "{service_name=}"})),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("invalid label selector"));
    let bad = reqwest::get(server.url("/pyroscope/render?query=cpu"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
