//! Gauges of the index and of compaction, refreshed from a node's applied state.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_contract::metastore::{CompactionStatus, JobState};
use kiln_runtime::{FirstTick, spawn_every};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{Atomic, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

use crate::MetastoreNode;

/// Labels of the per-level gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LevelLabels {
    /// The compaction level (0: segments).
    pub(crate) level: u32,
}

/// Labels of the job gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    /// planned, running or parked.
    pub(crate) state: &'static str,
}

/// Prometheus gauges of a metastore node.
#[derive(Clone, Debug)]
pub struct MetastoreMetrics {
    blocks: Family<LevelLabels, Gauge>,
    bytes: Family<LevelLabels, Gauge>,
    jobs: Family<StateLabels, Gauge>,
    tombstones: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
}

impl MetastoreMetrics {
    /// Registers the gauges under `kiln_metastore_`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            blocks: Family::default(),
            bytes: Family::default(),
            jobs: Family::default(),
            tombstones: Gauge::default(),
            lag_seconds: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("kiln_metastore");
        registry.register(
            "blocks",
            "Blocks in the index, by compaction level",
            metrics.blocks.clone(),
        );
        registry.register(
            "block_bytes",
            "Bytes of the blocks in the index, by compaction level",
            metrics.bytes.clone(),
        );
        registry.register(
            "compaction_jobs",
            "Compaction jobs, by state",
            metrics.jobs.clone(),
        );
        registry.register(
            "tombstones",
            "Objects that left the index and wait for deletion",
            metrics.tombstones.clone(),
        );
        registry.register(
            "compaction_lag_seconds",
            "Age of the oldest level-0 segment still in the index",
            metrics.lag_seconds.clone(),
        );
        metrics
    }

    /// Sets every gauge from `status` at `now_millis`.
    pub fn update(&self, status: &CompactionStatus, now_millis: i64) {
        self.blocks.clear();
        self.bytes.clear();
        for level in &status.levels {
            let labels = LevelLabels { level: level.level };
            self.blocks.get_or_create(&labels).set(level.blocks as i64);
            self.bytes.get_or_create(&labels).set(level.bytes as i64);
        }
        for state in [JobState::Planned, JobState::Running, JobState::Parked] {
            let count = status.jobs.iter().filter(|j| j.state == state).count();
            self.jobs
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count as i64);
        }
        self.tombstones.set(status.tombstones.len() as i64);
        let lag = status
            .oldest_level0_created_millis
            .map_or(0.0, |created| (now_millis - created).max(0) as f64 / 1000.0);
        self.lag_seconds.inner().set(lag);
    }

    /// Refreshes the gauges from `node` every `interval` until `stop`.
    pub fn spawn(self, node: Arc<MetastoreNode>, interval: Duration, stop: CancellationToken) {
        spawn_every(interval, FirstTick::Now, stop, move || {
            let (metrics, node) = (self.clone(), Arc::clone(&node));
            async move {
                let status = node.local_compaction_status().await;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                metrics.update(&status, now);
            }
        });
    }
}
