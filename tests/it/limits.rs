//! Per-tenant limits: each refusal with its status, message and metric; truncation of deep stacks
//! and long symbols; overrides from the runtime config file, reloaded without a restart.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use serde_json::Value;

use crate::support::UNTIL_SECONDS;
use crate::support::reference::json_i64;
use crate::support::{KilnServer, cpu_profile, decode, flamegraph_json, kiln};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

struct Client<'a> {
    server: &'a KilnServer,
    http: reqwest::Client,
}

impl Client<'_> {
    async fn ingest(
        &self,
        tenant: &str,
        query: &str,
        body: &Bytes,
    ) -> (u16, String, Option<String>) {
        let response = self
            .http
            .post(self.server.url(&format!("/ingest?format=pprof&{query}")))
            .header("X-Scope-OrgID", tenant)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, response.text().await.unwrap(), retry)
    }

    async fn push(
        &self,
        tenant: &str,
        labels: Vec<(String, String)>,
        body: &Bytes,
    ) -> (u16, String) {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let request = crate::support::push_request(&pairs, body, "");
        let response = self
            .http
            .post(self.server.url("/push.v1.PusherService/Push"))
            .header("X-Scope-OrgID", tenant)
            .header("content-type", "application/proto")
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn pprof(&self, tenant: &str, service: &str) -> kiln_proto::google::v1::Profile {
        let selector = format!("{CPU}{{service_name=\"{service}\"}}");
        let url = self.server.url(&format!(
            "/api/v1/pprof?query={}&from=0&until={UNTIL_SECONDS}",
            crate::query::url_encode(&selector)
        ));
        let response = self
            .http
            .get(url)
            .header("X-Scope-OrgID", tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        decode(&response.bytes().await.unwrap())
    }

    async fn flamegraph(&self, tenant: &str, service: &str) -> Value {
        flamegraph_json(self.server, Some(tenant), CPU, service, 0).await
    }
}

async fn discarded(server: &KilnServer, tenant: &str, reason: &str) -> f64 {
    server
        .metric(&format!(
            "kiln_distributor_discarded_profiles_total{{tenant=\"{tenant}\",reason=\"{reason}\"}}"
        ))
        .await
        .unwrap()
}

fn write_runtime_config(path: &std::path::Path, text: &str) {
    // Write then rename, so the server never reads half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_refuses_or_truncates_with_a_message_and_a_metric() {
    let kiln = kiln();
    let gzipped = cpu_profile();
    let samples = decode(&gzipped).sample.len();
    let runtime = kiln.data_dir().join("runtime.yaml");
    write_runtime_config(
        &runtime,
        &format!(
            "overrides:\n  small:\n    max_samples_per_profile: {}\n  dated:\n    reject_older_than: 1h\n  short:\n    max_label_name_length: 20\n    max_label_value_length: 50\n  rated:\n    ingestion_rate_mb: 0.000001\n    ingestion_burst_size_mb: {}\n  deep:\n    max_stack_depth: 0\n    max_symbol_length: 0\n",
            samples - 1,
            gzipped.len() as f64 * 1.5 / 1e6,
        ),
    );
    let server = kiln
        .args([
            "--auth.multitenancy-enabled",
            "--limits.max-stack-depth=3",
            "--limits.max-symbol-length=12",
            &format!("--runtime-config={}", runtime.display()),
            "--runtime-config.reload-period=100ms",
        ])
        .start()
        .await
        .unwrap();
    let client = Client {
        server: &server,
        http: reqwest::Client::new(),
    };

    // Samples per profile (an override of tenant "small"); the old test profile is fine for
    // tenants whose reject_older_than is off, refused for "small".
    let (status, message, _) = client.ingest("small", "name=svc", &gzipped).await;
    assert_eq!(status, 400);
    assert!(
        message.contains(&format!(
            "{samples} samples, over max_samples_per_profile {}",
            samples - 1
        )),
        "{message}"
    );
    assert_eq!(discarded(&server, "small", "too_many_samples").await, 1.0);
    let (status, message, _) = client.ingest("dated", "name=svc", &gzipped).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("older than reject_older_than 3600s"),
        "{message}"
    );
    assert_eq!(discarded(&server, "dated", "too_old").await, 1.0);

    // Label names per series, name length and value length (push.v1, default limits).
    let mut labels: Vec<(String, String)> = (0..40)
        .map(|i| (format!("label_{i}"), "v".to_string()))
        .collect();
    labels.push(("service_name".into(), "svc".into()));
    let (status, message) = client.push("other", labels, &gzipped).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("over max_label_names_per_series 30"),
        "{message}"
    );
    assert_eq!(discarded(&server, "other", "too_many_labels").await, 1.0);
    let long_name = vec![
        ("service_name".into(), "svc".into()),
        ("n".repeat(30), "v".into()),
    ];
    let (status, message) = client.push("short", long_name, &gzipped).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("is 30 bytes, over max_label_name_length 20"),
        "{message}"
    );
    let long_value = vec![
        ("service_name".into(), "svc".into()),
        ("team".into(), "v".repeat(60)),
    ];
    let (status, message) = client.push("short", long_value, &gzipped).await;
    assert_eq!(status, 400);
    assert!(
        message.contains("value of label team is 60 bytes, over max_label_value_length 50"),
        "{message}"
    );
    assert_eq!(
        discarded(&server, "short", "label_name_too_long").await,
        1.0
    );
    assert_eq!(
        discarded(&server, "short", "label_value_too_long").await,
        1.0
    );

    // Timestamps too far in the future (default 10m); too old only where configured.
    let future = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, message, _) = client
        .ingest("other", &format!("name=svc&from={future}"), &gzipped)
        .await;
    assert_eq!(status, 400);
    assert!(message.contains("reject_newer_than 600s"), "{message}");
    assert_eq!(discarded(&server, "other", "too_far_in_future").await, 1.0);

    // Deep stacks and long symbols are truncated, keeping the root side: compare with "deep",
    // whose overrides turn both off.
    assert_eq!(
        client.ingest("other", "name=truncated", &gzipped).await.0,
        200
    );
    assert_eq!(client.ingest("deep", "name=full", &gzipped).await.0, 200);
    let truncated = client.flamegraph("other", "truncated").await;
    let full = client.flamegraph("deep", "full").await;
    assert_eq!(json_i64(&truncated["total"]), json_i64(&full["total"]));
    // Stacks of three locations at most (a location may hold inlined frames), the root side
    // kept: the outermost function of every stack is the same, cut to 12 bytes.
    let stacks = |profile: &kiln_proto::google::v1::Profile| -> (usize, Vec<String>) {
        let function_of = |location_id: u64| -> String {
            let location = profile
                .location
                .iter()
                .find(|l| l.id == location_id)
                .unwrap();
            let line = location.line.last().unwrap();
            let function = profile
                .function
                .iter()
                .find(|f| f.id == line.function_id)
                .unwrap();
            profile.string_table[function.name as usize]
                .chars()
                .take(12)
                .collect()
        };
        let depth = profile
            .sample
            .iter()
            .map(|s| s.location_id.len())
            .max()
            .unwrap();
        let mut roots: Vec<String> = profile
            .sample
            .iter()
            .map(|s| function_of(*s.location_id.last().unwrap()))
            .collect();
        roots.sort();
        roots.dedup();
        (depth, roots)
    };
    let (depth, truncated_roots) = stacks(&client.pprof("other", "truncated").await);
    assert_eq!(depth, 3);
    let (depth, full_roots) = stacks(&client.pprof("deep", "full").await);
    assert!(depth > 3);
    assert_eq!(truncated_roots, full_roots);
    let names = |graph: &Value| -> Vec<String> {
        graph["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        names(&truncated)
            .iter()
            .all(|n| n.len() <= 12 || n == "total"),
        "{:?}",
        names(&truncated)
    );

    assert!(
        server
            .metric("kiln_distributor_truncated_total{tenant=\"other\",what=\"stack_depth\"}")
            .await
            .unwrap()
            > 0.0
    );
    assert!(
        server
            .metric("kiln_distributor_truncated_total{tenant=\"other\",what=\"symbol_length\"}")
            .await
            .unwrap()
            > 0.0
    );

    // The ingestion rate: the burst admits one push, the next waits (429, Retry-After).
    assert_eq!(client.ingest("rated", "name=svc", &gzipped).await.0, 200);
    let (status, message, retry) = client.ingest("rated", "name=svc", &gzipped).await;
    assert_eq!(status, 429);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        message.contains("tenant rated: ingestion rate limit of 0.000001 MB/s"),
        "{message}"
    );
    assert_eq!(discarded(&server, "rated", "rate_limited").await, 1.0);

    // A broken file is ignored (the last good one stays); a good one applies without a restart.
    write_runtime_config(&runtime, "overrides: [not a mapping");
    write_runtime_config(&runtime, "overrides:\n  rated:\n    ingestion_rate_mb: 0\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(server.url("/runtime_config"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !text.contains("small") {
            assert!(text.contains("rated"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the runtime config was never reloaded: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.ingest("rated", "name=svc", &gzipped).await.0, 200);
    assert_eq!(client.ingest("small", "name=svc", &gzipped).await.0, 200);
}

async fn rejected(server: &KilnServer, protocol: &str, tenant: &str, reason: &str) -> f64 {
    server
        .metric(&format!(
            "kiln_distributor_rejected_requests_total{{protocol=\"{protocol}\",tenant=\"{tenant}\",reason=\"{reason}\"}}"
        ))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_series_limits_apply_per_tenant() {
    let kiln = kiln();
    let gzipped = cpu_profile();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut raw).unwrap();
    let inflated = raw.len();
    assert!(gzipped.len() > 1000 && inflated > 2 * gzipped.len());
    let runtime = kiln.data_dir().join("runtime.yaml");
    write_runtime_config(
        &runtime,
        &format!(
            "overrides:\n  sized:\n    max_body_bytes: 1000\n  inflated:\n    max_decompressed_bytes: {}\n  few:\n    max_series_per_tenant: 2\n",
            inflated - 1
        ),
    );
    let server = kiln
        .args([
            "--auth.multitenancy-enabled",
            &format!("--runtime-config={}", runtime.display()),
        ])
        .start()
        .await
        .unwrap();
    let client = Client {
        server: &server,
        http: reqwest::Client::new(),
    };
    let service = |name: &str| vec![("service_name".to_string(), name.to_string())];

    // Body size: 413 for the tenant whose override lowers it, over /ingest and push.v1; the
    // same request passes for a tenant on the default.
    let (status, message, _) = client.ingest("sized", "name=svc", &gzipped).await;
    assert_eq!(status, 413);
    assert!(
        message.contains("request body exceeds max_body_bytes of 1000 bytes"),
        "{message}"
    );
    let (status, message) = client.push("sized", service("svc"), &gzipped).await;
    assert_eq!(status, 413);
    assert!(
        message.contains("max_body_bytes of 1000 bytes"),
        "{message}"
    );
    assert_eq!(
        rejected(&server, "ingest", "sized", "body_too_large").await,
        1.0
    );
    assert_eq!(
        rejected(&server, "push", "sized", "body_too_large").await,
        1.0
    );
    assert_eq!(client.ingest("other", "name=svc", &gzipped).await.0, 200);

    // Decompressed size: the gzipped profile inflates one byte past the override.
    let (status, message, _) = client.ingest("inflated", "name=svc", &gzipped).await;
    assert_eq!(status, 413);
    assert!(
        message.contains(&format!(
            "decompressed body exceeds max_decompressed_bytes of {} bytes",
            inflated - 1
        )),
        "{message}"
    );
    let (status, _) = client.push("inflated", service("svc"), &gzipped).await;
    assert_eq!(status, 413);
    assert_eq!(
        rejected(&server, "ingest", "inflated", "decompressed_too_large").await,
        1.0
    );

    // Series per tenant: a Go CPU profile makes two series (samples and cpu time) per
    // service; the first service fits the limit of 2 and keeps passing, a second one is refused.
    assert_eq!(client.push("few", service("a"), &gzipped).await.0, 200);
    assert_eq!(client.push("few", service("a"), &gzipped).await.0, 200);
    let (status, message) = client.push("few", service("b"), &gzipped).await;
    assert_eq!(status, 400);
    assert!(
        message
            .contains("tenant few: push would make 4 active series, over max_series_per_tenant 2"),
        "{message}"
    );
    assert_eq!(discarded(&server, "few", "too_many_series").await, 1.0);
    assert_eq!(client.push("other", service("b"), &gzipped).await.0, 200);
    // Nothing of the refused push was stored.
    let refused = client.flamegraph("few", "b").await;
    assert_eq!(json_i64(&refused["total"]), 0, "{refused}");
}
