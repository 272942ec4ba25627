//! `kiln admin`: operating a running cluster.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use kiln_contract::metastore::MetastoreClient;
use kiln_proto::kiln::metastore::v1::{Node, StatusResponse};

/// `kiln admin` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// The metastore group: status and membership.
    #[command(subcommand)]
    Metastore(MetastoreCommand),
}

/// `kiln admin metastore` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum MetastoreCommand {
    /// Each node's view: state, term, leader, log and applied index, voters, readiness.
    Status(StatusArgs),
    /// Add a node (started with --metastore.peers naming the current group): it joins as a
    /// learner, catches up from the log or a snapshot, then becomes a voter.
    Add(ChangeArgs),
    /// Remove a node from the group.
    Remove(ChangeArgs),
}

/// Where the metastore is.
#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    /// gRPC addresses (host:port) of metastore nodes, comma-separated; any node will do.
    #[arg(
        long = "metastore.peers",
        env = "KILN_METASTORE_PEERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:9095"
    )]
    peers: Vec<String>,
}

/// Output format of `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// A table.
    Text,
    /// One JSON object per node.
    Json,
}

/// Flags of `kiln admin metastore status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    group: GroupArgs,
    /// Output format.
    #[arg(long, env = "KILN_ADMIN_OUTPUT", value_enum, default_value = "text")]
    output: Output,
}

/// Flags of `kiln admin metastore add|remove`.
#[derive(Debug, Args)]
pub(crate) struct ChangeArgs {
    /// The node's advertised gRPC address (its --metastore.advertise-addr or --grpc-addr).
    node: String,
    #[command(flatten)]
    group: GroupArgs,
}

pub(crate) fn run(command: AdminCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            AdminCommand::Metastore(MetastoreCommand::Status(args)) => status(args).await,
            AdminCommand::Metastore(MetastoreCommand::Add(args)) => {
                let node = client(&args.group)?.add_node(&args.node).await?;
                println!("added {} as node {}", node.addr, node.id);
                Ok(())
            }
            AdminCommand::Metastore(MetastoreCommand::Remove(args)) => {
                client(&args.group)?.remove_node(&args.node).await?;
                println!("removed {}", args.node);
                Ok(())
            }
        }
    })
}

fn client(group: &GroupArgs) -> anyhow::Result<MetastoreClient> {
    // Membership changes wait for a new node to catch up: allow a minute of retries.
    Ok(MetastoreClient::new(
        group.peers.clone(),
        Duration::from_secs(60),
    )?)
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    if args.output == Output::Text {
        println!(
            "{:<22} {:>20} {:<9} {:>6} {:<22} {:>9} {:>9} {:>9} {:>8} {:<5} voters",
            "node",
            "id",
            "state",
            "term",
            "leader",
            "last_log",
            "applied",
            "snapshot",
            "blocks",
            "ready"
        );
    }
    for addr in &args.group.peers {
        match MetastoreClient::status_of(addr).await {
            Ok(status) if args.output == Output::Json => println!("{}", status_json(&status)),
            Ok(status) => println!("{}", status_line(&status)),
            Err(e) => {
                failed += 1;
                match args.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({"node": {"addr": addr}, "error": e.to_string()})
                    ),
                    Output::Text => println!("{addr:<22} unreachable: {e}"),
                }
            }
        }
    }
    if failed == args.group.peers.len() {
        anyhow::bail!("no metastore node answered");
    }
    Ok(())
}

fn addr_of(node: &Option<Node>) -> &str {
    node.as_ref().map_or("", |n| n.addr.as_str())
}

fn status_line(s: &StatusResponse) -> String {
    let voters: Vec<&str> = s.voters.iter().map(|n| n.addr.as_str()).collect();
    format!(
        "{:<22} {:>20} {:<9} {:>6} {:<22} {:>9} {:>9} {:>9} {:>8} {:<5} {}",
        addr_of(&s.node),
        s.node.as_ref().map_or(0, |n| n.id),
        s.state,
        s.term,
        addr_of(&s.leader),
        s.last_log_index,
        s.applied_index,
        s.snapshot_index,
        s.blocks,
        s.ready,
        voters.join(",")
    )
}

fn status_json(s: &StatusResponse) -> serde_json::Value {
    let nodes = |nodes: &[Node]| {
        nodes
            .iter()
            .map(|n| serde_json::json!({"id": n.id.to_string(), "addr": n.addr}))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "node": {"id": s.node.as_ref().map_or(0, |n| n.id).to_string(), "addr": addr_of(&s.node)},
        "state": s.state,
        "term": s.term,
        "leader": addr_of(&s.leader),
        "last_log_index": s.last_log_index,
        "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index,
        "purged_index": s.purged_index,
        "voters": nodes(&s.voters),
        "learners": nodes(&s.learners),
        "blocks": s.blocks,
        "tenants": s.tenants,
        "ready": s.ready,
        "snapshots_installed": s.snapshots_installed,
    })
}
