//! Openraft's state machine over [`MetastoreState`]: applied in memory, made durable by snapshots in
//! redb. On restart the node loads its latest snapshot and re-applies the committed log after it.

use std::fmt::Debug;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use prometheus_client::metrics::histogram::Histogram;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::state::MetastoreState;
use crate::types::{CommandResponse, NodeId, NodeInfo, TypeConfig};

const SNAPSHOT: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("snapshot");
const SNAPSHOT_META: &str = "meta";
const SNAPSHOT_DATA: &str = "data";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// A snapshot read back from redb: its metadata and its data.
type StoredSnapshot = (SnapshotMeta<NodeId, NodeInfo>, Vec<u8>);

/// What the state machine knows besides the state itself.
#[derive(Debug, Default)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, NodeInfo>,
}

/// The metastore's state machine. Clones share the state.
#[derive(Clone)]
pub(crate) struct StateMachine {
    db: Arc<Database>,
    state: Arc<RwLock<MetastoreState>>,
    applied: Arc<RwLock<Applied>>,
    snapshots_built: Arc<AtomicU64>,
    snapshots_installed: Arc<AtomicU64>,
    /// Time to apply each batch of committed entries (clones share it).
    pub(crate) apply_duration: Histogram,
}

impl Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

/// A snapshot's metadata as stored beside its data.
#[derive(Serialize, Deserialize)]
struct StoredSnapshotMeta {
    meta: SnapshotMeta<NodeId, NodeInfo>,
}

impl StateMachine {
    /// Opens the state machine in `db`, loading the latest snapshot if there is one.
    pub(crate) fn open(db: Arc<Database>) -> Result<Self, String> {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        let machine = Self {
            db,
            state: Arc::default(),
            applied: Arc::default(),
            snapshots_built: Arc::default(),
            snapshots_installed: Arc::default(),
            apply_duration: crate::metrics::raft_histogram(),
        };
        if let Some((meta, data)) = machine.read_snapshot().map_err(|e| e.to_string())? {
            let state = MetastoreState::from_snapshot(&data)?;
            *machine.state.try_write().expect("not shared yet") = state;
            *machine.applied.try_write().expect("not shared yet") = Applied {
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
            };
        }
        Ok(machine)
    }

    /// The state, for reads. Callers make the read linearizable first.
    pub(crate) fn state(&self) -> &Arc<RwLock<MetastoreState>> {
        &self.state
    }

    /// Snapshots installed from a leader since this process started.
    pub(crate) fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let (Some(meta), Some(data)) = (table.get(SNAPSHOT_META)?, table.get(SNAPSHOT_DATA)?)
        else {
            return Ok(None);
        };
        let Ok(stored) = serde_json::from_slice::<StoredSnapshotMeta>(meta.value()) else {
            return Ok(None);
        };
        Ok(Some((stored.meta, data.value().to_vec())))
    }

    async fn write_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        data: Vec<u8>,
    ) -> StoreResult<()> {
        let meta_bytes = serde_json::to_vec(&StoredSnapshotMeta { meta: meta.clone() })
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(SNAPSHOT)?;
                table.insert(SNAPSHOT_META, meta_bytes.as_slice())?;
                table.insert(SNAPSHOT_DATA, data.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        // Both locks are held while serializing so that the data matches the applied log id.
        let applied = self.applied.read().await;
        let state = self.state.read().await;
        let data = state.to_snapshot();
        let built = self.snapshots_built.fetch_add(1, Ordering::Relaxed) + 1;
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id: format!(
                "{}-{built}",
                applied.last_applied.map(|l| l.index).unwrap_or_default()
            ),
        };
        drop(state);
        drop(applied);
        self.write_snapshot(&meta, data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>)> {
        let applied = self.applied.read().await;
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut applied = self.applied.write().await;
        let mut state = self.state.write().await;
        let mut responses = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::default(),
                EntryPayload::Normal(command) => state.apply(&command, entry.log_id.index),
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::default()
                }
            };
            responses.push(response);
        }
        self.apply_duration.observe(started.elapsed().as_secs_f64());
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let state = MetastoreState::from_snapshot(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), openraft::AnyError::error(e))
        })?;
        self.write_snapshot(meta, data).await?;
        let mut applied = self.applied.write().await;
        *self.state.write().await = state;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let machine = self.clone();
        let stored = tokio::task::spawn_blocking(move || machine.read_snapshot())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
