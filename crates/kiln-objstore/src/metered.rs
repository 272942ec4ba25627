//! Requests to object storage counted and timed by operation: [`MeteredStore`] wraps any store
//! and records `kiln_objstore_requests_total`, `kiln_objstore_request_errors_total` and
//! `kiln_objstore_request_duration_seconds`, each by `operation`.
//!
//! A get is timed to its response's headers (its body streams to the caller afterwards); a
//! listing and a batch of deletes, which stream, are timed to their last item. Puts and gets are
//! also spans, for the traces of Kiln's own requests.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

/// Every operation the metrics name, registered at start so that each series exists before
/// its first request.
const OPERATIONS: [&str; 9] = [
    "get",
    "get_range",
    "head",
    "put",
    "put_multipart",
    "list",
    "delete",
    "copy",
    "rename",
];

/// Labels of the object storage metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// One of `get`, `get_range`, `head`, `put`, `put_multipart`, `list`, `delete`, `copy`,
    /// `rename`.
    pub operation: &'static str,
}

/// Request latency buckets: 1 ms to about 33 s.
#[derive(Clone, Debug)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.001, 2.0, 16))
    }
}

/// Prometheus metrics of the requests a process makes to object storage.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    /// Requests, by operation.
    pub requests: Family<OperationLabels, Counter>,
    /// Requests that failed (after object_store's retries), by operation.
    pub errors: Family<OperationLabels, Counter>,
    /// Request latency, by operation.
    pub duration: Family<OperationLabels, Histogram, LatencyBuckets>,
}

impl StoreMetrics {
    /// Creates the metrics, registers them under `kiln_objstore_` and creates the series of
    /// every operation.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(LatencyBuckets),
        };
        let registry = registry.sub_registry_with_prefix("kiln_objstore");
        registry.register(
            "requests",
            "Requests to object storage, by operation",
            metrics.requests.clone(),
        );
        registry.register(
            "request_errors",
            "Requests to object storage that failed after retries, by operation",
            metrics.errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Latency of requests to object storage (gets to their headers), by operation",
            metrics.duration.clone(),
        );
        for operation in OPERATIONS {
            let labels = OperationLabels { operation };
            metrics.requests.get_or_create_owned(&labels);
            metrics.errors.get_or_create_owned(&labels);
            metrics.duration.get_or_create_owned(&labels);
        }
        metrics
    }

    /// Records one request that started at `started`.
    fn record<T>(&self, operation: &'static str, started: Instant, result: &Result<T>) {
        self.record_outcome(operation, started, result.is_err());
    }

    /// Records one request that started at `started` and failed or not.
    fn record_outcome(&self, operation: &'static str, started: Instant, failed: bool) {
        let labels = OperationLabels { operation };
        self.requests.get_or_create(&labels).inc();
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    /// Wraps `stream` so that it is recorded as one request when it ends (or is dropped).
    fn record_stream<T: Send + 'static>(
        &self,
        operation: &'static str,
        stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let guard = StreamRequest {
            metrics: self.clone(),
            operation,
            started: Instant::now(),
            failed: false,
        };
        stream
            .scan(guard, |guard, item| {
                guard.failed |= item.is_err();
                futures::future::ready(Some(item))
            })
            .boxed()
    }
}

/// One streamed request, recorded when dropped: at the stream's end or when the caller stops.
struct StreamRequest {
    metrics: StoreMetrics,
    operation: &'static str,
    started: Instant,
    failed: bool,
}

impl Drop for StreamRequest {
    fn drop(&mut self) {
        self.metrics
            .record_outcome(self.operation, self.started, self.failed);
    }
}

/// The span of one request, a child of the caller's (traces of Kiln's own requests).
fn span(operation: &'static str, location: &Path) -> tracing::Span {
    tracing::info_span!("objstore", operation, path = %location)
}

/// A store whose requests are counted and timed in [`StoreMetrics`].
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: StoreMetrics,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: StoreMetrics) -> Self {
        Self { inner, metrics }
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let started = Instant::now();
        let result = self
            .inner
            .put_opts(location, payload, opts)
            .instrument(span("put", location))
            .await;
        self.metrics.record("put", started, &result);
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let started = Instant::now();
        let result = self
            .inner
            .put_multipart_opts(location, opts)
            .instrument(span("put_multipart", location))
            .await;
        self.metrics.record("put_multipart", started, &result);
        result
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = if options.head {
            "head"
        } else if options.range.is_some() {
            "get_range"
        } else {
            "get"
        };
        let started = Instant::now();
        let result = self
            .inner
            .get_opts(location, options)
            .instrument(span(operation, location))
            .await;
        self.metrics.record(operation, started, &result);
        result
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        let started = Instant::now();
        let result = self
            .inner
            .get_ranges(location, ranges)
            .instrument(span("get_range", location))
            .await;
        self.metrics.record("get_range", started, &result);
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let deleted = self.inner.delete_stream(locations);
        self.metrics.record_stream("delete", deleted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listed = self.inner.list(prefix);
        self.metrics.record_stream("list", listed)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let listed = self.inner.list_with_offset(prefix, offset);
        self.metrics.record_stream("list", listed)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let started = Instant::now();
        let result = self.inner.list_with_delimiter(prefix).await;
        self.metrics.record("list", started, &result);
        result
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.copy_opts(from, to, options).await;
        self.metrics.record("copy", started, &result);
        result
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.rename_opts(from, to, options).await;
        self.metrics.record("rename", started, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    fn count(family: &Family<OperationLabels, Counter>, operation: &'static str) -> u64 {
        family.get_or_create(&OperationLabels { operation }).get()
    }

    #[tokio::test]
    async fn each_request_is_counted_under_its_operation_and_failures_apart() {
        let mut registry = Registry::default();
        let metrics = StoreMetrics::new(&mut registry);
        let store = MeteredStore::new(Arc::new(InMemory::new()), metrics.clone());
        let path = Path::from("a/b");
        store.put(&path, vec![1u8, 2, 3, 4].into()).await.unwrap();
        store.get(&path).await.unwrap();
        store.get_range(&path, 1..3).await.unwrap();
        store.head(&path).await.unwrap();
        assert!(store.get(&Path::from("missing")).await.is_err());
        let listed: Vec<_> = store.list(None).collect().await;
        assert_eq!(listed.len(), 1);
        store.delete(&path).await.unwrap();

        assert_eq!(count(&metrics.requests, "put"), 1);
        assert_eq!(count(&metrics.requests, "get"), 2);
        assert_eq!(count(&metrics.errors, "get"), 1);
        assert_eq!(count(&metrics.requests, "get_range"), 1);
        assert_eq!(count(&metrics.requests, "head"), 1);
        assert_eq!(count(&metrics.requests, "list"), 1);
        assert_eq!(count(&metrics.requests, "delete"), 1);
        assert_eq!(count(&metrics.errors, "put"), 0);

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("kiln_objstore_requests_total{operation=\"rename\"} 0"));
        assert!(text.contains("# TYPE kiln_objstore_request_duration_seconds histogram"));
    }
}
