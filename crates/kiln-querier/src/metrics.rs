//! Prometheus metrics of the querier. No label names a tenant, so their size does not grow with
//! the tenant ids that requests carry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How queries end, as the query counter names it.
const OUTCOMES: [&str; 6] = [
    "ok",
    "error",
    "overloaded",
    "timeout",
    "over_budget",
    "cancelled",
];

/// The caches of [`CacheLabels`].
const CACHES: [&str; 6] = [
    "regions",
    "head",
    "series",
    "symbols",
    "footer",
    "directory",
];

/// What [`FetchLabels`] names.
const FETCHED: [&str; 7] = [
    "directory",
    "series",
    "head",
    "footer",
    "symbols",
    "samples",
    "regions",
];

/// The endpoints [`EndpointLabels`] names: the last segment of each query route's path.
const ENDPOINTS: [&str; 20] = [
    "render",
    "render-diff",
    "labels",
    "label-values",
    "pprof",
    "ProfileTypes",
    "LabelNames",
    "LabelValues",
    "Series",
    "SelectMergeStacktraces",
    "SelectMergeSpanProfile",
    "SelectMergeProfile",
    "SelectSeries",
    "GetProfileStats",
    "Diff",
    "AnalyzeQuery",
    "SelectHeatmap",
    "Get",
    "Set",
    "ListRecordingRules",
];

/// Labels of the query counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// How the query ended: `ok`, `error`, `overloaded` (refused at the concurrency limit),
    /// `timeout`, `over_budget` (a per-tenant query limit), `cancelled` (the client went away).
    pub outcome: &'static str,
}

/// Labels of the request latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// The last segment of the route's path: `render`, `SelectMergeStacktraces`, … (one of
    /// the query routes).
    pub endpoint: &'static str,
}

/// Query latency buckets: 1 ms to about 65 s.
#[derive(Clone, Debug)]
pub struct QueryBuckets;

impl MetricConstructor<Histogram> for QueryBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.001, 2.0, 17))
    }
}

/// Labels of the cache counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// Which cache: `regions` (assembled datasets of blocks), `head` and `series` (sections
    /// that selects and label calls read), `symbols`, `footer` (samples footers) or
    /// `directory` (tables of contents).
    pub cache: &'static str,
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Labels of the fetched-bytes counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// What was read: `directory`, `series`, `head`, `footer`, `symbols`, `samples`, or
    /// `regions` (whole regions of format-1 objects).
    pub what: &'static str,
}

/// Prometheus metrics of a querier.
#[derive(Clone, Debug)]
pub struct QuerierMetrics {
    /// Time to answer a request, by endpoint.
    pub request_duration: Family<EndpointLabels, Histogram, QueryBuckets>,
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
        let metrics = Self::unregistered();
        let registry = registry.sub_registry_with_prefix("kiln_querier");
        registry.register(
            "request_duration_seconds",
            "Time to answer a query request, by endpoint",
            metrics.request_duration.clone(),
        );
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
            "Cache lookups of the querier, by cache (regions, head, series, symbols, footer, directory) and result (hit, miss)",
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
            "Bytes the querier read from object storage, by what it read (directory, series, head, footer, symbols, samples, regions)",
            metrics.fetched_bytes.clone(),
        );
        // Every series exists from the start, so each metric is listed before its first event.
        for outcome in OUTCOMES {
            metrics
                .queries
                .get_or_create_owned(&OutcomeLabels { outcome });
        }
        for cache in CACHES {
            for result in ["hit", "miss"] {
                metrics
                    .cache_requests
                    .get_or_create_owned(&CacheLabels { cache, result });
            }
        }
        for what in FETCHED {
            metrics
                .fetched_bytes
                .get_or_create_owned(&FetchLabels { what });
        }
        for endpoint in ENDPOINTS {
            metrics
                .request_duration
                .get_or_create_owned(&EndpointLabels { endpoint });
        }
        metrics
    }

    /// The metrics, registered nowhere (tests, and queriers whose metrics nobody scrapes).
    pub fn unregistered() -> Self {
        Self {
            request_duration: Family::new_with_constructor(QueryBuckets),
            queries: Family::default(),
            queries_in_flight: Gauge::default(),
            cache_requests: Family::default(),
            fetched_bytes: Family::default(),
            parts_executed: Counter::default(),
            parts_retried: Counter::default(),
            peers: Gauge::default(),
        }
    }

    /// Records the time a request to `path` took, from `started`; paths of no query endpoint
    /// are not recorded.
    pub(crate) fn answered(&self, path: &str, started: std::time::Instant) {
        let last = path.rsplit('/').next().unwrap_or_default();
        if let Some(endpoint) = ENDPOINTS.iter().find(|e| **e == last) {
            self.request_duration
                .get_or_create(&EndpointLabels { endpoint })
                .observe(started.elapsed().as_secs_f64());
        }
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

/// Middleware of the query routes: times each request in
/// `kiln_querier_request_duration_seconds` by its route.
pub(crate) async fn time_requests(
    axum::extract::State(metrics): axum::extract::State<QuerierMetrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.answered(&path, started);
    response
}
