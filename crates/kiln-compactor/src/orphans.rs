//! The orphan sweep: objects that were written but never registered (an ingester killed between
//! its PUT and its registration, a compactor killed before its commit) are deleted once older
//! than a grace period.
//!
//! An object is kept when it is in the index, tombstoned (its deletion is scheduled), or named
//! by the recovery area (parked while the metastore was away, however long ago). The three are
//! read in the order an object moves between them (recovery area, then index, then tombstones),
//! so that an object moving on during the sweep is seen in one of them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use kiln_block::{OBJECT_PREFIXES, RECOVERY_PREFIX, block_id_of_path};
use kiln_contract::metastore::Metastore;
use kiln_model::BlockMeta;
use kiln_objstore::Storage;
use kiln_objstore::object_store::{self, ObjectStoreExt};
use kiln_runtime::{FirstTick, spawn_every};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{CompactionError, CompactorMetrics};

/// The relative path of `location` under the storage prefix.
fn relative(storage: &Storage, location: &object_store::path::Path) -> String {
    let prefix = storage.prefix.as_ref();
    let full = location.as_ref();
    full.strip_prefix(prefix)
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(full)
        .to_string()
}

/// Paths of the objects named by the recovery area.
async fn parked(storage: &Storage) -> Result<HashSet<String>, CompactionError> {
    let failed = |e: object_store::Error| CompactionError::Storage(e.to_string());
    let listing: Vec<_> = storage
        .store
        .list(Some(&storage.path(RECOVERY_PREFIX)))
        .try_collect()
        .await
        .map_err(failed)?;
    let mut paths = HashSet::new();
    for object in listing {
        let bytes = match storage.store.get(&object.location).await {
            Ok(found) => found.bytes().await.map_err(failed)?,
            // Registered and removed by an ingester meanwhile: the index has it.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(failed(e)),
        };
        match serde_json::from_slice::<BlockMeta>(&bytes) {
            Ok(block) => {
                paths.insert(block.path);
            }
            Err(e) => {
                // Unreadable metadata: keep everything this sweep (it cannot say what is parked).
                return Err(CompactionError::Storage(format!(
                    "unreadable recovery-area object {}: {e}",
                    object.location
                )));
            }
        }
    }
    Ok(paths)
}

/// Deletes the objects older than `grace` that nothing references; returns their paths.
pub async fn sweep_once(
    storage: &Storage,
    metastore: &dyn Metastore,
    grace: Duration,
    metrics: &CompactorMetrics,
) -> Result<Vec<String>, CompactionError> {
    let mut known = parked(storage).await?;
    known.extend(
        metastore
            .list_blocks(None)
            .await?
            .into_iter()
            .map(|b| b.path),
    );
    known.extend(
        metastore
            .compaction_status()
            .await?
            .tombstones
            .into_iter()
            .map(|t| t.path),
    );
    let now_millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let oldest_kept = now_millis.saturating_sub(grace.as_millis() as u64);
    let mut deleted = Vec::new();
    for prefix in OBJECT_PREFIXES {
        let listing: Vec<_> = storage
            .store
            .list(Some(&storage.path(prefix)))
            .try_collect()
            .await
            .map_err(|e| CompactionError::Storage(e.to_string()))?;
        for object in listing {
            let path = relative(storage, &object.location);
            if known.contains(&path) {
                continue;
            }
            // The block id's time is when the object was written; objects that are not ours
            // (no block id in their key) are left alone.
            let Some(id) = block_id_of_path(&path) else {
                continue;
            };
            if id.timestamp_ms() > oldest_kept {
                continue;
            }
            match storage.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!(
                        path,
                        "deleted an object that no block in the index references"
                    );
                    metrics.deleted("orphan");
                    deleted.push(path);
                }
                Err(e) => tracing::warn!(path, error = %e, "cannot delete an orphaned object"),
            }
        }
    }
    Ok(deleted)
}

/// Sweeps every `interval` until `stop`.
pub fn spawn(
    storage: Storage,
    metastore: Arc<dyn Metastore>,
    grace: Duration,
    metrics: CompactorMetrics,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    spawn_every(interval, FirstTick::Now, stop, move || {
        let (storage, metastore, metrics) =
            (storage.clone(), Arc::clone(&metastore), metrics.clone());
        async move {
            if let Err(e) = sweep_once(&storage, metastore.as_ref(), grace, &metrics).await {
                tracing::warn!(error = %e, "orphan sweep incomplete; retrying later");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kiln_metastore::{MetastoreNode, NodeConfig};
    use kiln_model::{BlockMeta, DatasetMeta};
    use kiln_objstore::object_store::PutPayload;
    use prometheus_client::registry::Registry;
    use ulid::Ulid;

    use super::*;

    /// A block of `tenant` whose id says it was written `hours_ago`.
    fn block(tenant: &str, hours_ago: u64) -> BlockMeta {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = Ulid::from_parts(now - hours_ago * 3_600_000, rand_bits());
        BlockMeta {
            id: id.to_string(),
            path: kiln_block::object_path(0, &id),
            size_bytes: 10,
            datasets: vec![DatasetMeta {
                tenant: tenant.to_string(),
                service_name: "svc".to_string(),
                min_time_nanos: 1,
                max_time_nanos: 2,
                ..DatasetMeta::default()
            }],
            ..BlockMeta::default()
        }
    }

    fn rand_bits() -> u128 {
        Ulid::new().random()
    }

    async fn put(storage: &Storage, path: &str, bytes: Vec<u8>) {
        storage
            .store
            .put(&storage.path(path), PutPayload::from(bytes))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_old_objects_that_nothing_references_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let node = MetastoreNode::start(NodeConfig::single(dir.path(), "127.0.0.1:1"))
            .await
            .unwrap();
        let storage = Storage::in_memory();
        let metrics = CompactorMetrics::new(&mut Registry::default());

        let registered = block("t", 48);
        let orphan = block("t", 48);
        let young = block("t", 1);
        let parked = block("t", 72);
        let tombstoned = block("gone", 48);
        for b in [&registered, &orphan, &young, &parked, &tombstoned] {
            put(&storage, &b.path, vec![0; 10]).await;
        }
        // Parked while the metastore was away, however long ago: the recovery area names it.
        put(
            &storage,
            &kiln_block::recovery_path(&parked.id),
            serde_json::to_vec(&parked).unwrap(),
        )
        .await;
        // Not ours: no block id in the key.
        put(&storage, "segments/0/README", b"hello".to_vec()).await;
        let metastore: &dyn Metastore = node.as_ref();
        // A fresh single-node group elects itself first.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !metastore.is_ready().await {
            assert!(std::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        metastore
            .add_blocks(vec![registered.clone(), tombstoned.clone()])
            .await
            .unwrap();
        metastore.delete_tenant("gone").await.unwrap();

        let deleted = sweep_once(
            &storage,
            metastore,
            Duration::from_secs(24 * 3600),
            &metrics,
        )
        .await
        .unwrap();
        assert_eq!(deleted, vec![orphan.path.clone()]);
        let left: Vec<String> = storage
            .store
            .list(None)
            .map_ok(|o| relative(&storage, &o.location))
            .try_collect()
            .await
            .unwrap();
        for kept in [
            &registered.path,
            &young.path,
            &parked.path,
            &tombstoned.path,
        ] {
            assert!(left.contains(kept), "{kept} was deleted");
        }
        assert!(left.contains(&"segments/0/README".to_string()));
        node.shutdown().await;
    }
}
