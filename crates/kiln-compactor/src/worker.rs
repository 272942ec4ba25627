//! The compactor's poll loop: one call to the metastore reports the jobs this worker holds and
//! the deletions it carried out, and brings new jobs and due deletions.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_contract::metastore::{
    CompactionJob, CompactionPoll, JobOutcome, JobUpdate, Metastore, Tombstone,
};
use kiln_model::BlockMeta;
use kiln_objstore::Storage;
use kiln_objstore::object_store::{self, ObjectStoreExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{CompactionError, CompactorConfig, CompactorMetrics, job};

/// How long a stopping compactor waits for its running jobs.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// What a finished job produced.
#[derive(Debug)]
struct Finished {
    token: u64,
    outcome: Result<Vec<BlockMeta>, CompactionError>,
    /// Objects it wrote, to delete if its commit is refused or it failed.
    written: Vec<String>,
}

/// A job this worker holds.
#[derive(Debug)]
struct Held {
    token: u64,
    task: JoinHandle<Finished>,
}

/// A compactor: polls the metastore for jobs and deletions until stopped.
#[derive(Debug)]
pub struct Compactor {
    config: CompactorConfig,
    metastore: Arc<dyn Metastore>,
    storage: Storage,
    metrics: CompactorMetrics,
    running: HashMap<String, Held>,
    finished: HashMap<String, Finished>,
    deleted: Vec<String>,
}

impl Compactor {
    /// A compactor that has not polled yet.
    pub fn new(
        config: CompactorConfig,
        metastore: Arc<dyn Metastore>,
        storage: Storage,
        metrics: CompactorMetrics,
    ) -> Self {
        Self {
            config,
            metastore,
            storage,
            metrics,
            running: HashMap::new(),
            finished: HashMap::new(),
            deleted: Vec::new(),
        }
    }

    /// Polls every poll interval until `stop`; then stops taking jobs, lets the running ones
    /// finish and reports them.
    pub fn spawn(mut self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.config.poll_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first poll waits one period: a metastore started in the same process elects
            // itself meanwhile, instead of the poll failing with a warning at every start.
            ticks.tick().await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                if let Err(e) = self.poll(true).await {
                    tracing::warn!(error = %e, "compaction poll failed; retrying");
                }
            }
            // Jobs that finish within the grace period are reported; the rest are abandoned and
            // their leases expire.
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            for (name, mut held) in std::mem::take(&mut self.running) {
                match tokio::time::timeout_at(deadline, &mut held.task).await {
                    Ok(Ok(finished)) => {
                        self.finished.insert(name, finished);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(job = %name, error = %e, "compaction job panicked")
                    }
                    Err(_) => {
                        held.task.abort();
                        tracing::info!(job = %name, "compaction job abandoned at shutdown");
                    }
                }
            }
            if let Err(e) = self.poll(false).await {
                tracing::warn!(error = %e, "final compaction poll failed; the leases will expire");
            }
        })
    }

    /// Moves jobs whose task ended from `running` to `finished`.
    async fn collect_finished(&mut self) {
        let done: Vec<String> = self
            .running
            .iter()
            .filter(|(_, held)| held.task.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        for name in done {
            let Some(held) = self.running.remove(&name) else {
                continue;
            };
            let finished = match held.task.await {
                Ok(finished) => finished,
                Err(e) => Finished {
                    token: held.token,
                    outcome: Err(CompactionError::Panicked {
                        job: name.clone(),
                        reason: e.to_string(),
                    }),
                    written: Vec::new(),
                },
            };
            self.finished.insert(name, finished);
        }
    }

    /// One poll: report, then start what the metastore hands out. With `take_work` false
    /// (shutting down) it only reports.
    pub async fn poll(&mut self, take_work: bool) -> Result<(), CompactionError> {
        self.collect_finished().await;
        let mut updates = Vec::new();
        for (name, held) in &self.running {
            updates.push(JobUpdate {
                name: name.clone(),
                token: held.token,
                outcome: JobOutcome::InProgress,
            });
        }
        for (name, finished) in &self.finished {
            let outcome = match &finished.outcome {
                Ok(blocks) => JobOutcome::Success(blocks.clone()),
                Err(e) => JobOutcome::Failure(e.to_string()),
            };
            updates.push(JobUpdate {
                name: name.clone(),
                token: finished.token,
                outcome,
            });
        }
        let capacity = if take_work {
            self.config
                .job_concurrency
                .saturating_sub(self.running.len()) as u32
        } else {
            0
        };
        let poll = CompactionPoll {
            worker: self.config.worker.clone(),
            updates,
            job_capacity: capacity,
            deleted: self.deleted.clone(),
            deletion_capacity: if take_work {
                self.config.deletions_per_poll
            } else {
                0
            },
            deletion_delay_millis: self.config.deletion_delay.as_millis() as i64,
        };
        let assignment = self.metastore.poll_compaction(poll).await?;
        self.deleted.clear();

        // Reported: the finished jobs are done with, except those whose commit was refused.
        let refused: HashMap<&str, bool> = assignment
            .refused
            .iter()
            .map(|r| (r.name.as_str(), r.discard_outputs))
            .collect();
        for r in &assignment.refused {
            tracing::warn!(job = %r.name, reason = %r.reason, "the metastore refused a job update; dropping the job");
        }
        for (name, finished) in std::mem::take(&mut self.finished) {
            match (&finished.outcome, refused.get(name.as_str())) {
                (Ok(_), None) => self.metrics.job_finished("success"),
                (Ok(_), Some(&discard)) => {
                    self.metrics.job_finished("refused");
                    if discard {
                        job::discard(&self.storage, &finished.written).await;
                    }
                }
                (Err(e), _) => {
                    tracing::warn!(job = %name, error = %e, "compaction job failed");
                    self.metrics.job_finished("failure");
                    job::discard(&self.storage, &finished.written).await;
                }
            }
        }
        for r in &assignment.refused {
            if let Some(held) = self.running.remove(&r.name) {
                held.task.abort();
                self.metrics.job_finished("refused");
            }
        }
        for job in assignment.jobs {
            self.start(job);
        }
        self.metrics.jobs_running.set(self.running.len() as i64);
        self.delete(assignment.deletions).await;
        Ok(())
    }

    fn start(&mut self, job: CompactionJob) {
        tracing::info!(
            job = %job.name,
            tenant = %job.tenant,
            level = job.level,
            sources = job.sources.len(),
            "compaction job started"
        );
        let (storage, metrics) = (self.storage.clone(), self.metrics.clone());
        let name = job.name.clone();
        let token = job.token;
        let task = tokio::spawn(async move {
            let mut written = Vec::new();
            let outcome = job::run(&job, &storage, &metrics, &mut written).await;
            if let Ok(blocks) = &outcome {
                tracing::info!(
                    job = %job.name,
                    blocks = blocks.len(),
                    bytes = blocks.iter().map(|b| b.size_bytes).sum::<u64>(),
                    "compaction job done"
                );
            }
            Finished {
                token,
                outcome,
                written,
            }
        });
        self.running.insert(name, Held { token, task });
    }

    /// Deletes the objects of due tombstones; the ids go out with the next poll. An object
    /// already gone counts as deleted: deletion is idempotent.
    async fn delete(&mut self, tombstones: Vec<Tombstone>) {
        for tombstone in tombstones {
            match self
                .storage
                .store
                .delete(&self.storage.path(&tombstone.path))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::debug!(path = %tombstone.path, reason = tombstone.reason.as_str(), "object deleted");
                    self.metrics.deleted(tombstone.reason.as_str());
                    self.deleted.push(tombstone.block_id);
                }
                Err(e) => {
                    tracing::warn!(path = %tombstone.path, error = %e, "cannot delete a tombstoned object; retrying later");
                }
            }
        }
    }
}
