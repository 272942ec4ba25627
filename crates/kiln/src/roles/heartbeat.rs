//! Announcing this process's roles to the metastore.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_contract::Role;
use kiln_contract::metastore::Metastore;
use kiln_runtime::{FirstTick, spawn_every};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// How often roles announce themselves; the metastore forgets them after five missed beats.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// Announces `role` at `addr` to the metastore every [`HEARTBEAT_INTERVAL`] until `stop`.
///
/// A failure is a warning once heartbeats have failed for longer than one interval: at start the
/// metastore is often still electing its leader, which is no news.
pub(crate) fn spawn(
    metastore: &Arc<dyn Metastore>,
    role: Role,
    addr: &str,
    stop: &CancellationToken,
) {
    let (metastore, addr) = (Arc::clone(metastore), addr.to_string());
    let last_success = Arc::new(Mutex::new(Instant::now()));
    spawn_every(
        HEARTBEAT_INTERVAL,
        FirstTick::Now,
        stop.clone(),
        move || {
            let (metastore, addr) = (Arc::clone(&metastore), addr.clone());
            let last_success = Arc::clone(&last_success);
            async move {
                match metastore.heartbeat(role, &addr).await {
                    Ok(()) => *last_success.lock() = Instant::now(),
                    Err(e) if last_success.lock().elapsed() > HEARTBEAT_INTERVAL => {
                        tracing::warn!(%role, error = %e, "heartbeat to the metastore failed");
                    }
                    Err(e) => {
                        tracing::debug!(%role, error = %e, "heartbeat to the metastore failed")
                    }
                }
            }
        },
    );
}
