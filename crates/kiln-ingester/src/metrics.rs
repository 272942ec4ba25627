use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Prometheus metrics of the ingester.
#[derive(Clone, Debug)]
pub struct IngesterMetrics {
    /// Segments written and registered.
    pub segments_flushed: Counter,
    /// Segment flushes that failed.
    pub segment_flush_failures: Counter,
    /// Segments written while the metastore was unreachable, their metadata parked in the
    /// recovery area.
    pub segments_parked: Counter,
    /// Bytes of segment objects written.
    pub segment_bytes: Counter,
    /// Samples stored.
    pub samples_stored: Counter,
    /// Time to encode, upload and register a segment.
    pub flush_duration_seconds: Histogram,
    /// Samples in memory: in the open segment, or in segments being written (the bound of
    /// `--ingester.max-buffered-samples` counts both).
    pub buffered_samples: Gauge,
}

impl IngesterMetrics {
    /// Creates the metrics and registers them under `kiln_ingester_`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            segments_flushed: Counter::default(),
            segment_flush_failures: Counter::default(),
            segments_parked: Counter::default(),
            segment_bytes: Counter::default(),
            samples_stored: Counter::default(),
            flush_duration_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            buffered_samples: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("kiln_ingester");
        registry.register(
            "segments_flushed",
            "Segments written and registered",
            metrics.segments_flushed.clone(),
        );
        registry.register(
            "segment_flush_failures",
            "Segment flushes that failed",
            metrics.segment_flush_failures.clone(),
        );
        registry.register(
            "segments_parked",
            "Segments whose metadata was parked in the recovery area while the metastore was unreachable",
            metrics.segments_parked.clone(),
        );
        registry.register(
            "segment_bytes",
            "Bytes of segment objects written",
            metrics.segment_bytes.clone(),
        );
        registry.register(
            "samples_stored",
            "Samples stored in segments",
            metrics.samples_stored.clone(),
        );
        registry.register(
            "flush_duration_seconds",
            "Time to encode, upload and register a segment",
            metrics.flush_duration_seconds.clone(),
        );
        registry.register(
            "buffered_samples",
            "Samples in memory, in the open segment or in segments being written",
            metrics.buffered_samples.clone(),
        );
        metrics
    }
}
