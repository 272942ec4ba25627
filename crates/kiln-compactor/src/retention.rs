//! Retention: each tenant's data older than its retention period leaves the index (and, after
//! the deletion delay, object storage).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_contract::metastore::{Metastore, RetentionCutoff, RetentionRemoval};
use kiln_runtime::{FirstTick, TenantOverrides, spawn_every};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{CompactionError, CompactorMetrics};

/// The cutoffs of every tenant with data that keeps it for a limited time, at `now_nanos`.
pub fn cutoffs(
    tenants: impl IntoIterator<Item = String>,
    overrides: &TenantOverrides,
    now_nanos: i64,
) -> Vec<RetentionCutoff> {
    tenants
        .into_iter()
        .filter_map(|tenant| {
            let period = overrides.retention(&tenant)?;
            let period = i64::try_from(period.as_nanos()).unwrap_or(i64::MAX);
            Some(RetentionCutoff {
                before_nanos: now_nanos.saturating_sub(period),
                tenant,
            })
        })
        .collect()
}

/// Applies every tenant's retention once; returns what left the index.
pub async fn apply_once(
    metastore: &dyn Metastore,
    overrides: &TenantOverrides,
    metrics: &CompactorMetrics,
) -> Result<Vec<RetentionRemoval>, CompactionError> {
    let tenants = metastore.tenants().await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let cutoffs = cutoffs(tenants.into_iter().map(|t| t.id), overrides, now);
    if cutoffs.is_empty() {
        return Ok(Vec::new());
    }
    let removed = metastore.apply_retention(cutoffs).await?;
    for removal in &removed {
        if removal.datasets == 0 {
            continue;
        }
        tracing::info!(
            tenant = %removal.tenant,
            datasets = removal.datasets,
            blocks = removal.blocks,
            "data past its retention period left the index"
        );
        metrics.retention_removed(&removal.tenant, removal.datasets);
    }
    metrics.forget_idle_tenants();
    Ok(removed)
}

/// Applies retention every `interval` until `stop`.
pub fn spawn(
    metastore: Arc<dyn Metastore>,
    overrides: Arc<TenantOverrides>,
    metrics: CompactorMetrics,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    spawn_every(interval, FirstTick::Now, stop, move || {
        let (metastore, overrides, metrics) = (
            Arc::clone(&metastore),
            Arc::clone(&overrides),
            metrics.clone(),
        );
        async move {
            if let Err(e) = apply_once(metastore.as_ref(), &overrides, &metrics).await {
                tracing::warn!(error = %e, "applying retention failed; retrying later");
            }
        }
    })
}
