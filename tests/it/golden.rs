//! Golden answers of every query endpoint on two real Go profiles. Regenerate the files in
//! tests/golden/ with `KILN_UPDATE_GOLDEN=1` after an intended change, and review the diff.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::query::url_encode;
use crate::support::reference::{json_i64, sample_frames};
use crate::support::{decode, go_profiles, kiln};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/golden/{name}.json"))
}

fn assert_golden(name: &str, actual: &Value) {
    let path = golden_path(name);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("KILN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, pretty).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set KILN_UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    let expected: Value = serde_json::from_str(&expected).unwrap();
    assert!(
        &expected == actual,
        "{name} differs from {}:\n{pretty}",
        path.display()
    );
}

/// The merged pprof as sorted (frames root first, value) pairs: stable across runs, unlike
/// the ids inside the pprof.
fn pprof_summary(profile: &kiln_proto::google::v1::Profile) -> Value {
    let mut stacks: Vec<(Vec<String>, i64)> = profile
        .sample
        .iter()
        .map(|sample| {
            let mut frames = sample_frames(profile, sample);
            frames.reverse();
            (frames, sample.value[0])
        })
        .collect();
    stacks.sort();
    let s = |i: i64| profile.string_table[i as usize].clone();
    json!({
        "sample_type": profile.sample_type.iter().map(|t| format!("{}/{}", s(t.r#type), s(t.unit))).collect::<Vec<_>>(),
        "period_type": profile.period_type.map(|t| format!("{}/{}", s(t.r#type), s(t.unit))),
        "period": profile.period,
        "stacks": stacks.into_iter().map(|(frames, value)| json!([frames.join(";"), value])).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_matches_its_golden_answer() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let files = go_profiles();
    for (file, service) in [
        ("bytes.cpu.pb.gz", "golden"),
        ("bytes.heap.pb.gz", "golden"),
        ("sort.cpu.pb.gz", "golden-sort"),
    ] {
        let (_, bytes) = files.iter().find(|(n, _)| n == file).unwrap();
        let url = server.url(&format!(
            "/ingest?name={service}%7Benv%3Dtest%7D&format=pprof&spyName=gospy"
        ));
        let response = client.post(url).body(bytes.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    let call = |method: &str, body: Value| {
        let request = client
            .post(server.url(&format!("/querier.v1.QuerierService/{method}")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let stats = call("GetProfileStats", json!({})).await;
    assert_golden("get_profile_stats", &stats);
    // A range around the data, so that the timeline is short and stable.
    let start = json_i64(&stats["oldestProfileTime"]) - 60_000;
    let end = json_i64(&stats["newestProfileTime"]) + 60_000;
    let ranged = |mut body: Value| {
        body["start"] = json!(start.to_string());
        body["end"] = json!(end.to_string());
        body
    };
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let heap = "memory:alloc_space:bytes:space:bytes";

    assert_golden(
        "profile_types",
        &call("ProfileTypes", ranged(json!({}))).await,
    );
    assert_golden(
        "label_names",
        &call(
            "LabelNames",
            ranged(json!({"matchers": ["{service_name=\"golden\"}"]})),
        )
        .await,
    );
    assert_golden(
        "label_values_service_name",
        &call("LabelValues", ranged(json!({"name": "service_name"}))).await,
    );
    assert_golden(
        "series",
        &call("Series", ranged(json!({"matchers": ["{env=\"test\"}"], "labelNames": ["service_name", "__profile_type__"]}))).await,
    );
    assert_golden(
        "select_merge_stacktraces_cpu",
        &call("SelectMergeStacktraces", ranged(json!({"profileTypeID": cpu, "labelSelector": "{service_name=\"golden\"}", "maxNodes": "24"}))).await,
    );
    assert_golden(
        "select_merge_stacktraces_heap",
        &call(
            "SelectMergeStacktraces",
            ranged(json!({"profileTypeID": heap, "labelSelector": "{}", "maxNodes": "16"})),
        )
        .await,
    );
    assert_golden(
        "select_series",
        &call("SelectSeries", ranged(json!({"profileTypeID": cpu, "labelSelector": "{env=\"test\"}", "step": 60.0, "groupBy": ["service_name"]}))).await,
    );

    let query = url_encode(&format!("{cpu}{{service_name=\"golden\"}}"));
    let (from, until) = (start / 1000, end / 1000);
    let render: Value = reqwest::get(server.url(&format!(
        "/pyroscope/render?query={query}&from={from}&until={until}&max-nodes=24"
    )))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_golden("render_cpu", &render);

    let get_json = |path: String| {
        let url = server.url(&path);
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let range = format!("from={from}&until={until}");
    assert_golden(
        "render_group_by",
        &get_json(format!(
            "/pyroscope/render?query={}&{range}&max-nodes=8&groupBy=service_name",
            url_encode(&format!("{cpu}{{env=\"test\"}}"))
        ))
        .await,
    );
    let sort_query = url_encode(&format!("{cpu}{{service_name=\"golden-sort\"}}"));
    assert_golden(
        "render_diff",
        &get_json(format!(
            "/pyroscope/render-diff?leftQuery={query}&leftFrom={from}&leftUntil={until}&rightQuery={sort_query}&rightFrom={from}&rightUntil={until}&max-nodes=16"
        ))
        .await,
    );
    let side = |service: &str| {
        ranged(
            json!({"profileTypeID": cpu, "labelSelector": format!("{{service_name=\"{service}\"}}"), "maxNodes": "16"}),
        )
    };
    assert_golden(
        "diff",
        &call(
            "Diff",
            json!({"left": side("golden"), "right": side("golden-sort")}),
        )
        .await,
    );
    assert_golden(
        "analyze_query",
        &call(
            "AnalyzeQuery",
            ranged(json!({"query": format!("{cpu}{{service_name=\"golden\"}}")})),
        )
        .await,
    );
    assert_golden(
        "pyroscope_labels",
        &get_json(format!("/pyroscope/labels?query={query}&{range}")).await,
    );
    assert_golden(
        "pyroscope_label_values",
        &get_json(format!(
            "/pyroscope/label-values?label=service_name&{range}"
        ))
        .await,
    );

    let pprof = reqwest::get(server.url(&format!(
        "/api/v1/pprof?query={query}&from={from}&until={until}"
    )))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert_golden("pprof_cpu", &pprof_summary(&decode(&pprof)));
}
