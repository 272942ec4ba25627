//! A compactor's poll, applied: its reports (lease extension, commit, failure), its deletions,
//! lease expiry, planning from the queues, and the assignment of jobs and tombstones.

use std::collections::HashSet;

use kiln_contract::metastore::{
    CompactionAssignment, CompactionJob, RefusedUpdate, TombstoneReason,
};
use kiln_model::BlockMeta;

use super::jobs::{Job, JobRun};
use super::{MetastoreState, with_datasets};
use crate::config::CompactionConfig;
use crate::types::{OutcomeRecord, PollRecord, UpdateRecord};

impl MetastoreState {
    /// Applies a poll at `log_index`: (a) the updates, (b) the deletions, (c) lease expiry,
    /// (d) planning, (e) up to `job_capacity` planned jobs assigned, smallest level first then
    /// oldest, with this log index as their token, (f) up to `deletion_capacity` due
    /// tombstones leased to the worker.
    pub(crate) fn poll(
        &mut self,
        poll: &PollRecord,
        config: &CompactionConfig,
        now_millis: i64,
        log_index: u64,
    ) -> CompactionAssignment {
        self.jobs.prune_committed(now_millis);
        let refused = poll
            .updates
            .iter()
            .filter_map(|update| self.apply_update(update, config, now_millis))
            .collect();
        for id in &poll.deleted {
            self.tombstones.remove(id);
        }
        for (name, worker) in self.jobs.expired(now_millis) {
            let error = format!("the lease of worker {worker} ended");
            self.jobs.fail(&name, error, config.max_failures);
        }
        self.plan(config, now_millis, log_index);
        let jobs = self.assign(poll, config, now_millis, log_index);
        let deletions = self.tombstones.lease_due(
            poll.deletion_capacity,
            now_millis,
            poll.deletion_delay_millis,
            now_millis + config.lease_millis(),
        );
        CompactionAssignment {
            jobs,
            refused,
            deletions,
        }
    }

    /// True when a poll would change anything: it carries updates or deletions, a lease ended,
    /// or it could receive a job (planned, or due for planning) or a tombstone. Otherwise its
    /// answer is empty and the leader need not write it.
    pub(crate) fn poll_has_work(
        &self,
        poll: &PollRecord,
        config: &CompactionConfig,
        now_millis: i64,
    ) -> bool {
        !poll.updates.is_empty()
            || !poll.deleted.is_empty()
            || !self.jobs.expired(now_millis).is_empty()
            || (poll.job_capacity > 0
                && (self.jobs.iter().any(|j| j.run == JobRun::Planned)
                    || self.queues.any_due(config, now_millis)))
            || (poll.deletion_capacity > 0
                && self
                    .tombstones
                    .any_due(now_millis, poll.deletion_delay_millis))
    }

    /// Applies one report; `Some` when it is refused.
    fn apply_update(
        &mut self,
        update: &UpdateRecord,
        config: &CompactionConfig,
        now_millis: i64,
    ) -> Option<RefusedUpdate> {
        let name = &update.name;
        let refuse = |reason: String, discard_outputs: bool| {
            Some(RefusedUpdate {
                name: name.clone(),
                reason,
                discard_outputs,
            })
        };
        let Some(job) = self.jobs.get_mut(name) else {
            return match self.jobs.committed(name) {
                // A retried report of the assignment that committed: its first reply was lost.
                Some(committed) if committed.token == update.token => None,
                Some(committed) => refuse(
                    format!(
                        "job {name} was committed with token {}, not {}",
                        committed.token, update.token
                    ),
                    false,
                ),
                None => refuse(
                    format!("job {name} is unknown: committed over an hour ago, or dropped"),
                    false,
                ),
            };
        };
        match &mut job.run {
            JobRun::Running {
                token,
                lease_expires_millis,
                ..
            } if *token == update.token => {
                if let OutcomeRecord::InProgress = update.outcome {
                    *lease_expires_millis = now_millis + config.lease_millis();
                }
            }
            JobRun::Running { token, .. } => {
                let reason = format!(
                    "job {name} is assigned with token {token}, not {}",
                    update.token
                );
                return refuse(reason, true);
            }
            JobRun::Planned => {
                let reason = format!(
                    "job {name} is waiting for a new worker: the assignment with token {} ended",
                    update.token
                );
                return refuse(reason, true);
            }
            JobRun::Parked => return refuse(format!("job {name} is parked"), true),
        }
        match &update.outcome {
            OutcomeRecord::InProgress => {}
            OutcomeRecord::Failure(error) => {
                self.jobs.fail(name, error.clone(), config.max_failures);
            }
            OutcomeRecord::Success(results) => {
                self.commit(name, update.token, results, now_millis);
            }
        }
        None
    }

