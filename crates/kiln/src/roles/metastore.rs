//! The metastore role: this process's node of the Raft group, or a client of the group when
//! the process runs other roles only. Peers come from flags or DNS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kiln_config::{ServerArgs, Target};
use kiln_contract::metastore::{Metastore, MetastoreClient};
use kiln_contract::{ChannelPool, ClusterTls};
use kiln_metastore::{
    CompactionConfig, MetastoreGrpc, MetastoreMetrics, MetastoreNode, NodeConfig,
};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// How often the node's gauges are refreshed.
const METRICS_INTERVAL: Duration = Duration::from_secs(5);

/// The metastore as this process sees it.
#[derive(Debug)]
pub(crate) struct MetastoreRole {
    /// This process's node of the group, when it runs the metastore role.
    pub(crate) node: Option<Arc<MetastoreNode>>,
    /// What the other roles call: the node itself (no network hop) or a client of the group.
    pub(crate) handle: Arc<dyn Metastore>,
}

impl MetastoreRole {
    /// The gRPC services a node serves to cluster members and operators (none for a client).
    pub(crate) fn member_routes(&self) -> Option<tonic::service::Routes> {
        self.node.as_ref().map(|node| {
            MetastoreGrpc::member_routes(Arc::clone(node))
                .add_service(admin_service(Arc::clone(node)))
        })
    }

    /// The admin service alone (all-in-one mode: no member calls in).
    pub(crate) fn admin_routes(&self) -> Option<tonic::service::Routes> {
        self.node
            .as_ref()
            .map(|node| MetastoreGrpc::admin_routes(Arc::clone(node)))
    }

    /// Registers the node's index and compaction gauges, refreshed every few seconds until
    /// `stop` (nothing for a client).
    pub(crate) fn report_metrics(&self, registry: &mut Registry, stop: &CancellationToken) {
        if let Some(node) = &self.node {
            MetastoreMetrics::new(registry, node).spawn(
                Arc::clone(node),
                METRICS_INTERVAL,
                stop.clone(),
            );
        }
    }

    /// Stops the node, if this process runs one.
    pub(crate) async fn shutdown(self) {
        if let Some(node) = self.node {
            node.shutdown().await;
        }
    }
}

/// The admin service of `node`, to serve beside the member services on the cluster port.
fn admin_service(
    node: Arc<MetastoreNode>,
) -> kiln_proto::kiln::metastore::v1::metastore_admin_service_server::MetastoreAdminServiceServer<
    MetastoreGrpc,
> {
    kiln_proto::kiln::metastore::v1::metastore_admin_service_server::MetastoreAdminServiceServer::new(
        MetastoreGrpc::new(node),
    )
    .max_decoding_message_size(kiln_metastore::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(kiln_metastore::MAX_MESSAGE_BYTES)
}

/// Refuses to go on when the process needs the metastore group but was not told where it is.
pub(crate) fn check_peers(args: &ServerArgs) -> anyhow::Result<()> {
    if !args.runs(Target::Metastore) && args.metastore_peers.iter().all(|p| p.trim().is_empty()) {
        bail!(
            "--target {} without the metastore needs --metastore.peers (the metastore nodes' gRPC addresses)",
            targets(&args.target)
        );
    }
    Ok(())
}

/// Starts this process's metastore node (`grpc_addr` is the bound gRPC listener), or connects to
/// the group named by `--metastore.peers` when the process does not run the metastore.
pub(crate) async fn start(
    args: &ServerArgs,
    grpc_addr: SocketAddr,
    cluster_tls: Option<ClusterTls>,
) -> anyhow::Result<MetastoreRole> {
    if args.runs(Target::Metastore) {
        let node = start_node(args, grpc_addr, cluster_tls).await?;
        return Ok(MetastoreRole {
            handle: Arc::clone(&node) as Arc<dyn Metastore>,
            node: Some(node),
        });
    }
    let peers = resolve_peers(&args.metastore_peers).await?;
    if peers.is_empty() {
        bail!(
            "--target {} without the metastore needs --metastore.peers (the metastore nodes' gRPC addresses)",
            targets(&args.target)
        );
    }
    // Long enough to ride out a leader election; short enough that an ingester parks its
    // registrations soon when the metastore is down.
    let client = MetastoreClient::new(peers, Duration::from_secs(4))?
        .with_pool(ChannelPool::with_tls(cluster_tls));
    Ok(MetastoreRole {
        node: None,
        handle: Arc::new(client),
    })
}

/// The targets as given on the command line, e.g. `distributor,querier`.
pub(crate) fn targets(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

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
async fn start_node(
    args: &ServerArgs,
    grpc_addr: SocketAddr,
    cluster_tls: Option<ClusterTls>,
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
        compaction: CompactionConfig {
            levels: CompactionConfig::parse_levels(&args.compaction.levels)
                .context("--compaction.levels")?,
            lease: args.compaction.job_lease,
            max_failures: args.compaction.max_failures,
        },
        cluster_tls,
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
