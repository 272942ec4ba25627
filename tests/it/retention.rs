//! Retention through the real binary: two tenants with 7- and 30-day periods each keep exactly
//! their window, in every query at once and in object storage once the compactor has run; a
//! push older than the period is refused; a deleted tenant leaves nothing behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::compaction::{FAST_COMPACTION, metastore, wait_until_compacted};
use crate::support::reference::json_i64;
use crate::support::{KilnServer, UNTIL_SECONDS, cpu_profile, decode, input_totals, kiln};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const DAY: i64 = 24 * 3600;

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Pushes the CPU test profile for `tenant` stamped `days_ago` days ago.
async fn push(server: &KilnServer, tenant: &str, days_ago: i64) -> reqwest::Response {
    let from = now_seconds() - days_ago * DAY;
    reqwest::Client::new()
        .post(server.url(&format!(
            "/ingest?name=svc&format=pprof&from={from}&until={}",
            from + 10
        )))
        .header("X-Scope-OrgID", tenant)
        .body(cpu_profile())
        .send()
        .await
        .unwrap()
}

/// The CPU total of `tenant` over all time, and the oldest profile time it reports (seconds).
async fn visible(server: &KilnServer, tenant: &str) -> (i64, i64) {
    let client = reqwest::Client::new();
    let graph: Value = client
        .post(server.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(
            json!({
                "profileTypeID": CPU,
                "labelSelector": "{}",
                "start": "0",
                "end": (UNTIL_SECONDS * 1000).to_string(),
                "maxNodes": "1",
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stats: Value = client
        .post(server.url("/querier.v1.QuerierService/GetProfileStats"))
        .header("content-type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total = graph["flamegraph"].get("total").map(json_i64).unwrap_or(0);
    let oldest = stats.get("oldestProfileTime").map(json_i64).unwrap_or(0) / 1000;
    (total, oldest)
}

/// Relative paths of every block object under `objects/` (segments and blocks).
fn stored_objects(objects: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.file_name().is_some_and(|n| n == "block.bin") {
                out.insert(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(objects, objects, &mut out);
    out
}

fn runtime_config(path: &Path, week: &str) {
    std::fs::write(
        path,
        format!(
            "overrides:\n  team-week:\n    retention_period: {week}\n  team-month:\n    retention_period: 30d\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_keeps_exactly_its_retention_window() {
    let command = kiln();
    let config = command.data_dir().join("runtime.yaml");
    runtime_config(&config, "30d");
    let server = command
        .args(FAST_COMPACTION)
        .args([
            "--auth.multitenancy-enabled=true",
            "--runtime-config.reload-period=200ms",
        ])
        .arg(format!("--runtime-config={}", config.display()))
        .start()
        .await
        .unwrap();
    for tenant in ["team-week", "team-month", "team-gone"] {
        for days_ago in [1, 10, 20] {
            let response = push(&server, tenant, days_ago).await;
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
    }
    let one = input_totals(&decode(&cpu_profile()))[CPU];
    let client = metastore(&server);
    wait_until_compacted(&client, 2).await;
    assert_eq!(visible(&server, "team-week").await.0, 3 * one);

    // The week tenant's period shrinks to 7 days: its older data leaves every query at once.
    runtime_config(&config, "7d");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(server.url("/runtime_config"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("retention_period: 7d")
    {
        assert!(
            Instant::now() < deadline,
            "the runtime config was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (total, oldest) = visible(&server, "team-week").await;
    assert_eq!(total, one);
    assert!(oldest >= now_seconds() - 7 * DAY, "oldest {oldest}");
    let (total, oldest) = visible(&server, "team-month").await;
    assert_eq!(total, 3 * one);
    assert!(oldest < now_seconds() - 19 * DAY, "oldest {oldest}");

    // A push older than the period is refused, naming the limit.
    let refused = push(&server, "team-week", 10).await;
    assert_eq!(refused.status(), 400);
    let message = refused.text().await.unwrap();
    assert!(message.contains("retention_period"), "{message}");

    // A deleted tenant leaves every query at once.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["admin", "tenant", "delete", "team-gone"])
        .arg(format!("--metastore.peers={}", server.grpc_addr()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(visible(&server, "team-gone").await.0, 0);

    // The index and object storage follow within the retention interval and deletion delay:
    // every object left is a block in the index, each within its tenant's window.
    let objects = server.data_dir().join("objects");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let blocks = client.admin_list_blocks(None).await.unwrap();
        let indexed: BTreeSet<String> = blocks.iter().map(|b| b.path.clone()).collect();
        let stored = stored_objects(&objects);
        let cutoff = (now_seconds() - 7 * DAY) * 1_000_000_000;
        let windows_ok = blocks.iter().all(|b| match b.tenant.as_str() {
            "team-week" => b.max_time_nanos >= cutoff,
            "team-month" => true,
            _ => false,
        });
        if stored == indexed && windows_ok {
            let days = |tenant: &str| -> BTreeSet<i64> {
                blocks
                    .iter()
                    .filter(|b| b.tenant == tenant)
                    .map(|b| (now_seconds() - b.min_time_nanos / 1_000_000_000) / DAY)
                    .collect()
            };
            assert_eq!(days("team-week"), BTreeSet::from([1]));
            assert_eq!(days("team-month"), BTreeSet::from([1, 10, 20]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "storage did not converge: stored {stored:?}, indexed {indexed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let removed = server
        .metric("kiln_compactor_retention_datasets_removed_total{tenant=\"team-week\"}")
        .await
        .unwrap();
    assert_eq!(removed, 2.0);
    assert!(
        server
            .metric("kiln_compactor_objects_deleted_total{reason=\"retention\"}")
            .await
            .unwrap()
            >= 2.0
    );
}
