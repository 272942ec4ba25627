//! Kiln clusters on loopback, one role per process: a metastore group ([`MetastoreGroup`]), and
//! ingesters, distributors and queriers around one ([`Cluster`]).
//!
//! Data dirs are inside the given command's: `metastore-{i}`, `ingester-{i}`, `distributor-{i}`,
//! `querier-{i}`. Waiting for what a role announces through the metastore (an ingester's
//! membership) needs a metastore client, and is the caller's.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::process::{KilnCommand, KilnServer};

/// How the nodes of a metastore group reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Each node's gRPC listener is on a free loopback port, and the peers know it by it.
    Direct,
    /// Each node is known by the address of a TCP proxy of its own on 127.0.1.N, which it
    /// advertises and dials its peers from, so [`MetastoreGroup::partition`] can cut it off from
    /// the others. The caller's own clients connect from 127.0.0.1 and always pass.
    Proxied,
}

/// A Raft metastore group: `kiln server --target metastore` processes.
#[derive(Debug)]
pub struct MetastoreGroup {
    /// The nodes by index; `None` for one the caller took (to kill it, say).
    pub nodes: Vec<Option<KilnServer>>,
    peers: Vec<String>,
    proxies: Vec<Proxy>,
    network: Network,
    command: KilnCommand,
}

impl MetastoreGroup {
    /// Starts `size` nodes of one group from `command` (its flags go to every node), and waits
    /// until each answers `/ready`.
    pub async fn start(
        command: &KilnCommand,
        size: usize,
        network: Network,
    ) -> anyhow::Result<Self> {
        let mut group = Self {
            nodes: Vec::new(),
            peers: Vec::new(),
            proxies: Vec::new(),
            network,
            command: command.clone(),
        };
        match network {
            // Every node needs the whole peer list before any starts.
            Network::Direct => {
                for port in crate::ports::free_ports(size)? {
                    group.peers.push(format!("127.0.0.1:{port}"));
                }
            }
            Network::Proxied => {
                for index in 0..size {
                    group.add_proxy(index).await?;
                }
            }
        }
        for index in 0..size {
            let node = group.spawn_node(index, &group.peers)?;
            group.nodes.push(Some(node));
        }
        group.wait_ready().await?;
        Ok(group)
    }

    async fn add_proxy(&mut self, index: usize) -> anyhow::Result<()> {
        let proxy = Proxy::bind(proxy_ip(index)).await?;
        self.peers.push(proxy.addr.to_string());
        self.proxies.push(proxy);
        Ok(())
    }

    /// The address each node is known by, by index (the `--metastore.peers` list).
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// `--metastore.peers=` with every node, for a role or a command that uses the group.
    pub fn peers_flag(&self) -> String {
        format!("--metastore.peers={}", self.peers.join(","))
    }

    /// Starts node `index` with `peers` as its peer list, on its data dir (which survives
    /// restarts), and waits for its listeners only. The caller keeps it.
    pub fn spawn_node(&self, index: usize, peers: &[String]) -> anyhow::Result<KilnServer> {
        let mut command = self
            .command
            .in_subdir(&format!("metastore-{index}"))
            .args(["--target", "metastore", INSECURE])
            .arg(format!("--metastore.peers={}", peers.join(",")));
        command = match self.network {
            Network::Direct => command.grpc_addr(&self.peers[index]),
            Network::Proxied => {
                command.arg(format!("--metastore.advertise-addr={}", self.peers[index]))
            }
        };
        let node = command
            .spawn()
            .with_context(|| format!("metastore node {index}"))?;
        if let Some(proxy) = self.proxies.get(index) {
            proxy.set_target(node.grpc_addr());
        }
        Ok(node)
    }

    /// Starts node `index` again (after it was taken and killed) with the whole group as its
    /// peers, and waits until it is ready.
    pub async fn restart_node(&mut self, index: usize) -> anyhow::Result<()> {
        let node = self.spawn_node(index, &self.peers)?;
        node.wait_ready().await?;
        self.nodes[index] = Some(node);
        Ok(())
    }

