//! The queriers that share a query's parts (ADR 0005).
//!
//! The live queriers come from the metastore's membership (their heartbeats, at their cluster
//! addresses), refreshed every second. Each part goes to the querier that jump consistent
//! hashing picks for its blocks among every querier sorted by address, this one included, so
//! that the same blocks are read, and cached, by the same querier query after query; a part
//! that fails there is tried on the next querier of that order, and a querier that failed is
//! tried last for a few seconds, so that a dead one is routed around before its heartbeats
//! expire.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_contract::metastore::{Metastore, MetastoreError};
use kiln_contract::querier::QueryPartClient;
use kiln_contract::{ChannelPool, Role};
use kiln_runtime::{FirstTick, jump_hash, spawn_every};
use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

/// How long a querier that failed a part is tried after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// The largest part result, or part request, one querier sends another. A part's result is
/// untruncated, so it may exceed the querier's response limit; the tenant's merge budget
/// bounds it on the querier that folds it.
pub(crate) const MAX_PART_MESSAGE_BYTES: usize = 1 << 30;

/// How a querier joins the others to share queries.
#[derive(Clone, Debug)]
pub struct ClusterPeers {
    /// Channels to other cluster members, over the cluster's mutual TLS.
    pub channels: ChannelPool,
    /// This querier's cluster address as it announces it (`--advertise-addr`).
    pub self_addr: String,
    /// How long one part may run on another querier before it is tried on the next (0: no
    /// limit but the query's own timeout).
    pub part_timeout: Duration,
    /// Stops following the membership.
    pub stop: CancellationToken,
}

/// Where a part runs.
#[derive(Clone, Debug)]
pub(crate) enum Peer {
    /// On this querier, without a network hop.
    Local,
    /// On another querier.
    Remote(Box<QueryPartClient>),
}

/// The other queriers, as this one sees them.
#[derive(Debug)]
pub(crate) struct QuerierPeers {
    metastore: Arc<dyn Metastore>,
    config: ClusterPeers,
    gauge: Gauge,
    /// The other live queriers, by address.
    remotes: RwLock<Vec<QueryPartClient>>,
    suspects: Mutex<HashMap<String, Instant>>,
}

impl QuerierPeers {
    /// Starts following the querier membership in `metastore`.
    /// `gauge` follows how many queriers share parts, this one included.
    pub(crate) fn start(
        metastore: Arc<dyn Metastore>,
        config: ClusterPeers,
        gauge: Gauge,
    ) -> Arc<Self> {
        let stop = config.stop.clone();
        let peers = Arc::new(Self {
            metastore,
            config,
            gauge,
            remotes: RwLock::default(),
            suspects: Mutex::default(),
        });
        let refreshing = Arc::clone(&peers);
        spawn_every(Duration::from_secs(1), FirstTick::Now, stop, move || {
            let peers = Arc::clone(&refreshing);
            async move {
                if let Err(e) = peers.refresh().await {
                    tracing::warn!(error = %e, "cannot refresh the querier membership");
                }
            }
        });
        peers
    }

    /// Reads the live queriers from the metastore.
    async fn refresh(&self) -> Result<(), MetastoreError> {
        let members = self.metastore.members(Some(Role::Querier)).await?;
        let mut current: BTreeMap<String, QueryPartClient> = self
            .remotes
            .read()
            .iter()
            .map(|c| (c.addr().to_string(), c.clone()))
            .collect();
        let mut next = Vec::new();
        for member in members {
            if member.addr == self.config.self_addr {
                continue;
            }
            let client = match current.remove(&member.addr) {
                Some(client) => client,
                None => match QueryPartClient::new(
                    &self.config.channels,
                    &member.addr,
                    self.config.part_timeout,
                    MAX_PART_MESSAGE_BYTES,
                ) {
                    Ok(client) => client,
                    Err(e) => {
                        tracing::warn!(addr = %member.addr, error = %e, "cannot dial a querier");
                        continue;
                    }
                },
            };
            next.push(client);
        }
        next.sort_by(|a, b| a.addr().cmp(b.addr()));
        self.gauge.set(next.len() as i64 + 1);
        *self.remotes.write() = next;
        Ok(())
    }

    /// The queriers sharing parts, this one included.
    pub(crate) fn count(&self) -> usize {
        self.remotes.read().len() + 1
    }

    /// Every querier in the order to try for the part whose placement key is `key`: from the
    /// one jump hashing picks among all queriers sorted by address (the same on every querier)
    /// onwards, those that failed recently last.
    pub(crate) fn candidates(&self, key: u64) -> Vec<Peer> {
        let mut all: Vec<(String, Peer)> = self
            .remotes
            .read()
            .iter()
            .map(|c| (c.addr().to_string(), Peer::Remote(Box::new(c.clone()))))
            .collect();
        all.push((self.config.self_addr.clone(), Peer::Local));
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut all: Vec<Peer> = all.into_iter().map(|(_, peer)| peer).collect();
        let first = jump_hash(key, all.len());
        all.rotate_left(first);
        let mut suspects = self.suspects.lock();
        suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        // A stable sort: the order holds among the healthy and among the suspects.
        all.sort_by_key(|peer| match peer {
            Peer::Local => false,
            Peer::Remote(client) => suspects.contains_key(client.addr()),
        });
        all
    }

    /// Notes that the querier at `addr` failed a part.
    pub(crate) fn suspect(&self, addr: &str) {
        self.suspects
            .lock()
            .insert(addr.to_string(), Instant::now());
    }
}
