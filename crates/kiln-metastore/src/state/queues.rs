//! The blocks waiting to be compacted, per (tenant, shard, level), oldest first. Derived state:
//! every block of the index that no job holds, rebuilt on snapshot load instead of snapshotted.
//!
//! Blocks of every level are queued; planning skips the levels the poll's settings call final,
//! so that what is queued does not depend on any node's settings.

use std::collections::{BTreeMap, BTreeSet};

use kiln_model::{BlockMeta, partition_of};

use crate::config::{CompactionConfig, LevelConfig};

/// Which queue a block waits in: level-0 segments under tenant "", compacted blocks under their
/// tenant and time partition (a compacted block never spans two partitions, and jobs never mix
/// them, so that retention drops whole blocks and queries skip blocks outside their range).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct QueueKey {
    /// The block's tenant ("" for a segment).
    pub(crate) tenant: String,
    /// The ingester shard.
    pub(crate) shard: u32,
    /// The compaction level.
    pub(crate) level: u32,
    /// The start of the block's time partition; 0 for segments, which any times may share.
    pub(crate) partition: i64,
}

impl QueueKey {
    /// The queue of `block`.
    pub(crate) fn of(block: &BlockMeta) -> Self {
        Self {
            tenant: block.tenant.clone(),
            shard: block.shard,
            level: block.compaction_level,
            partition: if block.compaction_level == 0 {
                0
            } else {
                partition_of(block.min_time_nanos)
            },
        }
    }
}

/// The queues.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Queues {
    /// Per queue: (created millis, block id), so the oldest comes first.
    by_key: BTreeMap<QueueKey, BTreeSet<(i64, String)>>,
}

impl Queues {
    /// Queues a block created at `created_millis`.
    pub(crate) fn push(&mut self, block: &BlockMeta, created_millis: i64) {
        self.by_key
            .entry(QueueKey::of(block))
            .or_default()
            .insert((created_millis, block.id.clone()));
    }

    /// Takes a block out of its queue, if it is there.
    pub(crate) fn remove(&mut self, block: &BlockMeta, created_millis: i64) {
        let key = QueueKey::of(block);
        if let Some(queue) = self.by_key.get_mut(&key) {
            queue.remove(&(created_millis, block.id.clone()));
            if queue.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    /// Takes out the batches due at `now_millis`, queue by queue in key order: while a queue
    /// holds `max_blocks` blocks or its oldest is `max_age` old, its oldest `max_blocks` (or
    /// fewer) form a batch.
    pub(crate) fn take_due(
        &mut self,
        config: &CompactionConfig,
        now_millis: i64,
    ) -> Vec<(QueueKey, Vec<String>)> {
        let mut batches = Vec::new();
        for (key, queue) in &mut self.by_key {
            let Some(level) = config.level(key.level) else {
                continue;
            };
            while is_due(queue, level, now_millis) {
                let batch: Vec<String> = (0..level.max_blocks.max(1))
                    .map_while(|_| queue.pop_first().map(|(_, id)| id))
                    .collect();
                batches.push((key.clone(), batch));
            }
        }
        self.by_key.retain(|_, queue| !queue.is_empty());
        batches
    }

    /// True when [`Queues::take_due`] would form a batch.
    pub(crate) fn any_due(&self, config: &CompactionConfig, now_millis: i64) -> bool {
        self.by_key.iter().any(|(key, queue)| {
            config
                .level(key.level)
                .is_some_and(|level| is_due(queue, level, now_millis))
        })
    }

    /// Queued blocks per level, of the levels `config` compacts.
    pub(crate) fn queued_per_level(&self, config: &CompactionConfig) -> BTreeMap<u32, u64> {
        let mut queued = BTreeMap::new();
        for (key, queue) in &self.by_key {
            if config.level(key.level).is_some() {
                *queued.entry(key.level).or_default() += queue.len() as u64;
            }
        }
        queued
    }
}

fn is_due(queue: &BTreeSet<(i64, String)>, level: &LevelConfig, now_millis: i64) -> bool {
    let Some((oldest, _)) = queue.first() else {
        return false;
    };
    queue.len() >= level.max_blocks.max(1) as usize
        || now_millis.saturating_sub(*oldest) >= level.max_age.as_millis() as i64
}
