//! Prometheus metrics of the querier. No label names a tenant, so their size does not grow with
//! the tenant ids that requests carry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the query counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// How the query ended: `ok`, `error`, `overloaded` (refused at the concurrency limit),
    /// `timeout`, `over_budget` (a per-tenant query limit), `cancelled` (the client went away).
    pub outcome: &'static str,
}

/// Prometheus metrics of a querier.
#[derive(Clone, Debug, Default)]
pub struct QuerierMetrics {
    /// Queries finished, by outcome.
    pub queries: Family<OutcomeLabels, Counter>,
    /// Queries running now.
    pub queries_in_flight: Gauge,
}

impl QuerierMetrics {
    /// Creates the metrics and registers them under `kiln_querier_`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let registry = registry.sub_registry_with_prefix("kiln_querier");
        registry.register(
            "queries",
            "Queries finished, by outcome (ok, error, overloaded, timeout, over_budget, cancelled)",
            metrics.queries.clone(),
        );
        registry.register(
            "queries_in_flight",
            "Queries running now",
            metrics.queries_in_flight.clone(),
        );
        metrics
    }

    /// Counts one finished query.
    pub(crate) fn finished(&self, outcome: &'static str) {
        self.queries.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
