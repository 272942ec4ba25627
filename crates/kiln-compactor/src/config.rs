//! How a compactor runs.

use std::time::Duration;

/// Settings of a compactor.
#[derive(Clone, Debug)]
pub struct CompactorConfig {
    /// Its name in the metastore's job table (its address).
    pub worker: String,
    /// Jobs run at once.
    pub job_concurrency: usize,
    /// How often it polls the metastore (and reports progress, which keeps its leases).
    pub poll_interval: Duration,
    /// Objects that left the index are deleted this long after, so that queries already running
    /// keep their blocks.
    pub deletion_delay: Duration,
    /// Deletions carried out per poll at most.
    pub deletions_per_poll: u32,
    /// How often each tenant's retention is applied.
    pub retention_interval: Duration,
    /// Objects written but never registered are deleted once this old.
    pub orphan_grace: Duration,
    /// How often the bucket is swept for such objects.
    pub orphan_sweep_interval: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            worker: "compactor".to_string(),
            job_concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            poll_interval: Duration::from_secs(2),
            deletion_delay: Duration::from_secs(600),
            deletions_per_poll: 200,
            retention_interval: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(24 * 3600),
            orphan_sweep_interval: Duration::from_secs(3600),
        }
    }
}
