//! The metastore's gRPC client: what roles in other processes, the CLI and the load generator
//! use. It finds a serving node by itself and retries across leader changes.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kiln_model::BlockMeta;
use kiln_proto::kiln::metastore::v1 as pb;
use kiln_proto::kiln::metastore::v1::compaction_service_client::CompactionServiceClient;
use kiln_proto::kiln::metastore::v1::metastore_admin_service_client::MetastoreAdminServiceClient;
use kiln_proto::kiln::metastore::v1::metastore_service_client::MetastoreServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::wire;
use super::{
    BlockQuery, CompactionAssignment, CompactionPoll, CompactionStatus, Member, Metastore,
    MetastoreError, RetentionCutoff, RetentionRemoval, TenantInfo,
};
use crate::{ChannelPool, Role};

/// How long one attempt on one node may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of a metastore group.
#[derive(Debug)]
pub struct MetastoreClient {
    peers: Vec<String>,
    pool: ChannelPool,
    next: AtomicUsize,
    retry_for: Duration,
}

impl MetastoreClient {
    /// A client of the group whose nodes listen at `peers` (host:port). Each call is retried on
    /// the next node while the group answers UNAVAILABLE or cannot be reached, for `retry_for`.
    pub fn new(peers: Vec<String>, retry_for: Duration) -> Result<Self, MetastoreError> {
        if peers.is_empty() {
            return Err(MetastoreError::InvalidArgument(
                "the metastore client needs at least one address".into(),
            ));
        }
        Ok(Self {
            peers,
            pool: ChannelPool::default(),
            next: AtomicUsize::new(0),
            retry_for,
        })
    }

    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, MetastoreError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            let turn = self.next.load(Ordering::Relaxed);
            let peer = &self.peers[turn % self.peers.len()];
            let channel = self.pool.channel(peer).map_err(|e| {
                MetastoreError::InvalidArgument(format!("bad address {peer:?}: {e}"))
            })?;
            let status = match tokio::time::timeout(ATTEMPT_TIMEOUT, f(channel)).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(status)) => status,
                Err(_) => {
                    Status::deadline_exceeded(format!("no answer within {ATTEMPT_TIMEOUT:?}"))
                }
            };
            if status.code() == Code::InvalidArgument {
                return Err(MetastoreError::InvalidArgument(
                    status.message().to_string(),
                ));
            }
            if started.elapsed() >= self.retry_for {
                return Err(MetastoreError::Unavailable(format!(
                    "{what}: no metastore node answered within {:?}; last error from {peer}: {}",
                    self.retry_for,
                    status.message()
                )));
            }
            tracing::debug!(peer, error = %status.message(), "metastore call failed; trying the next node");
            // Move on from this node unless another caller already did.
            let _ = self.next.compare_exchange(
                turn,
                turn.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// The status of the node at `addr` itself (no retry on other nodes).
    pub async fn status_of(addr: &str) -> Result<pb::StatusResponse, MetastoreError> {
        let channel = ChannelPool::default()
            .channel(addr)
            .map_err(|e| MetastoreError::InvalidArgument(format!("bad address {addr:?}: {e}")))?;
        let reply = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            MetastoreAdminServiceClient::new(channel).status(pb::StatusRequest {}),
        )
        .await
        .map_err(|_| MetastoreError::Unavailable(format!("{addr} did not answer")))?
        .map_err(|s| MetastoreError::Unavailable(format!("{addr}: {}", s.message())))?;
        Ok(reply.into_inner())
    }

    /// Adds the node at `addr` to the group (as a voter, once it caught up).
    pub async fn add_node(&self, addr: &str) -> Result<pb::Node, MetastoreError> {
        self.call("add node", |channel| async move {
            let reply = MetastoreAdminServiceClient::new(channel)
                .add_node(pb::AddNodeRequest {
                    addr: addr.to_string(),
                })
                .await?;
            Ok(reply.into_inner().node.unwrap_or_default())
        })
        .await
    }

    /// Removes the node at `addr` from the group.
    pub async fn remove_node(&self, addr: &str) -> Result<(), MetastoreError> {
        self.call("remove node", |channel| async move {
            MetastoreAdminServiceClient::new(channel)
                .remove_node(pb::RemoveNodeRequest {
                    addr: addr.to_string(),
                })
                .await?;
            Ok(())
        })
        .await
    }
}