    /// Starts a new node that knows `peers` (the current group, which must add it) and waits
    /// for its listeners only; returns its index.
    pub async fn add_node(&mut self, peers: &[String]) -> anyhow::Result<usize> {
        let index = self.nodes.len();
        match self.network {
            Network::Direct => {
                let port = crate::ports::free_port()?;
                self.peers.push(format!("127.0.0.1:{port}"));
            }
            Network::Proxied => self.add_proxy(index).await?,
        }
        let node = self.spawn_node(index, peers)?;
        self.nodes.push(Some(node));
        Ok(index)
    }

    /// Waits until every running node answers `/ready`.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        for node in self.nodes.iter().flatten() {
            node.wait_ready().await?;
        }
        Ok(())
    }

    /// Cuts node `index` off from every other node, both ways ([`Network::Proxied`] only).
    pub fn partition(&self, index: usize) {
        assert_eq!(self.network, Network::Proxied, "a partition needs proxies");
        for (other, proxy) in self.proxies.iter().enumerate() {
            if other == index {
                for peer in 0..self.proxies.len() {
                    if peer != index {
                        proxy.block(proxy_ip(peer));
                    }
                }
            } else {
                proxy.block(proxy_ip(index));
            }
        }
    }

    /// Ends every partition.
    pub fn heal(&self) {
        for proxy in &self.proxies {
            proxy.heal();
        }
    }
}

/// The address of node `index`'s proxy, and the one the node dials its peers from.
fn proxy_ip(index: usize) -> IpAddr {
    format!("127.0.1.{}", index + 1)
        .parse()
        .expect("a loopback address")
}

/// Cluster members started here run without cluster TLS unless the caller's command adds the
/// `--cluster.tls-*` files (which then win): most tests are about something else.
const INSECURE: &str = "--cluster.insecure";

/// A TCP proxy in front of one metastore node that can refuse connections by source address.
#[derive(Debug)]
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

#[derive(Debug, Default)]
struct ProxyState {
    target: Mutex<Option<String>>,
    blocked: Mutex<HashSet<IpAddr>>,
    connections: Mutex<Vec<(IpAddr, AbortHandle)>>,
}

impl Proxy {
    /// Listens on `ip` with a free port; forwards nowhere until [`Proxy::set_target`].
    async fn bind(ip: IpAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((ip, 0))
            .await
            .with_context(|| format!("cannot listen on {ip}"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState::default());
        let accepting = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((inbound, peer)) = listener.accept().await {
                let state = Arc::clone(&accepting);
                if state.blocked.lock().unwrap().contains(&peer.ip()) {
                    continue;
                }
                let Some(target) = state.target.lock().unwrap().clone() else {
                    continue;
                };
                let task = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                let mut connections = accepting.connections.lock().unwrap();
                connections.retain(|(_, handle)| !handle.is_finished());
                connections.push((peer.ip(), task.abort_handle()));
            }
        });
        Ok(Self { addr, state })
    }

    /// Where connections go: the node's real gRPC listener.
    fn set_target(&self, target: &str) {
        *self.state.target.lock().unwrap() = Some(target.to_string());
    }

    /// Drops the connections from `ip` and refuses new ones.
    fn block(&self, ip: IpAddr) {
        self.state.blocked.lock().unwrap().insert(ip);
        for (from, handle) in self.state.connections.lock().unwrap().iter() {
            if *from == ip {
                handle.abort();
            }
        }
    }

    /// Lets everyone through again.
    fn heal(&self) {
        self.state.blocked.lock().unwrap().clear();
    }
}

