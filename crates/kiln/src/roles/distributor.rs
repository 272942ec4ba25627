//! The distributor role: every ingest protocol, limits, and placement onto ingesters.

use std::sync::Arc;

use axum::Router;
use kiln_config::{ServerArgs, Target};
use kiln_contract::Role;
use kiln_contract::ingester::Ingester;
use kiln_contract::metastore::Metastore;
use kiln_distributor::{
    Distributor, DistributorConfig, DistributorMetrics, IngesterRing, TenantLimits,
};
use kiln_runtime::{FirstTick, spawn_every};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::heartbeat::HEARTBEAT_INTERVAL;
use super::ingester::IngesterRole;

/// A running distributor: its routes for the main HTTP listener and for the OTLP listeners.
#[derive(Debug)]
pub(crate) struct DistributorRole {
    /// Ingest endpoints served on `--http-addr`.
    pub(crate) router: Router,
    /// OTLP endpoints served on `--otlp-grpc-addr` and `--otlp-http-addr`.
    pub(crate) otlp_router: Router,
}

/// Starts a distributor that pushes to the ingester of this process, or, without one, to the
/// cluster's ingesters found through the metastore.
pub(crate) fn start(
    args: &ServerArgs,
    shared: &Shared,
    local_ingester: Option<&IngesterRole>,
    registry: &mut Registry,
) -> DistributorRole {
    let Shared {
        metastore,
        overrides,
        auth,
        stop,
        ..
    } = shared;
    let target: Arc<dyn Ingester> = match local_ingester {
        Some(ingester) => Arc::clone(&ingester.writer) as Arc<dyn Ingester>,
        None => IngesterRing::start(
            Arc::clone(metastore),
            shared.cluster.clone(),
            args.distributor_ingester_timeout,
            stop.clone(),
        ),
    };
    let limits = TenantLimits::new(Arc::clone(overrides));
    limits.set_max_tenants(args.tenants_max_tracked);
    // All-in-one is the only distributor of its cluster.
    if !args.runs(Target::All) {
        count_live_distributors(metastore, &limits, stop);
    }
    let distributor = Distributor::new(
        DistributorConfig {
            max_body_bytes: args.limits.max_body_bytes,
            max_decompressed_bytes: args.limits.max_decompressed_bytes,
            auth: Arc::clone(auth),
            limits,
        },
        target,
        DistributorMetrics::new(registry)
            .with_tenant_cap(args.tenants_max_tracked, args.tenants_idle_timeout),
    );
    let sweeping = Arc::clone(&distributor);
    spawn_every(
        distributor.sweep_period(),
        FirstTick::AfterPeriod,
        stop.clone(),
        move || {
            sweeping.forget_idle_tenants();
            std::future::ready(())
        },
    );
    DistributorRole {
        router: distributor.router(),
        otlp_router: distributor.otlp_router(),
    }
}

/// Keeps the count of live distributors, which share each tenant's ingestion rate.
fn count_live_distributors(
    metastore: &Arc<dyn Metastore>,
    limits: &Arc<TenantLimits>,
    stop: &CancellationToken,
) {
    let (metastore, limits) = (Arc::clone(metastore), Arc::clone(limits));
    spawn_every(
        HEARTBEAT_INTERVAL,
        FirstTick::Now,
        stop.clone(),
        move || {
            let (metastore, limits) = (Arc::clone(&metastore), Arc::clone(&limits));
            async move {
                if let Ok(members) = metastore.members(Some(Role::Distributor)).await {
                    limits.set_live_distributors(members.len());
                }
            }
        },
    );
}
