//! The recovery area: block metadata parked in object storage while the metastore cannot be
//! reached, registered by any ingester once it is back.
//!
//! A segment whose upload succeeded but whose registration failed is durable, so its push is
//! acknowledged; its metadata goes to `recovery/<block id>.json` beside the segments. Every
//! ingester sweeps that prefix on a timer and registers what it finds (registration is
//! idempotent, so two ingesters sweeping at once is harmless), then deletes the parked file.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use kiln_block::{RECOVERY_PREFIX, recovery_path};
use kiln_contract::metastore::Metastore;
use kiln_model::BlockMeta;
use kiln_objstore::Storage;
use kiln_objstore::object_store::{ObjectStoreExt, PutPayload};
use kiln_runtime::{FirstTick, spawn_every};
use tokio_util::sync::CancellationToken;

/// Parks `block`'s metadata in the recovery area.
pub(crate) async fn park(storage: &Storage, block: &BlockMeta) -> Result<(), String> {
    let json = serde_json::to_vec(block).map_err(|e| e.to_string())?;
    let path = storage.path(&recovery_path(&block.id));
    storage
        .store
        .put(&path, PutPayload::from(json))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Registers every parked block it can; returns how many it registered.
pub async fn sweep(storage: &Storage, metastore: &dyn Metastore) -> Result<usize, String> {
    let prefix = storage.path(RECOVERY_PREFIX);
    let parked: Vec<_> = storage
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut registered = 0;
    for object in parked {
        let bytes = storage
            .store
            .get(&object.location)
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let block: BlockMeta = match serde_json::from_slice(&bytes) {
            Ok(block) => block,
            Err(e) => {
                tracing::error!(path = %object.location, error = %e, "unreadable parked block metadata; left in place");
                continue;
            }
        };
        metastore
            .add_block(block)
            .await
            .map_err(|e| e.to_string())?;
        storage
            .store
            .delete(&object.location)
            .await
            .map_err(|e| e.to_string())?;
        registered += 1;
    }
    Ok(registered)
}

/// Sweeps the recovery area every `interval` until cancelled.
pub fn spawn_sweeper(
    storage: Storage,
    metastore: Arc<dyn Metastore>,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    spawn_every(interval, FirstTick::Now, stop, move || {
        let (storage, metastore) = (storage.clone(), Arc::clone(&metastore));
        async move {
            match sweep(&storage, metastore.as_ref()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    blocks = n,
                    "registered parked blocks from the recovery area"
                ),
                Err(e) => tracing::warn!(error = %e, "recovery sweep incomplete; retrying later"),
            }
        }
    })
}
