//! `kiln server`: starts the roles named by `--target` (one module each in `roles/`) and serves
//! them until SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use kiln_api::ServeOptions;
use kiln_compactor::CompactorMetrics;
use kiln_config::{ServerArgs, Target};
use kiln_contract::{ChannelPool, Role};
use kiln_objstore::StoreMetrics;
use kiln_runtime::TenantOverrides;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ops::Ops;
use crate::roles::{
    Shared, compactor, distributor, heartbeat, ingester, metastore, querier, storage,
};
use crate::security::{self, Transport};
use crate::telemetry;

pub(crate) fn run(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln")
        .build()
        .context("cannot start the async runtime")?;
    let telemetry = {
        let _runtime = runtime.enter();
        telemetry::init(&args)?
    };
    let served = runtime.block_on(serve(args, &telemetry));
    telemetry.shutdown();
    served
}

/// A bound listener, what it serves, and how.
type Listener = (&'static str, TcpListener, Router, ServeOptions);

async fn serve(args: ServerArgs, telemetry: &telemetry::Telemetry) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    metastore::check_peers(&args)?;
    let transport = security::transport(&args, &shutdown)?;
    let all_in_one = args.runs(Target::All);

    // The gRPC listener: the cluster port of metastore nodes, ingesters and queriers; in
    // all-in-one mode only the admin API (`kiln admin`), as nothing else calls in.
    let grpc_listener = if args.runs(Target::Metastore)
        || args.runs(Target::Ingester)
        || args.runs(Target::Querier)
    {
        Some(bind("grpc", args.grpc_addr).await?)
    } else {
        None
    };
    let grpc_addr = match &grpc_listener {
        Some(listener) => listener.local_addr()?,
        None => args.grpc_addr,
    };
    let advertise_addr = args
        .advertise_addr
        .clone()
        .unwrap_or_else(|| grpc_addr.to_string());

    let metastore = metastore::start(&args, grpc_addr, transport.cluster_tls.clone()).await?;
    metastore.report_metrics(&mut registry, &shutdown);
    // Per-tenant limits and retention, shared by the roles that apply them.
    let overrides = TenantOverrides::new(args.limits.clone());
    if let Some(path) = &args.runtime_config {
        overrides
            .watch(
                path.clone(),
                args.runtime_config_reload_period,
                shutdown.clone(),
            )
            .map_err(anyhow::Error::msg)?;
    }
    let shared = Shared {
        metastore: Arc::clone(&metastore.handle),
        overrides,
        auth: Arc::clone(&transport.auth),
        cluster: ChannelPool::with_tls(transport.cluster_tls.clone()),
        stop: shutdown.clone(),
    };
    // All-in-one mode makes no cross-role call over the network, so its gRPC port serves only
    // the admin API, unless the operator opened it to other processes that join it (an extra
    // querier, say) by giving it cluster TLS or --cluster.insecure.
    let serves_members =
        !all_in_one || transport.cluster_tls.is_some() || args.security.cluster_insecure;
    let mut grpc_routes = if serves_members {
        metastore.member_routes()
    } else {
        metastore.admin_routes()
    };
    let storage = if [Target::Ingester, Target::Querier, Target::Compactor]
        .into_iter()
        .any(|t| args.runs(t))
    {
        Some(storage::open(&args)?.metered(StoreMetrics::new(&mut registry)))
    } else {
        None
    };

    let mut app = Router::new();
    let mut listeners: Vec<Listener> = Vec::new();
    let ingester = match storage.as_ref().filter(|_| args.runs(Target::Ingester)) {
        Some(storage) => {
            let role = ingester::start(&args, &shared, storage, &advertise_addr, &mut registry);
            // All-in-one pushes in process: nobody else calls the ingester's service.
            if serves_members {
                let service = role.service(args.limits.max_decompressed_bytes.saturating_mul(2));
                grpc_routes = Some(match grpc_routes {
                    Some(routes) => routes.add_service(service),
                    None => tonic::service::Routes::new(service),
                });
            }
            Some(role)
        }
        None => None,
    };
    if args.runs(Target::Distributor) {
        let role = distributor::start(&args, &shared, ingester.as_ref(), &mut registry);
        app = app.merge(role.router);
        for (name, addr) in [
            ("otlp-grpc", args.otlp_grpc_addr),
            ("otlp-http", args.otlp_http_addr),
        ] {
            let router = guarded(role.otlp_router.clone(), &transport);
            listeners.push((
                name,
                bind(name, addr).await?,
                router,
                transport.public.clone(),
            ));
        }
    }
    if let Some(storage) = storage.as_ref().filter(|_| args.runs(Target::Querier)) {
        let role = querier::start(
            &args,
            &shared,
            storage.clone(),
            &advertise_addr,
            &mut registry,
        );
        app = app.merge(role.router);
        // All-in-one runs every part of its queries itself.
        if serves_members {
            grpc_routes = Some(match grpc_routes {
                Some(routes) => routes.add_service(role.part_service),
                None => tonic::service::Routes::new(role.part_service),
            });
        }
    }
    if let (Some(listener), Some(routes)) = (grpc_listener, grpc_routes) {
        let mut router = routes.into_axum_router();
        if all_in_one {
            // No cluster certificate vouches for callers here: the admin API needs `admin`.
            router = router.route_layer(kiln_api::require(
                Arc::clone(&transport.auth),
                kiln_api::Right::Admin,
            ));
        }
        listeners.push(("grpc", listener, router, transport.cluster.clone()));
    }

    let compactor_metrics = args
        .runs(Target::Compactor)
        .then(|| CompactorMetrics::new(&mut registry));
    let ops = Ops::new(registry, Arc::clone(&metastore.handle));
    let app = ops.router().merge(guarded(app, &transport));
    // Bound last: once it answers, every other listener is up.
    let http = bind("http", args.http_addr).await?;
    let http_addr = http.local_addr()?.to_string();
    listeners.push(("http", http, app, transport.public.clone()));
    // All-in-one is alone in its cluster: nobody needs to find its distributor or querier.
    // Queriers are found at their cluster address, where they run parts for each other.
    if !all_in_one {
        if args.runs(Target::Distributor) {
            heartbeat::spawn(&metastore.handle, Role::Distributor, &http_addr, &shutdown);
        }
        if args.runs(Target::Querier) {
            heartbeat::spawn(&metastore.handle, Role::Querier, &advertise_addr, &shutdown);
        }
    }
    // The compactor is known by its HTTP address; it stops with `compaction_stop`, once the
    // listeners drained.
    let compaction_stop = CancellationToken::new();
    let compactor = match (storage.as_ref(), compactor_metrics) {
        (Some(storage), Some(metrics)) => Some(compactor::start(
            &args,
            &shared,
            &http_addr,
            storage,
            metrics,
            &compaction_stop,
        )),
        _ => None,
    };
    // The loops the roles cannot work without: /ready turns 503 when one ends.
    if let Some(ingester) = &ingester {
        let writer = std::sync::Arc::clone(&ingester.writer);
        ops.watch("the ingester's flush loop", move || writer.is_flushing());
    }
    if let Some(compactor) = &compactor {
        ops.watch("the compactor's poll loop", compactor.poll_loop_alive());
    }
    ops.set_listening();
    tracing::info!(targets = %metastore::targets(&args.target), "kiln is serving");

    let listeners = listeners
        .into_iter()
        .map(|(name, listener, router, options)| {
            (
                name,
                listener,
                telemetry::traced(router, telemetry),
                options,
            )
        })
        .collect();
    serve_until_signal(listeners, ingester.as_ref(), args.shutdown_timeout).await?;
    if let Some(ingester) = ingester {
        tracing::info!("flushing the ingester");
        ingester.writer.shutdown().await;
    }
    compaction_stop.cancel();
    if let Some(compactor) = compactor {
        compactor.stopped().await;
    }
    shutdown.cancel();
    metastore.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// `router` behind the process's bound on request bytes in flight.
fn guarded(router: Router, transport: &Transport) -> Router {
    let inflight = transport.inflight.clone();
    router.layer(axum::middleware::from_fn(move |request, next| {
        inflight.clone().limit(request, next)
    }))
}

/// Serves every listener until SIGTERM or Ctrl-C, then stops accepting connections and waits for
/// the requests in flight, at most `shutdown_timeout`. A draining ingester flushes each push at
/// once, so pushes in flight are acknowledged without waiting for the flush interval.
async fn serve_until_signal(
    listeners: Vec<Listener>,
    ingester: Option<&ingester::IngesterRole>,
    shutdown_timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let draining = ingester.map(|role| std::sync::Arc::clone(&role.writer));
    let http_shutdown = CancellationToken::new();
    let http_stop = http_shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        if let Some(writer) = draining {
            writer.begin_drain();
        }
        http_stop.cancel();
    });
    let servers = listeners.into_iter().map(|(_, listener, router, options)| {
        kiln_api::serve(
            listener,
            router.layer(crate::panics::catch_panics()),
            options,
            http_shutdown.clone(),
        )
    });
    let serving = futures::future::join_all(servers);
    // Pushes in flight finish quickly once the ingester drains; a long query whose client is
    // gone must not keep the process alive forever.
    let overdue = async {
        http_shutdown.cancelled().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        _ = serving => tracing::info!("requests drained"),
        () = overdue => {
            tracing::warn!(timeout = ?shutdown_timeout, "requests still in flight at the shutdown timeout; exiting");
        }
    }
    Ok(())
}

async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on the {name} address {addr}"))?;
    tracing::info!(listener = name, addr = %listener.local_addr()?, "listener bound");
    Ok(listener)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; draining requests in flight");
}
