//! The compactor role: compaction jobs from the metastore, deletions, retention and the orphan
//! sweep.

use std::sync::Arc;

use kiln_compactor::{Compactor, CompactorConfig, CompactorMetrics, orphans, retention};
use kiln_config::ServerArgs;
use kiln_contract::Role;
use kiln_objstore::Storage;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Shared, heartbeat};

/// A running compactor; stopping its token ends the poll loop after its running jobs.
#[derive(Debug)]
pub(crate) struct CompactorRole {
    worker: JoinHandle<()>,
}

impl CompactorRole {
    /// Tells whether the poll loop still runs: without it the compactor takes no jobs and
    /// deletes nothing.
    pub(crate) fn poll_loop_alive(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let worker = self.worker.abort_handle();
        move || !worker.is_finished()
    }

    /// Waits for the poll loop to report its last jobs (after the stop token was cancelled).
    pub(crate) async fn stopped(self) {
        if let Err(e) = self.worker.await {
            tracing::error!(error = %e, "the compactor's poll loop panicked");
        }
    }
}

/// Starts a compactor named `name` (its address) until `stop`.
pub(crate) fn start(
    args: &ServerArgs,
    shared: &Shared,
    name: &str,
    storage: &Storage,
    metrics: CompactorMetrics,
    stop: &CancellationToken,
) -> CompactorRole {
    let (metastore, overrides) = (&shared.metastore, &shared.overrides);
    let metrics = metrics.with_tenant_cap(args.tenants_max_tracked, args.tenants_idle_timeout);
    let flags = &args.compaction;
    let defaults = CompactorConfig::default();
    let config = CompactorConfig {
        worker: name.to_string(),
        job_concurrency: match flags.job_concurrency {
            0 => defaults.job_concurrency,
            n => n,
        },
        poll_interval: flags.poll_interval,
        deletion_delay: flags.deletion_delay,
        retention_interval: flags.retention_interval,
        orphan_grace: flags.orphan_grace,
        orphan_sweep_interval: flags.orphan_sweep_interval,
        ..defaults
    };
    retention::spawn(
        Arc::clone(metastore),
        Arc::clone(overrides),
        metrics.clone(),
        config.retention_interval,
        stop.clone(),
    );
    orphans::spawn(
        storage.clone(),
        Arc::clone(metastore),
        config.orphan_grace,
        metrics.clone(),
        config.orphan_sweep_interval,
        stop.clone(),
    );
    heartbeat::spawn(metastore, Role::Compactor, name, stop);
    tracing::info!(
        jobs = config.job_concurrency,
        deletion_delay = ?config.deletion_delay,
        "compactor started"
    );
    let worker =
        Compactor::new(config, Arc::clone(metastore), storage.clone(), metrics).spawn(stop.clone());
    CompactorRole { worker }
}
