//! `kiln server`: starts the roles named by `--target` (one module each in `roles/`) and serves
//! them until SIGTERM.

use std::future::IntoFuture;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use kiln_compactor::CompactorMetrics;
use kiln_config::{ServerArgs, Target};
use kiln_contract::Role;
use kiln_runtime::TenantOverrides;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ops::Ops;
use crate::roles::{compactor, distributor, heartbeat, ingester, metastore, querier, storage};
use crate::telemetry;

pub(crate) fn run(args: ServerArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// A bound listener and what it serves.
type Listener = (&'static str, TcpListener, Router);

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();

    // The gRPC listener serves the metastore's and the ingester's services.
    let grpc_listener = if args.runs(Target::Metastore) || args.runs(Target::Ingester) {
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

    let metastore = metastore::start(&args, grpc_addr).await?;
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
    let mut grpc_routes = metastore.routes();
    let storage = if [Target::Ingester, Target::Querier, Target::Compactor]
        .into_iter()
        .any(|t| args.runs(t))
    {
        Some(storage::open(&args)?)
    } else {
        None
    };

    let mut app = Router::new();
    let mut listeners: Vec<Listener> = Vec::new();
    let ingester = match storage.as_ref().filter(|_| args.runs(Target::Ingester)) {
        Some(storage) => {
            let role = ingester::start(
                &args,
                storage,
                &metastore.handle,
                &advertise_addr,
                &mut registry,
                &shutdown,
            );
            grpc_routes = Some(match grpc_routes {
                Some(routes) => routes.add_service(role.service()),
                None => tonic::service::Routes::new(role.service()),
            });
            Some(role)
        }
        None => None,
    };
    if args.runs(Target::Distributor) {
        let role = distributor::start(
            &args,
            ingester.as_ref(),
            &metastore.handle,
            &overrides,
            &mut registry,
            &shutdown,
        );
        app = app.merge(role.router);
        for (name, addr) in [
            ("otlp-grpc", args.otlp_grpc_addr),
            ("otlp-http", args.otlp_http_addr),
        ] {
            listeners.push((name, bind(name, addr).await?, role.otlp_router.clone()));
        }
    }
    if let Some(storage) = storage.as_ref().filter(|_| args.runs(Target::Querier)) {
        app = app.merge(querier::start(
            &args,
            storage.clone(),
            &metastore.handle,
            &overrides,
            &mut registry,
        ));
    }
    if let (Some(listener), Some(routes)) = (grpc_listener, grpc_routes) {
        listeners.push(("grpc", listener, routes.into_axum_router()));
    }

    let compactor_metrics = args
        .runs(Target::Compactor)
        .then(|| CompactorMetrics::new(&mut registry));
    let ops = Ops::new(registry, std::sync::Arc::clone(&metastore.handle));
    let app = ops.router().merge(app);
    // Bound last: once it answers, every other listener is up.
    let http = bind("http", args.http_addr).await?;
    let http_addr = http.local_addr()?.to_string();
    listeners.push(("http", http, app));
    // All-in-one is alone in its cluster: nobody needs to find its distributor or querier.
    if !args.runs(Target::All) {
        for (target, role) in [
            (Target::Distributor, Role::Distributor),
            (Target::Querier, Role::Querier),
        ] {
            if args.runs(target) {
                heartbeat::spawn(&metastore.handle, role, &http_addr, &shutdown);
            }
        }
    }
    // The compactor is known by its HTTP address; it stops with `compaction_stop`, once the
    // listeners drained.
    let compaction_stop = CancellationToken::new();
    let compactor = match (storage.as_ref(), compactor_metrics) {
        (Some(storage), Some(metrics)) => Some(compactor::start(
            &args,
            &http_addr,
            storage,
            &metastore.handle,
            &overrides,
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
    let servers = listeners.into_iter().map(|(_, listener, router)| {
        let listener = listener.tap_io(|tcp| {
            // gRPC and small query answers must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router.layer(crate::panics::catch_panics()))
            .with_graceful_shutdown(http_shutdown.clone().cancelled_owned())
            .into_future()
    });
    let serving = futures::future::try_join_all(servers);
    // Pushes in flight finish quickly once the ingester drains; a long query whose client is
    // gone must not keep the process alive forever.
    let overdue = async {
        http_shutdown.cancelled().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        served = serving => {
            served.context("http server failed")?;
            tracing::info!("requests drained");
        }
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
