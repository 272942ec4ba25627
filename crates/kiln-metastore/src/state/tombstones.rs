//! Objects that left the index and wait to be deleted, each leased to one worker at a time.
//! Snapshotted.

use std::collections::BTreeMap;

use kiln_contract::metastore::{Tombstone, TombstoneReason};
use kiln_model::BlockMeta;
use serde::{Deserialize, Serialize};

/// A tombstone as the state keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TombstoneRecord {
    pub(crate) block_id: String,
    pub(crate) path: String,
    /// "" for a multi-tenant segment.
    pub(crate) tenant: String,
    #[serde(with = "reason_name")]
    pub(crate) reason: TombstoneReason,
    /// When the block left the index (command time).
    pub(crate) created_millis: i64,
    /// Handed to a worker until then (command time); 0 when never handed out.
    pub(crate) leased_until_millis: i64,
}

impl TombstoneRecord {
    fn to_contract(&self) -> Tombstone {
        Tombstone {
            block_id: self.block_id.clone(),
            path: self.path.clone(),
            tenant: self.tenant.clone(),
            reason: self.reason,
            created_millis: self.created_millis,
        }
    }

    fn is_due(&self, now_millis: i64, delay_millis: i64) -> bool {
        self.created_millis <= now_millis.saturating_sub(delay_millis)
            && self.leased_until_millis <= now_millis
    }
}

/// The tombstones, by block id.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    by_id: BTreeMap<String, TombstoneRecord>,
}

impl Tombstones {
    /// Restores tombstones from a snapshot.
    pub(crate) fn restore(records: Vec<TombstoneRecord>) -> Self {
        Self {
            by_id: records
                .into_iter()
                .map(|r| (r.block_id.clone(), r))
                .collect(),
        }
    }

    /// Tombstones `block`'s object; a block already tombstoned keeps its first tombstone.
    pub(crate) fn add(&mut self, block: &BlockMeta, reason: TombstoneReason, now_millis: i64) {
        self.by_id
            .entry(block.id.clone())
            .or_insert_with(|| TombstoneRecord {
                block_id: block.id.clone(),
                path: block.path.clone(),
                tenant: block.tenant.clone(),
                reason,
                created_millis: now_millis,
                leased_until_millis: 0,
            });
    }

    /// Forgets the tombstone of a deleted object.
    pub(crate) fn remove(&mut self, block_id: &str) {
        self.by_id.remove(block_id);
    }

    /// True when the block has a tombstone.
    pub(crate) fn contains(&self, block_id: &str) -> bool {
        self.by_id.contains_key(block_id)
    }

    /// True when some tombstone is due: at least `delay_millis` old and not leased.
    pub(crate) fn any_due(&self, now_millis: i64, delay_millis: i64) -> bool {
        self.by_id
            .values()
            .any(|t| t.is_due(now_millis, delay_millis))
    }

    /// Hands out up to `capacity` due tombstones, oldest first, leasing them until
    /// `leased_until_millis`.
    pub(crate) fn lease_due(
        &mut self,
        capacity: u32,
        now_millis: i64,
        delay_millis: i64,
        leased_until_millis: i64,
    ) -> Vec<Tombstone> {
        if capacity == 0 {
            return Vec::new();
        }
        let mut due: Vec<&mut TombstoneRecord> = self
            .by_id
            .values_mut()
            .filter(|t| t.is_due(now_millis, delay_millis))
            .collect();
        due.sort_by(|a, b| (a.created_millis, &a.block_id).cmp(&(b.created_millis, &b.block_id)));
        due.into_iter()
            .take(capacity as usize)
            .map(|t| {
                t.leased_until_millis = leased_until_millis;
                t.to_contract()
            })
            .collect()
    }

    /// Every tombstone as the contract shows it, oldest first.
    pub(crate) fn list(&self) -> Vec<Tombstone> {
        let mut all: Vec<Tombstone> = self.by_id.values().map(|t| t.to_contract()).collect();
        all.sort_by(|a, b| (a.created_millis, &a.block_id).cmp(&(b.created_millis, &b.block_id)));
        all
    }

    /// Every tombstone, for a snapshot.
    pub(crate) fn records(&self) -> impl Iterator<Item = &TombstoneRecord> {
        self.by_id.values()
    }
}

/// A reason in snapshots by its name, as on the wire.
mod reason_name {
    use kiln_contract::metastore::TombstoneReason;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        reason: &TombstoneReason,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(reason.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<TombstoneReason, D::Error> {
        let name = String::deserialize(deserializer)?;
        TombstoneReason::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown tombstone reason {name:?}")))
    }
}
