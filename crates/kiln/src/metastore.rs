//! Starting this process's metastore node: peers from flags or DNS, the advertised address.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use kiln_config::ServerArgs;
use kiln_metastore::{MetastoreNode, NodeConfig};

/// Resolves `--metastore.peers`: host:port entries as given, `dns+NAME:PORT` to every address
/// the name resolves to, sorted so that every node sees the same list.
pub(crate) async fn resolve_peers(peers: &[String]) -> anyhow::Result<Vec<String>> {
    let mut resolved = Vec::new();
    for peer in peers.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if let Some(name) = peer.strip_prefix("dns+") {
            let addrs = tokio::net::lookup_host(name)
                .await
                .with_context(|| format!("cannot resolve the metastore peers name {name:?}"))?;
            let mut found: Vec<String> = addrs.map(|a| a.to_string()).collect();
            found.sort();
            resolved.extend(found);
        } else {
            resolved.push(peer.to_string());
        }
    }
    resolved.sort();
    resolved.dedup();
    Ok(resolved)
}

/// Starts the metastore node of this process. `grpc_addr` is the bound gRPC listener.
pub(crate) async fn start_node(
    args: &ServerArgs,
    grpc_addr: SocketAddr,
) -> anyhow::Result<Arc<MetastoreNode>> {
    let peers = resolve_peers(&args.metastore_peers).await?;
    let advertise_addr = match args
        .metastore_advertise_addr
        .as_ref()
        .or(args.advertise_addr.as_ref())
    {
        Some(addr) => addr.clone(),
        None if peers.is_empty() => grpc_addr.to_string(),
        None if grpc_addr.ip().is_unspecified() => bail!(
            "--grpc-addr {grpc_addr} listens on every interface: set --metastore.advertise-addr \
             to the address the other metastore nodes reach this one at"
        ),
        None => grpc_addr.to_string(),
    };
    let config = NodeConfig {
        dir: args.data_dir.join("metastore"),
        advertise_addr,
        peers,
        snapshot_logs: args.metastore_snapshot_logs,
        heartbeat_interval: args.metastore_heartbeat_interval,
        election_timeout: args.metastore_election_timeout,
    };
    MetastoreNode::start(config)
        .await
        .context("cannot start the metastore")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peers_are_resolved_sorted_and_deduplicated() {
        let peers = resolve_peers(&[
            "b:9095".into(),
            " a:9095".into(),
            "dns+localhost:9095".into(),
            "b:9095".into(),
            String::new(),
        ])
        .await
        .unwrap();
        assert!(peers.contains(&"127.0.0.1:9095".to_string()), "{peers:?}");
        assert_eq!(&peers[peers.len() - 2..], ["a:9095", "b:9095"]);
        assert!(
            resolve_peers(&["dns+no-such-host.invalid:1".into()])
                .await
                .is_err()
        );
    }
}
