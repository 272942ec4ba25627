use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_runtime::{BoundedTenants, Listed};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a series.
type LabelSet = Vec<(String, String)>;

/// The per-tenant counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TenantFamily {
    Rejected,
    Discarded,
    Truncated,
}

/// Every protocol the metrics name: Connect and gRPC pushes to `/push.v1.PusherService/Push`,
/// `/ingest`, OTLP/HTTP and OTLP/gRPC.
const PROTOCOLS: [&str; 5] = ["push", "push_grpc", "ingest", "otlp_http", "otlp_grpc"];

/// The maps `tracked_tenants` counts.
const TRACKED_MAPS: [&str; 3] = ["metric_labels", "active_series", "rate_limit"];

/// Labels of the request latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// `push`, `push_grpc`, `ingest`, `otlp_http` or `otlp_grpc`.
    pub protocol: &'static str,
}

/// Acknowledgement latency buckets: 5 ms to about 41 s.
#[derive(Clone, Debug)]
pub struct AckBuckets;

impl MetricConstructor<Histogram> for AckBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.005, 2.0, 14))
    }
}

/// Tenants labelled by default: at most this many at once...
const DEFAULT_MAX_TENANTS: usize = 1000;
/// ...each forgotten after this long unused.
const DEFAULT_TENANT_IDLE: Duration = Duration::from_secs(15 * 60);

/// Prometheus metrics of the distributor.
#[derive(Clone, Debug)]
pub struct DistributorMetrics {
    /// Profiles accepted, by protocol.
    pub received_profiles: Family<Vec<(String, String)>, Counter>,
    /// Decompressed profile bytes accepted, by protocol.
    pub received_bytes: Family<Vec<(String, String)>, Counter>,
    /// Requests refused, by protocol, tenant (empty when none was valid) and reason.
    pub rejected_requests: Family<Vec<(String, String)>, Counter>,
    /// Profiles refused by a tenant's limits, by tenant and reason.
    pub discarded_profiles: Family<Vec<(String, String)>, Counter>,
    /// Samples (deep stacks) or symbols (long names) truncated, by tenant and what.
    pub truncated: Family<Vec<(String, String)>, Counter>,
    /// Tenants held in memory, by map: `metric_labels` (tenants named in the labels above),
    /// `active_series`, `rate_limit`.
    pub tracked_tenants: Family<Vec<(String, String)>, Gauge>,
    /// Time from a push's arrival to its answer, by protocol: for an accepted push, the
    /// acknowledgement latency (stored and registered).
    pub request_duration: Family<ProtocolLabels, Histogram, AckBuckets>,
    /// The tenants the per-tenant counters name, capped and expiring.
    tenants: Arc<BoundedTenants<(TenantFamily, LabelSet)>>,
}

