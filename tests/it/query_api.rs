//! The rest of the query API through the real binary, with exact figures: Diff and
//! render-diff, the TREE and PPROF formats, stack selectors against `go tool pprof -focus` and
//! `-ignore`, Pyroscope's HTTP label endpoints, render's groupBy, AnalyzeQuery, the settings
//! service Profiles Drilldown calls, gzip responses, and the per-tenant query limits.

use std::collections::BTreeMap;
use std::process::Command;

use kiln_proto::google::v1::Profile;
use kiln_proto::push::v1::PushResponse;
use kiln_proto::querier::v1::{
    ProfileFormat, SelectMergeStacktracesRequest, SelectMergeStacktracesResponse,
};
use serde_json::{Value, json};

use crate::query::url_encode;
use crate::support::reference::{
    FunctionTotals, flamegraph_function_totals, json_flamegraph_figures, json_i64,
    pprof_function_totals, sample_frames,
};
use crate::support::{
    KilnServer, UNTIL_SECONDS, connect, decode, flamegraph_json, gzip_profile, kiln, post_proto,
    testdata,
};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// (service, test data file) of the two sides.
const LEFT: (&str, &str) = ("left", "pprof/sort.cpu.pb.gz");
const RIGHT: (&str, &str) = ("right", "pprof/regexp.cpu.pb.gz");

async fn push(server: &KilnServer, tenant: Option<&str>, (service, file): (&str, &str)) -> Profile {
    let bytes = std::fs::read(testdata(file)).unwrap();
    let mut request = reqwest::Client::new()
        .post(server.url(&format!(
            "/ingest?name={service}%7Benv%3D{service}-env%7D&format=pprof"
        )))
        .body(bytes.clone());
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    decode(&bytes)
}

fn select(service: &str) -> Value {
    json!({
        "profileTypeID": CPU,
        "labelSelector": format!("{{service_name=\"{service}\"}}"),
        "start": "0",
        "end": (UNTIL_SECONDS * 1000).to_string(),
        "maxNodes": "0",
    })
}

/// One side of a diff's levels (`[lOff, lTotal, lSelf, rOff, rTotal, rSelf, name]`) as a
/// flame graph's quadruples, without the nodes that side does not have.
fn side_levels(levels: &[Vec<i64>], side: usize) -> Vec<Vec<i64>> {
    levels
        .iter()
        .map(|level| {
            let (mut end, mut previous_end, mut out) = (0, 0, Vec::new());
            for node in level.chunks(7) {
                let values = &node[side * 3..side * 3 + 3];
                let x = end + values[0];
                end = x + values[1];
                if values[1] > 0 {
                    out.extend([x - previous_end, values[1], values[2], node[6]]);
                    previous_end = x + values[1];
                }
            }
            out
        })
        .collect()
}

fn json_levels(graph: &Value) -> Vec<Vec<i64>> {
    graph["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|level| {
            let values = level.get("values").unwrap_or(level);
            values.as_array().unwrap().iter().map(json_i64).collect()
        })
        .collect()
}

fn json_strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Per-function figures of a tree in Pyroscope's serialization (`format` TREE).
fn tree_function_totals(mut bytes: &[u8]) -> FunctionTotals {
    let mut totals = FunctionTotals::new();
    // (path, children left) of the nodes whose children are still to come.
    let mut parents: Vec<(Vec<String>, u64)> = Vec::new();
    while !bytes.is_empty() {
        let length = prost::encoding::decode_varint(&mut bytes).unwrap() as usize;
        let name = String::from_utf8(bytes[..length].to_vec()).unwrap();
        bytes = &bytes[length..];
        let self_value = prost::encoding::decode_varint(&mut bytes).unwrap() as i64;
        let children = prost::encoding::decode_varint(&mut bytes).unwrap();
        let mut path = Vec::new();
        if let Some((parent, left)) = parents.last_mut() {
            path = parent.clone();
            path.push(name);
            *left -= 1;
            if *left == 0 {
                parents.pop();
            }
        }
        if self_value > 0 {
            let leaf = path.last().unwrap().clone();
            totals.entry(leaf).or_default().0 += self_value;
            let distinct: std::collections::BTreeSet<&String> = path.iter().collect();
            for function in distinct {
                totals.entry(function.clone()).or_default().1 += self_value;
            }
        }
        if children > 0 {
            parents.push((path, children));
        }
    }
    totals
}

