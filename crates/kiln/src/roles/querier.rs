//! The querier role: Pyroscope's query API over the blocks of the index.

use std::sync::Arc;

use super::Shared;
use axum::Router;
use kiln_config::ServerArgs;
use kiln_objstore::Storage;
use kiln_querier::{Querier, QuerierConfig};

/// Starts a querier reading `storage`; returns its routes for the main HTTP listener.
pub(crate) fn start(args: &ServerArgs, shared: &Shared, storage: Storage) -> Router {
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
            auth: Arc::clone(auth),
        },
        Arc::clone(metastore),
        storage,
        Arc::clone(overrides),
    );
    querier.router()
}
