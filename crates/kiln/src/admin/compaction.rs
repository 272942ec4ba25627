//! `kiln admin compaction`: jobs, levels, deletions and the compaction lag.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use kiln_contract::metastore::{CompactionStatus, JobState};

use super::{GroupArgs, Output, client};

/// `kiln admin compaction` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum CompactionCommand {
    /// Jobs by level and state, blocks per level, pending deletions and the compaction lag (the
    /// age of the oldest segment not yet compacted).
    Status(StatusArgs),
}

/// Flags of `kiln admin compaction status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Output format: tables, or one JSON object.
    #[arg(long, env = "KILN_ADMIN_OUTPUT", value_enum, default_value = "text")]
    output: Output,
    #[command(flatten)]
    group: GroupArgs,
}

pub(super) async fn run(command: CompactionCommand) -> anyhow::Result<()> {
    let CompactionCommand::Status(args) = command;
    let status = client(&args.group)?.admin_compaction_status().await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let lag_seconds = status
        .oldest_level0_created_millis
        .map(|created| (now - created).max(0) as f64 / 1000.0);
    match args.output {
        Output::Json => println!("{}", status_json(&status, lag_seconds)),
        Output::Text => print_text(&status, lag_seconds),
    }
    Ok(())
}

/// Jobs per level: (planned, running, parked).
fn jobs_by_level(status: &CompactionStatus) -> BTreeMap<u32, [usize; 3]> {
    let mut levels: BTreeMap<u32, [usize; 3]> = BTreeMap::new();
    for job in &status.jobs {
        let counts = levels.entry(job.level).or_default();
        counts[match job.state {
            JobState::Planned => 0,
            JobState::Running => 1,
            JobState::Parked => 2,
        }] += 1;
    }
    levels
}

fn print_text(status: &CompactionStatus, lag_seconds: Option<f64>) {
    println!(
        "{:>5} {:>8} {:>14} {:>7} {:>8} {:>8} {:>7}",
        "level", "blocks", "bytes", "queued", "planned", "running", "parked"
    );
    let jobs = jobs_by_level(status);
    for level in &status.levels {
        let [planned, running, parked] = jobs.get(&level.level).copied().unwrap_or_default();
        println!(
            "{:>5} {:>8} {:>14} {:>7} {:>8} {:>8} {:>7}",
            level.level, level.blocks, level.bytes, level.queued, planned, running, parked
        );
    }
    match lag_seconds {
        Some(lag) => println!("compaction lag: {lag:.1}s (oldest uncompacted segment)"),
        None => println!("compaction lag: 0s (no uncompacted segment)"),
    }
    println!("objects waiting for deletion: {}", status.tombstones.len());
    for job in status.jobs.iter().filter(|j| j.state != JobState::Planned) {
        println!(
            "job {} level {} tenant {:?} {} sources: {} failures {}{}{}",
            job.name,
            job.level,
            job.tenant,
            job.sources,
            job.state.as_str(),
            job.failures,
            if job.worker.is_empty() {
                String::new()
            } else {
                format!(" on {}", job.worker)
            },
            if job.last_error.is_empty() {
                String::new()
            } else {
                format!(" (last error: {})", job.last_error)
            },
        );
    }
}

fn status_json(status: &CompactionStatus, lag_seconds: Option<f64>) -> serde_json::Value {
    let jobs = jobs_by_level(status);
    serde_json::json!({
        "levels": status.levels.iter().map(|l| {
            let [planned, running, parked] = jobs.get(&l.level).copied().unwrap_or_default();
            serde_json::json!({
                "level": l.level,
                "blocks": l.blocks,
                "bytes": l.bytes,
                "queued": l.queued,
                "jobs": {"planned": planned, "running": running, "parked": parked},
            })
        }).collect::<Vec<_>>(),
        "jobs": status.jobs.iter().map(|j| serde_json::json!({
            "name": j.name,
            "tenant": j.tenant,
            "shard": j.shard,
            "level": j.level,
            "sources": j.sources,
            "state": j.state.as_str(),
            "failures": j.failures,
            "worker": j.worker,
            "last_error": j.last_error,
        })).collect::<Vec<_>>(),
        "tombstones": status.tombstones.len(),
        "lag_seconds": lag_seconds.unwrap_or(0.0),
    })
}
