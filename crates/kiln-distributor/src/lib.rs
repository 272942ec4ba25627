//! The distributor: Kiln's write front door.
//!
//! It speaks every ingest protocol (Pyroscope's `/ingest`, `push.v1` over Connect and gRPC),
//! resolves the tenant, enforces size limits, decodes and validates profiles, normalizes them
//! into series, and hands them to an [`Ingester`]. It keeps no state.

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
mod limits;
mod metrics;
mod otlp;
mod placement;
mod push;
mod series;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use kiln_contract::ingester::Ingester;

pub use error::DistributorError;
pub use kiln_api::TENANT_HEADER;
use kiln_api::{Auth, Right};
pub use limits::{LimitError, TenantLimits, Truncations, apply as apply_limits};
pub use metrics::DistributorMetrics;
pub use otlp::{EXPORT_PATH as OTLP_EXPORT_PATH, HTTP_PATH as OTLP_HTTP_PATH};
pub use placement::IngesterRing;

/// Settings of the distributor.
#[derive(Clone, Debug)]
pub struct DistributorConfig {
    /// Largest request body accepted on gRPC, in bytes, for every tenant (the transport reads
    /// it before the tenant is known); HTTP uses each tenant's `max_body_bytes`.
    pub max_body_bytes: usize,
    /// Largest decompressed gRPC message, in bytes, for every tenant; HTTP and the profiles
    /// inside a request use each tenant's `max_decompressed_bytes`.
    pub max_decompressed_bytes: usize,
    /// Who may push, as which tenant.
    pub auth: Arc<Auth>,
    /// Per-tenant limits, with their runtime overrides.
    pub limits: Arc<TenantLimits>,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_decompressed_bytes: 256 << 20,
            auth: Auth::open(false),
            limits: TenantLimits::new(kiln_runtime::TenantOverrides::new(
                kiln_config::Limits::default(),
            )),
        }
    }
}

/// The distributor role.
#[derive(Debug)]
pub struct Distributor {
    config: DistributorConfig,
    ingester: Arc<dyn Ingester>,
    metrics: DistributorMetrics,
    active_series: series::ActiveSeries,
}

impl Distributor {
    /// Creates a distributor that forwards to `ingester`.
    pub fn new(
        config: DistributorConfig,
        ingester: Arc<dyn Ingester>,
        metrics: DistributorMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            active_series: series::ActiveSeries::new(config.limits.max_tenants()),
            config,
            ingester,
            metrics,
        })
    }

    /// Drops what the distributor keeps per tenant and no longer needs: metric series of
    /// tenants idle for the metrics' idle time, rate-limit buckets that refilled, active-series
    /// counts of tenants with no push within the active window. Call it every
    /// [`Distributor::sweep_period`]; it also refreshes `kiln_distributor_tracked_tenants`.
    pub fn forget_idle_tenants(&self) {
        let now = std::time::Instant::now();
        self.metrics.forget_idle_tenants(now);
        let buckets = self.config.limits.forget_full_buckets(now);
        self.metrics.set_tracked("rate_limit", buckets);
        let counted = self.active_series.forget_inactive(now);
        self.metrics.set_tracked("active_series", counted);
    }

    /// How often [`Distributor::forget_idle_tenants`] should run.
    pub fn sweep_period(&self) -> std::time::Duration {
        self.metrics.sweep_period()
    }

    /// The HTTP routes of the distributor: `/ingest`, `/pyroscope/ingest` and
    /// `/push.v1.PusherService/Push` (Connect and gRPC on the same path).
    pub fn router(self: &Arc<Self>) -> Router {
        let grpc = push::grpc_service(Arc::clone(self));
        let auth = &self.config.auth;
        let admin = Router::new()
            .route("/runtime_config", axum::routing::get(runtime_config))
            .with_state(Arc::clone(self))
            .route_layer(kiln_api::require(Arc::clone(auth), Right::Admin));
        Router::new()
            .route("/ingest", post(ingest::handle))
            .route("/pyroscope/ingest", post(ingest::handle))
            .route(
                "/push.v1.PusherService/Push",
                post(move |state, request| push::handle(state, request, grpc.clone())),
            )
            .with_state(Arc::clone(self))
            .route_layer(kiln_api::require(Arc::clone(auth), Right::Write))
            .layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                metrics::time_pushes,
            ))
            .merge(self.otlp_router())
            .merge(admin)
            .layer(axum::middleware::map_response(retry_after))
    }
}

impl Distributor {
    /// The tenant a request names, for metrics labels: empty when it names none or an invalid
    /// one.
    fn tenant_label(&self, headers: &http::HeaderMap) -> String {
        self.config
            .auth
            .authorize(headers, Right::Write)
            .map(|t| t.as_str().to_string())
            .unwrap_or_default()
    }
}

/// Overload (429) and unavailability (503) tell clients when to come back.
async fn retry_after(mut response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    if (status == http::StatusCode::TOO_MANY_REQUESTS
        || status == http::StatusCode::SERVICE_UNAVAILABLE)
        && !response.headers().contains_key(http::header::RETRY_AFTER)
    {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// `GET /runtime_config`: the limits in force, defaults and per-tenant overrides, as YAML.
async fn runtime_config(
    axum::extract::State(distributor): axum::extract::State<Arc<Distributor>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let overrides = distributor.config.limits.overrides();
    let body = serde_json::json!({
        "defaults": overrides.defaults(),
        "overrides": overrides.runtime_config().overrides,
    });
    let yaml = serde_yaml_ng::to_string(&body).unwrap_or_default();
    (
        [(http::header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
        yaml,
    )
        .into_response()
}
