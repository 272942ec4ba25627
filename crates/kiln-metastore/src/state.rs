//! The replicated state: the block index and the tenants, with the pure functions that apply
//! commands to it and answer queries. Openraft's state machine wraps it; nothing here does I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kiln_contract::metastore::TenantInfo;
use kiln_model::{BlockMeta, LabelMatcher};
use serde::{Deserialize, Serialize};

use crate::types::{Command, CommandResponse};

/// The blocks of one tenant ordered by the start of the tenant's data in them.
#[derive(Debug, Default)]
struct TenantBlocks {
    by_start: BTreeMap<(i64, String), Arc<BlockMeta>>,
    /// The longest time span of the tenant's data in one block: a query for `[start, end)` scans
    /// the blocks starting in `[start - longest_span, end)`.
    longest_span: i64,
}

/// The block index and the tenants.
#[derive(Debug, Default)]
pub(crate) struct IndexState {
    blocks: HashMap<String, Arc<BlockMeta>>,
    tenant_blocks: HashMap<String, TenantBlocks>,
    tenants: BTreeMap<String, TenantInfo>,
}

/// The serialized form of [`IndexState`] inside a snapshot, as written.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    version: u32,
    blocks: Vec<&'a BlockMeta>,
    tenants: Vec<&'a TenantInfo>,
}

/// The serialized form of [`IndexState`] inside a snapshot, as read.
#[derive(Deserialize)]
struct SnapshotIn {
    version: u32,
    blocks: Vec<BlockMeta>,
    tenants: Vec<TenantInfo>,
}

const SNAPSHOT_VERSION: u32 = 1;

impl IndexState {
    /// Applies one command. Deterministic: every node reaches the same state from the same log.
    pub(crate) fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::AddBlocks { blocks } => {
                let mut added = 0;
                for block in blocks {
                    if self.insert_block(Arc::new(block.clone())) {
                        self.count_tenants(block);
                        added += 1;
                    }
                }
                CommandResponse { added }
            }
        }
    }

    fn insert_block(&mut self, block: Arc<BlockMeta>) -> bool {
        if self.blocks.contains_key(&block.id) {
            return false;
        }
        for dataset_tenant in tenants_of(&block) {
            let (start, end) = tenant_span(&block, dataset_tenant);
            let entry = self
                .tenant_blocks
                .entry(dataset_tenant.to_string())
                .or_default();
            entry.longest_span = entry.longest_span.max(end - start);
            entry
                .by_start
                .insert((start, block.id.clone()), Arc::clone(&block));
        }
        self.blocks.insert(block.id.clone(), block);
        true
    }

    fn count_tenants(&mut self, block: &BlockMeta) {
        for dataset in &block.datasets {
            let tenant = self
                .tenants
                .entry(dataset.tenant.clone())
                .or_insert_with(|| TenantInfo {
                    id: dataset.tenant.clone(),
                    first_seen_nanos: dataset.min_time_nanos,
                    ..TenantInfo::default()
                });
            tenant.first_seen_nanos = tenant.first_seen_nanos.min(dataset.min_time_nanos);
            tenant.profiles += dataset.profiles;
            tenant.samples += dataset.samples;
        }
        for tenant in tenants_of(block) {
            if let Some(info) = self.tenants.get_mut(tenant) {
                info.blocks += 1;
            }
        }
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
        let Some(index) = self.tenant_blocks.get(tenant) else {
            return Vec::new();
        };
        if end_nanos <= start_nanos {
            return Vec::new();
        }
        let scan_from = start_nanos.saturating_sub(index.longest_span);
        index
            .by_start
            .range((scan_from, String::new())..(end_nanos, String::new()))
            .map(|(_, block)| block)
            .filter(|block| {
                block.datasets.iter().any(|d| {
                    d.tenant == tenant
                        && d.overlaps(start_nanos, end_nanos)
                        && matchers.iter().all(|m| m.may_match(d))
                })
            })
            .map(|block| BlockMeta::clone(block))
            .collect()
    }

    /// Every tenant, ordered by id.
    pub(crate) fn tenants(&self) -> Vec<TenantInfo> {
        self.tenants.values().cloned().collect()
    }

    /// Number of blocks in the index.
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Number of tenants.
    pub(crate) fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Serializes the whole state for a snapshot.
    pub(crate) fn to_snapshot(&self) -> Vec<u8> {
        let mut blocks: Vec<&BlockMeta> = self.blocks.values().map(|b| b.as_ref()).collect();
        blocks.sort_by(|a, b| a.id.cmp(&b.id));
        let body = SnapshotOut {
            version: SNAPSHOT_VERSION,
            blocks,
            tenants: self.tenants.values().collect(),
        };
        serde_json::to_vec(&body).expect("the index serializes")
    }

    /// Rebuilds the state from a snapshot made by [`IndexState::to_snapshot`].
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let body: SnapshotIn =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable snapshot: {e}"))?;
        if body.version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {}", body.version));
        }
        let mut state = Self::default();
        for block in body.blocks {
            state.insert_block(Arc::new(block));
        }
        state.tenants = body
            .tenants
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        Ok(state)
    }
}

/// The distinct tenants of a block, in dataset order.
fn tenants_of(block: &BlockMeta) -> Vec<&str> {
    let mut tenants: Vec<&str> = Vec::new();
    for dataset in &block.datasets {
        if !tenants.contains(&dataset.tenant.as_str()) {
            tenants.push(&dataset.tenant);
        }
    }
    tenants
}

