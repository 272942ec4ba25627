//! `kiln upload` and `kiln query`: the real binary against a real server with credentials
//! checked, figures compared exactly with the uploaded files.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::security::server_with_tokens;
use crate::support::reference::{FunctionTotals, pprof_function_totals};
use crate::support::{UNTIL_SECONDS, decode, input_totals, testdata};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const OWNER: &str = "owner-of-tenant-cli-0123456789";
const READER: &str = "reader-of-tenant-cli-0123456789";
const STRANGER: &str = "owner-of-another-tenant-0123456789";

/// Runs `kiln <args>` against `url` with `token`, with no KILN_* settings from the
/// environment.
pub(crate) fn cli(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .arg("--url")
        .arg(url)
        .env_remove("KILN_URL")
        .env_remove("KILN_TENANT")
        .env_remove("KILN_TOKEN");
    if let Some(token) = token {
        command.arg("--token").arg(token);
    }
    command.output().unwrap()
}

/// The output of a run that succeeded.
pub(crate) fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kiln failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "kiln succeeded unexpectedly");
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn query(service: &str) -> String {
    format!("{CPU}{{service_name=\"{service}\"}}")
}

/// The range that holds every test profile.
fn range() -> [String; 4] {
    [
        "--from".into(),
        "0".into(),
        "--until".into(),
        UNTIL_SECONDS.to_string(),
    ]
}

