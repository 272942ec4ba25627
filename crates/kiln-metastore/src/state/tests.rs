//! Tests of the pure state, with helpers that apply commands at increasing log indexes.

mod compaction;
mod index;
mod invariants;
mod leases;
mod retention;
mod snapshot;

use kiln_contract::metastore::{
    CompactionAssignment, CompactionJob, CompactionStatus, RetentionRemoval,
};
use kiln_model::{BlockMeta, DatasetMeta};

use super::MetastoreState;
use crate::config::CompactionConfig;
use crate::test_support::ulid;
use crate::types::{
    Command, CommandResponse, CutoffRecord, OutcomeRecord, PollRecord, UpdateRecord,
};

/// A time in 2023, unix milliseconds.
const T0: i64 = 1_700_000_000_000;

fn dataset(tenant: &str, service: &str, min: i64, max: i64, profiles: u64) -> DatasetMeta {
    DatasetMeta {
        tenant: tenant.to_string(),
        service_name: service.to_string(),
        min_time_nanos: min,
        max_time_nanos: max,
        profile_types: vec!["process_cpu:cpu:nanoseconds:cpu:nanoseconds".into()],
        label_names: vec!["service_name".into(), "region".into()],
        series: 1,
        profiles,
        samples: profiles * 5,
        ..DatasetMeta::default()
    }
}

/// A segment (level 0, tenant "") of shard 0 with datasets (tenant, service, min, max) of 2
/// profiles and 10 samples each.
fn block(id: &str, datasets: &[(&str, &str, i64, i64)]) -> BlockMeta {
    let datasets: Vec<DatasetMeta> = datasets
        .iter()
        .map(|&(tenant, service, min, max)| dataset(tenant, service, min, max, 2))
        .collect();
    BlockMeta {
        id: id.to_string(),
        path: format!("segments/0/{id}/block.bin"),
        min_time_nanos: datasets.iter().map(|d| d.min_time_nanos).min().unwrap(),
        max_time_nanos: datasets.iter().map(|d| d.max_time_nanos).max().unwrap(),
        size_bytes: 100,
        datasets,
        ..BlockMeta::default()
    }
}

/// A segment of `shard` written at `millis` with one dataset of tenant `t`.
fn segment(millis: i64, n: u64, shard: u32) -> BlockMeta {
    BlockMeta {
        shard,
        ..block(&ulid(millis, n), &[("t", "api", 10, 20)])
    }
}

/// A compacted block of `tenant` at `level` (shard 0) written at `millis`.
fn compacted(millis: i64, n: u64, tenant: &str, level: u32, profiles: u64) -> BlockMeta {
    let id = ulid(millis, n);
    BlockMeta {
        path: format!("blocks/{tenant}/{id}/block.bin"),
        id,
        tenant: tenant.to_string(),
        compaction_level: level,
        min_time_nanos: 10,
        max_time_nanos: 20,
        size_bytes: 1_000,
        datasets: vec![dataset(tenant, "api", 10, 20, profiles)],
        ..BlockMeta::default()
    }
}

fn ids(blocks: &[BlockMeta]) -> Vec<&str> {
    blocks.iter().map(|b| b.id.as_str()).collect()
}

/// A worker's poll with room for `jobs` jobs and no deletions.
fn worker(name: &str, jobs: u32) -> PollRecord {
    PollRecord {
        worker: name.to_string(),
        job_capacity: jobs,
        ..PollRecord::default()
    }
}

fn report(job: &CompactionJob, outcome: OutcomeRecord) -> UpdateRecord {
    UpdateRecord {
        name: job.name.clone(),
        token: job.token,
        outcome,
    }
}

/// A state and the log index of the next command.
struct Harness {
    state: MetastoreState,
    last_index: u64,
    config: CompactionConfig,
}

impl Harness {
    /// Levels as `--compaction.levels` writes them; 15 s leases, 3 failures.
    fn new(levels: &str) -> Self {
        Self {
            state: MetastoreState::default(),
            last_index: 0,
            config: CompactionConfig {
                levels: CompactionConfig::parse_levels(levels).unwrap(),
                ..CompactionConfig::default()
            },
        }
    }

    fn apply(&mut self, command: Command) -> CommandResponse {
        self.last_index += 1;
        self.state.apply(&command, self.last_index)
    }

    fn add(&mut self, blocks: Vec<BlockMeta>, now_millis: i64) -> u32 {
        match self.apply(Command::AddBlocks { blocks, now_millis }) {
            CommandResponse::Added(added) => added,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn poll(&mut self, poll: PollRecord, now_millis: i64) -> CompactionAssignment {
        let config = self.config.clone();
        match self.apply(Command::PollCompaction {
            poll,
            now_millis,
            config,
        }) {
            CommandResponse::Polled(assignment) => assignment,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn retention(&mut self, cutoffs: &[(&str, i64)], now_millis: i64) -> Vec<RetentionRemoval> {
        let cutoffs = cutoffs
            .iter()
            .map(|&(tenant, before_nanos)| CutoffRecord {
                tenant: tenant.to_string(),
                before_nanos,
            })
            .collect();
        match self.apply(Command::ApplyRetention {
            cutoffs,
            now_millis,
        }) {
            CommandResponse::Retained(removed) => removed,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn delete(&mut self, tenant: &str, now_millis: i64) -> u64 {
        match self.apply(Command::DeleteTenant {
            tenant: tenant.to_string(),
            now_millis,
        }) {
            CommandResponse::TenantDeleted(blocks) => blocks,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn status(&self) -> CompactionStatus {
        self.state.compaction_status(&self.config)
    }

    /// Ids of the blocks with data of `tenant`, by id.
    fn ids_of(&self, tenant: &str) -> Vec<String> {
        self.state
            .list_blocks(Some(tenant))
            .into_iter()
            .map(|b| b.id)
            .collect()
    }

    /// Queued blocks of `level`.
    fn queued(&self, level: u32) -> u64 {
        self.status()
            .levels
            .iter()
            .find(|l| l.level == level)
            .map_or(0, |l| l.queued)
    }
}
