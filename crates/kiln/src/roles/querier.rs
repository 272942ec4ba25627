//! The querier role: Pyroscope's query API over the blocks of the index.

use std::sync::Arc;

use axum::Router;
use kiln_config::ServerArgs;
use kiln_contract::metastore::Metastore;
use kiln_objstore::Storage;
use kiln_querier::{Querier, QuerierConfig};
use kiln_runtime::TenantOverrides;

/// Starts a querier reading `storage`; returns its routes for the main HTTP listener.
pub(crate) fn start(
    args: &ServerArgs,
    storage: Storage,
    metastore: &Arc<dyn Metastore>,
    overrides: &Arc<TenantOverrides>,
) -> Router {
    let querier = Querier::new(
        QuerierConfig {
            max_nodes_default: args.querier_max_flamegraph_nodes,
            max_nodes_max: args.querier_max_flamegraph_nodes_max as usize,
            max_points_per_series: args.querier_max_points_per_series as usize,
            max_response_bytes: args.querier_max_response_bytes,
            max_query_range: args.querier_max_query_range,
            cache_bytes: args.querier_cache_bytes as u64,
            multitenancy_enabled: args.multitenancy_enabled,
        },
        Arc::clone(metastore),
        storage,
        Arc::clone(overrides),
    );
    querier.router()
}
