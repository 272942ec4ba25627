//! Multitenancy: `X-Scope-OrgID` on every read and write, 401 without it, validated ids, and a
//! tenant that never sees another's services, labels or samples on any read path.

use bytes::Bytes;
use kiln_proto::push::v1::PushRequest;
use kiln_proto::push::v1::pusher_service_client::PusherServiceClient;
use serde_json::{Value, json};

use crate::support::reference::json_i64;
use crate::support::{KilnServer, UNTIL_SECONDS, cpu_profile, decode, input_totals, kiln};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn push_request(service: &str, gzipped: &Bytes) -> PushRequest {
    crate::support::push_request(
        &[("service_name", service), ("team_b_only", "yes")],
        gzipped,
        "",
    )
}

async fn query(
    server: &KilnServer,
    tenant: Option<&str>,
    method: &str,
    mut body: Value,
) -> (u16, Value) {
    body["start"] = json!("0");
    body["end"] = json!((UNTIL_SECONDS * 1000).to_string());
    let mut request = reqwest::Client::new()
        .post(server.url(&format!("/querier.v1.QuerierService/{method}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &KilnServer, tenant: Option<&str>, path: &str) -> (u16, Bytes) {
    let mut request = reqwest::Client::new().get(server.url(path));
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap())
}

/// Every read path, as one tenant sees it: (what it names, the answer as text).
async fn everything_seen_by(server: &KilnServer, tenant: &str) -> Vec<(&'static str, String)> {
    let t = Some(tenant);
    let mut seen = Vec::new();
    for (method, body) in [
        ("ProfileTypes", json!({})),
        ("LabelNames", json!({})),
        ("LabelValues", json!({"name": "service_name"})),
        ("Series", json!({"matchers": ["{}"]})),
        (
            "SelectMergeStacktraces",
            json!({"profileTypeID": CPU, "labelSelector": "{}", "maxNodes": "0"}),
        ),
        (
            "SelectMergeProfile",
            json!({"profileTypeID": CPU, "labelSelector": "{}"}),
        ),
        (
            "SelectSeries",
            json!({"profileTypeID": CPU, "labelSelector": "{}", "step": 60.0, "groupBy": ["service_name"]}),
        ),
        (
            "SelectMergeSpanProfile",
            json!({"profileTypeID": CPU, "labelSelector": "{}", "spanSelector": ["0000000000000001"]}),
        ),
        ("GetProfileStats", json!({})),
    ] {
        let (status, answer) = query(server, t, method, body).await;
        assert_eq!(status, 200, "{tenant} {method}: {answer}");
        seen.push((method, answer.to_string()));
    }
    let render = format!(
        "/pyroscope/render?query={CPU}%7B%7D&from=0&until={UNTIL_SECONDS}&format=json&max-nodes=0"
    );
    let (status, body) = get(server, t, &render).await;
    assert_eq!(status, 200, "{tenant} render");
    seen.push(("render", String::from_utf8_lossy(&body).to_string()));
    let pprof = format!("/api/v1/pprof?query={CPU}%7B%7D&from=0&until={UNTIL_SECONDS}");
    let (status, body) = get(server, t, &pprof).await;
    assert_eq!(status, 200, "{tenant} pprof");
    let profile = decode(&body);
    let pprof_total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    seen.push((
        "pprof",
        format!("total {pprof_total} functions {:?}", profile.string_table),
    ));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_data_and_need_a_valid_header() {
    let server = kiln()
        .arg("--auth.multitenancy-enabled")
        .start()
        .await
        .unwrap();
    let gzipped = cpu_profile();
    let expected = input_totals(&decode(&gzipped))[CPU];
    let client = reqwest::Client::new();

    // Writes: team-a over /ingest, team-b over push.v1 gRPC (metadata) and Connect.
    let ingest = |tenant: Option<&str>| {
        let mut request = client
            .post(server.url("/ingest?name=a-service&format=pprof"))
            .body(gzipped.clone());
        if let Some(tenant) = tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        request.send()
    };
    assert_eq!(ingest(Some("team-a")).await.unwrap().status(), 200);
    let mut grpc = PusherServiceClient::connect(server.url("")).await.unwrap();
    let mut request = tonic::Request::new(push_request("b-service", &gzipped));
    request
        .metadata_mut()
        .insert("x-scope-orgid", "team-b".parse().unwrap());
    grpc.push(request).await.unwrap();

    // No tenant: 401 on every write and read path; UNAUTHENTICATED over gRPC.
    let response = ingest(None).await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("X-Scope-OrgID"));
    let status = grpc
        .push(push_request("b-service", &gzipped))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    let connect = client
        .post(server.url("/push.v1.PusherService/Push"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 401);
    let otlp = client
        .post(format!(
            "http://{}/v1development/profiles",
            server.otlp_http_addr()
        ))
        .header("content-type", "application/x-protobuf")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(otlp.status(), 401);
    for method in [
        "ProfileTypes",
        "LabelNames",
        "SelectMergeStacktraces",
        "GetProfileStats",
    ] {
        let (status, _) = query(
            &server,
            None,
            method,
            json!({"profileTypeID": CPU, "labelSelector": "{}"}),
        )
        .await;
        assert_eq!(status, 401, "{method} without a tenant");
    }
    let (status, _) = get(
        &server,
        None,
        &format!("/pyroscope/render?query={CPU}%7B%7D&from=0&until=now"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = get(
        &server,
        None,
        &format!("/api/v1/pprof?query={CPU}%7B%7D&from=0&until=now"),
    )
    .await;
    assert_eq!(status, 401);
    // Health endpoints need none.
    assert_eq!(get(&server, None, "/ready").await.0, 200);
    assert_eq!(get(&server, None, "/metrics").await.0, 200);

    // Invalid tenant ids: 400 with the reason.
    for bad in ["a/b", ".", "..", &"x".repeat(151), "semi;colon"] {
        let response = ingest(Some(bad)).await.unwrap();
        assert_eq!(response.status(), 400, "tenant {bad:?}");
        let (status, _) = query(&server, Some(bad), "LabelNames", json!({})).await;
        assert_eq!(status, 400, "tenant {bad:?} on a read");
    }
    assert_eq!(ingest(Some(&"x".repeat(150))).await.unwrap().status(), 200);

    // Each tenant sees its own service, labels and samples, and nothing of the other's.
    let a = everything_seen_by(&server, "team-a").await;
    let b = everything_seen_by(&server, "team-b").await;
    for ((what, seen_by_a), (_, seen_by_b)) in a.iter().zip(&b) {
        assert!(
            !seen_by_a.contains("b-service") && !seen_by_a.contains("team_b_only"),
            "team-a sees team-b in {what}: {seen_by_a}"
        );
        assert!(
            !seen_by_b.contains("a-service"),
            "team-b sees team-a in {what}: {seen_by_b}"
        );
    }
    let total = |seen: &[(&str, String)], what: &str| -> Value {
        serde_json::from_str(&seen.iter().find(|(w, _)| *w == what).unwrap().1).unwrap()
    };
    for seen in [&a, &b] {
        let graph = total(seen, "SelectMergeStacktraces");
        assert_eq!(json_i64(&graph["flamegraph"]["total"]), expected);
        assert!(
            seen.iter()
                .any(|(w, s)| *w == "pprof" && s.starts_with(&format!("total {expected} ")))
        );
    }
    // The answers do name what they hold, so the absences above mean something.
    assert_eq!(total(&a, "LabelValues")["names"], json!(["a-service"]));
    assert_eq!(total(&b, "LabelValues")["names"], json!(["b-service"]));
    assert!(total(&b, "LabelNames").to_string().contains("team_b_only"));
    assert!(total(&a, "Series").to_string().contains("a-service"));
    assert!(total(&b, "SelectSeries").to_string().contains("b-service"));

    // A tenant without data: 200 and empty answers.
    let empty = everything_seen_by(&server, "team-c").await;
    let graph = total(&empty, "SelectMergeStacktraces");
    assert_eq!(graph["flamegraph"]["total"].as_str().unwrap_or("0"), "0");
    assert!(
        total(&empty, "LabelValues")["names"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    assert!(
        empty
            .iter()
            .any(|(w, s)| *w == "pprof" && s.starts_with("total 0 "))
    );
}
