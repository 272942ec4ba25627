//! The replicated state: the block index, the tenants, compaction jobs and their queues,
//! tombstones and deleted tenants, with the pure functions that apply commands to it and answer
//! reads. Openraft's state machine wraps it; nothing here does I/O.
//!
//! Applying a command depends only on the command, its log index and the state, so every node
//! reaches the same state from the same log.

mod compaction;
mod index;
mod jobs;
mod queues;
mod retention;
mod snapshot;
mod status;
mod tombstones;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_contract::metastore::{TenantInfo, TombstoneReason};
use kiln_model::{BlockMeta, DatasetMeta, LabelMatcher};

use crate::types::{Command, CommandResponse};
use index::BlockIndex;
use jobs::Jobs;
use queues::Queues;
use tombstones::Tombstones;

/// Everything the group replicates, in memory.
#[derive(Debug, Default)]
pub(crate) struct MetastoreState {
    index: BlockIndex,
    /// Blocks waiting to be compacted (derived: the index minus the jobs' sources).
    queues: Queues,
    jobs: Jobs,
    tombstones: Tombstones,
    /// Tenant to the log index of its latest deletion: a job planned before it cannot bring the
    /// tenant's data back.
    deleted_tenants: BTreeMap<String, u64>,
}

impl MetastoreState {
    /// Applies the command at `log_index`.
    pub(crate) fn apply(&mut self, command: &Command, log_index: u64) -> CommandResponse {
        match command {
            Command::AddBlocks { blocks, now_millis } => {
                let added = blocks
                    .iter()
                    .filter(|block| self.admit(BlockMeta::clone(block), *now_millis))
                    .count();
                CommandResponse::Added(added as u32)
            }
            Command::PollCompaction {
                poll,
                now_millis,
                config,
            } => CommandResponse::Polled(self.poll(poll, config, *now_millis, log_index)),
            Command::ApplyRetention {
                cutoffs,
                now_millis,
            } => CommandResponse::Retained(self.apply_retention(cutoffs, *now_millis)),
            Command::RemoveBlock { id, now_millis } => {
                let present = self.index.get(id).is_some();
                self.drop_block(id, TombstoneReason::Removed, *now_millis);
                CommandResponse::BlockRemoved(present)
            }
            Command::DeleteTenant { tenant, now_millis } => {
                CommandResponse::TenantDeleted(self.delete_tenant(tenant, *now_millis, log_index))
            }
        }
    }

    /// Adds a block to the index and its queue, unless its id is in the index, has a tombstone
    /// or was a source of a remembered committed job (a late retried registration of a
    /// compacted segment must not bring it back).
    fn admit(&mut self, block: BlockMeta, now_millis: i64) -> bool {
        if self.tombstones.contains(&block.id) || self.jobs.was_compacted(&block.id) {
            return false;
        }
        let id = block.id.clone();
        if !self.index.add(block, now_millis) {
            return false;
        }
        let block = Arc::clone(self.index.get(&id).expect("just added"));
        self.queues.push(&block, self.index.created_millis(&block));
        true
    }

    /// Takes a block out of the index for good (out of its queue or its job) and tombstones its
    /// object.
    fn drop_block(&mut self, id: &str, reason: TombstoneReason, now_millis: i64) {
        let Some(block) = self.index.get(id).map(Arc::clone) else {
            return;
        };
        self.queues
            .remove(&block, self.index.created_millis(&block));
        self.index.remove(id);
        if let Some(job) = self.jobs.forget_source(id) {
            tracing::debug!(job, "compaction job dropped: its sources left the index");
        }
        self.tombstones.add(&block, reason, now_millis);
    }

    /// The blocks with data of `tenant` overlapping `[start, end)` in a dataset that may match
    /// every matcher, ordered by start time.
    pub(crate) fn query(
        &self,
        tenant: &str,
        start_nanos: i64,
        end_nanos: i64,
        matchers: &[LabelMatcher],
    ) -> Vec<BlockMeta> {
        self.index.query(tenant, start_nanos, end_nanos, matchers)
    }

    /// Every block holding data of `tenant`, or every block, ordered by id.
    pub(crate) fn list_blocks(&self, tenant: Option<&str>) -> Vec<BlockMeta> {
        self.index.list(tenant)
    }

    /// Every tenant, ordered by id.
    pub(crate) fn tenants(&self) -> Vec<TenantInfo> {
        self.index.tenants()
    }

    /// Number of blocks in the index.
    pub(crate) fn block_count(&self) -> usize {
        self.index.block_count()
    }

    /// Number of tenants.
    pub(crate) fn tenant_count(&self) -> usize {
        self.index.tenant_count()
    }
}

/// `block` with only `datasets`, its time range recomputed from them.
fn with_datasets(block: &BlockMeta, datasets: Vec<DatasetMeta>) -> BlockMeta {
    BlockMeta {
        min_time_nanos: datasets.iter().map(|d| d.min_time_nanos).min().unwrap_or(0),
        max_time_nanos: datasets.iter().map(|d| d.max_time_nanos).max().unwrap_or(0),
        datasets,
        ..block.clone()
    }
}
