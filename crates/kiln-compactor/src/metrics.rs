use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_runtime::{BoundedTenants, Listed};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the job outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// success, failure or refused.
    pub outcome: String,
}

/// Labels of the deletion counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// compacted, retention, tenant-deleted, removed (`kiln admin blocks remove`) or orphan.
    pub reason: String,
}

/// Labels of the retention counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant.
    pub tenant: String,
}

/// Prometheus metrics of a compactor.
#[derive(Clone, Debug)]
pub struct CompactorMetrics {
    /// Jobs finished, by outcome.
    pub jobs: Family<OutcomeLabels, Counter>,
    /// Jobs running now.
    pub jobs_running: Gauge,
    /// Time a job took, successful ones.
    pub job_duration_seconds: Histogram,
    /// Bytes of source objects read.
    pub bytes_read: Counter,
    /// Bytes of blocks written.
    pub bytes_written: Counter,
    /// Blocks written.
    pub blocks_written: Counter,
    /// Duplicate profiles dropped while merging.
    pub duplicate_profiles: Counter,
    /// Objects deleted, by why.
    pub objects_deleted: Family<ReasonLabels, Counter>,
    /// Datasets removed from the index by retention, per tenant (at most a number of tenants
    /// at once, see [`CompactorMetrics::with_tenant_cap`]).
    pub retention_datasets_removed: Family<TenantLabels, Counter>,
    /// The tenants the retention counter names.
    tenants: Arc<BoundedTenants<TenantLabels>>,
}

impl CompactorMetrics {
    /// Registers the metrics under `kiln_compactor_`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            jobs: Family::default(),
            jobs_running: Gauge::default(),
            job_duration_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            bytes_read: Counter::default(),
            bytes_written: Counter::default(),
            blocks_written: Counter::default(),
            duplicate_profiles: Counter::default(),
            objects_deleted: Family::default(),
            retention_datasets_removed: Family::default(),
            tenants: Arc::new(BoundedTenants::new(1000, Duration::from_secs(15 * 60))),
        };
        let registry = registry.sub_registry_with_prefix("kiln_compactor");
        registry.register(
            "jobs",
            "Compaction jobs finished, by outcome",
            metrics.jobs.clone(),
        );
        registry.register(
            "jobs_running",
            "Compaction jobs running now",
            metrics.jobs_running.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Time to read, merge and write a compaction job",
            metrics.job_duration_seconds.clone(),
        );
        registry.register(
            "read_bytes",
            "Bytes of source blocks read",
            metrics.bytes_read.clone(),
        );
        registry.register(
            "written_bytes",
            "Bytes of compacted blocks written",
            metrics.bytes_written.clone(),
        );
        registry.register(
            "blocks_written",
            "Compacted blocks written",
            metrics.blocks_written.clone(),
        );
        registry.register(
            "duplicate_profiles",
            "Profiles dropped while merging because their series and profile id were seen already",
            metrics.duplicate_profiles.clone(),
        );
        registry.register(
            "objects_deleted",
            "Objects deleted from storage, by reason",
            metrics.objects_deleted.clone(),
        );
        registry.register(
            "retention_datasets_removed",
            "Datasets removed from the index because they are past their tenant's retention",
            Listed(metrics.retention_datasets_removed.clone()),
        );
        // Every series exists from the start, so each metric is listed before its first event.
        for outcome in ["success", "failure", "refused"] {
            metrics.jobs.get_or_create_owned(&OutcomeLabels {
                outcome: outcome.to_string(),
            });
        }
        for reason in [
            "compacted",
            "retention",
            "tenant-deleted",
            "removed",
            "orphan",
        ] {
            metrics.objects_deleted.get_or_create_owned(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        metrics
    }

    /// The same metrics naming at most `max` tenants at once in the retention counter (the
    /// others as `#other`), each forgotten with its series `idle` after its last count.
    pub fn with_tenant_cap(mut self, max: usize, idle: Duration) -> Self {
        self.tenants = Arc::new(BoundedTenants::new(max, idle));
        self
    }

    /// Counts `datasets` of `tenant` removed by retention.
    pub(crate) fn retention_removed(&self, tenant: &str, datasets: u64) {
        self.tenants.series(tenant, Instant::now(), |tenant| {
            let labels = TenantLabels {
                tenant: tenant.to_string(),
            };
            self.retention_datasets_removed
                .get_or_create(&labels)
                .inc_by(datasets);
            labels
        });
    }

    /// Removes the retention series of tenants not counted for the idle time.
    pub(crate) fn forget_idle_tenants(&self) {
        for labels in self.tenants.expire(Instant::now()) {
            self.retention_datasets_removed.remove(&labels);
        }
    }

    /// Counts one job's outcome.
    pub(crate) fn job_finished(&self, outcome: &str) {
        self.jobs
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one deleted object.
    pub(crate) fn deleted(&self, reason: &str) {
        self.objects_deleted
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}
