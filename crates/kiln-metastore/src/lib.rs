//! The metastore: the cluster's truth, replicated by Raft.
//!
//! A group of 1, 3 or 5 [`MetastoreNode`]s (openraft over redb) holds the block index, the
//! tenants and the membership of the other roles. Other roles talk to it through the
//! [`Metastore`] trait of `kiln-contract`: in process with the node itself (all-in-one mode, no
//! network hop) or over gRPC with its `MetastoreClient`. The group also plans compaction jobs,
//! which compactors poll for, and tracks the objects to delete. docs/architecture.md describes
//! the state machine.

mod config;
mod legacy;
mod log_store;
mod members;
mod metrics;
mod network;
mod node;
mod service;
mod state;
mod state_machine;
mod types;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod test_support;

use async_trait::async_trait;
use kiln_contract::Role;
use kiln_contract::metastore::{
    BlockQuery, CompactionAssignment, CompactionPoll, CompactionStatus, Member, Metastore,
    MetastoreError, RetentionCutoff, RetentionRemoval, TenantInfo,
};
use kiln_model::BlockMeta;

pub use config::{CompactionConfig, LevelConfig, LevelsError};
pub use metrics::MetastoreMetrics;
pub use node::{MetastoreNode, NodeConfig};
pub use service::{MAX_MESSAGE_BYTES, MetastoreGrpc};
pub use types::{
    Command, CommandResponse, CutoffRecord, OutcomeRecord, PollRecord, UpdateRecord, node_id_of,
};

#[async_trait]
impl Metastore for MetastoreNode {
    async fn add_blocks(&self, blocks: Vec<BlockMeta>) -> Result<u32, MetastoreError> {
        MetastoreNode::add_blocks(self, blocks).await
    }

    async fn query_blocks(&self, query: &BlockQuery) -> Result<Vec<BlockMeta>, MetastoreError> {
        MetastoreNode::query_blocks(self, query).await
    }

    async fn tenants(&self) -> Result<Vec<TenantInfo>, MetastoreError> {
        MetastoreNode::tenants(self).await
    }

    async fn heartbeat(&self, role: Role, addr: &str) -> Result<(), MetastoreError> {
        MetastoreNode::heartbeat(self, role, addr).await
    }

    async fn members(&self, role: Option<Role>) -> Result<Vec<Member>, MetastoreError> {
        MetastoreNode::members(self, role).await
    }

    async fn is_ready(&self) -> bool {
        MetastoreNode::is_ready(self).await
    }

    async fn list_blocks(&self, tenant: Option<&str>) -> Result<Vec<BlockMeta>, MetastoreError> {
        MetastoreNode::list_blocks(self, tenant).await
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<u64, MetastoreError> {
        MetastoreNode::delete_tenant(self, tenant).await
    }

    async fn poll_compaction(
        &self,
        poll: CompactionPoll,
    ) -> Result<CompactionAssignment, MetastoreError> {
        MetastoreNode::poll_compaction(self, poll).await
    }

    async fn apply_retention(
        &self,
        cutoffs: Vec<RetentionCutoff>,
    ) -> Result<Vec<RetentionRemoval>, MetastoreError> {
        MetastoreNode::apply_retention(self, cutoffs).await
    }

    async fn compaction_status(&self) -> Result<CompactionStatus, MetastoreError> {
        MetastoreNode::compaction_status(self).await
    }
}
