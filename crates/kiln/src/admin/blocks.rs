//! `kiln admin blocks`: the blocks of the index.

use clap::{Args, Subcommand};
use kiln_model::BlockMeta;

use super::{GroupArgs, Output, client};

/// `kiln admin blocks` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum BlocksCommand {
    /// One line per block in the index: id, tenants, level, time range, size, path.
    List(ListArgs),
    /// Remove blocks from the index (for example one that can no longer be read): queries stop
    /// reading them at once, and compactors delete their objects after the deletion delay.
    Remove(RemoveArgs),
}

/// Flags of `kiln admin blocks remove`.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// Ids of the blocks to remove, as `kiln admin blocks list` prints them.
    #[arg(required = true)]
    ids: Vec<String>,
    #[command(flatten)]
    group: GroupArgs,
}

/// Flags of `kiln admin blocks list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only blocks holding data of this tenant.
    #[arg(long, env = "KILN_ADMIN_TENANT")]
    tenant: Option<String>,
    /// Output format: a table, or one JSON object per block.
    #[arg(long, env = "KILN_ADMIN_OUTPUT", value_enum, default_value = "text")]
    output: Output,
    #[command(flatten)]
    group: GroupArgs,
}

pub(super) async fn run(command: BlocksCommand) -> anyhow::Result<()> {
    match command {
        BlocksCommand::List(args) => list(args).await,
        BlocksCommand::Remove(args) => remove(args).await,
    }
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let client = client(&args.group)?;
    let mut missing = Vec::new();
    for id in &args.ids {
        if client.remove_block(id).await? {
            println!("removed {id}");
        } else {
            missing.push(id.as_str());
        }
    }
    if !missing.is_empty() {
        anyhow::bail!("no block with id {} in the index", missing.join(", "));
    }
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let mut blocks = client(&args.group)?
        .admin_list_blocks(args.tenant.as_deref())
        .await?;
    blocks.sort_by(|a, b| (a.min_time_nanos, &a.id).cmp(&(b.min_time_nanos, &b.id)));
    if args.output == Output::Text {
        println!(
            "{:<26} {:>5} {:<24} {:<24} {:>12} {:<20} path",
            "id", "level", "min_time", "max_time", "size", "tenants"
        );
    }
    for block in &blocks {
        match args.output {
            Output::Json => println!("{}", block_json(block)),
            Output::Text => println!(
                "{:<26} {:>5} {:<24} {:<24} {:>12} {:<20} {}",
                block.id,
                block.compaction_level,
                rfc3339(block.min_time_nanos),
                rfc3339(block.max_time_nanos),
                block.size_bytes,
                tenants(block).join(","),
                block.path
            ),
        }
    }
    Ok(())
}

/// The tenants with data in `block`, sorted, each once.
fn tenants(block: &BlockMeta) -> Vec<&str> {
    let mut tenants: Vec<&str> = block.datasets.iter().map(|d| d.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    tenants
}

/// One block as `--output json` prints it: times in Unix milliseconds, sizes in bytes.
fn block_json(block: &BlockMeta) -> serde_json::Value {
    serde_json::json!({
        "id": block.id,
        "tenants": tenants(block),
        "level": block.compaction_level,
        "min_time": block.min_time_nanos.div_euclid(1_000_000),
        "max_time": block.max_time_nanos.div_euclid(1_000_000),
        "path": block.path,
        "size": block.size_bytes,
        "shard": block.shard,
        "datasets": block.datasets.iter().map(|d| serde_json::json!({
            "tenant": d.tenant,
            "service_name": d.service_name,
            "profiles": d.profiles,
            "samples": d.samples,
        })).collect::<Vec<_>>(),
    })
}

/// A Unix-nanosecond time as RFC 3339 (UTC, millisecond precision).
pub(super) fn rfc3339(nanos: i64) -> String {
    let millis = nanos.div_euclid(1_000_000);
    match u64::try_from(millis) {
        Ok(millis) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis),
        )
        .to_string(),
        Err(_) => nanos.to_string(),
    }
}