impl DistributorMetrics {
    /// Creates the metrics and registers them under `kiln_distributor_`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            received_profiles: Family::default(),
            received_bytes: Family::default(),
            rejected_requests: Family::default(),
            discarded_profiles: Family::default(),
            truncated: Family::default(),
            tracked_tenants: Family::default(),
            request_duration: Family::new_with_constructor(AckBuckets),
            tenants: Arc::new(BoundedTenants::new(
                DEFAULT_MAX_TENANTS,
                DEFAULT_TENANT_IDLE,
            )),
        };
        let registry = registry.sub_registry_with_prefix("kiln_distributor");
        registry.register(
            "received_profiles",
            "Profiles accepted",
            metrics.received_profiles.clone(),
        );
        registry.register(
            "received_bytes",
            "Decompressed profile bytes accepted",
            metrics.received_bytes.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused, by protocol, tenant and reason",
            Listed(metrics.rejected_requests.clone()),
        );
        registry.register(
            "discarded_profiles",
            "Profiles refused by a tenant's limits, by tenant and reason",
            Listed(metrics.discarded_profiles.clone()),
        );
        registry.register(
            "truncated",
            "Stacks cut to the maximum depth and symbols cut to the maximum length, by tenant",
            Listed(metrics.truncated.clone()),
        );
        registry.register(
            "tracked_tenants",
            "Tenants held in memory, by map (metric_labels, active_series, rate_limit)",
            metrics.tracked_tenants.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a push's arrival to its answer (for accepted pushes, the acknowledgement), by protocol",
            metrics.request_duration.clone(),
        );
        for protocol in PROTOCOLS {
            let labels = vec![("protocol".to_string(), protocol.to_string())];
            metrics.received_profiles.get_or_create_owned(&labels);
            metrics.received_bytes.get_or_create_owned(&labels);
            metrics
                .request_duration
                .get_or_create_owned(&ProtocolLabels { protocol });
        }
        for map in TRACKED_MAPS {
            metrics.set_tracked(map, 0);
        }
        metrics
    }

    /// Records the time a push over `protocol` took, from `started` to its answer.
    fn answered(&self, protocol: &'static str, started: Instant) {
        self.request_duration
            .get_or_create(&ProtocolLabels { protocol })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The same metrics naming at most `max` tenants at once in their labels (the others as
    /// `#other`), each forgotten with its series `idle` after its last use.
    pub fn with_tenant_cap(mut self, max: usize, idle: Duration) -> Self {
        self.tenants = Arc::new(BoundedTenants::new(max, idle));
        self
    }

    /// How often [`DistributorMetrics::forget_idle_tenants`] should run.
    pub fn sweep_period(&self) -> Duration {
        self.tenants.sweep_period()
    }

    /// Removes the series of tenants unused for the idle time.
    pub(crate) fn forget_idle_tenants(&self, now: Instant) {
        for (family, labels) in self.tenants.expire(now) {
            match family {
                TenantFamily::Rejected => self.rejected_requests.remove(&labels),
                TenantFamily::Discarded => self.discarded_profiles.remove(&labels),
                TenantFamily::Truncated => self.truncated.remove(&labels),
            };
        }
        self.set_tracked("metric_labels", self.tenants.len());
    }

    /// Sets the number of tenants held by `map`.
    pub(crate) fn set_tracked(&self, map: &str, tenants: usize) {
        let labels = vec![("map".to_string(), map.to_string())];
        self.tracked_tenants
            .get_or_create(&labels)
            .set(i64::try_from(tenants).unwrap_or(i64::MAX));
    }

    /// Adds `by` to the per-tenant counter of `family` labelled `before`, the tenant's label,
    /// `after`. The series is made while the tenant's entry is locked, so that an expiry
    /// cannot miss it.
    fn count(
        &self,
        family: TenantFamily,
        before: &[(&str, &str)],
        tenant: &str,
        after: &[(&str, &str)],
        by: u64,
    ) {
        let pair = |(name, value): &(&str, &str)| (name.to_string(), value.to_string());
        self.tenants.series(tenant, Instant::now(), |tenant| {
            let labels: LabelSet = before
                .iter()
                .map(pair)
                .chain([("tenant".to_string(), tenant.to_string())])
                .chain(after.iter().map(pair))
                .collect();
            let counters = match family {
                TenantFamily::Rejected => &self.rejected_requests,
                TenantFamily::Discarded => &self.discarded_profiles,
                TenantFamily::Truncated => &self.truncated,
            };
            counters.get_or_create(&labels).inc_by(by);
            (family, labels)
        });
    }

    pub(crate) fn discarded(&self, tenant: &str, reason: &str, profiles: u64) {
        let reason = [("reason", reason)];
        self.count(TenantFamily::Discarded, &[], tenant, &reason, profiles);
    }

    pub(crate) fn truncated(&self, tenant: &str, what: &str, count: u64) {
        if count == 0 {
            return;
        }
        let what = [("what", what)];
        self.count(TenantFamily::Truncated, &[], tenant, &what, count);
    }

    pub(crate) fn accepted(&self, protocol: &str, profiles: u64, bytes: u64) {
        let labels = vec![("protocol".to_string(), protocol.to_string())];
        self.received_profiles
            .get_or_create(&labels)
            .inc_by(profiles);
        self.received_bytes.get_or_create(&labels).inc_by(bytes);
    }

    pub(crate) fn rejected(&self, protocol: &str, tenant: &str, reason: &str) {
        let (protocol, reason) = ([("protocol", protocol)], [("reason", reason)]);
        self.count(TenantFamily::Rejected, &protocol, tenant, &reason, 1);
    }
}

/// The protocol of a push to `path`, or `None` for a path that takes no pushes.
fn protocol_of(path: &str, headers: &http::HeaderMap) -> Option<&'static str> {
    let grpc = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    match path {
        "/ingest" | "/pyroscope/ingest" => Some("ingest"),
        "/push.v1.PusherService/Push" if grpc => Some("push_grpc"),
        "/push.v1.PusherService/Push" => Some("push"),
        crate::otlp::HTTP_PATH => Some("otlp_http"),
        crate::otlp::EXPORT_PATH => Some("otlp_grpc"),
        _ => None,
    }
}

/// Middleware of the push routes: times each push to its answer in
/// `kiln_distributor_request_duration_seconds`.
pub(crate) async fn time_pushes(
    axum::extract::State(metrics): axum::extract::State<DistributorMetrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let protocol = protocol_of(request.uri().path(), request.headers());
    let started = Instant::now();
    let response = next.run(request).await;
    if let Some(protocol) = protocol {
        metrics.answered(protocol, started);
    }
    response
}
