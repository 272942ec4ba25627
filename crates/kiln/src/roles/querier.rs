//! The querier role: Pyroscope's query API over the blocks of the index.

use std::sync::Arc;

use super::Shared;
use axum::Router;
use kiln_config::{ServerArgs, Target};
use kiln_objstore::Storage;
use kiln_querier::{Querier, QuerierConfig, QuerierMetrics};
use prometheus_client::registry::Registry;

/// Starts a querier reading `storage`; returns its routes for the main HTTP listener.
pub(crate) fn start(
    args: &ServerArgs,
    shared: &Shared,
    storage: Storage,
    registry: &mut Registry,
) -> Router {
    let Shared {
        metastore,
        overrides,
        auth,
        ..
    } = shared;
    let querier = Querier::new(
        QuerierConfig {
            max_nodes_default: args.querier_max_flamegraph_nodes,
            max_nodes_max: args.querier_max_flamegraph_nodes_max as usize,
            max_points_per_series: args.querier_max_points_per_series as usize,
            max_response_bytes: args.querier_max_response_bytes,
            max_query_range: args.querier_max_query_range,
            cache_bytes: args.querier_cache_bytes as u64,
            series_cache_bytes: args.querier_series_cache_bytes as u64,
            auth: Arc::clone(auth),
            timeout: args.querier_timeout,
            max_concurrent: args.querier_max_concurrent,
            merge_threads: merge_threads(args),
        },
        Arc::clone(metastore),
        storage,
        Arc::clone(overrides),
        QuerierMetrics::new(registry),
    );
    querier.router()
}

/// `--querier.merge-threads`, or by default every core for a process that only queries and
/// half of them (at least one) when it also flushes segments or commits the metastore's log,
/// whose threads queries must not starve.
fn merge_threads(args: &ServerArgs) -> usize {
    if args.querier_merge_threads > 0 {
        return args.querier_merge_threads;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if args.runs(Target::Ingester) || args.runs(Target::Metastore) {
        (cores / 2).max(1)
    } else {
        cores
    }
}
