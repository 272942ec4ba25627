//! `kiln admin tenant`: removing a tenant.

use clap::{Args, Subcommand};
use kiln_contract::metastore::Metastore;

use super::{GroupArgs, client};

/// `kiln admin tenant` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// Removes everything of a tenant: its blocks leave the index at once (queries see nothing
    /// more), and compactors delete their objects after their deletion delay.
    Delete(DeleteArgs),
}

/// Flags of `kiln admin tenant delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The tenant id.
    tenant: String,
    #[command(flatten)]
    group: GroupArgs,
}

pub(super) async fn run(command: TenantCommand) -> anyhow::Result<()> {
    let TenantCommand::Delete(args) = command;
    let blocks = client(&args.group)?.delete_tenant(&args.tenant).await?;
    println!(
        "deleted tenant {}: {blocks} blocks held its data; compactors delete their objects after \
         --compactor.deletion-delay",
        args.tenant
    );
    Ok(())
}