/// The boxes of a DOT graph in order: (function, flat, cum) from each box's tooltip; checks
/// that every edge joins two boxes.
fn dot_boxes(dot: &str) -> Vec<(String, i64, i64)> {
    assert!(dot.starts_with("digraph ") && dot.ends_with("}\n"), "{dot}");
    let mut boxes = Vec::new();
    for line in dot.lines() {
        if let Some((from, rest)) = line.split_once(" -> ") {
            let to = rest.split_whitespace().next().unwrap();
            for node in [from, to] {
                let index: usize = node.trim_start_matches('N').parse().unwrap();
                assert!(
                    (1..=boxes.len()).contains(&index),
                    "edge to a missing box: {line}"
                );
            }
        } else if let Some((id, rest)) = line.split_once(" [label=") {
            assert_eq!(id, format!("N{}", boxes.len() + 1));
            let tooltip = rest.split("tooltip=\"").nth(1).unwrap();
            let tooltip = &tooltip[..tooltip.find("\" ").unwrap()];
            let (name, figures) = tooltip.rsplit_once(" (flat ").unwrap();
            let (flat, cum) = figures.trim_end_matches(')').split_once(", cum ").unwrap();
            boxes.push((
                name.to_string(),
                flat.parse().unwrap(),
                cum.parse().unwrap(),
            ));
        }
    }
    boxes
}

/// The input's samples whose frames, root first, satisfy `keep`.
fn input_where(profile: &Profile, keep: impl Fn(&[String]) -> bool) -> Profile {
    let mut filtered = profile.clone();
    filtered.sample.retain(|sample| {
        let mut frames = sample_frames(profile, sample);
        frames.reverse();
        keep(&frames)
    });
    filtered
}

