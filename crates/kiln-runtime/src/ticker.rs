//! Periodic tasks that stop on cancellation.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// When a periodic task first runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstTick {
    /// At once, then every period.
    Now,
    /// After one period, then every period.
    AfterPeriod,
}

/// Runs `task` every `period` on the current runtime until `stop` is cancelled.
///
/// A run is never cut short: cancellation is seen between runs. A run that takes longer than the
/// period delays the next one instead of causing a burst of catch-up runs. A run that panics is
/// logged and the loop goes on: one bad run does not end a heartbeat or a sweep for good.
pub fn spawn_every<F, Fut>(
    period: Duration,
    first: FirstTick,
    stop: CancellationToken,
    mut task: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        if first == FirstTick::AfterPeriod {
            ticks.tick().await;
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            // Its own task, so that a panic ends the run, not the loop.
            if let Err(e) = tokio::spawn(task()).await
                && e.is_panic()
            {
                tracing::error!(error = %e, "a periodic task panicked; it runs again next period");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn runs_on_every_tick_until_cancelled() {
        let runs = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let counting = Arc::clone(&runs);
        let handle = spawn_every(
            Duration::from_secs(1),
            FirstTick::Now,
            stop.clone(),
            move || {
                let counting = Arc::clone(&counting);
                async move {
                    counting.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        // With the clock paused, sleeping advances time exactly: runs at 0, 1, 2 and 3 s.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        stop.cancel();
        handle.await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_run_does_not_end_the_loop() {
        let runs = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let counting = Arc::clone(&runs);
        let handle = spawn_every(
            Duration::from_secs(1),
            FirstTick::Now,
            stop.clone(),
            move || {
                let run = counting.fetch_add(1, Ordering::SeqCst);
                async move {
                    assert!(run != 1, "the second run fails");
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(!handle.is_finished());
        stop.cancel();
        handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn after_period_skips_the_immediate_run() {
        let runs = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let counting = Arc::clone(&runs);
        spawn_every(
            Duration::from_secs(1),
            FirstTick::AfterPeriod,
            stop.clone(),
            move || {
                let counting = Arc::clone(&counting);
                async move {
                    counting.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        stop.cancel();
    }
}
