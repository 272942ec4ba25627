//! Flags of compaction and retention: how the metastore plans jobs, and how compactors run them.

use std::time::Duration;

use clap::Args;

use crate::units::parse_duration;

/// Compaction settings of `kiln server`.
#[derive(Clone, Debug, Args)]
pub struct CompactionArgs {
    /// How the metastore plans jobs, level by level: `blocks/max-age` per level, comma-separated.
    /// A level's blocks (of one tenant and shard) become a job once that many are queued or the
    /// oldest is that old; the level after the last one is final.
    #[arg(
        long = "compaction.levels",
        env = "KILN_COMPACTION_LEVELS",
        default_value = "20/30s,10/10m,10/3h"
    )]
    pub levels: String,

    /// A job's lease: a compactor that reports no progress for this long loses the job.
    #[arg(long = "compaction.job-lease", env = "KILN_COMPACTION_JOB_LEASE",
          default_value = "15s", value_parser = parse_duration)]
    pub job_lease: Duration,

    /// A job that failed this many times (errors or expired leases) is parked, not retried.
    #[arg(
        long = "compaction.max-failures",
        env = "KILN_COMPACTION_MAX_FAILURES",
        default_value = "3"
    )]
    pub max_failures: u32,

    /// Jobs a compactor runs at once; 0: the number of cores.
    #[arg(
        long = "compactor.job-concurrency",
        env = "KILN_COMPACTOR_JOB_CONCURRENCY",
        default_value = "0"
    )]
    pub job_concurrency: usize,

    /// How often a compactor polls the metastore for jobs and deletions.
    #[arg(long = "compactor.poll-interval", env = "KILN_COMPACTOR_POLL_INTERVAL",
          default_value = "2s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// Objects that left the index (compacted, past retention, deleted tenants) are deleted
    /// this long after, so that queries already running keep their blocks.
    #[arg(long = "compactor.deletion-delay", env = "KILN_COMPACTOR_DELETION_DELAY",
          default_value = "10m", value_parser = parse_duration)]
    pub deletion_delay: Duration,

    /// How often a compactor applies every tenant's retention period.
    #[arg(long = "compactor.retention-interval", env = "KILN_COMPACTOR_RETENTION_INTERVAL",
          default_value = "1m", value_parser = parse_duration)]
    pub retention_interval: Duration,

    /// Objects written but never registered (a writer killed before registering) are deleted
    /// once this old.
    #[arg(long = "compactor.orphan-grace", env = "KILN_COMPACTOR_ORPHAN_GRACE",
          default_value = "24h", value_parser = parse_duration)]
    pub orphan_grace: Duration,

    /// How often a compactor sweeps object storage for such objects.
    #[arg(long = "compactor.orphan-sweep-interval", env = "KILN_COMPACTOR_ORPHAN_SWEEP_INTERVAL",
          default_value = "1h", value_parser = parse_duration)]
    pub orphan_sweep_interval: Duration,
}
