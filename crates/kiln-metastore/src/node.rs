//! One metastore node: the Raft instance over the redb stores, bootstrap, writes forwarded to the
//! leader, linearizable reads (read index, on followers too) and membership changes.

mod compaction;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_contract::metastore::{BlockQuery, Member, MetastoreError, TenantInfo, wire};
use kiln_contract::{ChannelPool, ClusterTls, Role};
use kiln_model::BlockMeta;
use kiln_proto::kiln::metastore::v1 as pb;
use kiln_proto::kiln::metastore::v1::metastore_admin_service_client::MetastoreAdminServiceClient;
use kiln_proto::kiln::metastore::v1::metastore_service_client::MetastoreServiceClient;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::config::CompactionConfig;
use crate::legacy;
use crate::log_store::LogStore;
use crate::members::Members;
use crate::network::Network;
use crate::state_machine::StateMachine;
use crate::types::{Command, CommandResponse, NodeId, NodeInfo, Raft, node_id_of};

const IDENTITY: TableDefinition<'_, &str, u64> = TableDefinition::new("node_identity");

/// How a metastore node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Directory of the node's redb database.
    pub dir: PathBuf,
    /// The address other nodes reach this one at (host:port of its gRPC listener).
    pub advertise_addr: String,
    /// Every node of the initial group, this one included; empty for a single-node group. A node
    /// that is not in the list waits to be added with `kiln admin metastore add`.
    pub peers: Vec<String>,
    /// Take a snapshot (and compact the log) after this many applied entries.
    pub snapshot_logs: u64,
    /// Raft heartbeat interval.
    pub heartbeat_interval: Duration,
    /// The shortest election timeout; the longest is twice it.
    pub election_timeout: Duration,
    /// When blocks are compacted and how long workers hold jobs (used while this node leads).
    pub compaction: CompactionConfig,
    /// The cluster's mutual TLS for connections to peers; `None` for plaintext.
    pub cluster_tls: Option<ClusterTls>,
}

impl NodeConfig {
    /// A single-node group in `dir`, as all-in-one mode runs it.
    pub fn single(dir: &Path, advertise_addr: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            advertise_addr: advertise_addr.to_string(),
            peers: Vec::new(),
            snapshot_logs: 10_000,
            heartbeat_interval: Duration::from_millis(250),
            election_timeout: Duration::from_millis(1_000),
            compaction: CompactionConfig::default(),
            cluster_tls: None,
        }
    }
}

/// A running metastore node.
pub struct MetastoreNode {
    id: NodeId,
    addr: String,
    raft: Raft,
    state_machine: StateMachine,
    pool: ChannelPool,
    members: Members,
    read_timeout: Duration,
    compaction: CompactionConfig,
    /// Time from proposing a command to its being committed and applied, on the leader.
    write_duration: prometheus_client::metrics::histogram::Histogram,
}

/// Where a proposed command went.
enum Proposed {
    /// This node leads: the command is committed and applied, with this response.
    Applied(CommandResponse),
    /// Another node leads, at this address: the caller forwards its request there.
    Forward(String),
}

