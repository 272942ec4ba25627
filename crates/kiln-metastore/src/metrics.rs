//! Gauges of the index and of compaction, refreshed from a node's applied state.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_contract::metastore::{CompactionStatus, JobState};
use kiln_runtime::{FirstTick, Listed, spawn_every};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{Atomic, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
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

/// Buckets of the Raft write and apply histograms: 100 µs to about 3.3 s.
pub(crate) fn raft_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Prometheus metrics of a metastore node.
#[derive(Clone, Debug)]
pub struct MetastoreMetrics {
    blocks: Family<LevelLabels, Gauge>,
    bytes: Family<LevelLabels, Gauge>,
    jobs: Family<StateLabels, Gauge>,
    tombstones: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    is_leader: Gauge,
    term: Gauge,
    last_applied: Gauge,
}

impl MetastoreMetrics {
    /// Registers the gauges of `node`, and its write and apply histograms, under
    /// `kiln_metastore_`.
    pub fn new(registry: &mut Registry, node: &MetastoreNode) -> Self {
        let metrics = Self {
            blocks: Family::default(),
            bytes: Family::default(),
            jobs: Family::default(),
            tombstones: Gauge::default(),
            lag_seconds: Gauge::default(),
            is_leader: Gauge::default(),
            term: Gauge::default(),
            last_applied: Gauge::default(),
        };
        for state in [JobState::Planned, JobState::Running, JobState::Parked] {
            metrics.jobs.get_or_create_owned(&StateLabels {
                state: state.as_str(),
            });
        }
        let (write_duration, apply_duration) = node.timings();
        let registry = registry.sub_registry_with_prefix("kiln_metastore");
        registry.register(
            "blocks",
            "Blocks in the index, by compaction level",
            Listed(metrics.blocks.clone()),
        );
        registry.register(
            "block_bytes",
            "Bytes of the blocks in the index, by compaction level",
            Listed(metrics.bytes.clone()),
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
        registry.register(
            "is_leader",
            "1 while this node leads the metastore's Raft group, else 0",
            metrics.is_leader.clone(),
        );
        registry.register(
            "term",
            "The Raft term this node is in",
            metrics.term.clone(),
        );
        registry.register(
            "last_applied_index",
            "Index of the last log entry this node applied to its state",
            metrics.last_applied.clone(),
        );
        registry.register(
            "write_duration_seconds",
            "Time from proposing a write on the leader to its being committed and applied",
            write_duration,
        );
        registry.register(
            "apply_duration_seconds",
            "Time to apply a batch of committed log entries to the state",
            apply_duration,
        );
        metrics
    }

    /// Sets the Raft gauges from `node`'s current Raft metrics.
    fn update_raft(&self, node: &MetastoreNode) {
        let raft = node.raft().metrics().borrow().clone();
        self.is_leader
            .set(i64::from(raft.current_leader == Some(node.id())));
        self.term
            .set(i64::try_from(raft.current_term).unwrap_or(i64::MAX));
        let applied = raft.last_applied.map_or(0, |log| log.index);
        self.last_applied
            .set(i64::try_from(applied).unwrap_or(i64::MAX));
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
                metrics.update_raft(&node);
                let status = node.local_compaction_status().await;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                metrics.update(&status, now);
            }
        });
    }
}
