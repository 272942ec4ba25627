use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kiln_block::BlockMeta;
use tokio::sync::RwLock;

use crate::{Metastore, MetastoreError};

const INDEX_FILE: &str = "blocks.jsonl";

/// A single-node block index: one JSON line per registration, fsynced before it is
/// acknowledged, replayed into memory on open.
#[derive(Debug, Clone)]
pub struct EmbeddedMetastore {
    inner: Arc<RwLock<State>>,
    path: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    blocks: Vec<BlockMeta>,
    ids: HashSet<String>,
}

impl EmbeddedMetastore {
    /// Opens (or creates) the index under `dir` and replays it. A torn last line, left by a
    /// crash in the middle of a write that was never acknowledged, is ignored.
    pub fn open(dir: &Path) -> Result<Self, MetastoreError> {
        let path = dir.join(INDEX_FILE);
        let io_err = |source| MetastoreError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut state = State::default();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let complete = text.ends_with('\n');
                let lines: Vec<&str> = text.lines().collect();
                for (number, line) in lines.iter().enumerate() {
                    match serde_json::from_str::<BlockMeta>(line) {
                        Ok(block) => {
                            if state.ids.insert(block.id.clone()) {
                                state.blocks.push(block);
                            }
                        }
                        Err(_) if !complete && number + 1 == lines.len() => {
                            tracing::warn!(path = %path.display(), "ignoring a torn last record");
                        }
                        Err(e) => {
                            return Err(MetastoreError::Corrupt {
                                path: path.display().to_string(),
                                line: number + 1,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        tracing::info!(blocks = state.blocks.len(), path = %path.display(), "block index loaded");
        Ok(Self {
            inner: Arc::new(RwLock::new(state)),
            path,
        })
    }

    /// Number of blocks in the index.
    pub async fn block_count(&self) -> usize {
        self.inner.read().await.blocks.len()
    }
}

#[async_trait]
impl Metastore for EmbeddedMetastore {
    async fn add_block(&self, block: BlockMeta) -> Result<(), MetastoreError> {
        // Holding the write lock across the fsync keeps the file and memory in one order.
        let mut state = self.inner.write().await;
        if state.ids.contains(&block.id) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&block).expect("block metadata serializes");
        line.push(b'\n');
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .expect("the append task does not panic")
        .map_err(|source| MetastoreError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        state.ids.insert(block.id.clone());
        state.blocks.push(block);
        Ok(())
    }

    async fn query_blocks(
        &self,
        tenant: &str,
        start_nanos: i64,
        end_nanos: i64,
    ) -> Result<Vec<BlockMeta>, MetastoreError> {
        let state = self.inner.read().await;
        Ok(state
            .blocks
            .iter()
            .filter(|b| b.overlaps(tenant, start_nanos, end_nanos))
            .cloned()
            .collect())
    }

    async fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use kiln_block::DatasetMeta;

    use super::*;

    fn block(id: &str, tenant: &str, time: i64) -> BlockMeta {
        BlockMeta {
            id: id.to_string(),
            path: format!("segments/0/{id}/block.bin"),
            shard: 0,
            compaction_level: 0,
            min_time_nanos: time,
            max_time_nanos: time,
            size_bytes: 1,
            datasets: vec![DatasetMeta {
                tenant: tenant.to_string(),
                service_name: "svc".to_string(),
                min_time_nanos: time,
                max_time_nanos: time,
                profile_types: vec![],
                label_names: vec![],
                series: 1,
                profiles: 1,
                samples: 1,
            }],
        }
    }

    #[tokio::test]
    async fn registrations_survive_reopen_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetastore::open(dir.path()).unwrap();
        store.add_block(block("a", "t1", 10)).await.unwrap();
        store.add_block(block("a", "t1", 10)).await.unwrap();
        store.add_block(block("b", "t2", 20)).await.unwrap();
        drop(store);

        let store = EmbeddedMetastore::open(dir.path()).unwrap();
        assert_eq!(store.block_count().await, 2);
        let found = store.query_blocks("t1", 0, 100).await.unwrap();
        assert_eq!(
            found.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert!(store.query_blocks("t1", 11, 100).await.unwrap().is_empty());
        assert!(store.query_blocks("t3", 0, 100).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetastore::open(dir.path()).unwrap();
        store.add_block(block("a", "t1", 10)).await.unwrap();
        let path = dir.path().join(INDEX_FILE);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"id\":\"b\",").unwrap();
        let store = EmbeddedMetastore::open(dir.path()).unwrap();
        assert_eq!(store.block_count().await, 1);
    }
}
