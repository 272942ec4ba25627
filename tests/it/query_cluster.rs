//! Queriers sharing the parts of queries (ADR 0005), each in its own process on a real
//! S3-compatible server (moto): three queriers answer every query exactly as an all-in-one
//! server holding the same profiles does, each runs parts of the others' queries, and queries
//! through two of them keep answering exactly while the third is killed with SIGKILL.

use std::time::{Duration, Instant};

use kiln_proto::google::v1::Profile;
use kiln_proto::querier::v1::SelectMergeProfileRequest;
use kiln_testkit::cluster::{Cluster, Network};
use kiln_testkit::emulators::Moto;
use prost::Message;
use serde_json::{Value, json};

use crate::support::reference::{FunctionTotals, pprof_function_totals};
use crate::support::{
    KilnServer, UNTIL_SECONDS, connect, decode, go_profile_name, go_profiles, gzip_profile, kiln,
    post_proto,
};

const PARTS: &str = "kiln_querier_parts_executed_total";
const RETRIED: &str = "kiln_querier_parts_retried_total";
const PEERS: &str = "kiln_querier_peers";
/// Profiles pushed, ten seconds apart, each in a segment of its own: CPU and heap in turn, so
/// 16 blocks of each, cut into four parts of four blocks per query. Parts are placed on
/// queriers by the start of their window; with these times the four windows of the heap types
/// land on all three queriers (jump hash buckets 2, 0, 2, 1), whatever their addresses.
const PROFILES: usize = 32;
const BASE_SECONDS: i64 = 1_700_000_000;

/// Pushes the same profiles to `target` (a distributor or all-in-one): the Go test profiles
/// in turn over two services, each at its own time and acknowledged before the next is sent.
async fn push_profiles(target: &KilnServer) {
    let files = go_profiles();
    for i in 0..PROFILES {
        let mut profile = decode(&files[i % files.len()].1);
        profile.time_nanos = (BASE_SECONDS + 10 * i as i64) * 1_000_000_000;
        let service = format!("svc-{}", i % 2);
        let request = crate::support::push_request(
            &[
                ("service_name", service.as_str()),
                ("__name__", go_profile_name(&profile)),
            ],
            &gzip_profile(&profile),
            &format!("profile-{i}"),
        );
        // A distributor answers 503 until it has seen an ingester; the id makes a retry safe.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = reqwest::Client::new()
                .post(target.url("/push.v1.PusherService/Push"))
                .header("content-type", "application/proto")
                .body(request.encode_to_vec())
                .send()
                .await
                .unwrap();
            match response.status().as_u16() {
                200 => break,
                503 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                status => panic!("push {i}: {status} {}", response.text().await.unwrap()),
            }
        }
    }
}

/// Every answer the test compares, keyed by what was asked: flame graphs (untruncated),
/// pprof function totals, series grouped by service, and `/pyroscope/render` with its
/// timeline and groups, for every profile type.
async fn answers(server: &KilnServer, profile_types: &[String]) -> Vec<(String, Value)> {
    let range = |body: Value| {
        let mut body = body;
        body["start"] = json!((BASE_SECONDS * 1000).to_string());
        body["end"] = json!((UNTIL_SECONDS * 1000).to_string());
        body
    };
    let mut out = Vec::new();
    for profile_type in profile_types {
        let (status, graph) = connect(
            server,
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            range(json!({"profileTypeID": profile_type, "labelSelector": "{}", "maxNodes": "0"})),
        )
        .await;
        assert_eq!(status, 200, "{graph}");
        out.push((format!("flame graph {profile_type}"), graph));

        let (status, series) = connect(
            server,
            "/querier.v1.QuerierService/SelectSeries",
            range(json!({
                "profileTypeID": profile_type,
                "labelSelector": "{}",
                "step": 20.0,
                "groupBy": ["service_name"],
                "aggregation": "TIME_SERIES_AGGREGATION_TYPE_AVERAGE",
            })),
        )
        .await;
        assert_eq!(status, 200, "{series}");
        out.push((format!("series {profile_type}"), series));

        let request = SelectMergeProfileRequest {
            profile_type_id: profile_type.clone(),
            label_selector: "{service_name=\"svc-1\"}".to_string(),
            start: BASE_SECONDS * 1000,
            end: UNTIL_SECONDS * 1000,
            ..Default::default()
        };
        let pprof: Profile = post_proto(
            server,
            "/querier.v1.QuerierService/SelectMergeProfile",
            &request,
        )
        .await;
        // Symbol ids depend on the order parts merge in; the figures per function do not.
        let totals: FunctionTotals = pprof_function_totals(&pprof, 0);
        out.push((format!("pprof {profile_type}"), json!(totals)));

        let query = format!("{profile_type}{{}}");
        let render = reqwest::get(server.url(&format!(
            "/pyroscope/render?query={}&from={BASE_SECONDS}&until={UNTIL_SECONDS}&groupBy=service_name&max-nodes=0",
            crate::query::url_encode(&query)
        )))
        .await
        .unwrap();
        assert_eq!(render.status(), 200);
        out.push((
            format!("render {profile_type}"),
            render.json().await.unwrap(),
        ));
    }
    out
}

