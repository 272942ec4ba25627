//! Compaction jobs and the record of recently committed ones. Jobs are snapshotted; which job
//! holds which block is derived from them.

use std::collections::{BTreeMap, HashMap, HashSet};

use kiln_contract::metastore::{JobInfo, JobState};
use serde::{Deserialize, Serialize};

/// How long a committed job is remembered (command time): a success retried within this time,
/// its first reply lost, is acknowledged again, and its sources cannot be registered again.
pub(crate) const COMMITTED_KEPT_MILLIS: i64 = 3_600_000;

/// Where a job stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JobRun {
    /// Waiting for a worker.
    Planned,
    /// Leased to `worker`; only updates carrying `token` are accepted.
    Running {
        worker: String,
        token: u64,
        lease_expires_millis: i64,
    },
    /// Failed too often; never planned again.
    Parked,
}

/// One compaction job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Job {
    /// Unique: made from the log index of the command that planned it.
    pub(crate) name: String,
    /// "" at level 0.
    pub(crate) tenant: String,
    pub(crate) shard: u32,
    /// The level of the sources.
    pub(crate) level: u32,
    /// Block ids, oldest first.
    pub(crate) sources: Vec<String>,
    pub(crate) run: JobRun,
    pub(crate) failures: u32,
    pub(crate) last_error: String,
    /// The log index of the command that planned it.
    pub(crate) created_index: u64,
}

impl Job {
    /// The job as an operator sees it.
    pub(crate) fn info(&self) -> JobInfo {
        let (state, worker, lease_expires_millis) = match &self.run {
            JobRun::Planned => (JobState::Planned, String::new(), 0),
            JobRun::Running {
                worker,
                lease_expires_millis,
                ..
            } => (JobState::Running, worker.clone(), *lease_expires_millis),
            JobRun::Parked => (JobState::Parked, String::new(), 0),
        };
        JobInfo {
            name: self.name.clone(),
            tenant: self.tenant.clone(),
            shard: self.shard,
            level: self.level,
            sources: self.sources.len() as u32,
            state,
            failures: self.failures,
            worker,
            lease_expires_millis,
            last_error: self.last_error.clone(),
        }
    }
}

/// A committed job as remembered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Committed {
    /// The token of the assignment that committed it.
    pub(crate) token: u64,
    /// When (command time).
    pub(crate) committed_millis: i64,
    /// Its sources, which must not come back.
    pub(crate) sources: Vec<String>,
}

/// The jobs.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    jobs: BTreeMap<String, Job>,
    /// Block id to the job holding it (derived).
    source_of: HashMap<String, String>,
    committed: BTreeMap<String, Committed>,
    /// Every source of a remembered committed job (derived).
    committed_sources: HashSet<String>,
}

impl Jobs {
    /// Rebuilds the table from a snapshot's jobs and committed record.
    pub(crate) fn restore(jobs: Vec<Job>, committed: BTreeMap<String, Committed>) -> Self {
        let mut table = Self {
            committed_sources: committed
                .values()
                .flat_map(|c| c.sources.iter().cloned())
                .collect(),
            committed,
            ..Self::default()
        };
        for job in jobs {
            table.insert(job);
        }
        table
    }

    /// Adds a job.
    pub(crate) fn insert(&mut self, job: Job) {
        for source in &job.sources {
            self.source_of.insert(source.clone(), job.name.clone());
        }
        self.jobs.insert(job.name.clone(), job);
    }

    /// The job named `name`, to change it.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Job> {
        self.jobs.get_mut(name)
    }

    /// Removes a job, releasing its sources.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Job> {
        let job = self.jobs.remove(name)?;
        for source in &job.sources {
            self.source_of.remove(source);
        }
        Some(job)
    }

    /// Every job, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// True when a job holds the block.
    pub(crate) fn holds(&self, block_id: &str) -> bool {
        self.source_of.contains_key(block_id)
    }

    /// Counts a failure: the job is planned again, or parked once it failed `max_failures`
    /// times.
    pub(crate) fn fail(&mut self, name: &str, error: String, max_failures: u32) {
        let Some(job) = self.jobs.get_mut(name) else {
            return;
        };
        job.failures += 1;
        job.last_error = error;
        if job.failures >= max_failures {
            job.run = JobRun::Parked;
            tracing::warn!(
                job = %job.name,
                tenant = %job.tenant,
                shard = job.shard,
                level = job.level,
                failures = job.failures,
                error = %job.last_error,
                "compaction job parked after too many failures: its sources stay as they are"
            );
        } else {
            job.run = JobRun::Planned;
        }
    }

    /// A block left the index (retention, tenant deletion): the job holding it forgets it, and
    /// is dropped when it has no source left (its name is returned). A running job dropped so
    /// is unknown to its worker's next report, which is refused.
    pub(crate) fn forget_source(&mut self, block_id: &str) -> Option<String> {
        let name = self.source_of.remove(block_id)?;
        let job = self.jobs.get_mut(&name)?;
        job.sources.retain(|s| s != block_id);
        if job.sources.is_empty() {
            self.jobs.remove(&name);
            return Some(name);
        }
        None
    }

    /// Remembers a committed job.
    pub(crate) fn record_commit(&mut self, job: &Job, token: u64, now_millis: i64) {
        self.committed_sources.extend(job.sources.iter().cloned());
        self.committed.insert(
            job.name.clone(),
            Committed {
                token,
                committed_millis: now_millis,
                sources: job.sources.clone(),
            },
        );
    }

    /// The committed job named `name`, while remembered.
    pub(crate) fn committed(&self, name: &str) -> Option<&Committed> {
        self.committed.get(name)
    }

    /// The committed record, for a snapshot.
    pub(crate) fn committed_record(&self) -> &BTreeMap<String, Committed> {
        &self.committed
    }

    /// True when the block was a source of a remembered committed job.
    pub(crate) fn was_compacted(&self, block_id: &str) -> bool {
        self.committed_sources.contains(block_id)
    }

    /// Forgets committed jobs older than [`COMMITTED_KEPT_MILLIS`].
    pub(crate) fn prune_committed(&mut self, now_millis: i64) {
        let horizon = now_millis.saturating_sub(COMMITTED_KEPT_MILLIS);
        let sources = &mut self.committed_sources;
        self.committed.retain(|_, committed| {
            let keep = committed.committed_millis >= horizon;
            if !keep {
                for source in &committed.sources {
                    sources.remove(source);
                }
            }
            keep
        });
    }

    /// The planned jobs in the order they are assigned: smallest level first, then oldest.
    pub(crate) fn planned_in_order(&self) -> Vec<String> {
        let mut planned: Vec<&Job> = self
            .jobs
            .values()
            .filter(|j| j.run == JobRun::Planned)
            .collect();
        planned.sort_by(|a, b| {
            (a.level, a.created_index, &a.name).cmp(&(b.level, b.created_index, &b.name))
        });
        planned.into_iter().map(|j| j.name.clone()).collect()
    }

    /// Running jobs whose lease ended at `now_millis`, with their workers.
    pub(crate) fn expired(&self, now_millis: i64) -> Vec<(String, String)> {
        self.jobs
            .values()
            .filter_map(|job| match &job.run {
                JobRun::Running {
                    worker,
                    lease_expires_millis,
                    ..
                } if *lease_expires_millis <= now_millis => {
                    Some((job.name.clone(), worker.clone()))
                }
                _ => None,
            })
            .collect()
    }
}
