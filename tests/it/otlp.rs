//! OTLP profiles sent with the official `opentelemetry-proto` Python package (tests/otlp),
//! over gRPC and OTLP/HTTP (protobuf and JSON), queried back exactly.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use serde_json::{Value, json};

use crate::support::reference::{FunctionTotals, json_flamegraph_figures, json_i64};
use crate::support::{KilnServer, UNTIL_SECONDS, kiln};

fn otlp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/otlp")
}

/// Runs otlp_send.py and returns its one-line JSON report.
pub(crate) fn send(transport: &str, target: &str, scenario: &str, gzip: bool) -> Value {
    let python = std::env::var_os("KILN_OTLP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| otlp_dir().join(".venv/bin/python"));
    let mut command = Command::new(&python);
    command
        .arg(otlp_dir().join("otlp_send.py"))
        .args([transport, target, scenario]);
    if gzip {
        command.arg("--gzip");
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} (run .ci/test to install it): {e}",
            python.display()
        )
    });
    assert!(
        output.status.success(),
        "otlp_send.py {transport} {scenario}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn accepted(report: &Value) -> bool {
    report["status"] == json!(200) || report["status"] == json!("OK")
}

/// Where each transport reaches the server: the OTLP listeners, or the main HTTP listener.
fn target(server: &KilnServer, transport: &str, main_port: bool) -> String {
    match (transport, main_port) {
        ("grpc", false) => server.otlp_grpc_addr().to_string(),
        ("grpc", true) => server.http_addr().to_string(),
        (_, false) => format!("http://{}", server.otlp_http_addr()),
        (_, true) => format!("http://{}", server.http_addr()),
    }
}

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

async fn call(server: &KilnServer, method: &str, mut body: Value) -> Value {
    body["start"] = json!("0");
    body["end"] = json!((UNTIL_SECONDS * 1000).to_string());
    let path = format!("/querier.v1.QuerierService/{method}");
    let (status, answer) = crate::support::connect(server, &path, body).await;
    assert_eq!(status, 200, "{method}");
    answer
}

/// (total, per-function figures) of the CPU flame graph of `selector`.
async fn cpu_graph(server: &KilnServer, selector: &str) -> (i64, FunctionTotals) {
    let answer = call(
        server,
        "SelectMergeStacktraces",
        json!({"profileTypeID": CPU, "labelSelector": selector, "maxNodes": "0"}),
    )
    .await;
    json_flamegraph_figures(&answer["flamegraph"])
}

fn figures(map: &Value) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = map
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), json_i64(v)))
        .collect();
    out.sort();
    out
}

