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

/// Labels of the cache counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// Which cache: `regions` (decoded regions of blocks, samples and symbols included) or
    /// `series` (the series sections that label calls read).
    pub cache: &'static str,
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Labels of the fetched-bytes counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// What was read: `regions` or `series`.
    pub what: &'static str,
}

/// Prometheus metrics of a querier.
#[derive(Clone, Debug, Default)]
pub struct QuerierMetrics {
    /// Queries finished, by outcome.
    pub queries: Family<OutcomeLabels, Counter>,
    /// Queries running now.
    pub queries_in_flight: Gauge,
    /// Cache lookups, by cache and result.
    pub cache_requests: Family<CacheLabels, Counter>,
    /// Bytes read from object storage, by what was read.
    pub fetched_bytes: Family<FetchLabels, Counter>,
    /// Parts of queries this querier ran (ADR 0005).
    pub parts_executed: Counter,
    /// Parts that failed on a querier and were tried on another.
    pub parts_retried: Counter,
    /// Queriers this one shares the parts of its queries with, itself included.
    pub peers: Gauge,
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
        registry.register(
            "cache_requests",
            "Cache lookups of the querier, by cache (regions, series) and result (hit, miss)",
            metrics.cache_requests.clone(),
        );
        registry.register(
            "parts_executed",
            "Parts of queries (time windows of a few blocks) this querier ran",
            metrics.parts_executed.clone(),
        );
        registry.register(
            "parts_retried",
            "Parts of queries that failed on a querier (this one or another) and were tried on the next",
            metrics.parts_retried.clone(),
        );
        registry.register(
            "peers",
            "Queriers this one shares the parts of its queries with, itself included (1 alone)",
            metrics.peers.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Bytes the querier read from object storage, by what it read (regions, series)",
            metrics.fetched_bytes.clone(),
        );
        metrics
    }

    /// Counts one cache lookup.
    pub(crate) fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_requests
            .get_or_create(&CacheLabels { cache, result })
            .inc();
    }

    /// Counts bytes read from object storage.
    pub(crate) fn fetched(&self, what: &'static str, bytes: u64) {
        self.fetched_bytes
            .get_or_create(&FetchLabels { what })
            .inc_by(bytes);
    }

    /// Counts one finished query.
    pub(crate) fn finished(&self, outcome: &'static str) {
        self.queries.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
