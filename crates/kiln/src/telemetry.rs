//! Kiln's own logs, and its traces over OTLP when `--tracing.otlp-endpoint` is set.
//!
//! Traces: every request a listener serves is a span (`request`), continued from the caller's
//! W3C `traceparent` when it sends one; cluster calls carry theirs
//! (`kiln_contract::trace_context`), so a push is one trace from the distributor through the
//! ingester's flush (its upload to object storage and its registration in the metastore). A
//! flush serves every push of its segment; it is a child of the first of them, so that push's
//! trace shows the whole path.

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use kiln_config::{LogFormat, ServerArgs};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Kiln's own logs at info, every library's at warn: openraft, tonic and hyper log their
/// internals (whole Raft state structs) at info, which would drown the start-up log.
/// Targets match by prefix, so `kiln` covers every `kiln_*` crate.
const DEFAULT_FILTER: &str = "warn,kiln=info";

/// What must outlive the server for its telemetry to be complete.
pub(crate) struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// True when traces are exported.
    pub(crate) fn traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Exports the spans still buffered.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "traces still buffered could not be exported");
        }
    }
}

/// Installs the log subscriber (`RUST_LOG` filters, default [`DEFAULT_FILTER`]; `--log-format`
/// shapes) and, with `--tracing.otlp-endpoint`, the trace exporter. Runs inside the Tokio
/// runtime: the OTLP exporter's channel lives on it.
pub(crate) fn init(args: &ServerArgs) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match args.log_format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    let traces = match &args.tracing_otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(args, endpoint)?),
        None => None,
    };
    let trace_layer = traces
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("kiln")));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(trace_layer)
        .init();
    if let Some(endpoint) = &args.tracing_otlp_endpoint {
        tracing::info!(
            endpoint,
            ratio = args.tracing_sample_ratio,
            "exporting traces"
        );
    }
    Ok(Telemetry { traces })
}

/// The provider exporting spans in batches to `endpoint` over OTLP/gRPC, sampling new traces at
/// `--tracing.sample-ratio`; and the W3C trace-context propagator for cluster calls.
fn tracer_provider(args: &ServerArgs, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot export traces to {endpoint:?}: {e}"))?;
    let targets = args
        .target
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("kiln")
        .with_attribute(opentelemetry::KeyValue::new("kiln.target", targets))
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        args.tracing_sample_ratio,
    )));
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}

/// `router` with each request in a `request` span continued from the caller's trace context;
/// unchanged when traces are off.
pub(crate) fn traced(router: Router, telemetry: &Telemetry) -> Router {
    if telemetry.traces() {
        router.layer(axum::middleware::from_fn(continue_trace))
    } else {
        router
    }
}

async fn continue_trace(request: Request, next: Next) -> Response {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    );
    // Fails only when the span is disabled (filtered out): it is then not exported either.
    let _ = span.set_parent(parent);
    next.run(request).instrument(span).await
}

/// Reads propagation fields from HTTP (and gRPC) headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