/// The profile types the all-in-one server holds.
async fn profile_types(server: &KilnServer) -> Vec<String> {
    let (status, answer) = connect(
        server,
        "/querier.v1.QuerierService/ProfileTypes",
        json!({"start": "0", "end": (UNTIL_SECONDS * 1000).to_string()}),
    )
    .await;
    assert_eq!(status, 200);
    let types: Vec<String> = answer["profileTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ID"].as_str().unwrap().to_string())
        .collect();
    assert!(types.len() >= 2, "CPU and heap types: {types:?}");
    assert!(
        types[0].starts_with("memory:"),
        "heap types first: {types:?}"
    );
    types
}

/// Waits until `querier` shares parts with `n` queriers, itself included.
async fn wait_for_peers(querier: &KilnServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while querier.metric(PEERS).await.unwrap_or(0.0) as usize != n {
        assert!(
            Instant::now() < deadline,
            "{} never saw {n} queriers",
            querier.http_addr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_queriers_share_parts_answer_like_all_in_one_and_survive_a_killed_one() {
    let s3 = Moto::start("kiln").await.unwrap();
    let storage = s3.kiln_flags("data");
    let storage: Vec<&str> = storage.iter().map(String::as_str).collect();
    let mut ingester_flags = storage.clone();
    ingester_flags.push("--ingester.flush-interval=50ms");
    let mut cluster = Cluster::builder(&kiln())
        .metastores(1, Network::Direct, &[])
        .ingesters(1, &ingester_flags)
        .distributors(1, &[])
        .queriers(3, &storage)
        .start()
        .await
        .unwrap();
    let single = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    push_profiles(&single).await;
    push_profiles(&cluster.distributors[0]).await;
    for querier in &cluster.queriers {
        wait_for_peers(querier, 3).await;
    }

    // Every querier answers exactly as all-in-one, and every one runs parts of every querier's
    // queries (each part on the querier its window is placed on).
    let types = profile_types(&single).await;
    let expected = answers(&single, &types).await;
    for (index, querier) in cluster.queriers.iter().enumerate() {
        let before: Vec<f64> = metrics(&cluster.queriers, PARTS).await;
        let got = answers(querier, &types).await;
        for ((what, want), (_, answer)) in expected.iter().zip(&got) {
            assert_eq!(answer, want, "querier {index}: {what}");
        }
        let after: Vec<f64> = metrics(&cluster.queriers, PARTS).await;
        for (other, (b, a)) in before.iter().zip(&after).enumerate() {
            assert!(
                a > b,
                "querier {other} ran no part of querier {index}'s queries"
            );
        }
    }

    // A stream of flame graph queries (of a heap type, whose parts are placed on every
    // querier) through the first two queriers while the third is killed: each answers exactly,
    // in seconds, through the kill and until the membership has dropped the dead querier.
    let (what, want) = &expected[0];
    let body = json!({
        "profileTypeID": types[0],
        "labelSelector": "{}",
        "maxNodes": "0",
        "start": (BASE_SECONDS * 1000).to_string(),
        "end": (UNTIL_SECONDS * 1000).to_string(),
    });
    let retried_before: f64 = metrics(&cluster.queriers[..2], RETRIED).await.iter().sum();
    let killed = cluster.queriers.pop().unwrap();
    killed.kill();
    let killed_at = Instant::now();
    let mut queries = 0;
    while killed_at.elapsed() < Duration::from_secs(12) || queries < 4 {
        let querier = &cluster.queriers[queries % 2];
        let started = Instant::now();
        let (status, graph) = connect(
            querier,
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            body.clone(),
        )
        .await;
        assert_eq!(status, 200, "query {queries} after the kill: {graph}");
        assert_eq!(&graph, want, "query {queries} after the kill: {what}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "query {queries} took {:?}",
            started.elapsed()
        );
        queries += 1;
    }
    let retried_after: f64 = metrics(&cluster.queriers, RETRIED).await.iter().sum();
    assert!(
        retried_after > retried_before,
        "no part was retried after the kill ({queries} queries)"
    );
    for querier in &cluster.queriers {
        wait_for_peers(querier, 2).await;
    }
}

async fn metrics(servers: &[KilnServer], name: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for server in servers {
        values.push(server.metric(name).await.unwrap_or(0.0));
    }
    values
}
