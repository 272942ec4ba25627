use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kiln_block::{DatasetBuilder, DatasetData, encode_segment};
use kiln_contract::ingester::{IngestError, Ingester};
use kiln_contract::metastore::Metastore;
use kiln_model::{NormalizedProfile, TenantId};
use kiln_objstore::Storage;
use kiln_objstore::object_store::{ObjectStoreExt, PutPayload};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use ulid::Ulid;

use crate::IngesterMetrics;

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
            flush_interval: Duration::from_millis(250),
            shard: 0,
            max_buffered_samples: 20_000_000,
            attempts: 3,
        }
    }
}

type Waiter = oneshot::Sender<Result<(), IngestError>>;

/// Segments written at once by one ingester (see [`Flusher::flush`]).
const WRITES_IN_FLIGHT: usize = 2;

/// Logs a segment write that panicked (its pushes are answered with an error: their senders
/// are dropped).
fn report(written: Result<(), tokio::task::JoinError>) {
    if let Err(e) = written {
        tracing::error!(error = %e, "a segment write panicked");
    }
}

/// The builder of one dataset, locked on its own so that pushes of other datasets go on.
type SharedDataset = Arc<Mutex<DatasetBuilder>>;

/// The datasets and waiting pushes of the segment being filled.
///
/// Pushes fill it under a read lock of [`Buffer::state`] (so pushes of different services run in
/// parallel, each locking only its own dataset); the flush swaps it for an empty one under the
/// write lock, which therefore waits until every push that started adding has finished and
/// registered its waiter. Locks are `parking_lot`'s: a panic while one is held cannot poison it
/// and take every later push down with it.
#[derive(Debug, Default)]
struct Generation {
    datasets: Mutex<HashMap<(TenantId, String), SharedDataset>>,
    waiters: Mutex<Vec<Waiter>>,
    samples: AtomicUsize,
    /// The span of the first push into this generation: its flush is traced as that span's
    /// child, so the first push's trace shows the upload and the registration.
    first_push: Mutex<Option<tracing::Span>>,
}

impl Generation {
    /// The builder of `service` of `tenant`, created when new.
    fn dataset(&self, tenant: &TenantId, service: &str) -> SharedDataset {
        let mut datasets = self.datasets.lock();
        if let Some(dataset) = datasets.get(&(tenant.clone(), service.to_string())) {
            return Arc::clone(dataset);
        }
        let dataset = Arc::new(Mutex::new(DatasetBuilder::new(tenant.as_str(), service)));
        datasets.insert((tenant.clone(), service.to_string()), Arc::clone(&dataset));
        dataset
    }

    /// The finished datasets; called once no push can reach this generation any more.
    fn into_datasets(self) -> Vec<DatasetData> {
        self.datasets
            .into_inner()
            .into_iter()
            .map(
                |((tenant, service), dataset)| match Arc::try_unwrap(dataset) {
                    Ok(dataset) => dataset.into_inner().finish(),
                    // Pushes drop their handle before they release the read lock, so this is never
                    // taken; if it were, the data is still moved out rather than lost.
                    Err(shared) => std::mem::replace(
                        &mut *shared.lock(),
                        DatasetBuilder::new(tenant.as_str(), &service),
                    )
                    .finish(),
                },
            )
            .collect()
    }
}

#[derive(Debug, Default)]
struct BufferState {
    generation: Generation,
    closed: bool,
}

/// What pushes and the flush loop share.
#[derive(Debug, Default)]
struct Buffer {
    state: RwLock<BufferState>,
    /// Samples of taken segments still being written: they are in memory until stored, so the
    /// bound on buffered samples counts them.
    writing: AtomicUsize,
}

impl Buffer {
    /// Adds the profiles to the open segment and returns the receiver of their acknowledgement.
    /// CPU work (symbol interning): runs on a blocking thread.
    fn add(
        &self,
        tenant: &TenantId,
        profiles: &[NormalizedProfile],
        samples: usize,
        limit: usize,
        span: tracing::Span,
    ) -> Result<oneshot::Receiver<Result<(), IngestError>>, IngestError> {
        let state = self.state.read();
        if state.closed {
            return Err(IngestError::ShuttingDown);
        }
        let generation = &state.generation;
        let writing = self.writing.load(Ordering::SeqCst);
        generation
            .samples
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                // One push alone is always taken, so that no push is refused for ever.
                let buffered = open.saturating_add(writing);
                (buffered == 0 || buffered.saturating_add(samples) <= limit)
                    .then_some(open + samples)
            })
            .map_err(|open| IngestError::Overloaded {
                buffered: open.saturating_add(writing),
                limit,
            })?;
        let mut start = 0;
        while start < profiles.len() {
            // Consecutive profiles of one service share one lock of their dataset.
            let service = &profiles[start].service_name;
            let end = profiles[start..]
                .iter()
                .position(|p| &p.service_name != service)
                .map_or(profiles.len(), |n| start + n);
            let dataset = generation.dataset(tenant, service);
            let mut dataset = dataset.lock();
            for profile in &profiles[start..end] {
                dataset.add(profile);
            }
            start = end;
        }
        let (sender, receiver) = oneshot::channel();
        generation.waiters.lock().push(sender);
        generation.first_push.lock().get_or_insert(span);
        Ok(receiver)
    }

    /// Takes the open segment, leaving an empty one; `close` refuses every later push.
    fn take(&self, close: bool) -> Generation {
        let mut state = self.state.write();
        state.closed |= close;
        std::mem::take(&mut state.generation)
    }
}

