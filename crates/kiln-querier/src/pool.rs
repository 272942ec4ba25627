//! The merge pool: a fixed number of threads of their own for the CPU work of queries (block
//! decoding, merging, rendering).
//!
//! Tokio's blocking pool is shared with the rest of the process: in all-in-one mode the
//! ingester encodes segments and the metastore commits (fsyncs) its log there, and it grows
//! to hundreds of threads. Query work on it could take every core from them. On this pool a
//! query waits for a merge thread instead, and at most `threads` cores ever run query work.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;

use crate::QuerierError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of named threads running closures in submission order.
#[derive(Clone, Debug)]
pub(crate) struct MergePool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

impl MergePool {
    /// Starts `threads` threads (at least one), which live as long as the process.
    pub(crate) fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("kiln-merge-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = queue.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("cannot start a merge thread");
        }
        Self { jobs, threads }
    }

    /// How many threads the pool has.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on a merge thread and returns its result. A panic in `work` is an
    /// [`QuerierError::Internal`] (logged), and the thread goes on with the next job.
    pub(crate) async fn run<T, F>(&self, what: &'static str, work: F) -> Result<T, QuerierError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(work));
            // The query may be gone (cancelled): nobody to tell.
            let _ = done.send(outcome);
        });
        self.jobs
            .send(job)
            .map_err(|_| QuerierError::Internal("the merge pool has stopped".to_string()))?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(what, panic = %message, "a query's {what} panicked");
                Err(QuerierError::Internal(format!(
                    "{what} panicked: {message}"
                )))
            }
            Err(_) => Err(QuerierError::Internal(format!("{what} was dropped"))),
        }
    }
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_and_survives_panics() {
        let pool = MergePool::new(1);
        assert_eq!(pool.run("merge", || 2 + 2).await.unwrap(), 4);
        let error = pool
            .run("merge", || -> u32 { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "internal error: merge panicked: boom");
        // The one thread is still there.
        let name = pool
            .run("merge", || std::thread::current().name().map(String::from))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("kiln-merge-0"));
    }
}
