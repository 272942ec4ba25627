use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kiln_block::SegmentBuilder;
use kiln_metastore::Metastore;
use kiln_model::{NormalizedProfile, TenantId};
use kiln_objstore::Storage;
use kiln_objstore::object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use crate::{IngestError, Ingester, IngesterMetrics};

/// Settings of a segment writer.
#[derive(Clone, Debug)]
pub struct SegmentWriterConfig {
    /// How often the buffer is flushed as a segment.
    pub flush_interval: Duration,
    /// The shard this writer serves; part of every segment's path.
    pub shard: u32,
    /// Pushes are refused with [`IngestError::Overloaded`] above this many buffered samples.
    pub max_buffered_samples: usize,
    /// Attempts for each upload and registration before the flush fails.
    pub attempts: u32,
}

impl Default for SegmentWriterConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(500),
            shard: 0,
            max_buffered_samples: 20_000_000,
            attempts: 3,
        }
    }
}

type Waiter = oneshot::Sender<Result<(), IngestError>>;

#[derive(Debug, Default)]
struct Pending {
    builder: SegmentBuilder,
    waiters: Vec<Waiter>,
    closed: bool,
}

/// Buffers pushes and flushes them as segments on a timer; see the crate docs.
#[derive(Debug)]
pub struct SegmentWriter {
    config: SegmentWriterConfig,
    metrics: IngesterMetrics,
    pending: Arc<Mutex<Pending>>,
    shutdown: CancellationToken,
    flusher: Mutex<Option<JoinHandle<()>>>,
    draining: AtomicBool,
    flush_now: Arc<Notify>,
}

struct Flusher {
    config: SegmentWriterConfig,
    flush_now: Arc<Notify>,
    pending: Arc<Mutex<Pending>>,
    storage: Storage,
    metastore: Arc<dyn Metastore>,
    metrics: IngesterMetrics,
}

impl SegmentWriter {
    /// Starts the writer and its flush loop on the current runtime.
    pub fn start(
        config: SegmentWriterConfig,
        storage: Storage,
        metastore: Arc<dyn Metastore>,
        metrics: IngesterMetrics,
    ) -> Arc<Self> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let shutdown = CancellationToken::new();
        let flush_now = Arc::new(Notify::new());
        let flusher = Flusher {
            config: config.clone(),
            flush_now: Arc::clone(&flush_now),
            pending: Arc::clone(&pending),
            storage,
            metastore,
            metrics: metrics.clone(),
        };
        let handle = tokio::spawn(flusher.run(shutdown.clone()));
        Arc::new(Self {
            config,
            metrics,
            pending,
            shutdown,
            flusher: Mutex::new(Some(handle)),
            draining: AtomicBool::new(false),
            flush_now,
        })
    }

    /// Starts draining: what is buffered is flushed now, and from here on every push is
    /// flushed as soon as it arrives, so that requests in flight during shutdown are
    /// acknowledged without waiting for the flush interval.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.flush_now.notify_one();
    }

    /// Refuses new pushes, flushes what is buffered, and waits for the flush loop to end.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let handle = self.flusher.lock().expect("flusher lock").take();
        if let Some(handle) = handle
            && let Err(e) = handle.await
        {
            tracing::error!(error = %e, "segment flush loop panicked");
        }
    }
}

#[async_trait]
impl Ingester for SegmentWriter {
    async fn push(
        &self,
        tenant: TenantId,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError> {
        let samples: usize = profiles.iter().map(|p| p.sample_count()).sum();
        if samples == 0 {
            return Ok(());
        }
        let receiver = {
            let mut pending = self.pending.lock().expect("pending lock");
            if pending.closed {
                return Err(IngestError::ShuttingDown);
            }
            let buffered = pending.builder.sample_count();
            if buffered > 0 && buffered + samples > self.config.max_buffered_samples {
                return Err(IngestError::Overloaded {
                    buffered,
                    limit: self.config.max_buffered_samples,
                });
            }
            for profile in &profiles {
                pending.builder.add(&tenant, profile);
            }
            let (sender, receiver) = oneshot::channel();
            pending.waiters.push(sender);
            self.metrics.buffered_samples.inc_by(samples as i64);
            receiver
        };
        if self.draining.load(Ordering::SeqCst) {
            self.flush_now.notify_one();
        }
        receiver
            .await
            .unwrap_or_else(|_| Err(IngestError::Storage("the flush loop stopped".to_string())))
    }
}

impl Flusher {
    async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.flush_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => self.flush().await,
                _ = self.flush_now.notified() => self.flush().await,
                _ = shutdown.cancelled() => break,
            }
        }
        self.pending.lock().expect("pending lock").closed = true;
        self.flush().await;
    }

    async fn flush(&self) {
        let Pending {
            builder, waiters, ..
        } = {
            let mut pending = self.pending.lock().expect("pending lock");
            let closed = pending.closed;
            std::mem::replace(
                &mut *pending,
                Pending {
                    closed,
                    ..Pending::default()
                },
            )
        };
        if waiters.is_empty() {
            return;
        }
        let started = Instant::now();
        let samples = builder.sample_count();
        self.metrics.buffered_samples.dec_by(samples as i64);
        let result = self.write_segment(builder).await;
        match &result {
            Ok(bytes) => {
                self.metrics.segments_flushed.inc();
                self.metrics.segment_bytes.inc_by(*bytes);
                self.metrics.samples_stored.inc_by(samples as u64);
            }
            Err(e) => {
                self.metrics.segment_flush_failures.inc();
                tracing::error!(error = %e, "segment flush failed");
            }
        }
        self.metrics
            .flush_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        let outcome = result.map(|_| ());
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Encodes, uploads and registers one segment; returns its size.
    async fn write_segment(&self, builder: SegmentBuilder) -> Result<u64, IngestError> {
        let id = Ulid::new();
        let shard = self.config.shard;
        let encoded = tokio::task::spawn_blocking(move || builder.finish(id, shard))
            .await
            .map_err(|e| IngestError::Storage(format!("segment encoding panicked: {e}")))?
            .map_err(|e| IngestError::Storage(e.to_string()))?;
        let Some((bytes, meta)) = encoded else {
            return Ok(0);
        };
        let size = bytes.len() as u64;
        let path = self.storage.path(&meta.path);
        let payload = PutPayload::from_bytes(bytes);
        self.retry("upload", || async {
            self.storage
                .store
                .put(&path, payload.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await?;
        let registered = self
            .retry("register", || async {
                self.metastore
                    .add_block(meta.clone())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        if let Err(e) = registered {
            // The segment is durable: park its metadata for the recovery sweep and acknowledge.
            tracing::warn!(id = %id, error = %e, "metastore unreachable; parking the block in the recovery area");
            self.retry("park", || crate::recovery::park(&self.storage, &meta))
                .await?;
            self.metrics.segments_parked.inc();
        }
        tracing::debug!(id = %id, bytes = size, "segment flushed");
        Ok(size)
    }

    async fn retry<F, Fut>(&self, what: &str, mut operation: F) -> Result<(), IngestError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match operation().await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= self.config.attempts => {
                    return Err(IngestError::Storage(format!(
                        "{what} failed after {attempt} attempts: {e}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "segment {what} failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                    attempt += 1;
                }
            }
        }
    }
}
