//! `kiln query`: top functions, a text flame graph, time series, merged pprof and diffs, from a
//! server's query API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::display::{TreeView, flamegraph, human, percent, table};
use super::profile::{Stacks, diff};
use super::{ApiClient, ServerAddr};

/// `kiln query` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum QueryCommand {
    /// Functions by self value, with self and total (exact: from the merged profile, not cut
    /// to a flame graph's node limit).
    Top(TopArgs),
    /// A flame graph as an indented tree with bars.
    Flamegraph(FlamegraphArgs),
    /// The total over time, optionally one series per value of a label.
    Series(SeriesArgs),
    /// The merged profile, written as gzipped pprof (for `go tool pprof`).
    Merge(MergeArgs),
    /// How each function's self value changed between two selections.
    Diff(DiffArgs),
    /// A SQL query over the profiles (docs/sql.md), printed as a table.
    Sql(SqlArgs),
    /// Functions whose in-use memory grows steadily (the memory-leak report).
    Leaks(LeaksArgs),
}

/// `kiln query` with its shared flags.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    server: ServerAddr,
    #[command(subcommand)]
    command: QueryCommand,
}

/// What to query: a profile type and label selector, over a time range.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// `<profile type>{<label matchers>}`, e.g.
    /// `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="checkout"}`.
    #[arg(long, short = 'q')]
    query: String,
    /// Start: `now-1h`, Unix seconds or milliseconds, or RFC 3339.
    #[arg(long, default_value = "now-1h")]
    from: String,
    /// End, as --from.
    #[arg(long, default_value = "now")]
    until: String,
}

/// How to print a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns for a person.
    Table,
    /// JSON for programs.
    Json,
}

/// Flags of `kiln query top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    selection: Selection,
    /// Functions shown at most (0: all).
    #[arg(long, default_value = "20")]
    limit: usize,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// Flags of `kiln query flamegraph`.
#[derive(Debug, Args)]
pub(crate) struct FlamegraphArgs {
    #[command(flatten)]
    selection: Selection,
    /// Call paths below this percentage of the total are summed into one line.
    #[arg(long, default_value = "1")]
    min_percent: f64,
    /// Call depth shown at most.
    #[arg(long, default_value = "64")]
    max_depth: usize,
}

/// Flags of `kiln query series`.
#[derive(Debug, Args)]
pub(crate) struct SeriesArgs {
    #[command(flatten)]
    selection: Selection,
    /// One series per value of this label.
    #[arg(long)]
    group_by: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// Flags of `kiln query merge`.
#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    #[command(flatten)]
    selection: Selection,
    /// Where to write: `pprof=FILE`.
    #[arg(long, value_parser = parse_merge_output)]
    output: PathBuf,
}

/// Flags of `kiln query diff`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The baseline's query.
    #[arg(long)]
    left_query: String,
    /// The baseline's start.
    #[arg(long, default_value = "now-2h")]
    left_from: String,
    /// The baseline's end.
    #[arg(long, default_value = "now-1h")]
    left_until: String,
    /// The comparison's query (default: the baseline's).
    #[arg(long)]
    right_query: Option<String>,
    /// The comparison's start.
    #[arg(long, default_value = "now-1h")]
    right_from: String,
    /// The comparison's end.
    #[arg(long, default_value = "now")]
    right_until: String,
    /// Functions shown at most (0: all).
    #[arg(long, default_value = "20")]
    limit: usize,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// Flags of `kiln query sql`.
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// The query, e.g. `SELECT function, sum(value) FROM samples WHERE time >= now() -
    /// interval '1 hour' GROUP BY function ORDER BY 2 DESC LIMIT 10`.
    sql: String,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// Flags of `kiln query leaks`.
