//! Every /ingest format through the real binary: JFR checked against the JDK's own `jfr print`,
//! folded and lines round trips, legacy names, and cumulative pprof with prev_profile.

use std::collections::BTreeMap;
use std::process::Command;

use prost::Message;
use serde_json::{Value, json};

use crate::support::reference::{FunctionTotals, json_flamegraph_figures, pprof_function_totals};
use crate::support::{KilnServer, UNTIL_SECONDS, decode, go_profiles, kiln, testdata};

async fn graph(server: &KilnServer, profile_type: &str, selector: &str) -> (i64, FunctionTotals) {
    let body = json!({
        "profileTypeID": profile_type,
        "labelSelector": selector,
        "start": "0",
        "end": (UNTIL_SECONDS * 1000).to_string(),
        "maxNodes": "0",
    });
    let answer: Value = reqwest::Client::new()
        .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    json_flamegraph_figures(&answer["flamegraph"])
}

fn leaf_selfs(functions: &FunctionTotals) -> BTreeMap<String, i64> {
    functions
        .iter()
        .filter(|(_, (s, _))| *s != 0)
        .map(|(n, (s, _))| (n.clone(), *s))
        .collect()
}

/// ISO-8601 durations as `jfr print` writes them (`PT0.000001599S`, `PT1M2.5S`) in nanoseconds.
fn iso_duration_nanos(text: &str) -> i64 {
    let mut rest = text.strip_prefix("PT").expect("a PT duration");
    let mut nanos: i64 = 0;
    while !rest.is_empty() {
        let end = rest.find(|c: char| c.is_ascii_alphabetic()).unwrap();
        let (number, unit) = (&rest[..end], &rest[end..end + 1]);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let fraction_nanos: i64 = format!("{fraction:0<9}")[..9].parse().unwrap();
        let unit_nanos = match unit {
            "H" => 3_600_000_000_000,
            "M" => 60_000_000_000,
            "S" => 1_000_000_000,
            other => panic!("unit {other}"),
        };
        nanos += whole.parse::<i64>().unwrap() * unit_nanos
            + fraction_nanos * unit_nanos / 1_000_000_000;
        rest = &rest[end + 1..];
    }
    nanos
}

