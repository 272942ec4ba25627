//! What every query passes through: the concurrency limit of the querier, the deadline, and the
//! count of how queries end (cancelled ones included).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::QuerierError;
use crate::metrics::QuerierMetrics;

/// Admits queries up to a number at once and stops them at a deadline.
#[derive(Debug)]
pub(crate) struct QueryGate {
    /// `None`: no limit.
    permits: Option<Arc<Semaphore>>,
    max_concurrent: usize,
    /// `None`: no deadline.
    timeout: Option<Duration>,
    metrics: QuerierMetrics,
}

impl QueryGate {
    /// A gate admitting `max_concurrent` queries at once (0: any number), each for at most
    /// `timeout` (0: no deadline).
    pub(crate) fn new(max_concurrent: usize, timeout: Duration, metrics: QuerierMetrics) -> Self {
        Self {
            permits: (max_concurrent > 0).then(|| Arc::new(Semaphore::new(max_concurrent))),
            max_concurrent,
            timeout: (!timeout.is_zero()).then_some(timeout),
            metrics,
        }
    }

    /// Runs `query` if the querier has room for it, else refuses it at once
    /// ([`QuerierError::Overloaded`]); stops it at the deadline ([`QuerierError::Timeout`]):
    /// `tenant_timeout` when given (the tenant's `query_timeout`), else the querier's.
    /// Dropping the returned future (the client went away) drops `query`, which stops its
    /// work, and counts the query as cancelled.
    pub(crate) async fn run<T>(
        &self,
        tenant_timeout: Option<Duration>,
        query: impl Future<Output = Result<T, QuerierError>>,
    ) -> Result<T, QuerierError> {
        let _permit = match &self.permits {
            Some(permits) => match Arc::clone(permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.metrics.finished("overloaded");
                    return Err(QuerierError::Overloaded {
                        max: self.max_concurrent,
                    });
                }
            },
            None => None,
        };
        let mut flight = InFlight::start(&self.metrics);
        let deadline = match tenant_timeout {
            Some(timeout) => Some((timeout, "the tenant's query_timeout")),
            None => self.timeout.map(|timeout| (timeout, "--querier.timeout")),
        };
        let result = match deadline {
            Some((timeout, setting)) => match tokio::time::timeout(timeout, query).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(timeout = ?timeout, setting, "query stopped at its timeout");
                    Err(QuerierError::Timeout { timeout, setting })
                }
            },
            None => query.await,
        };
        flight.finish(match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        });
        result
    }
}

impl crate::Querier {
    /// Runs `query` of `tenant` through the gate (a slot of `--querier.max-concurrent`), with
    /// the tenant's `query_timeout` when it has one.
    pub async fn admit<T>(
        &self,
        tenant: &kiln_model::TenantId,
        query: impl Future<Output = Result<T, QuerierError>>,
    ) -> Result<T, QuerierError> {
        let timeout = self.overrides.limits(tenant.as_str()).query_timeout;
        self.gate
            .run((!timeout.is_zero()).then_some(timeout), query)
            .await
    }
}

/// One query in flight: counted in the gauge while it lives, and as cancelled when dropped
/// before it finished.
struct InFlight<'a> {
    metrics: &'a QuerierMetrics,
    finished: bool,
}

impl<'a> InFlight<'a> {
    fn start(metrics: &'a QuerierMetrics) -> Self {
        metrics.queries_in_flight.inc();
        Self {
            metrics,
            finished: false,
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        self.metrics.finished(outcome);
        self.finished = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.queries_in_flight.dec();
        if !self.finished {
            tracing::info!("query cancelled: its client went away");
            self.metrics.finished("cancelled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::OutcomeLabels;

    fn count(metrics: &QuerierMetrics, outcome: &'static str) -> u64 {
        metrics
            .queries
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    #[tokio::test]
    async fn full_gate_refuses_and_dropped_queries_count_as_cancelled() {
        let metrics = QuerierMetrics::unregistered();
        let gate = QueryGate::new(1, Duration::ZERO, metrics.clone());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let mut slow = Box::pin(gate.run(None, async move {
            released.await.ok();
            Ok::<_, QuerierError>(1)
        }));
        // Polled once: it holds the only permit and waits.
        assert!(futures::poll!(slow.as_mut()).is_pending());
        assert_eq!(metrics.queries_in_flight.get(), 1);
        let refused = gate.run(None, async { Ok::<_, QuerierError>(2) }).await;
        assert_eq!(
            refused.unwrap_err().to_string(),
            "querier is running its maximum of 1 concurrent queries (--querier.max-concurrent); retry later"
        );
        assert_eq!(count(&metrics, "overloaded"), 1);
        // The client goes away: the query is dropped, counted, and its permit is free again.
        drop(slow);
        drop(release);
        assert_eq!(metrics.queries_in_flight.get(), 0);
        assert_eq!(count(&metrics, "cancelled"), 1);
        assert_eq!(
            gate.run(None, async { Ok::<_, QuerierError>(3) })
                .await
                .unwrap(),
            3
        );
        assert_eq!(count(&metrics, "ok"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_queries_stop_at_the_deadline() {
        let metrics = QuerierMetrics::unregistered();
        let gate = QueryGate::new(0, Duration::from_secs(120), metrics.clone());
        let error = gate
            .run(None, std::future::pending::<Result<(), QuerierError>>())
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "query stopped after its timeout of 2m (--querier.timeout)"
        );
        assert_eq!(error.grpc_code(), tonic::Code::DeadlineExceeded);
        assert_eq!(count(&metrics, "timeout"), 1);
        // A tenant's own deadline takes the querier's place.
        let error = gate
            .run(
                Some(Duration::from_secs(5)),
                std::future::pending::<Result<(), QuerierError>>(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "query stopped after its timeout of 5s (the tenant's query_timeout)"
        );
    }
}