#[derive(Debug, Args)]
pub(crate) struct LeaksArgs {
    /// An in-use memory profile type and selector, e.g.
    /// `memory:inuse_space:bytes:space:bytes{service_name="checkout"}`.
    #[arg(long, short = 'q')]
    query: String,
    /// Start (leaks show over hours: the default is a day).
    #[arg(long, default_value = "now-24h")]
    from: String,
    /// End.
    #[arg(long, default_value = "now")]
    until: String,
    /// Least R² of a function's line, 0 to 1.
    #[arg(long, default_value = "0.8")]
    min_fit: f64,
    /// Least growth over the range as a share of its start.
    #[arg(long, default_value = "0.1")]
    min_growth: f64,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

fn parse_merge_output(text: &str) -> Result<PathBuf, String> {
    match text.split_once('=') {
        Some(("pprof", file)) if !file.is_empty() => Ok(PathBuf::from(file)),
        _ => Err(format!(
            "expected pprof=FILE, got {text:?} (pprof is the one format merge writes)"
        )),
    }
}

pub(crate) async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.server)?;
    match args.command {
        QueryCommand::Top(args) => top(&client, args).await,
        QueryCommand::Flamegraph(args) => flame(&client, args).await,
        QueryCommand::Series(args) => series(&client, args).await,
        QueryCommand::Merge(args) => merge(&client, args).await,
        QueryCommand::Diff(args) => compare(&client, args).await,
        QueryCommand::Sql(args) => sql(&client, args).await,
        QueryCommand::Leaks(args) => leaks(&client, args).await,
    }
}

/// Refuses a query that does not parse, pointing at the place.
fn check(flag: &str, query: &str) -> anyhow::Result<()> {
    kiln_querier::check_query(query).map_err(|e| {
        let caret = " ".repeat(query[..e.offset].chars().count());
        anyhow::anyhow!(
            "{flag} does not parse at offset {}: {}\n  {query}\n  {caret}^",
            e.offset,
            e.reason
        )
    })
}

/// The merged pprof of a selection, gzipped as the server sends it.
async fn pprof(
    client: &ApiClient,
    query: &str,
    from: &str,
    until: &str,
) -> anyhow::Result<bytes::Bytes> {
    Ok(client
        .get(
            "/api/v1/pprof",
            &[("query", query), ("from", from), ("until", until)],
        )
        .await?)
}

async fn stacks(client: &ApiClient, selection: &Selection) -> anyhow::Result<Stacks> {
    check("--query", &selection.query)?;
    let bytes = pprof(client, &selection.query, &selection.from, &selection.until).await?;
    Stacks::from_pprof(&bytes)
}

fn limited<T>(items: Vec<T>, limit: usize) -> Vec<T> {
    match limit {
        0 => items,
        n => items.into_iter().take(n).collect(),
    }
}

