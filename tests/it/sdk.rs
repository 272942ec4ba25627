//! The real Pyroscope SDKs push to Kiln and their functions show up in flame graphs.
//! `.ci/test` installs them: a virtualenv in tests/sdk/.venv and npm packages in tests/sdk.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::reference::json_i64;
use crate::support::{KilnServer, kiln};

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk")
}

/// Runs an SDK script for a few seconds; both SDKs upload every second and on exit.
fn run_sdk(program: &Path, script: &str, server: &KilnServer, app: &str) {
    let output = Command::new(program)
        .arg(script)
        .args([&server.url(""), app, "3"])
        .current_dir(sdk_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (run .ci/test to install the SDKs): {e}",
                program.display()
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    // The SDKs never fail on rejected uploads; they only log them.
    for marker in ["rejected", "failed"] {
        assert!(
            !stderr.contains(marker),
            "{script} reported an upload problem: {stderr}"
        );
    }
}

/// Function names of the flame graph of every profile type of `service` named `name_prefix`.
async fn flame_graph_names(
    server: &KilnServer,
    service: &str,
    name_prefix: &str,
) -> Vec<(String, Vec<String>, i64)> {
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let range = |mut body: Value| {
        body["start"] = json!((now - 3_600_000).to_string());
        body["end"] = json!((now + 60_000).to_string());
        body
    };
    let series: Value = client
        .post(server.url("/querier.v1.QuerierService/Series"))
        .header("content-type", "application/json")
        .body(range(json!({"matchers": [format!("{{service_name=\"{service}\"}}")], "labelNames": ["__profile_type__"]})).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut graphs = Vec::new();
    for labels in series["labelsSet"].as_array().unwrap() {
        let profile_type = labels["labels"][0]["value"].as_str().unwrap().to_string();
        if !profile_type.starts_with(name_prefix) {
            continue;
        }
        let answer: Value = client
            .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
            .header("content-type", "application/json")
            .body(range(json!({"profileTypeID": profile_type, "labelSelector": format!("{{service_name=\"{service}\"}}")})).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let graph = &answer["flamegraph"];
        let names = graph["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        graphs.push((profile_type, names, json_i64(&graph["total"])));
    }
    graphs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_pushes_flame_graphs() {
    let python = std::env::var_os("KILN_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| sdk_dir().join(".venv/bin/python"));
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    run_sdk(&python, "python_push.py", &server, "python-sdk");

    let graphs = flame_graph_names(&server, "python-sdk", "process_cpu:").await;
    assert_eq!(graphs.len(), 1, "{graphs:?}");
    let (profile_type, names, total) = &graphs[0];
    assert_eq!(profile_type, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    assert!(*total > 0);
    assert!(
        names.iter().any(|n| n == "kiln_sdk_python_busy_work"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodejs_sdk_pushes_flame_graphs() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    run_sdk(Path::new("node"), "node_push.js", &server, "node-sdk");

    let graphs = flame_graph_names(&server, "node-sdk", "wall:").await;
    assert!(!graphs.is_empty(), "no wall profiles stored");
    for (profile_type, names, total) in &graphs {
        assert!(*total > 0, "{profile_type}");
        // The SDK names frames <file>:<function>:<line>.
        assert!(
            names.iter().any(|n| n.contains("kilnSdkNodeBusyWork")),
            "{profile_type}: {names:?}"
        );
    }
}