/// The time span of one tenant's datasets in a block.
fn tenant_span(block: &BlockMeta, tenant: &str) -> (i64, i64) {
    block
        .datasets
        .iter()
        .filter(|d| d.tenant == tenant)
        .fold((i64::MAX, i64::MIN), |(lo, hi), d| {
            (lo.min(d.min_time_nanos), hi.max(d.max_time_nanos))
        })
}

#[cfg(test)]
mod tests {
    use kiln_model::DatasetMeta;

    use super::*;
    use kiln_model::MatchOp;

    pub(crate) fn block(id: &str, datasets: &[(&str, &str, i64, i64)]) -> BlockMeta {
        BlockMeta {
            id: id.to_string(),
            path: format!("segments/0/{id}/block.bin"),
            shard: 0,
            compaction_level: 0,
            min_time_nanos: datasets.iter().map(|d| d.2).min().unwrap(),
            max_time_nanos: datasets.iter().map(|d| d.3).max().unwrap(),
            size_bytes: 100,
            datasets: datasets
                .iter()
                .map(|&(tenant, service, min, max)| DatasetMeta {
                    tenant: tenant.to_string(),
                    service_name: service.to_string(),
                    min_time_nanos: min,
                    max_time_nanos: max,
                    profile_types: vec!["process_cpu:cpu:nanoseconds:cpu:nanoseconds".into()],
                    label_names: vec!["service_name".into(), "region".into()],
                    series: 1,
                    profiles: 2,
                    samples: 10,
                })
                .collect(),
        }
    }

    fn ids(blocks: &[BlockMeta]) -> Vec<&str> {
        blocks.iter().map(|b| b.id.as_str()).collect()
    }

    #[test]
    fn adds_are_idempotent_and_tenants_are_counted_once_per_block() {
        let mut state = IndexState::default();
        let a = block("a", &[("t1", "api", 10, 20), ("t1", "db", 15, 30)]);
        let b = block("b", &[("t2", "api", 40, 50)]);
        let added = state.apply(&Command::AddBlocks {
            blocks: vec![a.clone(), b, a.clone()],
        });
        assert_eq!(added.added, 2);
        assert_eq!(
            state.apply(&Command::AddBlocks { blocks: vec![a] }).added,
            0
        );
        let tenants = state.tenants();
        assert_eq!(
            tenants[0],
            TenantInfo {
                id: "t1".into(),
                first_seen_nanos: 10,
                blocks: 1,
                profiles: 4,
                samples: 20
            }
        );
        assert_eq!(tenants[1].blocks, 1);
        assert_eq!(state.block_count(), 2);
    }

    #[test]
    fn queries_find_overlaps_including_long_blocks_that_start_early() {
        let mut state = IndexState::default();
        state.apply(&Command::AddBlocks {
            blocks: vec![
                block("long", &[("t", "api", 0, 1_000)]),
                block("early", &[("t", "api", 10, 20)]),
                block("late", &[("t", "api", 500, 600)]),
                block("edge", &[("t", "api", 700, 700)]),
            ],
        });
        assert_eq!(ids(&state.query("t", 550, 560, &[])), ["long", "late"]);
        assert_eq!(ids(&state.query("t", 20, 21, &[])), ["long", "early"]);
        assert_eq!(ids(&state.query("t", 600, 700, &[])), ["long", "late"]);
        assert_eq!(ids(&state.query("t", 700, 701, &[])), ["long", "edge"]);
        assert!(state.query("t", 2_000, 3_000, &[]).is_empty());
        assert!(state.query("other", 0, 3_000, &[]).is_empty());
        assert!(state.query("t", 10, 10, &[]).is_empty());
    }

    #[test]
    fn matchers_prune_by_service_profile_type_and_label_presence() {
        let mut state = IndexState::default();
        state.apply(&Command::AddBlocks {
            blocks: vec![
                block("a", &[("t", "api", 0, 10)]),
                block("b", &[("t", "db", 0, 10)]),
                block("c", &[("u", "api", 0, 10)]),
            ],
        });
        let m = |name: &str, op, value: &str| LabelMatcher::new(name, op, value).unwrap();
        let api = [m("service_name", MatchOp::Equal, "api")];
        assert_eq!(ids(&state.query("t", 0, 100, &api)), ["a"]);
        let not_api = [m("service_name", MatchOp::NotRegex, "a.*")];
        assert_eq!(ids(&state.query("t", 0, 100, &not_api)), ["b"]);
        let memory = [m("__profile_type__", MatchOp::Regex, "memory:.*")];
        assert!(state.query("t", 0, 100, &memory).is_empty());
        let unknown_label = [m("pod", MatchOp::Equal, "x")];
        assert!(state.query("t", 0, 100, &unknown_label).is_empty());
        let absent_ok = [m("pod", MatchOp::Equal, "")];
        assert_eq!(ids(&state.query("t", 0, 100, &absent_ok)).len(), 2);
        let region = [m("region", MatchOp::Equal, "eu")];
        assert_eq!(ids(&state.query("t", 0, 100, &region)).len(), 2);
        assert!(LabelMatcher::new("x", MatchOp::Regex, "(").is_err());
    }

    #[test]
    fn snapshots_round_trip() {
        let mut state = IndexState::default();
        state.apply(&Command::AddBlocks {
            blocks: vec![
                block("a", &[("t1", "api", 10, 20)]),
                block("b", &[("t2", "db", 30, 40)]),
            ],
        });
        let restored = IndexState::from_snapshot(&state.to_snapshot()).unwrap();
        assert_eq!(restored.block_count(), 2);
        assert_eq!(restored.tenants(), state.tenants());
        assert_eq!(ids(&restored.query("t2", 0, 100, &[])), ["b"]);
        assert!(IndexState::from_snapshot(b"{").is_err());
    }
}