/// Buffers pushes and flushes them as segments on a timer; see the crate docs.
#[derive(Debug)]
pub struct SegmentWriter {
    config: SegmentWriterConfig,
    metrics: IngesterMetrics,
    buffer: Arc<Buffer>,
    shutdown: CancellationToken,
    flusher: Mutex<Option<JoinHandle<()>>>,
    draining: AtomicBool,
    flush_now: Arc<Notify>,
}

struct Flusher {
    config: SegmentWriterConfig,
    flush_now: Arc<Notify>,
    buffer: Arc<Buffer>,
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
        let buffer = Arc::new(Buffer::default());
        let shutdown = CancellationToken::new();
        let flush_now = Arc::new(Notify::new());
        let flusher = Flusher {
            config: config.clone(),
            flush_now: Arc::clone(&flush_now),
            buffer: Arc::clone(&buffer),
            storage,
            metastore,
            metrics: metrics.clone(),
        };
        let handle = tokio::spawn(Arc::new(flusher).run(shutdown.clone()));
        Arc::new(Self {
            config,
            metrics,
            buffer,
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

    /// True while the flush loop runs. It ends only at shutdown, or when it panicked: then
    /// pushes are never acknowledged and the ingester cannot work any more.
    pub fn is_flushing(&self) -> bool {
        self.flusher
            .lock()
            .as_ref()
            .is_some_and(|handle| !handle.is_finished())
    }

    /// Refuses new pushes, flushes what is buffered, and waits for the flush loop to end.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let handle = self.flusher.lock().take();
        if let Some(handle) = handle
            && let Err(e) = handle.await
        {
            tracing::error!(error = %e, "segment flush loop panicked");
        }
    }
}

#[async_trait]
impl Ingester for SegmentWriter {
    #[tracing::instrument(name = "ingester.push", skip_all,
                          fields(tenant = %tenant, profiles = profiles.len()))]
    async fn push(
        &self,
        tenant: TenantId,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError> {
        let samples: usize = profiles.iter().map(|p| p.sample_count()).sum();
        if samples == 0 {
            return Ok(());
        }
        let buffer = Arc::clone(&self.buffer);
        let limit = self.config.max_buffered_samples;
        let span = tracing::Span::current();
        let receiver = tokio::task::spawn_blocking(move || {
            buffer.add(&tenant, &profiles, samples, limit, span)
        })
        .await
        .map_err(|e| IngestError::Invalid(format!("the push could not be buffered: {e}")))??;
        self.metrics.buffered_samples.inc_by(samples as i64);
        if self.draining.load(Ordering::SeqCst) {
            self.flush_now.notify_one();
        }
        receiver
            .await
            .unwrap_or_else(|_| Err(IngestError::Storage("the flush loop stopped".to_string())))
    }
}

impl Flusher {
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.flush_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut writes = JoinSet::new();
        loop {
            tokio::select! {
                _ = interval.tick() => Arc::clone(&self).flush(&mut writes, false).await,
                _ = self.flush_now.notified() => Arc::clone(&self).flush(&mut writes, false).await,
                Some(written) = writes.join_next(), if !writes.is_empty() => report(written),
                _ = shutdown.cancelled() => break,
            }
        }
        Arc::clone(&self).flush(&mut writes, true).await;
        while let Some(written) = writes.join_next().await {
            report(written);
        }
    }

    /// Takes what is buffered and starts writing it as one segment, which answers its pushes
    /// when stored and registered; `close` refuses every later push. At most
    /// [`WRITES_IN_FLIGHT`] segments are written at once: the next segment fills while the
    /// last ones upload, so an acknowledgement waits for one interval and one write, not for
    /// the writes before it as well.
    async fn flush(self: Arc<Self>, writes: &mut JoinSet<()>, close: bool) {
        while writes.len() >= WRITES_IN_FLIGHT {
            match writes.join_next().await {
                Some(written) => report(written),
                None => break,
            }
        }
        let buffer = Arc::clone(&self.buffer);
        // Taking the buffer waits for pushes that are adding: off the async executor.
        let generation = match tokio::task::spawn_blocking(move || {
            let generation = buffer.take(close);
            let samples = generation.samples.load(Ordering::SeqCst);
            buffer.writing.fetch_add(samples, Ordering::SeqCst);
            generation
        })
        .await
        {
            Ok(generation) => generation,
            Err(e) => {
                tracing::error!(error = %e, "taking the segment buffer failed");
                return;
            }
        };
        let waiters = std::mem::take(&mut *generation.waiters.lock());
        if waiters.is_empty() {
            return;
        }
        writes.spawn(async move { self.write(generation, waiters).await });
    }

    /// Writes `generation` as one segment and answers `waiters`.
    async fn write(&self, generation: Generation, waiters: Vec<Waiter>) {
        let started = Instant::now();
        let samples = generation.samples.load(Ordering::SeqCst);
        let first_push = generation.first_push.lock().take();
        let span = tracing::info_span!(
            parent: first_push.and_then(|span| span.id()),
            "ingester.flush",
            pushes = waiters.len(),
            samples,
        );
        let result = self.write_segment(generation).instrument(span).await;
        self.buffer.writing.fetch_sub(samples, Ordering::SeqCst);
        self.metrics.buffered_samples.dec_by(samples as i64);
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
    async fn write_segment(&self, generation: Generation) -> Result<u64, IngestError> {
        let id = Ulid::new();
        let shard = self.config.shard;
        let encoded = tokio::task::spawn_blocking(move || {
            encode_segment(generation.into_datasets(), id, shard)
        })
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
        .instrument(tracing::info_span!("ingester.upload", bytes = size))
        .await?;
        let registered = self
            .retry("register", || async {
                self.metastore
                    .add_block(meta.clone())
                    .await
                    .map_err(|e| e.to_string())
            })
            .instrument(tracing::info_span!("ingester.register", block = %id))
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
