//! One module per role: each starts its role from the parsed config and hands back what the
//! server composes (HTTP routes, gRPC services, listeners, handles to stop it by).

pub(crate) mod compactor;
pub(crate) mod distributor;
pub(crate) mod heartbeat;
pub(crate) mod ingester;
pub(crate) mod metastore;
pub(crate) mod querier;
pub(crate) mod storage;

use std::sync::Arc;

use kiln_api::Auth;
use kiln_contract::ChannelPool;
use kiln_contract::metastore::Metastore;
use kiln_runtime::TenantOverrides;
use tokio_util::sync::CancellationToken;

/// What the roles of one process share.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    /// The metastore: this process's node, or a client of the group.
    pub(crate) metastore: Arc<dyn Metastore>,
    /// Every tenant's limits and retention period.
    pub(crate) overrides: Arc<TenantOverrides>,
    /// Who may call what.
    pub(crate) auth: Arc<Auth>,
    /// Channels to other cluster members (mutual TLS when the cluster has a CA).
    pub(crate) cluster: ChannelPool,
    /// Cancelled at shutdown, after the listeners drained.
    pub(crate) stop: CancellationToken,
}
