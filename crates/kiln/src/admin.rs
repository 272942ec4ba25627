//! `kiln admin`: operating a running cluster.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use kiln_contract::metastore::MetastoreClient;
use kiln_contract::{ChannelPool, ClusterTls};

mod blocks;
mod compaction;
mod metastore;
mod tenant;

/// `kiln admin` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// The metastore group: status and membership.
    #[command(subcommand)]
    Metastore(MetastoreCommand),
    /// The blocks of the index.
    #[command(subcommand)]
    Blocks(blocks::BlocksCommand),
    /// Compaction jobs, levels and deletions.
    #[command(subcommand)]
    Compaction(compaction::CompactionCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
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

/// Where the metastore is, and how to prove who is asking.
#[derive(Clone, Debug, Args)]
pub(crate) struct GroupArgs {
    /// gRPC addresses (host:port) of metastore nodes, comma-separated; any node will do.
    #[arg(
        long = "metastore.peers",
        env = "KILN_METASTORE_PEERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:9095"
    )]
    peers: Vec<String>,
    /// A token with the `admin` right, sent as a Bearer credential (when the server checks
    /// credentials).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster CA, for a cluster whose port needs mutual TLS.
    #[arg(long = "cluster.tls-ca-file", env = "KILN_CLUSTER_TLS_CA_FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// A certificate signed by the cluster CA.
    #[arg(long = "cluster.tls-cert-file", env = "KILN_CLUSTER_TLS_CERT_FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// Its private key.
    #[arg(long = "cluster.tls-key-file", env = "KILN_CLUSTER_TLS_KEY_FILE")]
    tls_key: Option<std::path::PathBuf>,
}

/// Output format of the admin commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// A table.
    Text,
    /// One JSON object per line.
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
            AdminCommand::Metastore(MetastoreCommand::Status(args)) => {
                metastore::status(args).await
            }
            AdminCommand::Blocks(command) => blocks::run(command).await,
            AdminCommand::Compaction(command) => compaction::run(command).await,
            AdminCommand::Tenant(command) => tenant::run(command).await,
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

pub(crate) fn client(group: &GroupArgs) -> anyhow::Result<MetastoreClient> {
    let tls = match (&group.tls_ca, &group.tls_cert, &group.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            Some(ClusterTls::from_files(ca, cert, key).map_err(anyhow::Error::msg)?)
        }
        (None, None, None) => None,
        _ => anyhow::bail!(
            "cluster TLS needs all of --cluster.tls-ca-file, --cluster.tls-cert-file and --cluster.tls-key-file"
        ),
    };
    // Membership changes wait for a new node to catch up: allow a minute of retries.
    Ok(
        MetastoreClient::new(group.peers.clone(), Duration::from_secs(60))?
            .with_pool(ChannelPool::with_tls(tls))
            .with_token(group.token.clone()),
    )
}