fn service(channel: Channel) -> MetastoreServiceClient<Channel> {
    MetastoreServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

fn compaction(channel: Channel) -> CompactionServiceClient<Channel> {
    CompactionServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

#[async_trait]
impl Metastore for MetastoreClient {
    async fn add_blocks(&self, blocks: Vec<BlockMeta>) -> Result<u32, MetastoreError> {
        let request = pb::AddBlocksRequest {
            blocks: blocks.iter().map(wire::block_to_pb).collect(),
        };
        self.call("add blocks", |channel| {
            let request = request.clone();
            async move {
                Ok(service(channel)
                    .add_blocks(request)
                    .await?
                    .into_inner()
                    .added)
            }
        })
        .await
    }

    async fn query_blocks(&self, query: &BlockQuery) -> Result<Vec<BlockMeta>, MetastoreError> {
        let request = wire::query_to_pb(query);
        let blocks = self
            .call("query blocks", |channel| {
                let request = request.clone();
                async move {
                    Ok(service(channel)
                        .query_blocks(request)
                        .await?
                        .into_inner()
                        .blocks)
                }
            })
            .await?;
        blocks.into_iter().map(wire::block_from_pb).collect()
    }

    async fn tenants(&self) -> Result<Vec<TenantInfo>, MetastoreError> {
        let tenants = self
            .call("list tenants", |channel| async move {
                Ok(service(channel)
                    .list_tenants(pb::ListTenantsRequest {})
                    .await?
                    .into_inner()
                    .tenants)
            })
            .await?;
        Ok(tenants.into_iter().map(wire::tenant_from_pb).collect())
    }

    async fn heartbeat(&self, role: Role, addr: &str) -> Result<(), MetastoreError> {
        let request = pb::HeartbeatRequest {
            role: role.as_str().to_string(),
            addr: addr.to_string(),
        };
        self.call("heartbeat", |channel| {
            let request = request.clone();
            async move {
                service(channel).heartbeat(request).await?;
                Ok(())
            }
        })
        .await
    }

    async fn members(&self, role: Option<Role>) -> Result<Vec<Member>, MetastoreError> {
        let request = pb::ListMembersRequest {
            role: role.map(Role::as_str).unwrap_or_default().to_string(),
        };
        let members = self
            .call("list members", |channel| {
                let request = request.clone();
                async move {
                    Ok(service(channel)
                        .list_members(request)
                        .await?
                        .into_inner()
                        .members)
                }
            })
            .await?;
        members.into_iter().map(wire::member_from_pb).collect()
    }

    async fn is_ready(&self) -> bool {
        let request = pb::ReadIndexRequest {};
        self.call("read index", |channel| async move {
            Ok(service(channel)
                .read_index(request)
                .await?
                .into_inner()
                .read_index)
        })
        .await
        .is_ok()
    }

    async fn list_blocks(&self, tenant: Option<&str>) -> Result<Vec<BlockMeta>, MetastoreError> {
        let request = pb::ListBlocksRequest {
            tenant: tenant.unwrap_or_default().to_string(),
        };
        let blocks = self
            .call("list blocks", |channel| {
                let request = request.clone();
                async move {
                    Ok(service(channel)
                        .list_blocks(request)
                        .await?
                        .into_inner()
                        .blocks)
                }
            })
            .await?;
        blocks.into_iter().map(wire::block_from_pb).collect()
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<u64, MetastoreError> {
        let request = pb::DeleteTenantRequest {
            tenant: tenant.to_string(),
        };
        self.call("delete tenant", |channel| {
            let request = request.clone();
            async move {
                Ok(service(channel)
                    .delete_tenant(request)
                    .await?
                    .into_inner()
                    .blocks)
            }
        })
        .await
    }

    async fn poll_compaction(
        &self,
        poll: CompactionPoll,
    ) -> Result<CompactionAssignment, MetastoreError> {
        let request = wire::poll_to_pb(&poll);
        let response = self
            .call("poll compaction", |channel| {
                let request = request.clone();
                async move {
                    Ok(compaction(channel)
                        .poll_compaction(request)
                        .await?
                        .into_inner())
                }
            })
            .await?;
        wire::assignment_from_pb(response)
    }

    async fn apply_retention(
        &self,
        cutoffs: Vec<RetentionCutoff>,
    ) -> Result<Vec<RetentionRemoval>, MetastoreError> {
        let request = wire::cutoffs_to_pb(&cutoffs);
        let response = self
            .call("apply retention", |channel| {
                let request = request.clone();
                async move {
                    Ok(compaction(channel)
                        .apply_retention(request)
                        .await?
                        .into_inner())
                }
            })
            .await?;
        Ok(wire::removals_from_pb(response))
    }

    async fn compaction_status(&self) -> Result<CompactionStatus, MetastoreError> {
        let response = self
            .call("compaction status", |channel| async move {
                Ok(compaction(channel)
                    .compaction_status(pb::CompactionStatusRequest {})
                    .await?
                    .into_inner())
            })
            .await?;
        wire::status_from_pb(response)
    }
}