/// The wall clock in unix milliseconds: the time a leader puts in the commands it proposes.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl std::fmt::Debug for MetastoreNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetastoreNode")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetastoreNode {
    /// Opens the node's stores, starts Raft and bootstraps the initial group when this node is
    /// pristine and listed in the peers (idempotent: an initialized node skips it).
    pub async fn start(config: NodeConfig) -> Result<Arc<Self>, MetastoreError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| MetastoreError::Io {
            path: config.dir.display().to_string(),
            source,
        })?;
        let db_path = config.dir.join("raft.redb");
        let storage = |e: &dyn std::error::Error| {
            MetastoreError::Storage(format!("{}: {e}", db_path.display()))
        };
        let db = Arc::new(Database::create(&db_path).map_err(|e| storage(&e))?);
        let id = stored_identity(&db, &config.advertise_addr).map_err(|e| storage(&e))?;
        let log_store = LogStore::open(Arc::clone(&db)).map_err(|e| storage(&e))?;
        let state_machine = StateMachine::open(Arc::clone(&db)).map_err(MetastoreError::Storage)?;

        let election_ms = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "kiln-metastore".to_string(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            install_snapshot_timeout: 30_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: config.snapshot_logs,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| MetastoreError::InvalidArgument(format!("raft configuration: {e}")))?;
        let local_ip = config
            .advertise_addr
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
        let pool = ChannelPool::new(local_ip, config.cluster_tls.clone());
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            Network::new(pool.clone()),
            log_store,
            state_machine.clone(),
        )
        .await
        .map_err(|e| MetastoreError::Storage(format!("cannot start raft: {e}")))?;

        let node = Arc::new(Self {
            id,
            addr: config.advertise_addr.clone(),
            raft,
            state_machine,
            pool,
            members: Members::default(),
            read_timeout: config.election_timeout * 2,
            compaction: config.compaction.clone(),
            write_duration: crate::metrics::raft_histogram(),
        });
        node.bootstrap(&config).await?;
        legacy::import(&node, &config.dir).await?;
        Ok(node)
    }

    async fn bootstrap(&self, config: &NodeConfig) -> Result<(), MetastoreError> {
        let initialized = self.raft.is_initialized().await.map_err(fatal)?;
        let peers = if config.peers.is_empty() {
            vec![config.advertise_addr.clone()]
        } else {
            config.peers.clone()
        };
        if initialized {
            tracing::info!(node_id = self.id, addr = %self.addr, "metastore node restarted");
            return Ok(());
        }
        if !peers.contains(&config.advertise_addr) {
            tracing::info!(
                addr = %self.addr,
                "this node is not in --metastore.peers: waiting to be added with `kiln admin metastore add`"
            );
            return Ok(());
        }
        let mut members = BTreeMap::new();
        for peer in &peers {
            // A fresh single node keeps the id it stored, whatever its address.
            let peer_id = if *peer == self.addr {
                self.id
            } else {
                node_id_of(peer)
            };
            members.insert(peer_id, NodeInfo::new(peer.clone()));
        }
        tracing::info!(node_id = self.id, peers = ?peers, "bootstrapping the metastore group");
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another start already initialized it: the goal is reached.
            Err(RaftError::APIError(e)) => {
                tracing::info!(reason = %e, "metastore group already initialized");
                Ok(())
            }
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The histograms of this node's writes and applies, for [`crate::MetastoreMetrics`].
    pub(crate) fn timings(
        &self,
    ) -> (
        prometheus_client::metrics::histogram::Histogram,
        prometheus_client::metrics::histogram::Histogram,
    ) {
        (
            self.write_duration.clone(),
            self.state_machine.apply_duration.clone(),
        )
    }

    /// The Raft handle, for serving Raft RPCs.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Proposes a command. On a follower the caller forwards its request to the leader named.
    async fn propose(&self, command: Command) -> Result<Proposed, MetastoreError> {
        let started = std::time::Instant::now();
        match self.raft.client_write(command).await {
            Ok(written) => {
                self.write_duration.observe(started.elapsed().as_secs_f64());
                Ok(Proposed::Applied(written.data))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Ok(Proposed::Forward(leader_addr(&forward)?))
            }
            Err(RaftError::APIError(e)) => Err(MetastoreError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Waits until this node's state reflects every write acknowledged before the call: the
    /// leader confirms its leadership with a quorum and names the read index; this node waits
    /// to have applied it.
    pub async fn linearizable_barrier(&self) -> Result<(), MetastoreError> {
        let index = match tokio::time::timeout(self.read_timeout, self.read_index()).await {
            Ok(Ok(index)) => index,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(MetastoreError::Unavailable(format!(
                    "no quorum confirmed a leader within {:?}",
                    self.read_timeout
                )));
            }
        };
        self.raft
            .wait(Some(self.read_timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| {
                MetastoreError::Unavailable(format!("not caught up to read index {index}: {e}"))
            })?;
        Ok(())
    }

    /// The read index: on the leader after a quorum round, otherwise asked of the leader.
    pub async fn read_index(&self) -> Result<u64, MetastoreError> {
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _)) => Ok(read_log_id.map(|l| l.index).unwrap_or_default()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                let leader = leader_addr(&forward)?;
                let mut client = MetastoreServiceClient::new(self.channel(&leader)?);
                let reply = client
                    .read_index(pb::ReadIndexRequest {})
                    .await
                    .map_err(|s| forwarded("read index", &leader, s))?;
                Ok(reply.into_inner().read_index)
            }
            Err(RaftError::APIError(e)) => Err(MetastoreError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }

    /// Registers blocks.
    pub async fn add_blocks(&self, blocks: Vec<BlockMeta>) -> Result<u32, MetastoreError> {
        if blocks.is_empty() {
            return Ok(0);
        }
        let command = Command::AddBlocks {
            blocks: blocks.clone(),
            now_millis: now_millis(),
        };
        match self.propose(command).await? {
            Proposed::Applied(CommandResponse::Added(added)) => Ok(added),
            Proposed::Applied(other) => Err(unexpected("add blocks", &other)),
            Proposed::Forward(leader) => {
                let mut client = MetastoreServiceClient::new(self.channel(&leader)?);
                let reply = client
                    .add_blocks(pb::AddBlocksRequest {
                        blocks: blocks.iter().map(wire::block_to_pb).collect(),
                    })
                    .await
                    .map_err(|s| forwarded("add blocks", &leader, s))?;
                Ok(reply.into_inner().added)
            }
        }
    }

    /// A linearizable query of the block index.
    pub async fn query_blocks(&self, query: &BlockQuery) -> Result<Vec<BlockMeta>, MetastoreError> {
        self.linearizable_barrier().await?;
        let state = self.state_machine.state().read().await;
        Ok(state.query(
            &query.tenant,
            query.start_nanos,
            query.end_nanos,
            &query.matchers,
        ))
    }

    /// Every tenant, linearizable.
    pub async fn tenants(&self) -> Result<Vec<TenantInfo>, MetastoreError> {
        self.linearizable_barrier().await?;
        Ok(self.state_machine.state().read().await.tenants())
    }

    /// Records a heartbeat on the leader (forwarded from followers). No Raft write.
    pub async fn heartbeat(&self, role: Role, addr: &str) -> Result<(), MetastoreError> {
        match self.leader_or_forward().await? {
            None => {
                self.members.heartbeat(role, addr);
                Ok(())
            }
            Some(leader) => {
                let mut client = MetastoreServiceClient::new(self.channel(&leader)?);
                client
                    .heartbeat(pb::HeartbeatRequest {
                        role: role.as_str().to_string(),
                        addr: addr.to_string(),
                    })
                    .await
                    .map_err(|s| forwarded("heartbeat", &leader, s))?;
                Ok(())
            }
        }
    }

    /// The members alive according to the leader.
    pub async fn members(&self, role: Option<Role>) -> Result<Vec<Member>, MetastoreError> {
        match self.leader_or_forward().await? {
            None => Ok(self.members.alive(role)),
            Some(leader) => {
                let mut client = MetastoreServiceClient::new(self.channel(&leader)?);
                let reply = client
                    .list_members(pb::ListMembersRequest {
                        role: role.map(Role::as_str).unwrap_or_default().to_string(),
                    })
                    .await
                    .map_err(|s| forwarded("list members", &leader, s))?;
                reply
                    .into_inner()
                    .members
                    .into_iter()
                    .map(wire::member_from_pb)
                    .collect()
            }
        }
    }

    /// `None` when this node is the leader, else the leader's address.
    async fn leader_or_forward(&self) -> Result<Option<String>, MetastoreError> {
        let metrics = self.raft.metrics().borrow().clone();
        match metrics.current_leader {
            Some(leader) if leader == self.id => Ok(None),
            Some(leader) => metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| Some(n.addr.clone()))
                .ok_or_else(|| MetastoreError::Unavailable("the leader has no address".into())),
            None => Err(MetastoreError::Unavailable("no leader elected".into())),
        }
    }

    /// True while a linearizable read can be served now.
    pub async fn is_ready(&self) -> bool {
        self.linearizable_barrier().await.is_ok()
    }

    /// The node's view of the group.
    pub async fn status(&self) -> pb::StatusResponse {
        let ready = self.is_ready().await;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let node = |id: NodeId| pb::Node {
            id,
            addr: membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default(),
        };
        let state = self.state_machine.state().read().await;
        pb::StatusResponse {
            node: Some(pb::Node {
                id: self.id,
                addr: self.addr.clone(),
            }),
            state: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_string(),
            term: metrics.current_term,
            leader: metrics.current_leader.map(node),
            last_log_index: metrics.last_log_index.unwrap_or_default(),
            applied_index: metrics.last_applied.map(|l| l.index).unwrap_or_default(),
            snapshot_index: metrics.snapshot.map(|l| l.index).unwrap_or_default(),
            purged_index: metrics.purged.map(|l| l.index).unwrap_or_default(),
            voters: membership.voter_ids().map(node).collect(),
            learners: membership.learner_ids().map(node).collect(),
            blocks: state.block_count() as u64,
            tenants: state.tenant_count() as u64,
            ready,
            snapshots_installed: self.state_machine.snapshots_installed(),
        }
    }

    /// Adds the node at `addr`: as a learner until it caught up, then as a voter. Runs on the
    /// leader; other nodes forward it.
    pub async fn add_node(&self, addr: &str) -> Result<pb::Node, MetastoreError> {
        if let Some(leader) = self.leader_or_forward().await? {
            let mut client = MetastoreAdminServiceClient::new(self.channel(&leader)?);
            let reply = client
                .add_node(pb::AddNodeRequest {
                    addr: addr.to_string(),
                })
                .await
                .map_err(|s| forwarded("add node", &leader, s))?;
            return reply
                .into_inner()
                .node
                .ok_or_else(|| MetastoreError::Unavailable("the leader named no node".into()));
        }
        let id = node_id_of(addr);
        tracing::info!(node_id = id, addr, "adding a metastore node as a learner");
        self.raft
            .add_learner(id, NodeInfo::new(addr), true)
            .await
            .map_err(membership_error)?;
        tracing::info!(
            node_id = id,
            addr,
            "the learner caught up; making it a voter"
        );
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        Ok(pb::Node {
            id,
            addr: addr.to_string(),
        })
    }

    /// Removes the node at `addr` from the group. Runs on the leader; other nodes forward it.
    pub async fn remove_node(&self, addr: &str) -> Result<(), MetastoreError> {
        if let Some(leader) = self.leader_or_forward().await? {
            let mut client = MetastoreAdminServiceClient::new(self.channel(&leader)?);
            client
                .remove_node(pb::RemoveNodeRequest {
                    addr: addr.to_string(),
                })
                .await
                .map_err(|s| forwarded("remove node", &leader, s))?;
            return Ok(());
        }
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let Some((&id, _)) = membership.nodes().find(|(_, n)| n.addr == addr) else {
            return Err(MetastoreError::InvalidArgument(format!(
                "no metastore node has the address {addr:?}"
            )));
        };
        tracing::info!(node_id = id, addr, "removing a metastore node");
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
        // A learner left over (retain or an earlier add) goes as well.
        if self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
        {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(membership_error)?;
        }
        Ok(())
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
    }

    fn channel(&self, addr: &str) -> Result<tonic::transport::Channel, MetastoreError> {
        self.pool
            .channel(addr)
            .map_err(|e| MetastoreError::Unavailable(format!("bad address {addr:?}: {e}")))
    }
}

/// The node id kept in the database: the id a node was created with stays its id, even when its
/// address changes later.
fn stored_identity(db: &Database, advertise_addr: &str) -> Result<NodeId, redb::Error> {
    {
        let txn = db.begin_read()?;
        if let Ok(table) = txn.open_table(IDENTITY)
            && let Some(id) = table.get("id")?
        {
            return Ok(id.value());
        }
    }
    let id = node_id_of(advertise_addr);
    let txn = db.begin_write()?;
    txn.open_table(IDENTITY)?.insert("id", id)?;
    txn.commit()?;
    Ok(id)
}

fn leader_addr(forward: &ForwardToLeader<NodeId, NodeInfo>) -> Result<String, MetastoreError> {
    forward
        .leader_node
        .as_ref()
        .map(|n| n.addr.clone())
        .ok_or_else(|| MetastoreError::Unavailable("no leader elected".into()))
}

fn forwarded(what: &str, leader: &str, status: tonic::Status) -> MetastoreError {
    match status.code() {
        tonic::Code::InvalidArgument => MetastoreError::InvalidArgument(status.message().into()),
        _ => MetastoreError::Unavailable(format!(
            "{what} forwarded to the leader at {leader} failed: {}",
            status.message()
        )),
    }
}

/// A response of the wrong kind: the state machine answers each command with its own kind.
fn unexpected(what: &str, response: &CommandResponse) -> MetastoreError {
    MetastoreError::Storage(format!("{what}: unexpected response {response:?}"))
}

fn fatal(e: openraft::error::Fatal<NodeId>) -> MetastoreError {
    MetastoreError::Storage(format!("raft stopped: {e}"))
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> MetastoreError {
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            MetastoreError::InvalidArgument(format!("membership change refused: {e}"))
        }
        RaftError::APIError(e) => MetastoreError::Unavailable(e.to_string()),
        RaftError::Fatal(e) => fatal(e),
    }
}
