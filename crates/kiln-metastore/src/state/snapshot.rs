//! The state in a snapshot. Version 2 adds the jobs, the committed record, tombstones, deleted
//! tenants and the registration times of blocks whose id is not a ULID; version-1 snapshots
//! (index and tenants only) still load. Queues are rebuilt, not stored.

use std::collections::{BTreeMap, HashMap};

use kiln_contract::metastore::TenantInfo;
use kiln_model::BlockMeta;
use serde::{Deserialize, Serialize};

use super::MetastoreState;
use super::index::BlockIndex;
use super::jobs::{Committed, Job, Jobs};
use super::queues::Queues;
use super::tombstones::{TombstoneRecord, Tombstones};

const SNAPSHOT_VERSION: u32 = 2;

/// The serialized state, as written.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    version: u32,
    blocks: Vec<&'a BlockMeta>,
    tenants: Vec<&'a TenantInfo>,
    registered: BTreeMap<&'a str, i64>,
    jobs: Vec<&'a Job>,
    committed: &'a BTreeMap<String, Committed>,
    tombstones: Vec<&'a TombstoneRecord>,
    deleted_tenants: &'a BTreeMap<String, u64>,
}

/// The serialized state, as read: what version 1 lacks is empty.
#[derive(Deserialize)]
struct SnapshotIn {
    version: u32,
    blocks: Vec<BlockMeta>,
    tenants: Vec<TenantInfo>,
    #[serde(default)]
    registered: HashMap<String, i64>,
    #[serde(default)]
    jobs: Vec<Job>,
    #[serde(default)]
    committed: BTreeMap<String, Committed>,
    #[serde(default)]
    tombstones: Vec<TombstoneRecord>,
    #[serde(default)]
    deleted_tenants: BTreeMap<String, u64>,
}

impl MetastoreState {
    /// Serializes the whole state for a snapshot.
    pub(crate) fn to_snapshot(&self) -> Vec<u8> {
        let mut blocks: Vec<&BlockMeta> = self.index.blocks().map(|b| b.as_ref()).collect();
        blocks.sort_by(|a, b| a.id.cmp(&b.id));
        let body = SnapshotOut {
            version: SNAPSHOT_VERSION,
            blocks,
            tenants: self.index.tenants_ref().collect(),
            registered: self
                .index
                .registered()
                .iter()
                .map(|(id, millis)| (id.as_str(), *millis))
                .collect(),
            jobs: self.jobs.iter().collect(),
            committed: self.jobs.committed_record(),
            tombstones: self.tombstones.records().collect(),
            deleted_tenants: &self.deleted_tenants,
        };
        serde_json::to_vec(&body).expect("the state serializes")
    }

    /// Rebuilds the state from a snapshot made by [`MetastoreState::to_snapshot`] (or by the
    /// version before), and the queues from the index and the jobs.
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let body: SnapshotIn =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable snapshot: {e}"))?;
        if !(1..=SNAPSHOT_VERSION).contains(&body.version) {
            return Err(format!("unknown snapshot version {}", body.version));
        }
        let index = BlockIndex::restore(body.blocks, body.registered, body.tenants);
        let jobs = Jobs::restore(body.jobs, body.committed);
        let mut queues = Queues::default();
        for block in index.blocks().filter(|b| !jobs.holds(&b.id)) {
            queues.push(block, index.created_millis(block));
        }
        Ok(Self {
            index,
            queues,
            jobs,
            tombstones: Tombstones::restore(body.tombstones),
            deleted_tenants: body.deleted_tenants,
        })
    }
}