    /// Replaces a job's sources by its results, in one step: the sources still in the index
    /// leave it (their objects tombstoned as compacted, unless a result still uses the object),
    /// the results enter it and their queues, and the job is remembered as committed.
    fn commit(&mut self, name: &str, token: u64, results: &[BlockMeta], now_millis: i64) {
        let Some(job) = self.jobs.remove(name) else {
            return;
        };
        let kept_objects: HashSet<&str> = results.iter().map(|r| r.path.as_str()).collect();
        for source in &job.sources {
            // No queue holds it: the job did. Sources that left the index left the job too.
            if let Some(block) = self.index.remove(source)
                && !kept_objects.contains(block.path.as_str())
            {
                self.tombstones
                    .add(&block, TombstoneReason::Compacted, now_millis);
            }
        }
        for result in results {
            self.add_result(result, job.created_index, now_millis);
        }
        self.jobs.record_commit(&job, token, now_millis);
    }

    /// Adds one result of a job planned at `created_index`, without the datasets of tenants
    /// deleted since; a result left without data is tombstoned at once.
    fn add_result(&mut self, result: &BlockMeta, created_index: u64, now_millis: i64) {
        let deleted_since = |tenant: &str| {
            self.deleted_tenants
                .get(tenant)
                .is_some_and(|&deleted_at| deleted_at > created_index)
        };
        let datasets: Vec<_> = if deleted_since(&result.tenant) {
            Vec::new()
        } else {
            result
                .datasets
                .iter()
                .filter(|d| !deleted_since(&d.tenant))
                .cloned()
                .collect()
        };
        if datasets.is_empty() {
            let reason = if result.datasets.is_empty() {
                TombstoneReason::Compacted
            } else {
                TombstoneReason::TenantDeleted
            };
            self.tombstones.add(result, reason, now_millis);
            return;
        }
        let block = if datasets.len() == result.datasets.len() {
            result.clone()
        } else {
            with_datasets(result, datasets)
        };
        self.admit(block, now_millis);
    }

    /// Plans a job for every batch due in the queues, named after `log_index`.
    fn plan(&mut self, config: &CompactionConfig, now_millis: i64, log_index: u64) {
        for (n, (key, sources)) in self
            .queues
            .take_due(config, now_millis)
            .into_iter()
            .enumerate()
        {
            self.jobs.insert(Job {
                name: format!("job-{log_index}-{n}"),
                tenant: key.tenant,
                shard: key.shard,
                level: key.level,
                sources,
                run: JobRun::Planned,
                failures: 0,
                last_error: String::new(),
                created_index: log_index,
            });
        }
    }

    /// Leases up to the poll's capacity of planned jobs to its worker.
    fn assign(
        &mut self,
        poll: &PollRecord,
        config: &CompactionConfig,
        now_millis: i64,
        log_index: u64,
    ) -> Vec<CompactionJob> {
        let lease_expires_millis = now_millis + config.lease_millis();
        let mut assigned = Vec::new();
        for name in self
            .jobs
            .planned_in_order()
            .into_iter()
            .take(poll.job_capacity as usize)
        {
            let Some(job) = self.jobs.get_mut(&name) else {
                continue;
            };
            job.run = JobRun::Running {
                worker: poll.worker.clone(),
                token: log_index,
                lease_expires_millis,
            };
            assigned.push(CompactionJob {
                name,
                tenant: job.tenant.clone(),
                shard: job.shard,
                level: job.level,
                sources: job
                    .sources
                    .iter()
                    .filter_map(|id| self.index.get(id))
                    .map(|block| BlockMeta::clone(block))
                    .collect(),
                token: log_index,
                lease_expires_millis,
            });
        }
        assigned
    }
}
