//! `POST /api/v1/sql` and `kiln query sql`: self values per function equal the flame graph's
//! on real Go and JFR profiles, every example of docs/sql.md runs, and what must be refused is
//! refused with a message that says why.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::reference::{
    json_flamegraph_figures, json_i64, pprof_function_totals, sample_frames,
};

use crate::support::heap::{MIB, leak_series};
use crate::support::{KilnServer, decode, flamegraph_json, gzip_profile, kiln, testdata};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// Every test profile is newer than this (2020-01-01).
const SINCE: &str = "time >= TIMESTAMP '2020-01-01T00:00:00Z'";

async fn ingest(server: &KilnServer, tenant: Option<&str>, name: &str, format: &str, file: &str) {
    let mut request = reqwest::Client::new()
        .post(server.url("/ingest"))
        .query(&[("name", name), ("format", format)])
        .body(std::fs::read(testdata(file)).unwrap());
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Runs `query` as `tenant`; the status and the body (JSON rows, or the error text).
async fn sql(server: &KilnServer, tenant: Option<&str>, query: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(server.url("/api/v1/sql"))
        .json(&json!({ "query": query }));
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn rows(server: &KilnServer, tenant: Option<&str>, query: &str) -> Vec<Value> {
    let (status, body) = sql(server, tenant, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `function → sum(value)` of one service and profile type.
async fn selfs(server: &KilnServer, service: &str, profile_type: &str) -> BTreeMap<String, i64> {
    selfs_where(
        server,
        &format!("service_name = '{service}' AND profile_type = '{profile_type}'"),
    )
    .await
}

/// `function → sum(value)`, the non-zero ones, of the samples `condition` selects.
async fn selfs_where(server: &KilnServer, condition: &str) -> BTreeMap<String, i64> {
    let query = format!(
        "SELECT function, sum(value) AS self FROM samples WHERE {SINCE} AND {condition} \
         GROUP BY function"
    );
    rows(server, None, &query)
        .await
        .iter()
        .map(|row| {
            (
                row["function"].as_str().unwrap().to_string(),
                json_i64(&row["self"]),
            )
        })
        .filter(|(_, value)| *value != 0)
        .collect()
}

/// A server holding a Go CPU and heap profile (service `checkout`) and a JFR recording
/// (service `java`).
async fn server_with_go_and_jfr_profiles() -> KilnServer {
    let server = kiln().start().await.unwrap();
    for (service, format, file) in [
        ("checkout", "pprof", "pprof/regexp.cpu.pb.gz"),
        ("checkout", "pprof", "pprof/regexp.heap.pb.gz"),
        ("java", "jfr", "jfr/java17-hotspot-profile.jfr"),
    ] {
        ingest(&server, None, service, format, file).await;
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_per_function_equals_the_flame_graph_and_the_files() {
    let server = server_with_go_and_jfr_profiles().await;

    // Go CPU: the file's own figures.
    let file = decode(&std::fs::read(testdata("pprof/regexp.cpu.pb.gz")).unwrap());
    let expected: BTreeMap<String, i64> = pprof_function_totals(&file, 1)
        .into_iter()
        .filter(|(_, (self_value, _))| *self_value != 0)
        .map(|(name, (self_value, _))| (name, self_value))
        .collect();
    assert_eq!(selfs(&server, "checkout", CPU).await, expected);

    // Every profile type of the Go heap file and the JFR recording: the flame graph's.
    for service in ["checkout", "java"] {
        let types = rows(
            &server,
            None,
            &format!(
                "SELECT DISTINCT profile_type FROM samples WHERE {SINCE} AND service_name = '{service}' ORDER BY 1"
            ),
        )
        .await;
        assert!(types.len() >= 2, "{service}: {types:?}");
        for row in types {
            let profile_type = row["profile_type"].as_str().unwrap();
            let graph = flamegraph_json(&server, None, profile_type, service, 0).await;
            let (_, figures) = json_flamegraph_figures(&graph);
            let from_graph: BTreeMap<String, i64> = figures
                .into_iter()
                .filter(|(name, (self_value, _))| *self_value != 0 && name != "other")
                .map(|(name, (self_value, _))| (name, self_value))
                .collect();
            assert_eq!(
                selfs(&server, service, profile_type).await,
                from_graph,
                "{service} {profile_type}"
            );
        }
    }

    // A label equality, pushed down as a series matcher, selects exactly what the column
    // condition does.
    let by_label =
        |value: &str| format!("labels['service_name'] = '{value}' AND profile_type = '{CPU}'");
    assert_eq!(selfs_where(&server, &by_label("checkout")).await, expected);
    let nobody = format!(
        "SELECT function FROM samples WHERE {SINCE} AND {}",
        by_label("nobody")
    );
    assert!(rows(&server, None, &nobody).await.is_empty());

    // The other columns: labels, the stack root first with the leaf last, nanosecond times.
    let row = &rows(
        &server,
        None,
        &format!(
            "SELECT time, labels['service_name'] AS service, stack, function, value FROM samples \
             WHERE {SINCE} AND service_name = 'checkout' AND profile_type = '{CPU}' \
             ORDER BY value DESC, function LIMIT 1"
        ),
    )
    .await[0];
    assert_eq!(row["service"], "checkout");
    let stack: Vec<&str> = row["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(stack.last().copied(), row["function"].as_str());
    let from_file: Vec<Vec<String>> = file
        .sample
        .iter()
        .map(|sample| {
            let mut frames = sample_frames(&file, sample);
            frames.reverse();
            frames
        })
        .collect();
    assert!(from_file.iter().any(|frames| frames == &stack), "{stack:?}");
    let time = humantime::parse_rfc3339(row["time"].as_str().unwrap()).unwrap();
    let nanos = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert_eq!(nanos as i64, file.time_nanos);

    // `kiln query sql`: the same rows as JSON, and as a table.
    let query = format!(
        "SELECT function, sum(value) AS self FROM samples WHERE {SINCE} \
         AND service_name = 'checkout' AND profile_type = '{CPU}' \
         GROUP BY function ORDER BY self DESC, function LIMIT 3"
    );
    let url = format!("http://{}", server.http_addr());
    let cli = |output: &str| {
        crate::cli::stdout(&crate::cli::cli(
            &url,
            None,
            &["query", "sql", &query, "--output", output],
        ))
    };
    let expected = rows(&server, None, &query).await;
    let printed: Vec<Value> = serde_json::from_str(&cli("json")).unwrap();
    assert_eq!(printed, expected);
    let table = cli("table");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 8, "{table}");
    assert!(lines[1].starts_with("| function"), "{table}");
    let top = expected[0]["function"].as_str().unwrap();
    assert!(lines[3].contains(&format!("| {top}")), "{table}");
    assert!(
        lines[3].contains(&json_i64(&expected[0]["self"]).to_string()),
        "{table}"
    );
    assert_eq!(lines[7], "3 rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_is_wrong() {
    let server = kiln()
        .arg("--auth.multitenancy-enabled")
        .arg("--sql.max-rows=3")
        .start()
        .await
        .unwrap();
    ingest(
        &server,
        Some("team-a"),
        "checkout",
        "pprof",
        "pprof/regexp.cpu.pb.gz",
    )
    .await;
    let count = format!("SELECT count(*) AS n FROM samples WHERE {SINCE}");

    // Another tenant sees nothing of team-a's.
    let own = rows(&server, Some("team-a"), &count).await;
    assert!(json_i64(&own[0]["n"]) > 3, "{own:?}");
    let other = rows(&server, Some("team-b"), &count).await;
    assert_eq!(json_i64(&other[0]["n"]), 0);

    let refused = [
        ("CREATE TABLE t AS SELECT 1", "only queries are allowed"),
        (
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "only queries are allowed",
        ),
        (
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "only queries are allowed",
        ),
        (
            &format!("INSERT INTO samples SELECT * FROM samples WHERE {SINCE}"),
            "only queries are allowed",
        ),
        (
            "SET datafusion.execution.batch_size = 1",
            "only queries are allowed",
        ),
        ("SELECT count(*) FROM samples", "a time range is required"),
        (
            "SELECT count(*) FROM samples WHERE time >= now() - interval '1 hour' OR value > 0",
            "a time range is required",
        ),
        (
            &format!("SELECT value FROM samples WHERE {SINCE}"),
            "more than 3 rows (--sql.max-rows)",
        ),
        (
            "SELEC 1",
            "invalid SQL: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1",
        ),
        ("SELECT nope FROM samples", "nope"),
        ("SELECT * FROM other_table", "other_table"),
    ];
    for (query, message) in refused {
        let (status, body) = sql(&server, Some("team-a"), query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(message), "{query}: {body}");
    }
    let (status, body) = sql(&server, Some("team-a"), "{").await;
    assert_eq!(
        (status, body.contains("invalid SQL: ")),
        (400, true),
        "{body}"
    );
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/sql"))
        .header("X-Scope-OrgID", "team-a")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("expected {\"query\"")
    );

    // Arrow IPC for clients that ask for it.
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/sql"))
        .header("X-Scope-OrgID", "team-a")
        .header("Accept", "application/vnd.apache.arrow.stream")
        .json(&json!({ "query": count }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = response.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    let column = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    assert_eq!(column.value(0), json_i64(&own[0]["n"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_of_the_sql_docs_runs() {
    let server = server_with_go_and_jfr_profiles().await;
    let docs = std::fs::read_to_string(kiln_testkit::workspace_dir().join("docs/sql.md")).unwrap();
    let examples: Vec<&str> = docs
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim())
        .collect();
    assert!(examples.len() >= 10, "{} examples", examples.len());
    // The examples read the last hour before now; the test profiles are older: read from
    // 2020 to a minute after the newest profile instead.
    let newest = rows(
        &server,
        None,
        &format!("SELECT max(time) AS newest FROM samples WHERE {SINCE}"),
    )
    .await;
    let newest = newest[0]["newest"].as_str().unwrap().to_string();
    let now = format!("(TIMESTAMP '{newest}' + interval '1 minute')");
    for example in examples {
        let query = example
            .replace(
                "now() - interval '1 hour'",
                "TIMESTAMP '2020-01-01T00:00:00Z'",
            )
            .replace("now()", &now);
        let answer = rows(&server, None, &query).await;
        assert!(!answer.is_empty(), "no rows: {example}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leak_report_ranks_the_leak_and_ignores_fluctuation() {
    let server = kiln().start().await.unwrap();
    let now_minutes = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60;
    for profile in leak_series(now_minutes) {
        let response = reqwest::Client::new()
            .post(server.url("/ingest"))
            .query(&[("name", "leaky-app"), ("format", "pprof")])
            .body(gzip_profile(&profile).to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/leaks"))
        .query(&[
            (
                "query",
                "memory:inuse_space:bytes:space:bytes{service_name=\"leaky-app\"}",
            ),
            ("from", "now-1h"),
            ("until", "now"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    let leaks = report["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1, "{report}");
    let leak = &leaks[0];
    assert_eq!(leak["function"], "leaky");
    assert_eq!(leak["points"], 30);
    assert_eq!(leak["first"].as_f64().unwrap(), (10 * MIB) as f64);
    assert_eq!(leak["last"].as_f64().unwrap(), (39 * MIB) as f64);
    let slope = leak["slope_per_hour"].as_f64().unwrap();
    assert!((slope - (60 * MIB) as f64).abs() < 1.0, "{slope}");
    assert!(leak["fit"].as_f64().unwrap() > 0.999_999, "{leak}");
    assert_eq!(report["step_seconds"], 60);

    // A profile type and selector that match nothing: an empty report, not an error.
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/leaks"))
        .query(&[(
            "query",
            "memory:inuse_space:bytes:space:bytes{service_name=\"none\"}",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["leaks"], json!([]));
    // A query that does not parse.
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/leaks"))
        .query(&[("query", "memory{")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

/// Runs the ADBC Flight SQL driver (tests/sql/flight_sql_client.py) with `request` (`--query
/// SQL` or `--metadata`) as `user` with `password`: the JSON lines it prints (a query's rows),
/// or the error message.
fn flight_sql(
    server: &KilnServer,
    credentials: Option<(&str, &str)>,
    request: &[&str],
) -> Result<Vec<Value>, String> {
    let workspace = kiln_testkit::workspace_dir();
    let mut command = std::process::Command::new(workspace.join("tests/sql/.venv/bin/python"));
    command
        .arg(workspace.join("tests/sql/flight_sql_client.py"))
        .arg("--uri")
        .arg(format!("grpc://{}", server.http_addr()))
        .args(request);
    if let Some((user, password)) = credentials {
        command.args(["--username", user, "--password", password]);
    }
    let output = command
        .output()
        .expect("tests/sql/.venv: run bash .ci/test once to install the ADBC driver");
    let stdout = String::from_utf8(output.stdout).unwrap();
    if !output.status.success() {
        return Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_clients_get_the_same_rows_with_the_same_credentials() {
    const OWNER: &str = "owner-of-tenant-sql-0123456789";
    const STRANGER: &str = "owner-of-another-tenant-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let server = crate::security::server_with_tokens(
        dir.path(),
        &[
            (OWNER, "tenant-sql", &["read", "write"]),
            (STRANGER, "tenant-other", &["read", "write"]),
        ],
    )
    .await;
    let response = reqwest::Client::new()
        .post(server.url("/ingest"))
        .query(&[("name", "checkout"), ("format", "pprof")])
        .bearer_auth(OWNER)
        .body(std::fs::read(testdata("pprof/regexp.cpu.pb.gz")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let query = format!(
        "SELECT function, sum(value) AS self FROM samples WHERE {SINCE} \
         AND profile_type = '{CPU}' GROUP BY function ORDER BY self DESC, function LIMIT 5"
    );
    // The rows /api/v1/sql answers with the same token.
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/sql"))
        .bearer_auth(OWNER)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let expected: Vec<Value> = response.json().await.unwrap();
    assert_eq!(expected.len(), 5);
    let query_ref = query.clone();
    // The client blocks: off the runtime's workers, which serve the server's tasks here too.
    let run = |credentials: Option<(&'static str, &'static str)>, q: String| {
        tokio::task::block_in_place(|| flight_sql(&server, credentials, &["--query", &q]))
    };
    // Basic auth in the handshake (tenant and token), then the bearer token it answers with.
    let rows = run(Some(("tenant-sql", OWNER)), query_ref.clone()).unwrap();
    assert_eq!(rows, expected);
    // Another tenant's token reads nothing of it; no token, or a wrong one, is refused.
    let foreign = run(Some(("tenant-other", STRANGER)), query_ref.clone()).unwrap();
    assert!(foreign.is_empty(), "{foreign:?}");
    let refused = run(None, query_ref.clone()).unwrap_err();
    assert!(refused.contains("missing credentials"), "{refused}");
    let refused = run(Some(("tenant-sql", "not-a-token-0123456789")), query_ref).unwrap_err();
    assert!(refused.contains("invalid credentials"), "{refused}");
    // The engine's refusals reach the client with their message.
    let refused = run(
        Some(("tenant-sql", OWNER)),
        "SELECT count(*) FROM samples".into(),
    )
    .unwrap_err();
    assert!(refused.contains("a time range is required"), "{refused}");
    let refused = run(Some(("tenant-sql", OWNER)), "DROP TABLE samples".into()).unwrap_err();
    assert!(refused.contains("only queries are allowed"), "{refused}");

    // What clients ask before they query: the server's name and abilities, and its one table
    // with its columns, which queries may also name in full.
    let metadata = tokio::task::block_in_place(|| {
        flight_sql(&server, Some(("tenant-sql", OWNER)), &["--metadata"])
    })
    .unwrap();
    let metadata = &metadata[0];
    assert_eq!(metadata["info"]["vendor_name"], "Kiln", "{metadata}");
    assert_eq!(
        metadata["info"]["vendor_version"],
        env!("CARGO_PKG_VERSION"),
        "{metadata}"
    );
    assert_eq!(
        metadata["objects"],
        json!([[
            "kiln",
            "public",
            "samples",
            [
                "time",
                "service_name",
                "profile_type",
                "labels",
                "function",
                "stack",
                "value"
            ]
        ]])
    );
    assert_eq!(metadata["table_types"], json!(["TABLE"]));
    assert_eq!(
        metadata["samples_columns"][0],
        json!(["time", "timestamp[ns, tz=UTC]"])
    );
    let qualified = query.replace("FROM samples", "FROM kiln.public.samples");
    assert_eq!(
        run(Some(("tenant-sql", OWNER)), qualified).unwrap(),
        expected
    );
    // The catalog calls need credentials too.
    let refused =
        tokio::task::block_in_place(|| flight_sql(&server, None, &["--metadata"])).unwrap_err();
    assert!(refused.contains("missing credentials"), "{refused}");
}
