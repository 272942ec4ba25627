//! The compaction and retention part of the metastore's contract: jobs, their leases and
//! outcomes, tombstones of objects to delete, retention cutoffs, and the status an operator sees.
//!
//! The metastore plans jobs in its replicated state machine; compactors poll for them, run them,
//! and report back in their next poll. docs/architecture.md describes the lifecycle.

use kiln_model::BlockMeta;

/// A job as the metastore hands it to a compactor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionJob {
    /// Unique and stable for the job's life.
    pub name: String,
    /// The tenant; empty for a level-0 job, whose segments hold any tenants: its result is one
    /// block per tenant.
    pub tenant: String,
    /// The shard of every source.
    pub shard: u32,
    /// The level of the sources; the result is one level higher.
    pub level: u32,
    /// The blocks to merge, as the index holds them when the job is assigned: only their
    /// datasets are merged (data removed from the index since is left out).
    pub sources: Vec<BlockMeta>,
    /// Fencing token of this assignment: an update carrying another token is refused.
    pub token: u64,
    /// Unix milliseconds when the lease ends unless the worker reports progress.
    pub lease_expires_millis: i64,
}

/// What a worker reports about a job it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Still running: extends the lease.
    InProgress,
    /// Done: these blocks (already written) replace the sources; none when the sources held no
    /// data any more.
    Success(Vec<BlockMeta>),
    /// Failed with this error; the job is retried elsewhere or parked.
    Failure(String),
}

/// A report about one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobUpdate {
    /// The job's name.
    pub name: String,
    /// The token of the assignment the worker holds.
    pub token: u64,
    /// What happened.
    pub outcome: JobOutcome,
}

/// Why an object is to be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TombstoneReason {
    /// Compaction replaced the block.
    Compacted,
    /// Its data is past retention.
    Retention,
    /// Its tenant was deleted.
    TenantDeleted,
    /// An operator removed it (`kiln admin blocks remove`).
    Removed,
}

impl TombstoneReason {
    /// The reason's name on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TombstoneReason::Compacted => "compacted",
            TombstoneReason::Retention => "retention",
            TombstoneReason::TenantDeleted => "tenant-deleted",
            TombstoneReason::Removed => "removed",
        }
    }

    /// The reason named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Compacted,
            Self::Retention,
            Self::TenantDeleted,
            Self::Removed,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// An object that left the index and is to be deleted once no running query can need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The block whose object it is.
    pub block_id: String,
    /// The object's path relative to the storage prefix.
    pub path: String,
    /// The block's tenant; empty for a multi-tenant segment.
    pub tenant: String,
    /// Why it is deleted.
    pub reason: TombstoneReason,
    /// Unix milliseconds when the block left the index.
    pub created_millis: i64,
}

/// A compactor's poll: its reports, and what it can take on now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionPoll {
    /// The worker's name (its address), for status and logs.
    pub worker: String,
    /// Reports about the jobs it holds.
    pub updates: Vec<JobUpdate>,
    /// How many new jobs it can take.
    pub job_capacity: u32,
    /// Block ids of tombstones whose objects it deleted (or found already gone).
    pub deleted: Vec<String>,
    /// How many tombstones it can delete now.
    pub deletion_capacity: u32,
    /// Only tombstones at least this old (milliseconds) are due: queries that started before a
    /// block left the index keep reading it meanwhile.
    pub deletion_delay_millis: i64,
}

/// The answer to a poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionAssignment {
    /// New jobs for the worker.
    pub jobs: Vec<CompactionJob>,
    /// Updates that were refused: the worker drops those jobs.
    pub refused: Vec<RefusedUpdate>,
    /// Tombstones due for deletion, leased to this worker.
    pub deletions: Vec<Tombstone>,
}

/// An update the metastore refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedUpdate {
    /// The job's name.
    pub name: String,
    /// Why, for the log.
    pub reason: String,
    /// True when the job is certainly not committed with the worker's token (another assignment
    /// holds it): what the worker wrote for it can be deleted at once. Otherwise (the job is
    /// unknown) it is left to the orphan sweep.
    pub discard_outputs: bool,
}

/// Data of `tenant` entirely older than `before_nanos` is to leave the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionCutoff {
    /// The tenant.
    pub tenant: String,
    /// Unix nanoseconds.
    pub before_nanos: i64,
}

/// What retention removed of one tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionRemoval {
    /// The tenant.
    pub tenant: String,
    /// Datasets of the tenant removed from the index.
    pub datasets: u64,
    /// Blocks left without data, removed and tombstoned.
    pub blocks: u64,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker.
    Planned,
    /// Leased to a worker.
    Running,
    /// Failed too often; left alone (its sources stay queryable) until an operator acts.
    Parked,
}

impl JobState {
    /// The state's name on the wire, in metrics and in `kiln admin compaction status`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Planned => "planned",
            JobState::Running => "running",
            JobState::Parked => "parked",
        }
    }

    /// The state named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Planned, Self::Running, Self::Parked]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// One job as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInfo {
    /// The job's name.
    pub name: String,
    /// Its tenant (empty at level 0).
    pub tenant: String,
    /// Its shard.
    pub shard: u32,
    /// The level of its sources.
    pub level: u32,
    /// How many sources it merges.
    pub sources: u32,
    /// Where it stands.
    pub state: JobState,
    /// Failures so far (reported, or leases that expired).
    pub failures: u32,
    /// The worker holding it, when running.
    pub worker: String,
    /// When its lease ends, when running (unix milliseconds).
    pub lease_expires_millis: i64,
    /// The last failure's error.
    pub last_error: String,
}

/// Blocks of one level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelInfo {
    /// The compaction level (0: segments).
    pub level: u32,
    /// Blocks in the index.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks waiting in a queue, not yet in a job.
    pub queued: u64,
}

/// Compaction as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStatus {
    /// Every job the state machine holds.
    pub jobs: Vec<JobInfo>,
    /// Blocks per level.
    pub levels: Vec<LevelInfo>,
    /// Objects waiting to be deleted.
    pub tombstones: Vec<Tombstone>,
    /// Unix milliseconds of the creation of the oldest level-0 block in the index; `None` when
    /// there is none. Its age is the compaction lag.
    pub oldest_level0_created_millis: Option<i64>,
}
