//! `kiln admin metastore`: the Raft group's status and membership.

use kiln_proto::kiln::metastore::v1::{Node, StatusResponse};

use super::{Output, StatusArgs};

pub(super) async fn status(args: StatusArgs) -> anyhow::Result<()> {
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
    let client = super::client(&args.group)?;
    for addr in &args.group.peers {
        match client.status_of(addr).await {
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