pub(crate) async fn check_scenario(server: &KilnServer, report: &Value) {
    let expected = &report["expected"];
    let scenario = expected["scenario"].as_str().unwrap();
    assert!(accepted(report), "{scenario}: {report}");
    assert!(
        report["body"]
            .get("partialSuccess")
            .is_none_or(|p| p.is_null()),
        "{report}"
    );
    for (service, totals) in expected["by_service"].as_object().unwrap() {
        let (total, _) = cpu_graph(server, &format!("{{service_name=\"{service}\"}}")).await;
        assert_eq!(
            total,
            json_i64(&totals["total_cpu_ns"]),
            "{scenario} {service}"
        );
    }
    for profile in expected["profiles"].as_array().unwrap() {
        let Some(service) = profile["service_name"].as_str() else {
            continue;
        };
        let (_, functions) = cpu_graph(server, &format!("{{service_name=\"{service}\"}}")).await;
        let selfs: Vec<(String, i64)> = functions
            .iter()
            .filter(|(_, (self_value, _))| *self_value != 0)
            .map(|(name, (self_value, _))| (name.clone(), *self_value))
            .collect();
        if expected["by_service"].as_object().unwrap().len() == 1 {
            assert_eq!(
                selfs,
                figures(&profile["self_cpu_ns"]),
                "{scenario}: self per function"
            );
        }
        for link in profile["links"].as_array().into_iter().flatten() {
            let answer = call(
                server,
                "SelectMergeSpanProfile",
                json!({
                    "profileTypeID": CPU,
                    "labelSelector": format!("{{service_name=\"{service}\"}}"),
                    "spanSelector": [link["span_id"]],
                }),
            )
            .await;
            let (total, _) = json_flamegraph_figures(&answer["flamegraph"]);
            assert_eq!(total, json_i64(&link["cpu_ns"]), "{scenario}: span profile");
        }
        for (key, values) in profile["sample_attributes"]
            .as_object()
            .into_iter()
            .flatten()
        {
            for (value, figures) in values.as_object().unwrap() {
                let selector = format!("{{service_name=\"{service}\", {key}=\"{value}\"}}");
                let (total, _) = cpu_graph(server, &selector).await;
                assert_eq!(
                    total,
                    json_i64(&figures["cpu_ns"]),
                    "{scenario}: {selector}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_profiles_are_stored_exactly_over_every_transport() {
    let scenarios = [
        "ebpf-cpu",
        "timestamps-only",
        "multi-resource",
        "unsymbolized",
        "strindex",
    ];
    for (transport, main_port, gzip) in [
        ("grpc", false, true),
        ("grpc", true, false),
        ("http-proto", false, false),
        ("http-proto", true, true),
        ("http-json", false, true),
    ] {
        let server = kiln()
            .arg("--ingester.flush-interval=50ms")
            .start()
            .await
            .unwrap();
        let target = target(&server, transport, main_port);
        for scenario in scenarios {
            let report = send(transport, &target, scenario, gzip);
            check_scenario(&server, &report).await;
        }
        // Resource attributes are labels; a missing service.name falls back to the executable.
        let hosts = call(&server, "LabelValues", json!({"name": "host.name"})).await;
        assert!(
            hosts["names"].as_array().unwrap().contains(&json!("h1")),
            "{transport}: {hosts}"
        );
        let services = call(&server, "LabelValues", json!({"name": "service_name"})).await;
        let services: Vec<&str> = services["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(services.contains(&"unknown_service:foo"), "{services:?}");
        assert!(server.stop().unwrap().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let server = kiln()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let first = send("grpc", server.otlp_grpc_addr(), "ebpf-cpu", false);
    check_scenario(&server, &first).await;

    let cases = [
        (
            "grpc",
            "out-of-range",
            json!("INVALID_ARGUMENT"),
            "stack_index 12 is out of range",
        ),
        (
            "grpc",
            "bad-strindex",
            json!("INVALID_ARGUMENT"),
            "name_strindex",
        ),
        (
            "grpc",
            "garbage",
            json!("INVALID_ARGUMENT"),
            "failed to decode",
        ),
        (
            "http-json",
            "out-of-range",
            json!(400),
            "stack_index 12 is out of range",
        ),
        ("http-json", "malformed", json!(400), "malformed OTLP/JSON"),
        ("http-json", "bad-strindex", json!(400), "name_strindex"),
        ("http-proto", "out-of-range", json!(400), ""),
        ("http-proto", "garbage", json!(400), ""),
    ];
    for (transport, scenario, status, message) in cases {
        let report = send(
            transport,
            &target(&server, transport, false),
            scenario,
            false,
        );
        assert_eq!(report["status"], status, "{transport} {scenario}: {report}");
        let body = report["body"].to_string();
        assert!(body.contains(message), "{transport} {scenario}: {body}");
    }

    // Only some profiles invalid: the rest is stored and partial_success says what was not.
    use kiln_proto::opentelemetry::proto::collector::profiles::v1development::{
        ExportProfilesServiceRequest, ExportProfilesServiceResponse,
    };
    let dump = server.data_dir().join("request.pb");
    let output = Command::new(otlp_dir().join(".venv/bin/python"))
        .arg(otlp_dir().join("otlp_send.py"))
        .args(["http-proto", "http://127.0.0.1:9", "ebpf-cpu", "--dump"])
        .arg(&dump)
        .output()
        .unwrap();
    let _ = output; // nothing listens on port 9; the dump is what matters
    let mut request =
        ExportProfilesServiceRequest::decode(std::fs::read(&dump).unwrap().as_slice()).unwrap();
    let mut broken = request.resource_profiles[0].clone();
    broken.scope_profiles[0].profiles[0].samples[0].stack_index = 1000;
    request.resource_profiles.push(broken);
    request.resource_profiles[0].scope_profiles[0].profiles[0].profile_id = vec![7; 16].into();
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v1development/profiles",
            server.otlp_http_addr()
        ))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = ExportProfilesServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_profiles, 1);
    assert!(
        partial
            .error_message
            .contains("stack_index 1000 is out of range"),
        "{}",
        partial.error_message
    );

    // Everything acknowledged is there: the first export plus the valid half of the last one.
    let expected = json_i64(&first["expected"]["total_cpu_ns"]);
    let (total, _) = cpu_graph(&server, "{service_name=\"otlp-ebpf\"}").await;
    assert_eq!(total, 2 * expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_the_size_limits_is_resource_exhausted() {
    let server = kiln()
        .args([
            "--limits.max-body-bytes=512",
            "--limits.max-decompressed-bytes=512",
        ])
        .start()
        .await
        .unwrap();
    let grpc = send("grpc", server.otlp_grpc_addr(), "ebpf-cpu", false);
    assert_eq!(grpc["status"], json!("RESOURCE_EXHAUSTED"), "{grpc}");
    let http = send(
        "http-json",
        &target(&server, "http-json", false),
        "ebpf-cpu",
        false,
    );
    assert_eq!(http["status"], json!(413), "{http}");
    let http = send(
        "http-proto",
        &target(&server, "http-proto", false),
        "ebpf-cpu",
        true,
    );
    assert_eq!(http["status"], json!(413), "{http}");
}
