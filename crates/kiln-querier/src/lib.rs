//! The querier: Pyroscope's query API over Kiln's blocks.
//!
//! A query is planned from the metastore (which blocks hold the tenant's data in the range),
//! the blocks are read from object storage through a cache, the matching series and profiles
//! are selected (each profile id once), and their stacks are merged exactly: into a flame
//! graph, a pprof profile, or time series.

mod analyze;
mod budget;
mod compare;
mod error;
mod flamegraph;
mod fold;
mod gate;
mod http;
mod labels_http;
mod metrics;
mod partial;
mod peers;
mod plan;
mod pool;
mod pprof;
mod reader;
mod remote;
mod render;
mod scan;
mod select;
mod selector;
mod service;
mod settings;
mod stacks;
mod timeseries;

use std::sync::Arc;
use std::time::Duration;

use kiln_api::Auth;
use kiln_contract::metastore::Metastore;
use kiln_objstore::Storage;
use kiln_runtime::TenantOverrides;

pub use budget::MergeMemory;
pub use error::QuerierError;
pub use flamegraph::{DiffTree, FrameTree};
pub use metrics::{CacheLabels, FetchLabels, OutcomeLabels, QuerierMetrics};
pub use partial::Partial;
pub use peers::ClusterPeers;
pub use pprof::PprofBuilder;
pub use reader::{BlockData, BlockReader, CacheSizes};
pub use remote::PartService;
pub use render::resolve_range;
pub use select::{Query, SelectedDataset};
pub use selector::{MatchOp, Matcher, Selector, SyntaxError, check_query, parse_query};
pub use stacks::StackFilter;
pub use timeseries::{Aggregation, SeriesBuilder};

/// The default of the most flame graph nodes any request gets (Pyroscope's
/// `max_flamegraph_nodes_max`).
pub const MAX_NODES_MAX: usize = 1 << 20;

/// Settings of the querier.
#[derive(Clone, Debug)]
pub struct QuerierConfig {
    /// Flame graph node limit when a request names none (Pyroscope's default is 8192); 0
    /// means `max_nodes_max`.
    pub max_nodes_default: usize,
    /// The most flame graph nodes of any request: larger requests, and requests of 0 or less,
    /// get this many.
    pub max_nodes_max: usize,
    /// Points of one series a `SelectSeries` may return.
    pub max_points_per_series: usize,
    /// Largest response, in bytes (protobuf encoding; JSON for the Pyroscope HTTP endpoints).
    pub max_response_bytes: usize,
    /// Longest range of a query; zero means no limit.
    pub max_query_range: std::time::Duration,
    /// Memory of the caches of what is read from blocks.
    pub caches: CacheSizes,
    /// Who may query, as which tenant.
    pub auth: Arc<Auth>,
    /// How long one query may run (`--querier.timeout`); zero: no deadline.
    pub timeout: Duration,
    /// Queries run at once; more are refused (`--querier.max-concurrent`). 0: no limit.
    pub max_concurrent: usize,
    /// Threads of the merge pool, which decodes blocks and merges results.
    pub merge_threads: usize,
    /// The other queriers to share parts of queries with; `None`: this querier runs every
    /// part itself (all-in-one).
    pub cluster: Option<ClusterPeers>,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            max_nodes_default: 8192,
            max_nodes_max: MAX_NODES_MAX,
            max_points_per_series: 100_000,
            max_response_bytes: 128 << 20,
            max_query_range: std::time::Duration::ZERO,
            caches: CacheSizes {
                regions: 512 << 20,
                series: 64 << 20,
                directory: 16 << 20,
                symbols: 128 << 20,
            },
            auth: Auth::open(false),
            timeout: Duration::from_secs(120),
            max_concurrent: 8,
            merge_threads: 1,
            cluster: None,
        }
    }
}

/// The querier role.
#[derive(Debug)]
pub struct Querier {
    config: QuerierConfig,
    metastore: Arc<dyn Metastore>,
    reader: BlockReader,
    overrides: Arc<TenantOverrides>,
    pool: pool::MergePool,
    gate: gate::QueryGate,
    metrics: QuerierMetrics,
    /// The queriers sharing parts, when there are others.
    peers: Option<Arc<peers::QuerierPeers>>,
    /// Parts this querier runs at once, its own and other queriers' (twice its merge threads).
    part_slots: tokio::sync::Semaphore,
}

impl Querier {
    /// A querier planning from `metastore` and reading blocks from `storage`; `overrides` give
    /// each tenant's retention period, beyond which nothing is returned, and its query limits.
    pub fn new(
        config: QuerierConfig,
        metastore: Arc<dyn Metastore>,
        storage: Storage,
        overrides: Arc<TenantOverrides>,
        metrics: QuerierMetrics,
    ) -> Arc<Self> {
        let pool = pool::MergePool::new(config.merge_threads);
        tracing::info!(threads = pool.threads(), "query merge pool started");
        // Alone until the membership says otherwise.
        metrics.peers.set(1);
        Arc::new(Self {
            reader: BlockReader::new(storage, config.caches, pool.clone(), metrics.clone()),
            gate: gate::QueryGate::new(config.max_concurrent, config.timeout, metrics.clone()),
            peers: config.cluster.clone().map(|cluster| {
                peers::QuerierPeers::start(Arc::clone(&metastore), cluster, metrics.peers.clone())
            }),
            part_slots: tokio::sync::Semaphore::new(pool.threads().max(1) * 2),
            metrics,
            pool,
            config,
            metastore,
            overrides,
        })
    }
}