async fn top(client: &ApiClient, args: TopArgs) -> anyhow::Result<()> {
    let stacks = stacks(client, &args.selection).await?;
    let total = stacks.total();
    let functions = limited(stacks.functions(), args.limit);
    match args.output {
        Output::Json => {
            let rows: Vec<Value> = functions
                .iter()
                .map(|f| json!({"function": f.function, "self": f.self_value, "total": f.total}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Output::Table => {
            if total == 0 {
                println!("no profiles match {} in this range", args.selection.query);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = functions
                .iter()
                .map(|f| {
                    vec![
                        human(f.self_value, &stacks.unit),
                        format!("{:.2}%", percent(f.self_value, total)),
                        human(f.total, &stacks.unit),
                        format!("{:.2}%", percent(f.total, total)),
                        f.function.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["self", "self%", "total", "total%", "function"],
                    &rows,
                    &[0, 1, 2, 3]
                )
            );
            println!("total {}", human(total, &stacks.unit));
        }
    }
    Ok(())
}

async fn flame(client: &ApiClient, args: FlamegraphArgs) -> anyhow::Result<()> {
    if !(0.0..=100.0).contains(&args.min_percent) {
        bail!(
            "invalid --min-percent {}: expected 0 to 100",
            args.min_percent
        );
    }
    let stacks = stacks(client, &args.selection).await?;
    if stacks.total() == 0 {
        println!("no profiles match {} in this range", args.selection.query);
        return Ok(());
    }
    let view = TreeView {
        min_percent: args.min_percent,
        max_depth: args.max_depth.max(1),
        bar_width: 24,
    };
    print!("{}", flamegraph(&stacks, &stacks.tree(), view));
    Ok(())
}

async fn series(client: &ApiClient, args: SeriesArgs) -> anyhow::Result<()> {
    let selection = &args.selection;
    check("--query", &selection.query)?;
    let mut query = vec![
        ("query", selection.query.as_str()),
        ("from", selection.from.as_str()),
        ("until", selection.until.as_str()),
        ("maxNodes", "1"),
    ];
    if let Some(label) = &args.group_by {
        query.push(("groupBy", label));
    }
    let body = client.get("/pyroscope/render", &query).await?;
    let answer: Value = serde_json::from_slice(&body).context("the server's answer is not JSON")?;
    let unit = selection
        .query
        .split('{')
        .next()
        .and_then(|t| t.split(':').nth(2))
        .unwrap_or("")
        .to_string();
    let mut columns: Vec<(String, Timeline)> = Vec::new();
    match answer["groups"]
        .as_object()
        .filter(|_| args.group_by.is_some())
    {
        Some(groups) => {
            for (name, timeline) in groups {
                columns.push((name.clone(), Timeline::parse(timeline)?));
            }
        }
        None => columns.push(("total".to_string(), Timeline::parse(&answer["timeline"])?)),
    }
    let Some((_, first)) = columns.first() else {
        println!("no profiles match {} in this range", selection.query);
        return Ok(());
    };
    let (start, step, points) = (first.start, first.step, first.samples.len());
    match args.output {
        Output::Json => {
            let series: Vec<Value> = columns
                .iter()
                .map(|(name, timeline)| {
                    let points: Vec<Value> = timeline
                        .samples
                        .iter()
                        .enumerate()
                        .map(|(i, v)| json!({"time": timeline.start + i as i64 * timeline.step, "value": v}))
                        .collect();
                    json!({"group": name, "points": points})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&series)?);
        }
        Output::Table => {
            let mut header = vec!["time".to_string()];
            header.extend(columns.iter().map(|(name, _)| name.clone()));
            let rows: Vec<Vec<String>> = (0..points)
                .map(|i| {
                    let time = std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs((start + i as i64 * step).max(0) as u64);
                    let mut row = vec![humantime::format_rfc3339_seconds(time).to_string()];
                    row.extend(
                        columns
                            .iter()
                            .map(|(_, t)| human(t.samples.get(i).copied().unwrap_or(0), &unit)),
                    );
                    row
                })
                .collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let right: Vec<usize> = (1..header.len()).collect();
            print!("{}", table(&header, &rows, &right));
        }
    }
    Ok(())
}

/// A timeline of `/pyroscope/render`: values at `start + i * step` seconds.
struct Timeline {
    start: i64,
    step: i64,
    samples: Vec<i64>,
}

impl Timeline {
    fn parse(value: &Value) -> anyhow::Result<Self> {
        let invalid =
            || anyhow::anyhow!("the server's timeline is not what /pyroscope/render answers");
        Ok(Self {
            start: value["startTime"].as_i64().ok_or_else(invalid)?,
            step: value["durationDelta"].as_i64().ok_or_else(invalid)?.max(1),
            samples: value["samples"]
                .as_array()
                .ok_or_else(invalid)?
                .iter()
                .map(|v| v.as_i64().unwrap_or(0))
                .collect(),
        })
    }
}

async fn merge(client: &ApiClient, args: MergeArgs) -> anyhow::Result<()> {
    let selection = &args.selection;
    check("--query", &selection.query)?;
    let bytes = pprof(client, &selection.query, &selection.from, &selection.until).await?;
    // Check it before writing, so that a file on disk is always a valid profile.
    let stacks = Stacks::from_pprof(&bytes)?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} bytes, total {}): open it with go tool pprof {}",
        args.output.display(),
        bytes.len(),
        human(stacks.total(), &stacks.unit),
        args.output.display()
    );
    Ok(())
}

async fn compare(client: &ApiClient, args: DiffArgs) -> anyhow::Result<()> {
    let right_query = args.right_query.as_deref().unwrap_or(&args.left_query);
    check("--left-query", &args.left_query)?;
    check("--right-query", right_query)?;
    let left = Stacks::from_pprof(
        &pprof(client, &args.left_query, &args.left_from, &args.left_until).await?,
    )?;
    let right = Stacks::from_pprof(
        &pprof(client, right_query, &args.right_from, &args.right_until).await?,
    )?;
    let unit = if left.unit.is_empty() {
        &right.unit
    } else {
        &left.unit
    };
    let changes = limited(diff(&left.functions(), &right.functions()), args.limit);
    match args.output {
        Output::Json => {
            let rows: Vec<Value> = changes
                .iter()
                .map(|c| json!({"function": c.function, "left": c.left, "right": c.right, "change": c.change()}))
                .collect();
            let answer = json!({"left_total": left.total(), "right_total": right.total(), "functions": rows});
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| {
                    let sign = if c.change() > 0 { "+" } else { "" };
                    vec![
                        human(c.left, unit),
                        human(c.right, unit),
                        format!("{sign}{}", human(c.change(), unit)),
                        c.function.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["left self", "right self", "change", "function"],
                    &rows,
                    &[0, 1, 2]
                )
            );
            println!(
                "total {} → {}",
                human(left.total(), unit),
                human(right.total(), unit)
            );
        }
    }
    Ok(())
}

async fn sql(client: &ApiClient, args: SqlArgs) -> anyhow::Result<()> {
    let body = json!({ "query": args.sql });
    match args.output {
        Output::Json => {
            let rows = client
                .post_json("/api/v1/sql", &body, "application/json")
                .await?;
            let rows: Value =
                serde_json::from_slice(&rows).context("the server's answer is not JSON")?;
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Output::Table => {
            let stream = client
                .post_json("/api/v1/sql", &body, "application/vnd.apache.arrow.stream")
                .await?;
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(stream), None)
                    .context("the server's answer is not an Arrow IPC stream")?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .context("the server's Arrow IPC stream is malformed")?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
            println!("{rows} rows");
        }
    }
    Ok(())
}

async fn leaks(client: &ApiClient, args: LeaksArgs) -> anyhow::Result<()> {
    check("--query", &args.query)?;
    let (min_fit, min_growth) = (args.min_fit.to_string(), args.min_growth.to_string());
    let body = client
        .get(
            "/api/v1/leaks",
            &[
                ("query", args.query.as_str()),
                ("from", &args.from),
                ("until", &args.until),
                ("min_fit", &min_fit),
                ("min_growth", &min_growth),
            ],
        )
        .await?;
    let report: Value = serde_json::from_slice(&body).context("the server's answer is not JSON")?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let leaks = report["leaks"].as_array().cloned().unwrap_or_default();
    if leaks.is_empty() {
        println!(
            "no function grows steadily in {} over this range",
            args.query
        );
        return Ok(());
    }
    let unit = args
        .query
        .split('{')
        .next()
        .and_then(|t| t.split(':').nth(2))
        .unwrap_or("");
    let value = |v: &Value| human(v.as_f64().unwrap_or(0.0).round() as i64, unit);
    let rows: Vec<Vec<String>> = leaks
        .iter()
        .map(|leak| {
            vec![
                format!("+{}/h", value(&leak["slope_per_hour"])),
                format!("{:.3}", leak["fit"].as_f64().unwrap_or(0.0)),
                value(&leak["first"]),
                value(&leak["last"]),
                leak["function"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["growth", "fit", "first", "last", "function"],
            &rows,
            &[0, 1, 2, 3]
        )
    );
    println!(
        "points every {} s; growth is the slope of a least-squares line, fit its R²",
        report["step_seconds"]
    );
    Ok(())
}
