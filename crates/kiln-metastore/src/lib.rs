//! The metastore: the cluster's truth, replicated by Raft.
//!
//! A group of 1, 3 or 5 [`MetastoreNode`]s (openraft over redb) holds the block index, the
//! tenants and the membership of the other roles. Other roles talk to it through the
//! [`Metastore`] trait: in-process with the node itself (all-in-one mode, no network hop) or
//! over gRPC with [`MetastoreClient`]. docs/architecture.md describes the state machine.

mod client;
mod convert;
mod error;
mod legacy;
mod log_store;
mod matcher;
mod members;
mod network;
mod node;
mod service;
mod state;
mod state_machine;
mod types;

use async_trait::async_trait;
use kiln_block::BlockMeta;

pub use client::MetastoreClient;
pub use error::MetastoreError;
pub use matcher::{LabelMatcher, MatchOp};
pub use members::{MEMBER_TTL, Member};
pub use node::{MetastoreNode, NodeConfig};
pub use service::MetastoreGrpc;
pub use state::TenantInfo;
pub use types::{Command, CommandResponse, node_id_of};

/// A query of the block index.
#[derive(Clone, Debug)]
pub struct BlockQuery {
    /// The tenant whose data is wanted.
    pub tenant: String,
    /// Start of the range, unix nanoseconds.
    pub start_nanos: i64,
    /// End of the range (exclusive), unix nanoseconds.
    pub end_nanos: i64,
    /// Label matchers that prune datasets (see [`LabelMatcher::may_match`]).
    pub matchers: Vec<LabelMatcher>,
}

impl BlockQuery {
    /// Every block of `tenant` overlapping `[start_nanos, end_nanos)`.
    pub fn new(tenant: &str, start_nanos: i64, end_nanos: i64) -> Self {
        Self {
            tenant: tenant.to_string(),
            start_nanos,
            end_nanos,
            matchers: Vec::new(),
        }
    }
}

/// The metastore, as every other role sees it.
#[async_trait]
pub trait Metastore: Send + Sync + std::fmt::Debug {
    /// Registers blocks; block ids already present are skipped. Returns how many were new.
    async fn add_blocks(&self, blocks: Vec<BlockMeta>) -> Result<u32, MetastoreError>;

    /// Registers one block.
    async fn add_block(&self, block: BlockMeta) -> Result<(), MetastoreError> {
        self.add_blocks(vec![block]).await.map(|_| ())
    }

    /// The blocks holding data of the query's tenant in its range that may match its matchers.
    /// Linearizable: every block registered before the call is seen.
    async fn query_blocks(&self, query: &BlockQuery) -> Result<Vec<BlockMeta>, MetastoreError>;

    /// Every tenant with data, ordered by id.
    async fn tenants(&self) -> Result<Vec<TenantInfo>, MetastoreError>;

    /// Announces that the role instance at `addr` is alive.
    async fn heartbeat(&self, role: &str, addr: &str) -> Result<(), MetastoreError>;

    /// The role instances alive now, of one role or all.
    async fn members(&self, role: Option<&str>) -> Result<Vec<Member>, MetastoreError>;

    /// True while the metastore can serve a linearizable read.
    async fn is_ready(&self) -> bool;
}

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

    async fn heartbeat(&self, role: &str, addr: &str) -> Result<(), MetastoreError> {
        MetastoreNode::heartbeat(self, role, addr).await
    }

    async fn members(&self, role: Option<&str>) -> Result<Vec<Member>, MetastoreError> {
        MetastoreNode::members(self, role).await
    }

    async fn is_ready(&self) -> bool {
        MetastoreNode::is_ready(self).await
    }
}
