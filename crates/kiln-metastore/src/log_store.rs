//! The Raft log and vote, durable in redb. Every append is one fsynced transaction, acknowledged
//! to openraft only once committed.

// openraft's storage errors are large by design; they are returned as openraft wants them.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::types::{NodeId, TypeConfig};

const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_logs");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log of one node in its redb database.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

type StoreResult<T> = Result<T, StorageError<NodeId>>;

impl LogStore {
    /// Opens the log in `db`, creating its tables.
    pub(crate) fn open(db: Arc<Database>) -> Result<Self, redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Runs blocking redb work off the async threads.
    async fn blocking<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StorageIOError<NodeId>> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?
            .map_err(StorageError::from)
    }

    async fn read_meta<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> StoreResult<Option<T>> {
        self.blocking(move |db| {
            let read =
                |e: &dyn std::error::Error| StorageIOError::read(openraft::AnyError::error(e));
            let txn = db.begin_read().map_err(|e| read(&e))?;
            let table = txn.open_table(META).map_err(|e| read(&e))?;
            let Some(value) = table.get(key).map_err(|e| read(&e))? else {
                return Ok(None);
            };
            serde_json::from_slice(value.value())
                .map(Some)
                .map_err(|e| read(&e))
        })
        .await
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> StoreResult<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| StorageIOError::write(&e))?;
        self.blocking(move |db| {
            let write =
                |e: &dyn std::error::Error| StorageIOError::write(openraft::AnyError::error(e));
            let txn = db.begin_write().map_err(|e| write(&e))?;
            {
                let mut table = txn.open_table(META).map_err(|e| write(&e))?;
                table.insert(key, bytes.as_slice()).map_err(|e| write(&e))?;
            }
            txn.commit().map_err(|e| write(&e))
        })
        .await
    }
}

fn bounds(range: impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => Some(i + 1),
        Bound::Excluded(&i) => Some(i),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let (start, end) = bounds(range);
        self.blocking(move |db| {
            let read =
                |e: &dyn std::error::Error| StorageIOError::read_logs(openraft::AnyError::error(e));
            let txn = db.begin_read().map_err(|e| read(&e))?;
            let table = txn.open_table(LOGS).map_err(|e| read(&e))?;
            let iter = match end {
                Some(end) => table.range(start..end),
                None => table.range(start..),
            }
            .map_err(|e| read(&e))?;
            let mut entries = Vec::new();
            for item in iter {
                let (_, value) = item.map_err(|e| read(&e))?;
                entries.push(serde_json::from_slice(value.value()).map_err(|e| read(&e))?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.read_meta(LAST_PURGED).await?;
        let last_entry: Option<LogId<NodeId>> = self
            .blocking(|db| {
                let read = |e: &dyn std::error::Error| {
                    StorageIOError::read_logs(openraft::AnyError::error(e))
                };
                let txn = db.begin_read().map_err(|e| read(&e))?;
                let table = txn.open_table(LOGS).map_err(|e| read(&e))?;
                let Some((_, value)) = table.last().map_err(|e| read(&e))? else {
                    return Ok(None);
                };
                let entry: Entry<TypeConfig> =
                    serde_json::from_slice(value.value()).map_err(|e| read(&e))?;
                Ok(Some(entry.log_id))
            })
            .await?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last_entry.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.write_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.read_meta(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        self.write_meta(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(COMMITTED)
            .await?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .blocking(move |db| {
                let write = |e: &dyn std::error::Error| {
                    StorageIOError::write_logs(openraft::AnyError::error(e))
                };
                let txn = db.begin_write().map_err(|e| write(&e))?;
                {
                    let mut table = txn.open_table(LOGS).map_err(|e| write(&e))?;
                    for (index, bytes) in &encoded {
                        table
                            .insert(*index, bytes.as_slice())
                            .map_err(|e| write(&e))?;
                    }
                }
                txn.commit().map_err(|e| write(&e))
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.remove_logs(log_id.index..).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.write_meta(LAST_PURGED, &log_id).await?;
        self.remove_logs(..=log_id.index).await
    }
}

impl LogStore {
    async fn remove_logs(&self, range: impl RangeBounds<u64> + Send + 'static) -> StoreResult<()> {
        let (start, end) = bounds(range);
        self.blocking(move |db| {
            let write = |e: &dyn std::error::Error| {
                StorageIOError::write_logs(openraft::AnyError::error(e))
            };
            let txn = db.begin_write().map_err(|e| write(&e))?;
            {
                let mut table = txn.open_table(LOGS).map_err(|e| write(&e))?;
                let keep = |_: u64, _: &[u8]| false;
                match end {
                    Some(end) => table.retain_in(start..end, keep),
                    None => table.retain_in(start.., keep),
                }
                .map_err(|e| write(&e))?;
            }
            txn.commit().map_err(|e| write(&e))
        })
        .await
    }
}