/// Per top frame (`class.method` as recorded): (events, sum of `field`), from `jfr print --json`.
fn jfr_print_top_frames(
    file: &std::path::Path,
    event: &str,
    field: Option<&str>,
) -> BTreeMap<String, (i64, i64)> {
    let output = Command::new("jfr")
        .args(["print", "--json", "--events", event])
        .arg(file)
        .output()
        .expect("the JDK's jfr tool runs (install Debian's default-jdk-headless)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in printed["recording"]["events"].as_array().unwrap() {
        let values = &e["values"];
        let top = values["stackTrace"]["frames"]
            .as_array()
            .and_then(|f| f.first())
            .map(|f| {
                format!(
                    "{}.{}",
                    f["method"]["type"]["name"].as_str().unwrap(),
                    f["method"]["name"].as_str().unwrap()
                )
            })
            .unwrap_or_default();
        let value = match field {
            None => 0,
            Some("duration") => iso_duration_nanos(values["duration"].as_str().unwrap()),
            Some(name) => values[name].as_i64().unwrap(),
        };
        let entry = out.entry(top).or_default();
        entry.0 += 1;
        entry.1 += value;
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jfr_totals_match_the_jdks_own_reading() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let file = testdata("jfr/java17-cpu-alloc-locks.jfr");
    let recording = std::fs::read(&file).unwrap();
    // As the Java agent sends it: gzipped in the multipart field `jfr`.
    let form = reqwest::multipart::Form::new().part(
        "jfr",
        reqwest::multipart::Part::bytes(gzip(&recording)).file_name("jfr"),
    );
    let response = reqwest::Client::new()
        .post(server.url("/ingest?name=java-app%7Benv%3Dtest%7D&format=jfr&sampleRate=100&spyName=javaspy&from=1795700000&until=1795700010"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let selector = "{service_name=\"java-app\"}";
    let cases = [
        (
            "jdk.ExecutionSample",
            None,
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        ),
        (
            "jdk.ObjectAllocationInNewTLAB",
            None,
            "memory:alloc_in_new_tlab_objects:count:space:bytes",
        ),
        (
            "jdk.ObjectAllocationInNewTLAB",
            Some("tlabSize"),
            "memory:alloc_in_new_tlab_bytes:bytes:space:bytes",
        ),
        (
            "jdk.ObjectAllocationOutsideTLAB",
            None,
            "memory:alloc_outside_tlab_objects:count:space:bytes",
        ),
        (
            "jdk.ObjectAllocationOutsideTLAB",
            Some("allocationSize"),
            "memory:alloc_outside_tlab_bytes:bytes:space:bytes",
        ),
        (
            "jdk.ObjectAllocationSample",
            None,
            "memory:alloc_sample_objects:count:space:bytes",
        ),
        (
            "jdk.ObjectAllocationSample",
            Some("weight"),
            "memory:alloc_sample_bytes:bytes:space:bytes",
        ),
        (
            "jdk.JavaMonitorEnter",
            None,
            "mutex:contentions:count:mutex:count",
        ),
        (
            "jdk.JavaMonitorEnter",
            Some("duration"),
            "mutex:delay:nanoseconds:mutex:count",
        ),
        (
            "jdk.ThreadPark",
            None,
            "block:contentions:count:block:count",
        ),
        (
            "jdk.ThreadPark",
            Some("duration"),
            "block:delay:nanoseconds:block:count",
        ),
    ];
    for (event, field, profile_type) in cases {
        let printed = jfr_print_top_frames(&file, event, field);
        let expected: BTreeMap<String, i64> = printed
            .iter()
            .filter(|(top, _)| !top.is_empty())
            .map(|(top, (count, sum))| {
                let value = match (field, event) {
                    (None, "jdk.ExecutionSample") => count * 10_000_000,
                    (None, _) => *count,
                    (Some(_), _) => *sum,
                };
                (top.clone(), value)
            })
            .filter(|(_, v)| *v != 0)
            .collect();
        let expected_total: i64 = printed
            .values()
            .map(|(count, sum)| match (field, event) {
                (None, "jdk.ExecutionSample") => count * 10_000_000,
                (None, _) => *count,
                (Some(_), _) => *sum,
            })
            .sum();
        let (total, functions) = graph(&server, profile_type, selector).await;
        assert_eq!(total, expected_total, "{profile_type}: total");
        assert_eq!(
            leaf_selfs(&functions),
            expected,
            "{profile_type}: per top frame"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folded_lines_and_legacy_names_round_trip() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let post = |query: &str, body: &'static str| {
        client
            .post(server.url(&format!("/ingest?{query}")))
            .body(body)
            .send()
    };
    let folded = "main;work;leaf 3\nmain;work 2\nmain;other;leaf 5\n";
    // No format and a plain body means folded; app.cpu with sampleRate=100 is CPU time.
    let response = post(
        "name=shop.cpu%7Benv%3Dprod%7D&sampleRate=100&from=1795700000",
        folded,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = post(
        "name=shop.alloc_space&format=folded&from=1795700000",
        folded,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let response = post(
        "name=shop.mutex_count&format=lines&from=1795700000",
        "main;lock\nmain;lock\nmain;wait\n",
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    let (total, functions) = graph(
        &server,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "{service_name=\"shop\", env=\"prod\"}",
    )
    .await;
    assert_eq!(total, 10 * 10_000_000);
    assert_eq!(functions["leaf"], (8 * 10_000_000, 8 * 10_000_000));
    assert_eq!(functions["work"], (2 * 10_000_000, 5 * 10_000_000));
    assert_eq!(functions["main"], (0, 10 * 10_000_000));

    let (total, functions) = graph(
        &server,
        "memory:alloc_space:bytes::",
        "{service_name=\"shop\"}",
    )
    .await;
    assert_eq!(total, 10);
    assert_eq!(functions["leaf"], (8, 8));

    let (total, functions) = graph(
        &server,
        "mutex:contentions:count::",
        "{service_name=\"shop\"}",
    )
    .await;
    assert_eq!(total, 3);
    assert_eq!(functions["lock"], (2, 2));

    // Unknown suffixes and malformed counts are 400 with the reason.
    let bad = post("name=my.service&format=folded", folded).await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("unknown profile type \"service\"")
    );
    let bad = post("name=app.cpu", "a;b 1.5\n").await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("is not an integer count")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_profile_turns_cumulative_heap_profiles_into_deltas() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let (_, gzipped) = go_profiles()
        .into_iter()
        .find(|(n, _)| n == "go_parser.heap.pb.gz")
        .unwrap();
    let current = decode(&gzipped);
    // The previous profile: the same stacks with a third of their allocations, rounded down.
    let mut previous = current.clone();
    for sample in &mut previous.sample {
        sample.value[0] /= 3;
        sample.value[1] /= 3;
    }
    let config = r#"{"alloc_objects":{"units":"objects","cumulative":true},"alloc_space":{"units":"bytes","cumulative":true},"inuse_objects":{"units":"objects","aggregation":"average"},"inuse_space":{"units":"bytes","aggregation":"average"}}"#;
    let form = reqwest::multipart::Form::new()
        .part(
            "profile",
            reqwest::multipart::Part::bytes(gzipped.to_vec()).file_name("profile.pprof"),
        )
        .part(
            "prev_profile",
            reqwest::multipart::Part::bytes(gzip(&previous.encode_to_vec()))
                .file_name("profile.pprof"),
        )
        .part(
            "sample_type_config",
            reqwest::multipart::Part::bytes(config.as_bytes().to_vec())
                .file_name("sample_type_config.json"),
        );
    let response = reqwest::Client::new()
        .post(server.url("/ingest?name=heap-app&spyName=gospy"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // Alloc types store current − previous per stack; inuse types are stored as sent.
    let mut delta = current.clone();
    for (sample, before) in delta.sample.iter_mut().zip(&previous.sample) {
        sample.value[0] -= before.value[0];
        sample.value[1] -= before.value[1];
    }
    let selector = "{service_name=\"heap-app\"}";
    for (index, profile_type, reference) in [
        (0, "memory:alloc_objects:count:space:bytes", &delta),
        (1, "memory:alloc_space:bytes:space:bytes", &delta),
        (2, "memory:inuse_objects:count:space:bytes", &current),
        (3, "memory:inuse_space:bytes:space:bytes", &current),
    ] {
        let (_, functions) = graph(&server, profile_type, selector).await;
        assert_eq!(
            functions,
            pprof_function_totals(reference, index),
            "{profile_type}"
        );
    }
}
