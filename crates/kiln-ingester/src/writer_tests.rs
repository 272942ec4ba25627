//! The segment writer on a real single-node metastore, with object storage whose first upload
//! can be held (a fault: a slow upload).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use kiln_contract::ingester::{IngestError, Ingester};
use kiln_contract::metastore::Metastore;
use kiln_metastore::{MetastoreNode, NodeConfig};
use kiln_model::{Labels, NormalizeOptions, NormalizedProfile, TenantId, normalize};
use kiln_objstore::Storage;
use kiln_objstore::object_store::memory::InMemory;
use kiln_objstore::object_store::path::Path;
use kiln_objstore::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use kiln_proto::google::v1::{Function, Line, Location, Profile, Sample, ValueType};
use tokio::sync::{Notify, oneshot};

use crate::{IngesterMetrics, SegmentWriter, SegmentWriterConfig};

/// In-memory storage whose first put waits for `release` (and says it started on `started`).
#[derive(Debug)]
struct HeldStore {
    inner: InMemory,
    release: parking_lot::Mutex<Option<oneshot::Receiver<()>>>,
    started: Arc<Notify>,
}

impl fmt::Display for HeldStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeldStore")
    }
}

#[async_trait]
impl ObjectStore for HeldStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let held = self.release.lock().take();
        if let Some(release) = held {
            self.started.notify_one();
            let _ = release.await;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A CPU profile of `samples` samples of one stack, normalized for service `svc`.
fn profile(samples: usize) -> NormalizedProfile {
    let strings = ["", "cpu", "nanoseconds", "main"]
        .map(String::from)
        .to_vec();
    let profile = Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        period_type: Some(ValueType { r#type: 1, unit: 2 }),
        sample: (0..samples)
            .map(|i| Sample {
                location_id: vec![1],
                value: vec![i as i64 + 1],
                label: Vec::new(),
            })
            .collect(),
        location: vec![Location {
            id: 1,
            line: vec![Line {
                function_id: 1,
                line: 1,
                column: 0,
            }],
            ..Location::default()
        }],
        function: vec![Function {
            id: 1,
            name: 3,
            ..Function::default()
        }],
        string_table: strings,
        time_nanos: 1_700_000_000_000_000_000,
        ..Profile::default()
    };
    let labels = Labels::from_pairs([("service_name", "svc")]);
    normalize(profile, &labels, NormalizeOptions::default()).unwrap()
}

/// A writer on a held store and a fresh single-node metastore; the sender releases the first
/// upload, the notify tells it started.
async fn writer(
    max_buffered_samples: usize,
) -> (
    Arc<SegmentWriter>,
    Arc<MetastoreNode>,
    oneshot::Sender<()>,
    Arc<Notify>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let node = MetastoreNode::start(NodeConfig::single(dir.path(), "127.0.0.1:1"))
        .await
        .unwrap();
    node.raft()
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    let (release, held) = oneshot::channel();
    let started = Arc::new(Notify::new());
    let store = HeldStore {
        inner: InMemory::new(),
        release: parking_lot::Mutex::new(Some(held)),
        started: Arc::clone(&started),
    };
    let storage = Storage {
        store: Arc::new(store),
        prefix: Path::default(),
    };
    let config = SegmentWriterConfig {
        flush_interval: Duration::from_millis(20),
        max_buffered_samples,
        ..SegmentWriterConfig::default()
    };
    let metrics = IngesterMetrics::new(&mut prometheus_client::registry::Registry::default());
    let metastore: Arc<dyn Metastore> = Arc::clone(&node) as Arc<dyn Metastore>;
    let writer = SegmentWriter::start(config, storage, metastore, metrics);
    (writer, node, release, started, dir)
}

fn push(
    writer: &Arc<SegmentWriter>,
    samples: usize,
) -> tokio::task::JoinHandle<Result<(), IngestError>> {
    let writer = Arc::clone(writer);
    tokio::spawn(async move {
        writer
            .push(TenantId::anonymous(), vec![profile(samples)])
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_does_not_hold_back_the_next_segment() {
    let (writer, node, release, started, _dir) = writer(1_000_000).await;
    let first = push(&writer, 3);
    started.notified().await;
    // The first segment's upload is held; the next push is written, registered and answered
    // meanwhile.
    let second = push(&writer, 5);
    tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second push is answered while the first upload is held")
        .unwrap()
        .unwrap();
    assert!(!first.is_finished());
    assert_eq!(node.list_blocks(None).await.unwrap().len(), 1);
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(node.list_blocks(None).await.unwrap().len(), 2);
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_being_written_count_against_the_buffer_bound() {
    let (writer, _node, release, started, _dir) = writer(10).await;
    let first = push(&writer, 6);
    started.notified().await;
    // 6 samples are being written: 5 more would pass the bound of 10.
    match push(&writer, 5).await.unwrap() {
        Err(IngestError::Overloaded { buffered, limit }) => assert_eq!((buffered, limit), (6, 10)),
        other => panic!("expected overloaded, got {other:?}"),
    }
    push(&writer, 4).await.unwrap().unwrap();
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    // Once stored, the room is back.
    push(&writer, 5).await.unwrap().unwrap();
    writer.shutdown().await;
}
