//! Announcing this process's roles to the metastore.

use std::sync::Arc;
use std::time::Duration;

use kiln_contract::Role;
use kiln_contract::metastore::Metastore;
use kiln_runtime::{FirstTick, spawn_every};
use tokio_util::sync::CancellationToken;

/// How often roles announce themselves; the metastore forgets them after five missed beats.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// Announces `role` at `addr` to the metastore every [`HEARTBEAT_INTERVAL`] until `stop`.
pub(crate) fn spawn(
    metastore: &Arc<dyn Metastore>,
    role: Role,
    addr: &str,
    stop: &CancellationToken,
) {
    let (metastore, addr) = (Arc::clone(metastore), addr.to_string());
    spawn_every(
        HEARTBEAT_INTERVAL,
        FirstTick::Now,
        stop.clone(),
        move || {
            let (metastore, addr) = (Arc::clone(&metastore), addr.clone());
            async move {
                if let Err(e) = metastore.heartbeat(role, &addr).await {
                    tracing::warn!(%role, error = %e, "heartbeat to the metastore failed");
                }
            }
        },
    );
}