fn reference(file: &Path) -> (i64, FunctionTotals) {
    let profile = decode(&std::fs::read(file).unwrap());
    (
        input_totals(&profile)[CPU],
        pprof_function_totals(&profile, 1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_query_match_the_files_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tokens(
        dir.path(),
        &[
            (OWNER, "tenant-cli", &["read", "write"]),
            (READER, "tenant-cli", &["read"]),
            (STRANGER, "tenant-other", &["read", "write"]),
        ],
    )
    .await;
    let url = format!("http://{}", server.http_addr());
    let regexp = testdata("pprof/regexp.cpu.pb.gz");
    let sort = testdata("pprof/sort.cpu.pb.gz");
    let jfr = testdata("jfr/java17-hotspot-profile.jfr");
    let folded = dir.path().join("stacks.folded");
    std::fs::write(&folded, "main;work;leaf 42\nmain;idle 8\nmain;work 5\n").unwrap();
    let garbage = dir.path().join("garbage.pb");
    std::fs::write(&garbage, b"\x0a\xffnot a profile").unwrap();

    // Credentials: none, and a token without the write right, stop the upload at once.
    let upload = |token: Option<&str>, files: &[&Path]| {
        let mut args = vec!["upload", "--label", "env=ci"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        cli(&url, token, &args)
    };
    let missing = stderr(&upload(None, &[&regexp]));
    assert!(missing.contains("needs credentials (401"), "{missing}");
    assert!(missing.contains("--token"), "{missing}");
    let read_only = stderr(&upload(Some(READER), &[&regexp]));
    assert!(
        read_only.contains("refused these credentials (403"),
        "{read_only}"
    );
    assert!(read_only.contains("lacks the write right"), "{read_only}");

    // Five files: four accepted, the garbage refused with the server's reason.
    let output = upload(Some(OWNER), &[&regexp, &sort, &jfr, &folded, &garbage]);
    assert_eq!(output.status.code(), Some(1));
    let summary = String::from_utf8(output.stdout).unwrap();
    for (file, what) in [
        (&regexp, "(pprof, service regexp.cpu)"),
        (&sort, "(pprof, service sort.cpu)"),
        (&jfr, "(jfr, service java17-hotspot-profile)"),
        (&folded, "(folded, service stacks)"),
    ] {
        let line = format!("accepted  {}  {what}", file.display());
        assert!(summary.contains(&line), "{line} in:\n{summary}");
    }
    let refused = format!(
        "refused   {}  the server refused the request (400",
        garbage.display()
    );
    assert!(summary.contains(&refused), "{summary}");
    assert!(summary.contains("malformed pprof"), "{summary}");
    assert!(
        summary.contains(&format!("4 of 5 files accepted by {url}")),
        "{summary}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 of 5 files were refused"));

    // top: every function's self and total, exactly as the file has them.
    let [from_flag, from, until_flag, until] = range();
    let top = |service: &str, token: &str| {
        cli(
            &url,
            Some(token),
            &[
                "query",
                "top",
                "--query",
                &query(service),
                &from_flag,
                &from,
                &until_flag,
                &until,
                "--limit",
                "0",
                "--output",
                "json",
            ],
        )
    };
    let (regexp_total, regexp_functions) = reference(&regexp);
    let rows: Vec<Value> = serde_json::from_str(&stdout(&top("regexp.cpu", READER))).unwrap();
    let answered: FunctionTotals = rows
        .iter()
        .map(|row| {
            (
                row["function"].as_str().unwrap().to_string(),
                (
                    row["self"].as_i64().unwrap(),
                    row["total"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(answered, regexp_functions);
    let selfs: Vec<i64> = rows.iter().map(|r| r["self"].as_i64().unwrap()).collect();
    assert!(selfs.windows(2).all(|w| w[0] >= w[1]), "sorted by self");
    // Another tenant's token sees none of it.
    let foreign: Vec<Value> = serde_json::from_str(&stdout(&top("regexp.cpu", STRANGER))).unwrap();
    assert!(foreign.is_empty(), "{foreign:?}");

    // top as a table: the largest function first, then the total.
    let table = stdout(&cli(
        &url,
        Some(READER),
        &[
            "query",
            "top",
            "-q",
            &query("regexp.cpu"),
            &from_flag,
            &from,
            &until_flag,
            &until,
            "--limit",
            "3",
        ],
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(lines[0].trim_start().starts_with("self"), "{table}");
    assert!(
        lines[1].ends_with(rows[0]["function"].as_str().unwrap()),
        "{table}"
    );
    assert_eq!(
        lines[4],
        format!("total {:.2} s", regexp_total as f64 / 1e9)
    );

    // flamegraph: the root line carries the total.
    let graph = stdout(&cli(
        &url,
        Some(READER),
        &[
            "query",
            "flamegraph",
            "-q",
            &query("regexp.cpu"),
            &from_flag,
            &from,
            &until_flag,
            &until,
        ],
    ));
    let root = graph.lines().nth(1).unwrap();
    assert!(root.contains("100.00%"), "{graph}");
    assert!(
        root.ends_with(&format!("{:.2} s  total", regexp_total as f64 / 1e9)),
        "{graph}"
    );
    assert!(graph.contains("└─ "), "{graph}");

    // merge: the pprof written has the file's totals.
    let merged = dir.path().join("merged.pb.gz");
    let output = cli(
        &url,
        Some(READER),
        &[
            "query",
            "merge",
            "-q",
            &query("regexp.cpu"),
            &from_flag,
            &from,
            &until_flag,
            &until,
            "--output",
            &format!("pprof={}", merged.display()),
        ],
    );
    stdout(&output);
    let profile = decode(&std::fs::read(&merged).unwrap());
    assert_eq!(input_totals(&profile)[CPU], regexp_total);
    assert_eq!(pprof_function_totals(&profile, 0), regexp_functions);

    // diff: each function's change of self value, and both totals.
    let (sort_total, sort_functions) = reference(&sort);
    let answer: Value = serde_json::from_str(&stdout(&cli(
        &url,
        Some(READER),
        &[
            "query",
            "diff",
            "--left-query",
            &query("regexp.cpu"),
            "--left-from",
            "0",
            "--left-until",
            &until,
            "--right-query",
            &query("sort.cpu"),
            "--right-from",
            "0",
            "--right-until",
            &until,
            "--limit",
            "0",
            "--output",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(answer["left_total"], regexp_total);
    assert_eq!(answer["right_total"], sort_total);
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (name, (self_value, _)) in &regexp_functions {
        expected.entry(name.clone()).or_default().0 = *self_value;
    }
    for (name, (self_value, _)) in &sort_functions {
        expected.entry(name.clone()).or_default().1 = *self_value;
    }
    expected.retain(|_, (l, r)| *l != 0 || *r != 0);
    let changes: BTreeMap<String, (i64, i64)> = answer["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            assert_eq!(
                row["change"].as_i64().unwrap(),
                row["right"].as_i64().unwrap() - row["left"].as_i64().unwrap()
            );
            (
                row["function"].as_str().unwrap().to_string(),
                (
                    row["left"].as_i64().unwrap(),
                    row["right"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(changes, expected);

    // series of the folded upload (taken now): its points add up to the file's 55 samples,
    // 10 ms each at the default 100 Hz.
    let series: Vec<Value> = serde_json::from_str(&stdout(&cli(
        &url,
        Some(READER),
        &[
            "query",
            "series",
            "-q",
            &query("stacks"),
            "--from",
            "now-1h",
            "--until",
            "now+1m",
            "--group-by",
            "env",
            "--output",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["group"], "ci");
    let sum: i64 = series[0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 55 * 10_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_messages_a_person_can_act_on() {
    // A query that does not parse is refused before anything is sent, pointing at the place.
    let unreachable = format!(
        "http://127.0.0.1:{}",
        kiln_testkit::ports::free_port().unwrap()
    );
    let bad = format!("{CPU}{{service_name \"x\"}}");
    let message = stderr(&cli(&unreachable, None, &["query", "top", "-q", &bad]));
    let caret_at = CPU.len() + "{service_name ".len();
    assert_eq!(
        message,
        format!(
            "error: --query does not parse at offset {caret_at}: expected one of = != =~ !~\n  {bad}\n  {}^\n",
            " ".repeat(caret_at)
        )
    );
    // A server that is not there.
    let message = stderr(&cli(&unreachable, None, &["query", "top", "-q", CPU]));
    assert!(
        message.starts_with(&format!(
            "error: cannot reach the Kiln server at {unreachable}"
        )),
        "{message}"
    );
    assert!(message.contains("--url"), "{message}");
    // A bad flag value.
    let message = stderr(&cli(
        &unreachable,
        None,
        &["query", "merge", "-q", CPU, "--output", "svg=x"],
    ));
    assert!(message.contains("expected pprof=FILE"), "{message}");
    let message = stderr(&cli(
        &unreachable,
        None,
        &["upload", "--label", "no-equals", "x.pb.gz"],
    ));
    assert!(
        message.contains("invalid --label \"no-equals\""),
        "{message}"
    );
}
