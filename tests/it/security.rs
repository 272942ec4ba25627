//! Credentials and rights on every public endpoint (docs/security.md): the attack matrix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::KilnServer;
use bytes::Bytes;
use kiln_contract::metastore::MetastoreClient;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use kiln_proto::push::v1::pusher_service_client::PusherServiceClient;
use kiln_proto::querier::v1::ProfileTypesRequest;
use kiln_proto::querier::v1::querier_service_client::QuerierServiceClient;
use prost::Message;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::support::{UNTIL_SECONDS, cpu_profile, decode, input_totals, kiln, push_request};

mod cluster_tls;
mod slow_clients;

/// Tokens of the matrix: each with its tenant and rights.
const WRITER_A: &str = "writer-of-tenant-a-0123456789";
const READER_A: &str = "reader-of-tenant-a-0123456789";
const OWNER_B: &str = "owner-of-tenant-b-0123456789";
const ADMIN: &str = "admin-of-the-cluster-0123456789";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Writes a tokens file holding the digests of `entries` (token, tenant, rights).
pub(crate) fn tokens_file(dir: &Path, entries: &[(&str, &str, &[&str])]) -> PathBuf {
    let mut yaml = String::from("tokens:\n");
    for (token, tenant, rights) in entries {
        let digest = Sha256::digest(token.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        yaml.push_str(&format!(
            "  - token_sha256: {hex}\n    tenant: {tenant}\n    rights: [{}]\n",
            rights.join(", ")
        ));
    }
    let path = dir.join("tokens.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `kiln server` checking the tokens of `entries` (token, tenant, rights), with the tokens
/// file in `dir`.
pub(crate) async fn server_with_tokens(
    dir: &Path,
    entries: &[(&str, &str, &[&str])],
) -> crate::support::KilnServer {
    kiln()
        .arg("--auth.tokens-file")
        .arg(tokens_file(dir, entries))
        .start()
        .await
        .unwrap()
}

/// How a request proves who it is.
#[derive(Clone, Copy, Debug)]
enum Credential {
    None,
    Bearer(&'static str),
    Basic(&'static str, &'static str),
}

/// One public endpoint, a request to it that succeeds with the right credential, and the right
/// it needs.
struct Endpoint {
    name: &'static str,
    method: Method,
    path: String,
    content_type: &'static str,
    body: Bytes,
    right: &'static str,
}

fn endpoints(profile: &Bytes) -> Vec<Endpoint> {
    let range = format!("from=0&until={UNTIL_SECONDS}");
    let json = |value: serde_json::Value| Bytes::from(value.to_string());
    let select = serde_json::json!({
        "profileTypeID": CPU,
        "labelSelector": "{service_name=\"matrix\"}",
        "start": "0",
        "end": (UNTIL_SECONDS * 1000).to_string(),
    });
    let query = json(select.clone());
    let push = push_request(
        &[("__name__", "process_cpu"), ("service_name", "matrix")],
        profile,
        "",
    );
    let read = |name, method: &str, body: Bytes| Endpoint {
        name,
        method: Method::POST,
        path: format!("/querier.v1.QuerierService/{method}"),
        content_type: "application/json",
        body,
        right: "read",
    };
    vec![
        Endpoint {
            name: "ingest",
            method: Method::POST,
            path: format!("/ingest?name=matrix&format=pprof&{range}"),
            content_type: "application/octet-stream",
            body: profile.clone(),
            right: "write",
        },
        Endpoint {
            name: "push.v1",
            method: Method::POST,
            path: "/push.v1.PusherService/Push".to_string(),
            content_type: "application/proto",
            body: Bytes::from(push.encode_to_vec()),
            right: "write",
        },
        Endpoint {
            name: "otlp http",
            method: Method::POST,
            path: "/v1development/profiles".to_string(),
            content_type: "application/x-protobuf",
            body: Bytes::from(ExportProfilesServiceRequest::default().encode_to_vec()),
            right: "write",
        },
        read("profile types", "ProfileTypes", json(serde_json::json!({}))),
        read("label names", "LabelNames", json(serde_json::json!({}))),
        read(
            "label values",
            "LabelValues",
            json(serde_json::json!({"name": "service_name"})),
        ),
        read("series", "Series", json(serde_json::json!({}))),
        read("flame graph", "SelectMergeStacktraces", query.clone()),
        read("pprof", "SelectMergeProfile", query.clone()),
        read(
            "time series",
            "SelectSeries",
            json(serde_json::json!({
                "profileTypeID": CPU,
                "labelSelector": "{service_name=\"matrix\"}",
                "start": "0",
                "end": (UNTIL_SECONDS * 1000).to_string(),
                "step": 86400000.0,
            })),
        ),
        read(
            "profile stats",
            "GetProfileStats",
            json(serde_json::json!({})),
        ),
        Endpoint {
            name: "render",
            method: Method::GET,
            path: format!(
                "/pyroscope/render?query={CPU}%7Bservice_name%3D%22matrix%22%7D&{range}&format=json"
            ),
            content_type: "",
            body: Bytes::new(),
            right: "read",
        },
        read(
            "diff",
            "Diff",
            json(serde_json::json!({"left": select.clone(), "right": select})),
        ),
        read(
            "analyze query",
            "AnalyzeQuery",
            json(serde_json::json!({"start": "0", "end": (UNTIL_SECONDS * 1000).to_string()})),
        ),
        Endpoint {
            name: "settings",
            method: Method::POST,
            path: "/settings.v1.SettingsService/Get".to_string(),
            content_type: "application/json",
            body: json(serde_json::json!({})),
            right: "read",
        },
        Endpoint {
            name: "render diff",
            method: Method::GET,
            path: format!(
                "/pyroscope/render-diff?leftQuery={CPU}%7B%7D&rightQuery={CPU}%7B%7D&leftFrom=0&leftUntil={UNTIL_SECONDS}&rightFrom=0&rightUntil={UNTIL_SECONDS}"
            ),
            content_type: "",
            body: Bytes::new(),
            right: "read",
        },
        Endpoint {
            name: "label values (http)",
            method: Method::GET,
            path: format!("/pyroscope/label-values?label=service_name&{range}"),
            content_type: "",
            body: Bytes::new(),
            right: "read",
        },
        Endpoint {
            name: "runtime config",
            method: Method::GET,
            path: "/runtime_config".to_string(),
            content_type: "",
            body: Bytes::new(),
            right: "admin",
        },
    ]
}

async fn call(
    server: &KilnServer,
    endpoint: &Endpoint,
    credential: Credential,
    tenant_header: Option<&str>,
) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .request(endpoint.method.clone(), server.url(&endpoint.path))
        .body(endpoint.body.clone());
    if !endpoint.content_type.is_empty() {
        request = request.header("content-type", endpoint.content_type);
    }
    request = match credential {
        Credential::None => request,
        Credential::Bearer(token) => request.bearer_auth(token),
        Credential::Basic(user, token) => request.basic_auth(user, Some(token)),
    };
    if let Some(tenant) = tenant_header {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// A gRPC request carrying `token` as a Bearer credential, when given.
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// A token that has every right but `right`, for the "valid but not allowed" case.
fn token_without(right: &str) -> &'static str {
    match right {
        "read" => WRITER_A,
        "write" => READER_A,
        _ => OWNER_B,
    }
}

/// A token with `right` (tenant-a's where the right is tenant-scoped).
fn token_with(right: &str) -> &'static str {
    match right {
        "read" => READER_A,
        "write" => WRITER_A,
        _ => ADMIN,
    }
}

async fn cpu_total(server: &KilnServer, token: &'static str) -> i64 {
    let body = serde_json::json!({
        "profileTypeID": CPU,
        "labelSelector": "{service_name=\"matrix\"}",
        "start": "0",
        "end": (UNTIL_SECONDS * 1000).to_string(),
    });
    let endpoint = Endpoint {
        name: "total",
        method: Method::POST,
        path: "/querier.v1.QuerierService/SelectMergeStacktraces".to_string(),
        content_type: "application/json",
        body: Bytes::from(body.to_string()),
        right: "read",
    };
    let (status, text) = call(server, &endpoint, Credential::Bearer(token), None).await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    crate::support::reference::json_i64(&answer["flamegraph"]["total"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_missing_wrong_foreign_and_insufficient_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(
        dir.path(),
        &[
            (WRITER_A, "tenant-a", &["write"]),
            (READER_A, "tenant-a", &["read"]),
            (OWNER_B, "tenant-b", &["read", "write"]),
            (ADMIN, "ops", &["admin"]),
        ],
    );
    let server = kiln()
        .arg("--auth.tokens-file")
        .arg(&tokens)
        .arg("--runtime-config.reload-period=200ms")
        .start()
        .await
        .unwrap();
    let profile = cpu_profile();
    let profile_total = input_totals(&decode(&profile))[CPU];

    // Health stays open.
    for path in ["/ready", "/metrics"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    let mut accepted_writes = 0;
    for endpoint in endpoints(&profile) {
        let name = endpoint.name;
        let refusals = [
            (
                Credential::None,
                None,
                StatusCode::UNAUTHORIZED,
                "no credential",
            ),
            (
                Credential::Bearer("not-a-token-at-all"),
                None,
                StatusCode::UNAUTHORIZED,
                "a wrong token",
            ),
            (
                Credential::Basic("tenant-a", "not-a-token-at-all"),
                None,
                StatusCode::UNAUTHORIZED,
                "a wrong basic password",
            ),
            (
                Credential::Bearer(token_without(endpoint.right)),
                None,
                StatusCode::FORBIDDEN,
                "a token without the right",
            ),
        ];
        for (credential, header, expected, case) in refusals {
            let (status, text) = call(&server, &endpoint, credential, header).await;
            assert_eq!(status, expected, "{name} with {case}: {text}");
            let lower = text.to_lowercase();
            assert!(
                !lower.contains("not-a-token"),
                "{name}: a presented token must never be echoed: {text}"
            );
        }
        if endpoint.right != "admin" {
            // Tenant-a's own credential naming tenant-b.
            let (status, text) = call(
                &server,
                &endpoint,
                Credential::Bearer(token_with(endpoint.right)),
                Some("tenant-b"),
            )
            .await;
            assert_eq!(status, 403, "{name} naming another tenant: {text}");
            assert!(text.contains("tenant-b"), "{name}: {text}");
        }
        // The right credential, as Bearer and as basic auth (tenant as user name).
        let token = token_with(endpoint.right);
        let (status, text) = call(&server, &endpoint, Credential::Bearer(token), None).await;
        assert_eq!(status, 200, "{name} with the right credential: {text}");
        if endpoint.right != "admin" {
            let (status, text) = call(
                &server,
                &endpoint,
                Credential::Basic("tenant-a", token),
                Some("tenant-a"),
            )
            .await;
            assert_eq!(status, 200, "{name} with basic auth: {text}");
            // Basic auth names the tenant: another tenant's name with tenant-a's token is refused.
            let (status, _) = call(
                &server,
                &endpoint,
                Credential::Basic("tenant-b", token),
                None,
            )
            .await;
            assert!(
                status == 401 || status == 403,
                "{name} with basic auth naming another tenant: {status}"
            );
        }
        if endpoint.name == "ingest" || endpoint.name == "push.v1" {
            accepted_writes += 2;
        }
    }

    // gRPC: OTLP export on its own listener, and the admin API on the cluster port.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.otlp_grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let export = |token: Option<&str>| {
        let request = with_token(ExportProfilesServiceRequest::default(), token);
        let mut client = ProfilesServiceClient::new(channel.clone());
        async move { client.export(request).await }
    };
    assert_eq!(
        export(None).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        export(Some("not-a-token-at-all")).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        export(Some(READER_A)).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    export(Some(WRITER_A)).await.unwrap();

    // gRPC clients of push.v1 and querier.v1 on the HTTP listener.
    let http = tonic::transport::Endpoint::from_shared(format!("http://{}", server.http_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let push_grpc = |token: Option<&str>| {
        let request = with_token(kiln_proto::push::v1::PushRequest::default(), token);
        let mut client = PusherServiceClient::new(http.clone());
        async move { client.push(request).await.map(drop) }
    };
    let types_grpc = |token: Option<&str>| {
        let request = with_token(ProfileTypesRequest::default(), token);
        let mut client = QuerierServiceClient::new(http.clone());
        async move { client.profile_types(request).await.map(drop) }
    };
    for (token, push_code, query_code) in [
        (
            None,
            Some(tonic::Code::Unauthenticated),
            Some(tonic::Code::Unauthenticated),
        ),
        (
            Some("not-a-token-at-all"),
            Some(tonic::Code::Unauthenticated),
            Some(tonic::Code::Unauthenticated),
        ),
        (Some(READER_A), Some(tonic::Code::PermissionDenied), None),
        (Some(WRITER_A), None, Some(tonic::Code::PermissionDenied)),
    ] {
        let push = push_grpc(token).await.err().map(|s| s.code());
        assert_eq!(push, push_code, "push.v1 over gRPC with {token:?}");
        let query = types_grpc(token).await.err().map(|s| s.code());
        assert_eq!(query, query_code, "querier.v1 over gRPC with {token:?}");
    }

    let admin = |token: Option<&str>| {
        MetastoreClient::new(vec![server.grpc_addr().to_string()], Duration::from_secs(5))
            .unwrap()
            .with_token(token.map(str::to_string))
    };
    for (token, case) in [
        (None, "no credential"),
        (Some("not-a-token-at-all"), "a wrong token"),
        (Some(OWNER_B), "a tenant's token"),
    ] {
        let error = admin(token).admin_list_blocks(None).await.unwrap_err();
        assert!(
            error.to_string().contains("credential") || error.to_string().contains("admin"),
            "admin API with {case}: {error}"
        );
    }
    let blocks = admin(Some(ADMIN)).admin_list_blocks(None).await.unwrap();
    // Nothing refused was written, and nothing of tenant-a reached tenant-b.
    let tenants: std::collections::BTreeSet<String> = blocks
        .iter()
        .flat_map(|b| b.datasets.iter().map(|d| d.tenant.as_str().to_string()))
        .collect();
    assert_eq!(
        tenants.into_iter().collect::<Vec<_>>(),
        vec!["tenant-a".to_string()]
    );
    assert_eq!(
        cpu_total(&server, READER_A).await,
        accepted_writes * profile_total,
        "tenant-a holds exactly the accepted pushes"
    );
    assert_eq!(
        cpu_total(&server, OWNER_B).await,
        0,
        "tenant-b sees none of it"
    );

    // The tokens file is re-read: a revoked token is refused once the file changes.
    tokens_file(dir.path(), &[(READER_A, "tenant-a", &["read"])]);
    let endpoint = &endpoints(&profile)[0];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = call(&server, endpoint, Credential::Bearer(WRITER_A), None).await;
        if status == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "revoked token still accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
