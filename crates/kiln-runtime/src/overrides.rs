//! Per-tenant settings: the defaults from flags, overrides from the runtime config file, which is
//! re-read while the server runs. Every role that applies a per-tenant limit reads it here
//! (distributors their ingest limits, queriers and compactors the retention period).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kiln_config::{Limits, RuntimeConfig};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::{FirstTick, spawn_every};

/// The runtime config in force, with each overridden tenant's limits merged once at load.
#[derive(Debug, Default)]
struct Runtime {
    config: RuntimeConfig,
    resolved: BTreeMap<String, Limits>,
}

/// The limits of every tenant, kept current from the runtime config file.
#[derive(Debug)]
pub struct TenantOverrides {
    defaults: Limits,
    runtime: RwLock<Runtime>,
}

impl TenantOverrides {
    /// Limits with `defaults` for every tenant and no overrides yet.
    pub fn new(defaults: Limits) -> Arc<Self> {
        Arc::new(Self {
            defaults,
            runtime: RwLock::default(),
        })
    }

    /// The limits of `tenant` now.
    pub fn limits(&self, tenant: &str) -> Limits {
        let runtime = self.runtime.read();
        runtime
            .resolved
            .get(tenant)
            .unwrap_or(&self.defaults)
            .clone()
    }

    /// How long `tenant` keeps its data now; `None` keeps it for ever.
    pub fn retention(&self, tenant: &str) -> Option<Duration> {
        let runtime = self.runtime.read();
        let period = runtime
            .resolved
            .get(tenant)
            .unwrap_or(&self.defaults)
            .retention_period;
        (!period.is_zero()).then_some(period)
    }

    /// The overrides in force.
    pub fn runtime_config(&self) -> RuntimeConfig {
        self.runtime.read().config.clone()
    }

    /// The defaults of every tenant.
    pub fn defaults(&self) -> &Limits {
        &self.defaults
    }

    /// Reads the runtime config file; an invalid file is an error and changes nothing. Returns
    /// whether the overrides changed.
    pub fn load(&self, path: &std::path::Path) -> Result<bool, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read runtime config {}: {e}", path.display()))?;
        let invalid = |e: String| format!("invalid runtime config {}: {e}", path.display());
        let config = RuntimeConfig::parse(&text, &self.defaults).map_err(invalid)?;
        let resolved = config.resolve(&self.defaults).map_err(invalid)?;
        let mut current = self.runtime.write();
        let changed = current.config != config;
        *current = Runtime { config, resolved };
        Ok(changed)
    }

    /// Loads `path` now, then re-reads it every `period` until `stop`.
    pub fn watch(
        self: &Arc<Self>,
        path: PathBuf,
        period: Duration,
        stop: CancellationToken,
    ) -> Result<(), String> {
        self.load(&path)?;
        let overrides = Arc::clone(self);
        spawn_every(period, FirstTick::AfterPeriod, stop, move || {
            match overrides.load(&path) {
                Ok(true) => tracing::info!(path = %path.display(), "runtime config reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "keeping the previous runtime config"),
            }
            std::future::ready(())
        });
        Ok(())
    }
}
