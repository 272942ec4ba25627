//! Trace context across the cluster's gRPC calls: the W3C `traceparent` of the calling span goes
//! into each request's metadata, so that a push is one trace from the distributor through the
//! ingester to object storage and the metastore (the receiving side continues it in the `kiln`
//! binary's request layer).
//!
//! With tracing off (no `--tracing.otlp-endpoint`), the global propagator is OpenTelemetry's
//! no-op one, and nothing is added.

use opentelemetry::propagation::Injector;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Adds the current span's trace context to `metadata`.
fn inject(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// A client interceptor adding the current span's trace context to every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceInterceptor;

impl Interceptor for TraceInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject(request.metadata_mut());
        Ok(request)
    }
}

/// Writes propagation fields into gRPC metadata; a field that is not valid metadata is skipped.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}
