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
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::wire;
use super::{
    BlockQuery, CompactionAssignment, CompactionPoll, CompactionStatus, Member, Metastore,
    MetastoreError, RetentionCutoff, RetentionRemoval, TenantInfo,
};
use crate::trace_context::TraceInterceptor;
use crate::{ChannelPool, Role};

/// The largest message the client sends or accepts (as the metastore's services).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// How long one attempt on one node may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of a metastore group.
#[derive(Debug)]
pub struct MetastoreClient {
    peers: Vec<String>,
    pool: ChannelPool,
    next: AtomicUsize,
    retry_for: Duration,
    /// Sent as a Bearer credential on admin calls.
    token: Option<String>,
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
            token: None,
        })
    }

    /// Dials through `pool` (its cluster TLS, its channels).
    pub fn with_pool(mut self, pool: ChannelPool) -> Self {
        self.pool = pool;
        self
    }

    /// Sends `token` as a Bearer credential on admin calls (needed when the server checks
    /// credentials and no cluster certificate vouches for the caller).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// `message` as a request carrying the admin credential, when there is one.
    fn admin_request<T>(&self, message: T) -> Result<tonic::Request<T>, MetastoreError> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                MetastoreError::InvalidArgument("the token is not valid header text".into())
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
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
            match status.code() {
                Code::InvalidArgument => {
                    return Err(MetastoreError::InvalidArgument(
                        status.message().to_string(),
                    ));
                }
                Code::Unauthenticated | Code::PermissionDenied => {
                    return Err(MetastoreError::Denied(format!(
                        "{what}: {}",
                        status.message()
                    )));
                }
                _ => {}
            }
            if started.elapsed() >= self.retry_for {
                return Err(MetastoreError::Unavailable(format!(
                    "{what}: no metastore node answered within {:?}; last error from {peer}: {}",
                    self.retry_for,
                    describe(&status)
                )));
            }
            tracing::debug!(peer, error = %describe(&status), "metastore call failed; trying the next node");
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
    pub async fn status_of(&self, addr: &str) -> Result<pb::StatusResponse, MetastoreError> {
        let channel = self
            .pool
            .channel(addr)
            .map_err(|e| MetastoreError::InvalidArgument(format!("bad address {addr:?}: {e}")))?;
        let request = self.admin_request(pb::StatusRequest {})?;
        let reply = tokio::time::timeout(ATTEMPT_TIMEOUT, admin(channel).status(request))
            .await
            .map_err(|_| MetastoreError::Unavailable(format!("{addr} did not answer")))?
            .map_err(|s| match s.code() {
                Code::Unauthenticated | Code::PermissionDenied => {
                    MetastoreError::Denied(format!("{addr}: {}", s.message()))
                }
                _ => MetastoreError::Unavailable(format!("{addr}: {}", s.message())),
            })?;
        Ok(reply.into_inner())
    }

    /// Adds the node at `addr` to the group (as a voter, once it caught up).
    pub async fn add_node(&self, addr: &str) -> Result<pb::Node, MetastoreError> {
        let request = pb::AddNodeRequest {
            addr: addr.to_string(),
        };
        self.call("add node", |channel| {
            let request = self.admin_request(request.clone());
            async move {
                let reply = admin(channel).add_node(request?).await?;
                Ok(reply.into_inner().node.unwrap_or_default())
            }
        })
        .await
    }

    /// Removes the node at `addr` from the group.
    pub async fn remove_node(&self, addr: &str) -> Result<(), MetastoreError> {
        let request = pb::RemoveNodeRequest {
            addr: addr.to_string(),
        };
        self.call("remove node", |channel| {
            let request = self.admin_request(request.clone());
            async move {
                admin(channel).remove_node(request?).await?;
                Ok(())
            }
        })
        .await
    }
}

impl MetastoreClient {
    /// Every block in the index of `tenant`, or every block, through the admin API (what
    /// `kiln admin blocks list` calls; all-in-one mode serves nothing else to outside callers).
    pub async fn admin_list_blocks(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<BlockMeta>, MetastoreError> {
        let request = pb::ListBlocksRequest {
            tenant: tenant.unwrap_or_default().to_string(),
        };
        let blocks = self
            .call("list blocks", |channel| {
                let request = self.admin_request(request.clone());
                async move {
                    Ok(admin(channel)
                        .list_blocks(request?)
                        .await?
                        .into_inner()
                        .blocks)
                }
            })
            .await?;
        blocks.into_iter().map(wire::block_from_pb).collect()
    }

    /// Compaction as a whole, through the admin API.
    pub async fn admin_compaction_status(&self) -> Result<CompactionStatus, MetastoreError> {
        let response = self
            .call("compaction status", |channel| {
                let request = self.admin_request(pb::CompactionStatusRequest {});
                async move {
                    Ok(admin(channel)
                        .compaction_status(request?)
                        .await?
                        .into_inner())
                }
            })
            .await?;
        wire::status_from_pb(response)
    }

    /// Removes block `id` from the index (its object is deleted after the deletion delay);
    /// false when it was not in the index.
    pub async fn remove_block(&self, id: &str) -> Result<bool, MetastoreError> {
        let request = pb::RemoveBlockRequest { id: id.to_string() };
        self.call("remove block", |channel| {
            let request = self.admin_request(request.clone());
            async move {
                Ok(admin(channel)
                    .remove_block(request?)
                    .await?
                    .into_inner()
                    .removed)
            }
        })
        .await
    }
}

/// The metastore service over `channel`, each call carrying the caller's trace context.
fn service(
    channel: Channel,
) -> MetastoreServiceClient<InterceptedService<Channel, TraceInterceptor>> {
    MetastoreServiceClient::with_interceptor(channel, TraceInterceptor)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn admin(channel: Channel) -> MetastoreAdminServiceClient<Channel> {
    MetastoreAdminServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn compaction(channel: Channel) -> CompactionServiceClient<Channel> {
    CompactionServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
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
            let request = self.admin_request(request.clone());
            async move {
                Ok(admin(channel)
                    .delete_tenant(request?)
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

/// A failed call's status as an error message: its code, and what it means where the server
/// sent no message of its own.
fn describe(status: &Status) -> String {
    match (status.code(), status.message()) {
        (Code::Unimplemented, _) => "the node does not serve this API (an all-in-one server's \
             gRPC port serves only the admin API)"
            .to_string(),
        (code, "") => format!("{code:?}"),
        (code, message) => format!("{code:?}: {message}"),
    }
}
