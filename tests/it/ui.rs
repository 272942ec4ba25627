//! The web UI in headless Chromium (tests/ui/browser_test.py, Playwright driving Debian's
//! chromium) against a server with tokens holding real Go CPU profiles and generated heap
//! profiles with a leak, checked against figures computed here from the uploaded files; and
//! the UI's pure modules under Node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kiln_proto::google::v1::{Function, Label, Line, Location, Profile, Sample, ValueType};
use serde_json::{Value, json};

use crate::security::server_with_tokens;
use crate::support::heap::{MIB, leak_series};
use crate::support::reference::{FunctionTotals, pprof_function_totals, sample_frames};
use crate::support::{decode, gzip_profile, input_totals, testdata};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const WRITER: &str = "writer-of-tenant-ui-0123456789";
const READER: &str = "reader-of-tenant-ui-0123456789";
const SPAN: &str = "00000000000000aa";

/// Where the test leaves its screenshots: `test-artifacts/ui` in the workspace (CI keeps
/// the folder), or `KILN_TEST_ARTIFACTS/ui`.
fn artifacts() -> PathBuf {
    let root = std::env::var_os("KILN_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| kiln_testkit::workspace_dir().join("test-artifacts"));
    root.join("ui")
}

/// The uploaded Go profiles: (file, env label).
const FILES: [(&str, &str); 3] = [
    ("pprof/regexp.cpu.pb.gz", "prod"),
    ("pprof/strings.cpu.pb.gz", "prod"),
    ("pprof/sort.cpu.pb.gz", "dev"),
];

/// A CPU profile taken now whose samples carry span ids: 30 + 20 ms in span `SPAN`, 40 ms in
/// another.
fn traced_profile(now_nanos: i64) -> Profile {
    let strings: Vec<String> = [
        "",
        "cpu",
        "nanoseconds",
        "span_id",
        SPAN,
        "00000000000000bb",
        "main",
        "handler",
        "work",
        "db",
        "idle",
    ]
    .map(String::from)
    .to_vec();
    let functions: Vec<Function> = (6..=10)
        .map(|name| Function {
            id: name as u64,
            name,
            ..Function::default()
        })
        .collect();
    let locations: Vec<Location> = functions
        .iter()
        .map(|f| Location {
            id: f.id,
            line: vec![Line {
                function_id: f.id,
                ..Line::default()
            }],
            ..Location::default()
        })
        .collect();
    // Leaf first, as pprof lists them.
    let sample = |stack: &[u64], value: i64, span: i64| Sample {
        location_id: stack.to_vec(),
        value: vec![value],
        label: vec![Label {
            key: 3,
            str: span,
            ..Label::default()
        }],
    };
    let cpu = ValueType { r#type: 1, unit: 2 };
    Profile {
        sample_type: vec![cpu],
        sample: vec![
            sample(&[8, 7, 6], 30_000_000, 4),
            sample(&[9, 7, 6], 20_000_000, 4),
            sample(&[10, 6], 40_000_000, 5),
        ],
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos: now_nanos,
        duration_nanos: 10_000_000_000,
        period_type: Some(cpu),
        period: 10_000_000,
        ..Profile::default()
    }
}

/// A function to click whose first frame is unambiguous: every stack reaches it by the same
/// path, so its lowest, leftmost frame has that stack whatever the layout's order. The one
/// with the largest total at depth 3 or more; its stack root first.
fn click_target(profiles: &[Profile]) -> (String, Vec<String>) {
    let mut paths: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for profile in profiles {
        for sample in &profile.sample {
            if sample.value[1] == 0 {
                continue;
            }
            let mut frames = sample_frames(profile, sample);
            frames.reverse();
            let mut seen = BTreeSet::new();
            for (depth, name) in frames.iter().enumerate() {
                if seen.insert(name.clone()) {
                    paths
                        .entry(name.clone())
                        .or_default()
                        .insert(frames[..=depth].to_vec());
                    *totals.entry(name.clone()).or_default() += sample.value[1];
                }
            }
        }
    }
    let (name, path) = paths
        .into_iter()
        .filter(|(_, paths)| paths.len() == 1)
        .map(|(name, paths)| (name, paths.into_iter().next().unwrap()))
        .filter(|(_, path)| path.len() >= 3)
        .max_by_key(|(name, _)| (totals[name], std::cmp::Reverse(name.clone())))
        .expect("a function reached by one path");
    (name, path)
}

fn merged(totals: &[FunctionTotals]) -> FunctionTotals {
    let mut sum = FunctionTotals::new();
    for figures in totals {
        for (name, (self_value, total)) in figures {
            let entry = sum.entry(name.clone()).or_default();
            entry.0 += self_value;
            entry.1 += total;
        }
    }
    sum
}

async fn ingest(server: &crate::support::KilnServer, name: &str, body: Vec<u8>) {
    let response = reqwest::Client::new()
        .post(server.url("/ingest"))
        .query(&[("name", name), ("format", "pprof")])
        .bearer_auth(WRITER)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn venv_python() -> PathBuf {
    kiln_testkit::workspace_dir().join("tests/ui/.venv/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_exactly_what_was_uploaded_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tokens(
        dir.path(),
        &[
            (WRITER, "tenant-ui", &["write"]),
            (READER, "tenant-ui", &["read"]),
        ],
    )
    .await;

    let mut by_env: BTreeMap<&str, (i64, Vec<FunctionTotals>)> = BTreeMap::new();
    let mut profiles = Vec::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for (file, env) in FILES {
        let bytes = std::fs::read(testdata(file)).unwrap();
        let profile = decode(&bytes);
        first = first.min(profile.time_nanos);
        last = last.max(profile.time_nanos + profile.duration_nanos);
        let entry = by_env.entry(env).or_default();
        entry.0 += input_totals(&profile)[CPU];
        entry.1.push(pprof_function_totals(&profile, 1));
        ingest(&server, &format!("checkout{{env={env}}}"), bytes).await;
        profiles.push(profile);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    ingest(
        &server,
        "traced",
        gzip_profile(&traced_profile(now)).to_vec(),
    )
    .await;

    // Heap profiles of the last half hour in which one function leaks.
    for profile in leak_series(now / 60_000_000_000) {
        ingest(&server, "leaky-app", gzip_profile(&profile).to_vec()).await;
    }

    let functions = merged(
        &by_env
            .values()
            .flat_map(|(_, figures)| figures.clone())
            .collect::<Vec<_>>(),
    );
    let mut top: Vec<(&String, &(i64, i64))> = functions.iter().filter(|(_, v)| v.0 > 0).collect();
    top.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    let (click_function, click_stack) = click_target(&profiles);
    let search = "regexp";
    let search_matches = functions
        .keys()
        .filter(|name| name.to_lowercase().contains(search))
        .count();
    let from = (first / 1_000_000_000 - 60).to_string();
    let until = (last / 1_000_000_000 + 60).to_string();
    let checkout = |selector: &str| format!("{CPU}{{service_name=\"checkout\"{selector}}}");
    let expectations = json!({
        "query": checkout(""),
        "from": from,
        "until": until,
        "total": by_env.values().map(|(total, _)| total).sum::<i64>(),
        "top": top.iter().take(5).map(|(name, (self_value, total))| json!({
            "function": name, "self": self_value, "total": total,
        })).collect::<Vec<Value>>(),
        "click_function": click_function,
        "click_stack": click_stack,
        "search": search,
        "search_matches": search_matches,
        "diff": {
            "leftQuery": checkout(",env=\"prod\""),
            "leftFrom": from,
            "leftUntil": until,
            "rightQuery": checkout(",env=\"dev\""),
            "rightFrom": from,
            "rightUntil": until,
            "leftTicks": by_env["prod"].0,
            "rightTicks": by_env["dev"].0,
        },
        "span": {
            "spanSelector": SPAN,
            "query": format!("{CPU}{{service_name=\"traced\"}}"),
            "from": "now-1h",
            "until": "now+1h",
            "total": 50_000_000,
        },
        "leaks": {
            "open_query": "memory:alloc_space:bytes:space:bytes{service_name=\"leaky-app\"}",
            "query": "memory:inuse_space:bytes:space:bytes{service_name=\"leaky-app\"}",
            "from": "now-1h",
            "until": "now",
            "first_function": "leaky",
            "first": 10 * MIB,
            "last": 39 * MIB,
            "absent": ["steady", "sawtooth"],
        },
    });
    let expect = dir.path().join("expect.json");
    std::fs::write(&expect, serde_json::to_vec_pretty(&expectations).unwrap()).unwrap();
    let screenshots = artifacts();
    std::fs::create_dir_all(&screenshots).unwrap();

    let script = kiln_testkit::workspace_dir().join("tests/ui/browser_test.py");
    let output = tokio::process::Command::new(venv_python())
        .arg(&script)
        .arg("--url")
        .arg(format!("http://{}", server.http_addr()))
        .arg("--expect")
        .arg(&expect)
        .arg("--screenshots")
        .arg(&screenshots)
        .arg("--token")
        .arg(READER)
        .output()
        .await
        .expect("tests/ui/.venv: run bash .ci/test once to install Playwright");
    assert!(
        output.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for shot in [
        "flamegraph.png",
        "diff.png",
        "span.png",
        "leaks.png",
        "dark.png",
    ] {
        let size = std::fs::metadata(screenshots.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot} is {size} bytes");
    }
}

#[test]
fn the_ui_modules_pass_their_unit_tests_under_node() {
    let tests = kiln_testkit::workspace_dir().join("tests/ui/unit_test.mjs");
    let output = std::process::Command::new("node")
        .arg("--test")
        .arg(&tests)
        .output()
        .expect("node runs the UI's unit tests");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
