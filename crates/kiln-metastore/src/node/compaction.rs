//! The node's compaction, retention and tenant API: writes proposed on the leader (forwarded
//! by followers), reads linearizable.

use kiln_contract::metastore::{
    CompactionAssignment, CompactionPoll, CompactionStatus, MetastoreError, RetentionCutoff,
    RetentionRemoval, wire,
};
use kiln_model::BlockMeta;
use kiln_proto::kiln::metastore::v1 as pb;
use kiln_proto::kiln::metastore::v1::compaction_service_client::CompactionServiceClient;
use kiln_proto::kiln::metastore::v1::metastore_admin_service_client::MetastoreAdminServiceClient;
use tonic::transport::Channel;

use super::{MetastoreNode, Proposed, forwarded, now_millis, unexpected};
use crate::types::{Command, CommandResponse, PollRecord};

impl MetastoreNode {
    /// Every block holding data of `tenant`, or every block, ordered by id; linearizable.
    pub async fn list_blocks(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<BlockMeta>, MetastoreError> {
        self.linearizable_barrier().await?;
        Ok(self.state_machine.state().read().await.list_blocks(tenant))
    }

    /// Jobs, blocks per level, tombstones and the oldest segment; linearizable.
    pub async fn compaction_status(&self) -> Result<CompactionStatus, MetastoreError> {
        self.linearizable_barrier().await?;
        let state = self.state_machine.state().read().await;
        Ok(state.compaction_status(&self.compaction))
    }

    /// The compaction status of this node's applied state, without a linearizable read: what
    /// metrics report (every node applies the same log, so followers lag by little).
    pub async fn local_compaction_status(&self) -> CompactionStatus {
        let state = self.state_machine.state().read().await;
        state.compaction_status(&self.compaction)
    }

    /// Removes every dataset of `tenant` from the index and the tenant itself; tombstones the
    /// objects left without data. Returns how many blocks held its data.
    pub async fn delete_tenant(&self, tenant: &str) -> Result<u64, MetastoreError> {
        if tenant.is_empty() {
            return Err(MetastoreError::InvalidArgument(
                "delete tenant needs a tenant id".into(),
            ));
        }
        let command = Command::DeleteTenant {
            tenant: tenant.to_string(),
            now_millis: now_millis(),
        };
        match self.propose(command).await? {
            Proposed::Applied(CommandResponse::TenantDeleted(blocks)) => {
                tracing::info!(tenant, blocks, "tenant deleted from the index");
                Ok(blocks)
            }
            Proposed::Applied(other) => Err(unexpected("delete tenant", &other)),
            Proposed::Forward(leader) => {
                let reply = MetastoreAdminServiceClient::new(self.channel(&leader)?)
                    .delete_tenant(pb::DeleteTenantRequest {
                        tenant: tenant.to_string(),
                    })
                    .await
                    .map_err(|s| forwarded("delete tenant", &leader, s))?;
                Ok(reply.into_inner().blocks)
            }
        }
    }

    /// Removes block `id` from the index and tombstones its object; false when it was not there.
    pub async fn remove_block(&self, id: &str) -> Result<bool, MetastoreError> {
        if id.is_empty() {
            return Err(MetastoreError::InvalidArgument(
                "remove block needs a block id".into(),
            ));
        }
        let command = Command::RemoveBlock {
            id: id.to_string(),
            now_millis: now_millis(),
        };
        match self.propose(command).await? {
            Proposed::Applied(CommandResponse::BlockRemoved(removed)) => {
                tracing::info!(id, removed, "block removed from the index by an operator");
                Ok(removed)
            }
            Proposed::Applied(other) => Err(unexpected("remove block", &other)),
            Proposed::Forward(leader) => {
                let reply = MetastoreAdminServiceClient::new(self.channel(&leader)?)
                    .remove_block(pb::RemoveBlockRequest { id: id.to_string() })
                    .await
                    .map_err(|s| forwarded("remove block", &leader, s))?;
                Ok(reply.into_inner().removed)
            }
        }
    }

    /// Removes each tenant's datasets entirely older than its cutoff.
    pub async fn apply_retention(
        &self,
        cutoffs: Vec<RetentionCutoff>,
    ) -> Result<Vec<RetentionRemoval>, MetastoreError> {
        if cutoffs.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(cutoff) = cutoffs.iter().find(|c| c.tenant.is_empty()) {
            return Err(MetastoreError::InvalidArgument(format!(
                "a retention cutoff at {} has no tenant",
                cutoff.before_nanos
            )));
        }
        let command = Command::ApplyRetention {
            cutoffs: cutoffs.iter().cloned().map(Into::into).collect(),
            now_millis: now_millis(),
        };
        match self.propose(command).await? {
            Proposed::Applied(CommandResponse::Retained(removed)) => Ok(removed),
            Proposed::Applied(other) => Err(unexpected("apply retention", &other)),
            Proposed::Forward(leader) => {
                let reply = compaction_client(self.channel(&leader)?)
                    .apply_retention(wire::cutoffs_to_pb(&cutoffs))
                    .await
                    .map_err(|s| forwarded("apply retention", &leader, s))?;
                Ok(wire::removals_from_pb(reply.into_inner()))
            }
        }
    }

    /// A compactor's poll. The leader answers a poll with nothing to report, nothing to hand
    /// out and no lease ended without a Raft write; otherwise it proposes the poll. Followers
    /// forward it to the leader.
    pub async fn poll_compaction(
        &self,
        poll: CompactionPoll,
    ) -> Result<CompactionAssignment, MetastoreError> {
        if let Some(leader) = self.leader_or_forward().await? {
            return self.forward_poll(&leader, &poll).await;
        }
        let now = now_millis();
        let record = PollRecord::from(poll.clone());
        let has_work =
            self.state_machine
                .state()
                .read()
                .await
                .poll_has_work(&record, &self.compaction, now);
        if !has_work {
            return Ok(CompactionAssignment::default());
        }
        let command = Command::PollCompaction {
            poll: record,
            now_millis: now,
            config: self.compaction.clone(),
        };
        match self.propose(command).await? {
            Proposed::Applied(CommandResponse::Polled(assignment)) => Ok(assignment),
            Proposed::Applied(other) => Err(unexpected("poll compaction", &other)),
            Proposed::Forward(leader) => self.forward_poll(&leader, &poll).await,
        }
    }

    async fn forward_poll(
        &self,
        leader: &str,
        poll: &CompactionPoll,
    ) -> Result<CompactionAssignment, MetastoreError> {
        let reply = compaction_client(self.channel(leader)?)
            .poll_compaction(wire::poll_to_pb(poll))
            .await
            .map_err(|s| forwarded("poll compaction", leader, s))?;
        wire::assignment_from_pb(reply.into_inner())
    }
}

/// A compaction client without message size limits: polls carry block metadata.
fn compaction_client(channel: Channel) -> CompactionServiceClient<Channel> {
    CompactionServiceClient::new(channel)
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES)
}
