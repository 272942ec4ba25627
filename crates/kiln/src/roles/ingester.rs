//! The ingester role: the segment writer, its gRPC service and the recovery sweeper.

use std::sync::Arc;
use std::time::Duration;

use kiln_config::ServerArgs;
use kiln_contract::Role;
use kiln_contract::ingester::Ingester;
use kiln_ingester::{IngesterGrpc, IngesterMetrics, SegmentWriter, SegmentWriterConfig};
use kiln_objstore::Storage;
use kiln_proto::kiln::ingester::v1::ingester_service_server::IngesterServiceServer;
use prometheus_client::registry::Registry;

use super::{Shared, heartbeat};

/// How often an ingester registers the blocks parked in the recovery area.
const RECOVERY_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A running ingester.
#[derive(Debug)]
pub(crate) struct IngesterRole {
    /// The segment writer; distributors in this process push to it directly.
    pub(crate) writer: Arc<SegmentWriter>,
}

impl IngesterRole {
    /// The gRPC service that distributors in other processes push to, accepting pushes of at
    /// most `max_message_bytes`.
    pub(crate) fn service(&self, max_message_bytes: usize) -> IngesterServiceServer<IngesterGrpc> {
        IngesterGrpc::server(
            Arc::clone(&self.writer) as Arc<dyn Ingester>,
            max_message_bytes,
        )
    }
}

/// Starts the segment writer on `storage`, sweeps the recovery area, and announces the
/// ingester at `advertise_addr` (its gRPC address) until `stop`.
pub(crate) fn start(
    args: &ServerArgs,
    shared: &Shared,
    storage: &Storage,
    advertise_addr: &str,
    registry: &mut Registry,
) -> IngesterRole {
    let (metastore, stop) = (&shared.metastore, &shared.stop);
    let writer = SegmentWriter::start(
        SegmentWriterConfig {
            flush_interval: args.ingester_flush_interval,
            max_buffered_samples: args.ingester_max_buffered_samples,
            ..SegmentWriterConfig::default()
        },
        storage.clone(),
        Arc::clone(metastore),
        IngesterMetrics::new(registry),
    );
    kiln_ingester::recovery::spawn_sweeper(
        storage.clone(),
        Arc::clone(metastore),
        RECOVERY_SWEEP_INTERVAL,
        stop.clone(),
    );
    heartbeat::spawn(metastore, Role::Ingester, advertise_addr, stop);
    IngesterRole { writer }
}
