//! Compaction as an operator sees it: jobs, blocks per level, tombstones, and the oldest
//! uncompacted segment.

use std::collections::BTreeMap;

use kiln_contract::metastore::{CompactionStatus, LevelInfo};

use super::MetastoreState;
use crate::config::CompactionConfig;

impl MetastoreState {
    /// The compaction status; `config` names the levels that are compacted (their queued
    /// blocks count as queued).
    pub(crate) fn compaction_status(&self, config: &CompactionConfig) -> CompactionStatus {
        let mut jobs: Vec<_> = self.jobs.iter().collect();
        jobs.sort_by(|a, b| {
            (a.level, a.created_index, &a.name).cmp(&(b.level, b.created_index, &b.name))
        });
        let mut levels: BTreeMap<u32, LevelInfo> = (0..=config.top_level())
            .map(|level| {
                let info = LevelInfo {
                    level,
                    ..LevelInfo::default()
                };
                (level, info)
            })
            .collect();
        let mut oldest_level0_created_millis: Option<i64> = None;
        for block in self.index.blocks() {
            let level = block.compaction_level;
            let info = levels.entry(level).or_insert_with(|| LevelInfo {
                level,
                ..LevelInfo::default()
            });
            info.blocks += 1;
            info.bytes += block.size_bytes;
            if level == 0 {
                let created = self.index.created_millis(block);
                oldest_level0_created_millis =
                    Some(oldest_level0_created_millis.map_or(created, |o| o.min(created)));
            }
        }
        for (level, queued) in self.queues.queued_per_level(config) {
            if let Some(info) = levels.get_mut(&level) {
                info.queued = queued;
            }
        }
        CompactionStatus {
            jobs: jobs.into_iter().map(|j| j.info()).collect(),
            levels: levels.into_values().collect(),
            tombstones: self.tombstones.list(),
            oldest_level0_created_millis,
        }
    }
}