/// A loopback cluster: a metastore group, then ingesters, distributors, queriers and
/// compactors, each started with `--target <role> --metastore.peers=<the group>` and waited for
/// until ready.
#[derive(Debug)]
pub struct Cluster {
    /// `None` for one the caller took (to kill it, say).
    pub ingesters: Vec<Option<KilnServer>>,
    pub distributors: Vec<KilnServer>,
    pub queriers: Vec<KilnServer>,
    /// `None` for one the caller took.
    pub compactors: Vec<Option<KilnServer>>,
    pub metastores: MetastoreGroup,
}

impl Cluster {
    /// A cluster of processes started from `command` (binary, data dir, log filter, and flags
    /// for every process): by default three metastore nodes on [`Network::Direct`] and no other
    /// role.
    pub fn builder(command: &KilnCommand) -> ClusterBuilder {
        ClusterBuilder {
            command: command.clone(),
            metastores: RoleSpec::new(3, &[]),
            network: Network::Direct,
            ingesters: RoleSpec::new(0, &[]),
            distributors: RoleSpec::new(0, &[]),
            queriers: RoleSpec::new(0, &[]),
            compactors: RoleSpec::new(0, &[]),
        }
    }
}

#[derive(Clone, Debug)]
struct RoleSpec {
    count: usize,
    args: Vec<String>,
}

impl RoleSpec {
    fn new(count: usize, args: &[&str]) -> Self {
        Self {
            count,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// What [`Cluster::builder`] starts.
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    command: KilnCommand,
    metastores: RoleSpec,
    network: Network,
    ingesters: RoleSpec,
    distributors: RoleSpec,
    queriers: RoleSpec,
    compactors: RoleSpec,
}

impl ClusterBuilder {
    /// `count` metastore nodes reaching each other over `network`, with `args` as well.
    pub fn metastores(mut self, count: usize, network: Network, args: &[&str]) -> Self {
        self.metastores = RoleSpec::new(count, args);
        self.network = network;
        self
    }

    /// `count` ingesters with `args` as well (their object store flags, say).
    pub fn ingesters(mut self, count: usize, args: &[&str]) -> Self {
        self.ingesters = RoleSpec::new(count, args);
        self
    }

    /// `count` distributors with `args` as well.
    pub fn distributors(mut self, count: usize, args: &[&str]) -> Self {
        self.distributors = RoleSpec::new(count, args);
        self
    }

    /// `count` queriers with `args` as well (their object store flags, say).
    pub fn queriers(mut self, count: usize, args: &[&str]) -> Self {
        self.queriers = RoleSpec::new(count, args);
        self
    }

    /// `count` compactors with `args` as well (their object store flags, say).
    pub fn compactors(mut self, count: usize, args: &[&str]) -> Self {
        self.compactors = RoleSpec::new(count, args);
        self
    }

    /// Starts the metastore group, then each ingester, distributor, querier and compactor in
    /// turn.
    pub async fn start(self) -> anyhow::Result<Cluster> {
        let metastores = MetastoreGroup::start(
            &self.command.clone().args(&self.metastores.args),
            self.metastores.count,
            self.network,
        )
        .await?;
        let peers = metastores.peers_flag();
        let role = async |target: &str, spec: &RoleSpec| -> anyhow::Result<Vec<KilnServer>> {
            let mut servers = Vec::new();
            for index in 0..spec.count {
                let name = format!("{target}-{index}");
                let server = self
                    .command
                    .in_subdir(&name)
                    .args(["--target", target, INSECURE, &peers])
                    .args(&spec.args)
                    .start()
                    .await
                    .context(name)?;
                servers.push(server);
            }
            Ok(servers)
        };
        let ingesters = role("ingester", &self.ingesters).await?;
        let distributors = role("distributor", &self.distributors).await?;
        let queriers = role("querier", &self.queriers).await?;
        let compactors = role("compactor", &self.compactors).await?;
        Ok(Cluster {
            ingesters: ingesters.into_iter().map(Some).collect(),
            distributors,
            queriers,
            compactors: compactors.into_iter().map(Some).collect(),
            metastores,
        })
    }
}