/// `go tool pprof -proto` with `flags` on the test data file `file`, decoded.
fn go_pprof(file: &str, flags: &[&str]) -> Profile {
    let output = Command::new("go")
        .args(["tool", "pprof", "-proto"])
        .args(flags)
        .arg(testdata(file))
        .output()
        .expect("go tool pprof runs (install Debian's golang-go)");
    assert!(
        output.status.success(),
        "go tool pprof: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    decode(&output.stdout)
}

/// SelectMergeProfile of `service` with a stack trace selector given in the JSON mapping,
/// asked over the protobuf codec for an exact pprof.
async fn merged_profile(server: &KilnServer, service: &str, selector: Value) -> Profile {
    let mut body = select(service);
    body["stackTraceSelector"] = selector;
    let request: kiln_proto::querier::v1::SelectMergeProfileRequest = kiln_proto::json::from_json(
        "querier.v1.SelectMergeProfileRequest",
        body.to_string().as_bytes(),
    )
    .unwrap();
    post_proto(
        server,
        "/querier.v1.QuerierService/SelectMergeProfile",
        &request,
    )
    .await
}

/// An all-in-one server flushing every 50 ms with the `LEFT` and `RIGHT` profiles pushed (no
/// tenant), and those profiles.
async fn server_with_both_services() -> (KilnServer, Profile, Profile) {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let left = push(&server, None, LEFT).await;
    let right = push(&server, None, RIGHT).await;
    (server, left, right)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_formats_selectors_and_pyroscope_endpoints_answer_exactly() {
    let (server, left, right) = server_with_both_services().await;
    let (left_totals, right_totals) = (
        pprof_function_totals(&left, 1),
        pprof_function_totals(&right, 1),
    );
    let sum = |totals: &FunctionTotals| totals.values().map(|(s, _)| s).sum::<i64>();

    // Diff: each side's ticks and functions are exactly its input's.
    let (status, answer) = connect(
        &server,
        "/querier.v1.QuerierService/Diff",
        json!({"left": select(LEFT.0), "right": select(RIGHT.0)}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let diff = &answer["flamegraph"];
    assert_eq!(json_i64(&diff["leftTicks"]), sum(&left_totals));
    assert_eq!(json_i64(&diff["rightTicks"]), sum(&right_totals));
    assert_eq!(
        json_i64(&diff["total"]),
        sum(&left_totals) + sum(&right_totals)
    );
    let names = json_strings(&diff["names"]);
    let levels = json_levels(diff);
    assert!(levels.iter().all(|level| level.len() % 7 == 0));
    assert_eq!(
        flamegraph_function_totals(&names, &side_levels(&levels, 0)),
        left_totals
    );
    assert_eq!(
        flamegraph_function_totals(&names, &side_levels(&levels, 1)),
        right_totals
    );
    // A side asking for no limit (0) wins over a side asking for 4 nodes.
    let mut small = select(RIGHT.0);
    small["maxNodes"] = json!("4");
    let (_, again) = connect(
        &server,
        "/querier.v1.QuerierService/Diff",
        json!({"left": select(LEFT.0), "right": small}),
    )
    .await;
    assert_eq!(json_levels(&again["flamegraph"]), levels);
    // render-diff answers the same diff as flamebearer `double`.
    let query = |service: &str| url_encode(&format!("{CPU}{{service_name=\"{service}\"}}"));
    let render_diff: Value = reqwest::get(server.url(&format!(
        "/pyroscope/render-diff?leftQuery={}&leftFrom=0&leftUntil={UNTIL_SECONDS}&rightQuery={}&rightFrom=0&rightUntil={UNTIL_SECONDS}&max-nodes=0",
        query(LEFT.0),
        query(RIGHT.0)
    )))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(render_diff["metadata"]["format"], "double");
    assert_eq!(json_i64(&render_diff["leftTicks"]), sum(&left_totals));
    assert_eq!(json_i64(&render_diff["rightTicks"]), sum(&right_totals));
    assert_eq!(json_levels(&render_diff["flamebearer"]), levels);
    assert_eq!(json_strings(&render_diff["flamebearer"]["names"]), names);
    let mismatched = reqwest::get(server.url(&format!(
        "/pyroscope/render-diff?leftQuery={}&rightQuery={}",
        query(LEFT.0),
        url_encode("memory:alloc_space:bytes:space:bytes{}")
    )))
    .await
    .unwrap();
    assert_eq!(mismatched.status(), 400);
    assert!(
        mismatched
            .text()
            .await
            .unwrap()
            .contains("profile types must match")
    );

    // TREE and PPROF formats of SelectMergeStacktraces.
    for format in [ProfileFormat::Tree, ProfileFormat::Pprof] {
        let request = SelectMergeStacktracesRequest {
            profile_type_id: CPU.to_string(),
            label_selector: format!("{{service_name=\"{}\"}}", LEFT.0),
            start: 0,
            end: UNTIL_SECONDS * 1000,
            max_nodes: Some(0),
            format: format as i32,
            ..Default::default()
        };
        let answer: SelectMergeStacktracesResponse = post_proto(
            &server,
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            &request,
        )
        .await;
        let totals = match format {
            ProfileFormat::Tree => tree_function_totals(&answer.tree),
            _ => pprof_function_totals(&answer.pprof.unwrap().profile.unwrap(), 0),
        };
        assert_eq!(totals, left_totals, "{format:?}");
    }

    // DOT: the 100 functions of largest cumulative value, each box with its exact figures;
    // the same graph from render?format=dot and from SelectMergeStacktraces format DOT.
    let dot = reqwest::get(server.url(&format!(
        "/pyroscope/render?query={}&from=0&until={UNTIL_SECONDS}&format=dot",
        url_encode(&format!("{CPU}{{service_name=\"{}\"}}", LEFT.0))
    )))
    .await
    .unwrap();
    assert_eq!(dot.status(), 200);
    assert_eq!(dot.headers()["content-type"], "text/vnd.graphviz");
    let dot = dot.text().await.unwrap();
    let boxes = dot_boxes(&dot);
    let mut ranked: Vec<(&String, &(i64, i64))> = left_totals.iter().collect();
    ranked.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(b.0)));
    let expected: Vec<(String, i64, i64)> = ranked
        .iter()
        .take(100)
        .map(|(name, (flat, cum))| (name.to_string(), *flat, *cum))
        .collect();
    assert_eq!(boxes, expected);
    let request = SelectMergeStacktracesRequest {
        profile_type_id: CPU.to_string(),
        label_selector: format!("{{service_name=\"{}\"}}", LEFT.0),
        start: 0,
        end: UNTIL_SECONDS * 1000,
        format: ProfileFormat::Dot as i32,
        ..Default::default()
    };
    let answer: SelectMergeStacktracesResponse = post_proto(
        &server,
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        &request,
    )
    .await;
    assert_eq!(answer.dot, dot);

    // Stack selectors: the frame filter as `go tool pprof -focus` and `-ignore` cut the same
    // input, and a call site keeps exactly the stacks starting with it.
    let focused = merged_profile(
        &server,
        LEFT.0,
        json!({"frameFilter": {"includeFunctionNameRegexes": ["^sort\\.insertionSort"]}}),
    )
    .await;
    let expected =
        pprof_function_totals(&go_pprof(LEFT.1, &["-focus", "^sort\\.insertionSort"]), 1);
    assert!(!expected.is_empty());
    assert_eq!(pprof_function_totals(&focused, 0), expected);
    let ignored = merged_profile(
        &server,
        LEFT.0,
        json!({"frameFilter": {"excludeFunctionNameRegexes": ["^sort\\.insertionSort"]}}),
    )
    .await;
    let expected =
        pprof_function_totals(&go_pprof(LEFT.1, &["-ignore", "^sort\\.insertionSort"]), 1);
    assert_eq!(pprof_function_totals(&ignored, 0), expected);
    // The call site: the two root frames of the input's largest sample.
    let largest = left.sample.iter().max_by_key(|s| s.value[1]).unwrap();
    let mut frames = sample_frames(&left, largest);
    frames.reverse();
    let call_site = frames[..2].to_vec();
    let mut body = select(LEFT.0);
    body["stackTraceSelector"] =
        json!({"callSite": call_site.iter().map(|name| json!({"name": name})).collect::<Vec<_>>()});
    let (status, answer) = connect(
        &server,
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let expected = pprof_function_totals(
        &input_where(&left, |frames| frames.starts_with(&call_site)),
        1,
    );
    assert!(
        sum(&expected) < sum(&left_totals),
        "the call site keeps only some stacks"
    );
    assert_eq!(json_flamegraph_figures(&answer["flamegraph"]).1, expected);

    // Pyroscope's HTTP label endpoints agree with the Connect calls.
    let range = format!("from=0&until={UNTIL_SECONDS}");
    let get = |path: String| {
        let url = server.url(&path);
        async move {
            let response = reqwest::get(url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, body) = get(format!(
        "/pyroscope/labels?query={}&{range}",
        url_encode("{service_name=\"left\"}")
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, names) = connect(
        &server,
        "/querier.v1.QuerierService/LabelNames",
        json!({"matchers": ["{service_name=\"left\"}"], "start": "0", "end": (UNTIL_SECONDS * 1000).to_string()}),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        names["names"]
    );
    assert!(body.contains("\"env\""), "{body}");
    let (status, body) = get(format!(
        "/pyroscope/label-values?label=service_name&{range}"
    ))
    .await;
    assert_eq!((status, body.as_str()), (200, "[\"left\",\"right\"]"));
    let (status, body) = get(format!(
        "/pyroscope/label-values?label=env&query={}&{range}",
        url_encode(&format!("{CPU}{{service_name=\"right\"}}"))
    ))
    .await;
    assert_eq!((status, body.as_str()), (200, "[\"right-env\"]"));
    let (status, body) = get(format!("/pyroscope/label-values?label=__name__&{range}")).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "[\"process_cpu:cpu:nanoseconds:cpu:nanoseconds\",\"process_cpu:samples:count:cpu:nanoseconds\"]"
        )
    );
    let (status, body) = get(format!("/pyroscope/label-values?{range}")).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "label parameter is required\n")
    );

    // render with groupBy: one timeline per service, each adding up to its input.
    let render: Value = reqwest::get(server.url(&format!(
        "/pyroscope/render?query={}&{range}&groupBy=service_name&aggregation=sum",
        url_encode(&format!("{CPU}{{}}"))
    )))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let samples = |timeline: &Value| -> i64 {
        timeline["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(json_i64)
            .sum()
    };
    let groups = render["groups"].as_object().unwrap();
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["left", "right"]);
    assert_eq!(samples(&groups["left"]), sum(&left_totals));
    assert_eq!(samples(&groups["right"]), sum(&right_totals));
    assert_eq!(
        samples(&render["timeline"]),
        sum(&left_totals) + sum(&right_totals)
    );

    // AnalyzeQuery reads the index: the left service's dataset in one segment, with a profile
    // row for each of the pprof's two sample types (the index counts a dataset's rows of every
    // type).
    let (status, analysis) = connect(
        &server,
        "/querier.v1.QuerierService/AnalyzeQuery",
        json!({"start": "0", "end": (UNTIL_SECONDS * 1000).to_string(), "query": format!("{CPU}{{service_name=\"left\"}}")}),
    )
    .await;
    assert_eq!(status, 200, "{analysis}");
    let segments = &analysis["queryScopes"][0];
    assert_eq!(segments["componentType"], "Segments");
    assert_eq!(json_i64(&segments["blockCount"]), 1);
    assert_eq!(json_i64(&segments["profileCount"]), 2);
    assert!(json_i64(&segments["profileBytes"]) > 0);
    assert_eq!(
        json_i64(&analysis["queryImpact"]["totalBytesInTimeRange"]),
        json_i64(&segments["profileBytes"])
    );

    // What Profiles Drilldown calls on start; SelectHeatmap names itself as unimplemented.
    for path in [
        "/settings.v1.SettingsService/Get",
        "/settings.v1.RecordingRulesService/ListRecordingRules",
    ] {
        assert_eq!(
            connect(&server, path, json!({})).await,
            (200, json!({})),
            "{path}"
        );
    }
    let (status, answer) = connect(
        &server,
        "/querier.v1.QuerierService/SelectHeatmap",
        json!({}),
    )
    .await;
    assert_eq!(status, 501);
    assert_eq!(answer["code"], "unimplemented");
    assert_eq!(
        answer["message"],
        "SelectHeatmap is not implemented by Kiln"
    );

    // Connect answers gzip to a client that accepts it.
    let response = reqwest::Client::new()
        .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .header("accept-encoding", "gzip")
        .body(select(LEFT.0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&response.bytes().await.unwrap()[..]),
        &mut text,
    )
    .unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json_flamegraph_figures(&answer["flamegraph"]).1,
        left_totals
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_query_limits_refuse_or_shorten_ranges() {
    let kiln = kiln();
    let runtime = kiln.data_dir().join("runtime.yaml");
    std::fs::write(
        &runtime,
        "overrides:\n  short:\n    max_query_length: 1d\n  recent:\n    max_query_lookback: 1h\n",
    )
    .unwrap();
    let server = kiln
        .arg("--auth.multitenancy-enabled")
        .arg("--ingester.flush-interval=50ms")
        .arg(format!("--runtime-config={}", runtime.display()))
        .start()
        .await
        .unwrap();
    let mut totals = BTreeMap::new();
    for tenant in ["short", "recent", "open"] {
        let profile = push(&server, Some(tenant), LEFT).await;
        totals.insert(tenant, pprof_function_totals(&profile, 1));
    }
    let total = |tenant: &str| totals[tenant].values().map(|(s, _)| s).sum::<i64>();

    // Over the tenant's max_query_length: refused, naming the limit.
    let response = reqwest::Client::new()
        .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .header("X-Scope-OrgID", "short")
        .body(select(LEFT.0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("tenant short: query range of "),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .ends_with("is over max_query_length 1day"),
        "{answer}"
    );
    // Within it: answered.
    let now_millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (status, stats) = {
        let response = reqwest::Client::new()
            .post(server.url("/querier.v1.QuerierService/GetProfileStats"))
            .header("content-type", "application/json")
            .header("X-Scope-OrgID", "short")
            .body("{}")
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    let oldest = json_i64(&stats["oldestProfileTime"]);
    let mut body = select(LEFT.0);
    body["start"] = json!((oldest - 60_000).to_string());
    body["end"] = json!((oldest + 3_600_000).to_string());
    let response = reqwest::Client::new()
        .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .header("X-Scope-OrgID", "short")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(json_i64(&answer["flamegraph"]["total"]), total("short"));

    // The test data is days old: past the recent tenant's lookback of an hour, so its query
    // is answered empty, while the same query of another tenant sees everything.
    assert!(now_millis - oldest > 3_600_000);
    let recent = flamegraph_json(&server, Some("recent"), CPU, LEFT.0, 0).await;
    assert_eq!(json_i64(&recent["total"]), 0);
    let open = flamegraph_json(&server, Some("open"), CPU, LEFT.0, 0).await;
    assert_eq!(json_i64(&open["total"]), total("open"));
}

/// The value of the metric sample `series` (name and labels as exposed) on `/metrics`, 0 when
/// absent.
pub(crate) async fn metric(server: &KilnServer, series: &str) -> u64 {
    let text = server.metrics_text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// A CPU flame graph of every service (the selector `{}`), checked to answer 200.
async fn flame_graph_of_every_service(server: &KilnServer) {
    let mut body = select(LEFT.0);
    body["labelSelector"] = json!("{}");
    let (status, _) = connect(
        server,
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        body,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_calls_read_series_sections_not_samples() {
    let (server, _, _) = server_with_both_services().await;
    let series_bytes = r#"kiln_querier_fetched_bytes_total{what="series"}"#;
    let region_bytes = r#"kiln_querier_fetched_bytes_total{what="regions"}"#;
    let series_hits = r#"kiln_querier_cache_requests_total{cache="series",result="hit"}"#;
    let values =
        json!({"name": "service_name", "start": "0", "end": (UNTIL_SECONDS * 1000).to_string()});

    let (status, answer) = connect(
        &server,
        "/querier.v1.QuerierService/LabelValues",
        values.clone(),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"names": ["left", "right"]})));
    let label_read = metric(&server, series_bytes).await;
    assert!(label_read > 0);
    assert_eq!(
        metric(&server, region_bytes).await,
        0,
        "no region was read whole"
    );
    // Asked again, from the cache: nothing more is read.
    let (status, _) = connect(&server, "/querier.v1.QuerierService/LabelValues", values).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&server, series_bytes).await, label_read);
    assert_eq!(metric(&server, series_hits).await, 2);

    // A flame graph of both services reads their profiles, symbols and samples: several times
    // the bytes.
    flame_graph_of_every_service(&server).await;
    let mut flame_read = 0;
    for what in ["head", "footer", "symbols", "samples"] {
        let series = format!(r#"kiln_querier_fetched_bytes_total{{what="{what}"}}"#);
        flame_read += metric(&server, &series).await;
    }
    assert!(
        label_read * 4 < flame_read,
        "label values read {label_read} bytes, the flame graph {flame_read}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_calls_after_a_flame_graph_take_the_series_from_its_cached_heads() {
    let (server, _, _) = server_with_both_services().await;
    flame_graph_of_every_service(&server).await;
    let head_hits = r#"kiln_querier_cache_requests_total{cache="head",result="hit"}"#;
    let hits_before = metric(&server, head_hits).await;

    let values =
        json!({"name": "service_name", "start": "0", "end": (UNTIL_SECONDS * 1000).to_string()});
    let answer = connect(&server, "/querier.v1.QuerierService/LabelValues", values).await;
    assert_eq!(answer, (200, json!({"names": ["left", "right"]})));
    let series_read = r#"kiln_querier_fetched_bytes_total{what="series"}"#;
    assert_eq!(
        metric(&server, series_read).await,
        0,
        "no series section read"
    );
    assert!(metric(&server, head_hits).await > hits_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_calls_read_the_series_sections_at_the_ranges_the_index_records() {
    // No series section stays cached: each label call reads the sections again, each exactly
    // at the range the block index records, without the regions' tables of contents.
    let server = kiln()
        .args([
            "--ingester.flush-interval=50ms",
            "--querier.series-cache-bytes=0",
        ])
        .start()
        .await
        .unwrap();
    push(&server, None, LEFT).await;
    push(&server, None, RIGHT).await;
    let fetched = |what: &str| format!(r#"kiln_querier_fetched_bytes_total{{what="{what}"}}"#);
    let values =
        json!({"name": "service_name", "start": "0", "end": (UNTIL_SECONDS * 1000).to_string()});
    let call = || {
        connect(
            &server,
            "/querier.v1.QuerierService/LabelValues",
            values.clone(),
        )
    };
    // The series sections of every region, as the index records them (one region per segment).
    let recorded: u64 = crate::support::registered_blocks(&server)
        .await
        .iter()
        .map(|block| {
            let first = &block.datasets[0];
            assert!(first.series_length > 0);
            assert!(
                block
                    .datasets
                    .iter()
                    .all(|d| d.series_offset == first.series_offset)
            );
            first.series_length
        })
        .sum();

    assert_eq!(call().await, (200, json!({"names": ["left", "right"]})));
    assert_eq!(metric(&server, &fetched("series")).await, recorded);
    assert_eq!(call().await, (200, json!({"names": ["left", "right"]})));
    assert_eq!(metric(&server, &fetched("series")).await, 2 * recorded);
    assert_eq!(
        metric(&server, &fetched("directory")).await,
        0,
        "no table of contents read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_many_segments_run_in_parts_and_count_retried_pushes_once() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let mut profile = decode(&std::fs::read(testdata(LEFT.1)).unwrap());
    let single = pprof_function_totals(&profile, 1);
    let base = profile.time_nanos;
    // Ten profiles ten seconds apart, each acknowledged before the next is sent (a segment
    // each); the fourth and the eighth sent twice under the same id, as a retry would.
    for i in [0u8, 1, 2, 3, 3, 4, 5, 6, 7, 7, 8, 9] {
        profile.time_nanos = base + i64::from(i) * 10_000_000_000;
        let request = crate::support::push_request(
            &[("service_name", "parts"), ("__name__", "process_cpu")],
            &gzip_profile(&profile),
            &format!("profile-{i}"),
        );
        let _: PushResponse = post_proto(&server, "/push.v1.PusherService/Push", &request).await;
    }
    // One more push of two profiles, 5 s and 95 s after the first: one segment spanning
    // every window, read by each part, each profile counted by the part of its time only.
    let mut samples = Vec::new();
    for (offset, id) in [(5, "span-a"), (95, "span-b")] {
        profile.time_nanos = base + offset * 1_000_000_000;
        samples.push(kiln_proto::push::v1::RawSample {
            raw_profile: gzip_profile(&profile),
            id: id.to_string(),
        });
    }
    let mut request = crate::support::push_request(
        &[("service_name", "parts"), ("__name__", "process_cpu")],
        &bytes::Bytes::new(),
        "",
    );
    request.series[0].samples = samples;
    let _: PushResponse = post_proto(&server, "/push.v1.PusherService/Push", &request).await;
    let before = metric(&server, "kiln_querier_parts_executed_total").await;
    let graph = flamegraph_json(&server, None, CPU, "parts", 0).await;
    let parts = metric(&server, "kiln_querier_parts_executed_total").await - before;
    assert!(
        parts >= 3,
        "thirteen segments of four blocks per part: {parts} parts"
    );
    let expected: FunctionTotals = single
        .into_iter()
        .map(|(name, (self_value, total))| (name, (12 * self_value, 12 * total)))
        .collect();
    assert_eq!(json_flamegraph_figures(&graph).1, expected);
}
