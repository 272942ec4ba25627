//! The querier role: Pyroscope's query API over the blocks of the index.

use std::sync::Arc;

use super::Shared;
use axum::Router;
use kiln_config::{ServerArgs, Target};
use kiln_objstore::Storage;
use kiln_proto::kiln::querier::v1::query_part_service_server::QueryPartServiceServer;
use kiln_querier::{CacheSizes, ClusterPeers, PartService, Querier, QuerierConfig, QuerierMetrics};
use prometheus_client::registry::Registry;

/// A started querier: its routes for the main HTTP listener, and the service that runs parts of
/// queries for other queriers, for the cluster port.
pub(crate) struct QuerierRole {
    pub(crate) router: Router,
    pub(crate) part_service: QueryPartServiceServer<PartService>,
}

/// Starts a querier reading `storage`. Outside all-in-one mode it shares the parts of its
/// queries with the other queriers of the metastore's membership; `advertise_addr` is its own
/// cluster address there.
pub(crate) fn start(
    args: &ServerArgs,
    shared: &Shared,
    storage: Storage,
    advertise_addr: &str,
    registry: &mut Registry,
) -> QuerierRole {
    let Shared {
        metastore,
        overrides,
        auth,
        cluster,
        stop,
    } = shared;
    let peers = (!args.runs(Target::All)).then(|| ClusterPeers {
        channels: cluster.clone(),
        self_addr: advertise_addr.to_string(),
        part_timeout: args.querier_part_timeout,
        stop: stop.clone(),
    });
    let querier = Querier::new(
        QuerierConfig {
            max_nodes_default: args.querier_max_flamegraph_nodes,
            max_nodes_max: args.querier_max_flamegraph_nodes_max as usize,
            max_points_per_series: args.querier_max_points_per_series as usize,
            max_response_bytes: args.querier_max_response_bytes,
            max_query_range: args.querier_max_query_range,
            caches: CacheSizes {
                regions: args.querier_cache_bytes as u64,
                series: args.querier_series_cache_bytes as u64,
                directory: args.querier_directory_cache_bytes as u64,
                symbols: args.querier_symbols_cache_bytes as u64,
            },
            auth: Arc::clone(auth),
            timeout: args.querier_timeout,
            max_concurrent: args.querier_max_concurrent,
            merge_threads: merge_threads(args),
            cluster: peers,
        },
        Arc::clone(metastore),
        storage,
        Arc::clone(overrides),
        QuerierMetrics::new(registry),
    );
    let sql = kiln_sql::SqlEngine::new(
        Arc::clone(&querier),
        kiln_sql::SqlLimits {
            max_rows: args.sql_max_rows,
            memory_bytes: args.sql_memory_bytes,
        },
    );
    let mut router = querier
        .router()
        .merge(kiln_sql::router(Arc::new(sql), Arc::clone(auth)));
    if args.ui_enabled {
        let source = match &args.ui_dir {
            Some(dir) => kiln_ui::Source::Folder(dir.clone()),
            None => kiln_ui::Source::Embedded,
        };
        router = router.merge(kiln_ui::router(source));
    }
    QuerierRole {
        router,
        part_service: querier.part_service(),
    }
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
