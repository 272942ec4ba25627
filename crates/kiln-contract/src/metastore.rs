//! The metastore's contract: the block index, the tenants and the membership of the other roles,
//! as every other role sees them. The Raft group (`kiln-metastore`) implements [`Metastore`] in
//! process; [`MetastoreClient`] implements it over gRPC against any node of the group.

mod client;
mod compaction;
mod error;
pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use kiln_model::{BlockMeta, LabelMatcher};
use serde::{Deserialize, Serialize};

use crate::Role;

pub use client::MetastoreClient;
pub use compaction::{
    CompactionAssignment, CompactionJob, CompactionPoll, CompactionStatus, JobInfo, JobOutcome,
    JobState, JobUpdate, LevelInfo, RefusedUpdate, RetentionCutoff, RetentionRemoval, Tombstone,
    TombstoneReason,
};
pub use error::MetastoreError;

/// A member is alive while its last heartbeat is younger than this.
pub const MEMBER_TTL: Duration = Duration::from_secs(10);

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

/// A tenant as the index saw it appear, with its totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// The tenant id.
    pub id: String,
    /// Earliest profile time seen, unix nanoseconds.
    pub first_seen_nanos: i64,
    /// Blocks holding data of the tenant.
    pub blocks: u64,
    /// Profiles of the tenant over all its blocks.
    pub profiles: u64,
    /// Samples of the tenant over all its blocks.
    pub samples: u64,
}

/// A role instance known from its heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's role.
    pub role: Role,
    /// The address it announced: gRPC for ingesters, HTTP for distributors and queriers.
    pub addr: String,
    /// Unix milliseconds of its first heartbeat seen by this leader.
    pub first_seen_millis: i64,
    /// Unix milliseconds of its latest heartbeat.
    pub last_seen_millis: i64,
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

    /// Announces that the instance of `role` at `addr` is alive.
    async fn heartbeat(&self, role: Role, addr: &str) -> Result<(), MetastoreError>;

    /// The role instances alive now, of one role or all.
    async fn members(&self, role: Option<Role>) -> Result<Vec<Member>, MetastoreError>;

    /// True while the metastore can serve a linearizable read.
    async fn is_ready(&self) -> bool;

    /// Every block in the index holding data of `tenant`, or every block; linearizable.
    async fn list_blocks(&self, tenant: Option<&str>) -> Result<Vec<BlockMeta>, MetastoreError>;

    /// Removes every block of `tenant` from the index (its datasets from multi-tenant segments)
    /// and tombstones the objects left without data. Returns how many blocks held its data.
    async fn delete_tenant(&self, tenant: &str) -> Result<u64, MetastoreError>;

    /// A compactor's poll: applies its reports, then hands it new jobs and due deletions.
    async fn poll_compaction(
        &self,
        poll: CompactionPoll,
    ) -> Result<CompactionAssignment, MetastoreError>;

    /// Removes each tenant's data entirely older than its cutoff from the index, tombstoning
    /// the objects left without data.
    async fn apply_retention(
        &self,
        cutoffs: Vec<RetentionCutoff>,
    ) -> Result<Vec<RetentionRemoval>, MetastoreError>;

    /// Jobs, blocks per level, tombstones and the oldest uncompacted segment; linearizable.
    async fn compaction_status(&self) -> Result<CompactionStatus, MetastoreError>;
}
