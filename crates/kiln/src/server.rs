//! `kiln server`: builds the roles named by `--target` and serves them until SIGTERM.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use kiln_config::{ServerArgs, Target};
use kiln_distributor::{
    Distributor, DistributorConfig, DistributorMetrics, IngesterRing, TenantLimits,
};
use kiln_ingester::{Ingester, IngesterGrpc, IngesterMetrics, SegmentWriter, SegmentWriterConfig};
use kiln_metastore::{Metastore, MetastoreClient, MetastoreGrpc};
use kiln_objstore::{AzureOptions, GcsOptions, S3Options, StorageOptions};
use kiln_querier::{Querier, QuerierConfig};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::{metastore, telemetry};

pub(crate) fn run(args: ServerArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// State of the operational endpoints (`/ready`, `/metrics`).
#[derive(Clone, Debug)]
struct Ops {
    registry: Arc<Registry>,
    metastore: Arc<dyn Metastore>,
    listening: Arc<AtomicBool>,
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let all_in_one = args.runs(Target::All);
    if args.runs(Target::Compactor) && !all_in_one {
        bail!("--target compactor: the compactor is not part of this version yet");
    }
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

    let mut grpc_routes: Option<tonic::service::Routes> = None;
    let node = if args.runs(Target::Metastore) {
        let node = metastore::start_node(&args, grpc_addr).await?;
        grpc_routes = Some(MetastoreGrpc::routes(Arc::clone(&node)));
        Some(node)
    } else {
        None
    };
    let metastore: Arc<dyn Metastore> = match &node {
        Some(node) => Arc::clone(node) as Arc<dyn Metastore>,
        None => {
            let peers = metastore::resolve_peers(&args.metastore_peers).await?;
            if peers.is_empty() {
                bail!(
                    "--target {:?} without the metastore needs --metastore.peers (the metastore nodes' gRPC addresses)",
                    args.target
                );
            }
            // Long enough to ride out a leader election; short enough that an ingester parks
            // its registrations soon when the metastore is down.
            Arc::new(MetastoreClient::new(peers, Duration::from_secs(4))?)
        }
    };

    let storage = if args.runs(Target::Ingester) || args.runs(Target::Querier) {
        let storage_url = args
            .storage_url()
            .context("cannot resolve the data directory")?;
        let options = StorageOptions {
            s3: S3Options {
                endpoint: args.s3_endpoint.clone(),
                region: args.s3_region.clone(),
                force_path_style: args.s3_force_path_style,
                allow_http: args.s3_allow_http,
                access_key_id: args.s3_access_key_id.clone(),
                secret_access_key: args.s3_secret_access_key.clone(),
            },
            gcs: GcsOptions {
                endpoint: args.gcs_endpoint.clone(),
                service_account_path: args.gcs_service_account_path.clone(),
            },
            azure: AzureOptions {
                account: args.azure_account.clone(),
                access_key: args.azure_access_key.clone(),
                endpoint: args.azure_endpoint.clone(),
                use_emulator: args.azure_use_emulator,
            },
        };
        tracing::info!(storage = %storage_url, "object storage opened");
        Some(kiln_objstore::open(&storage_url, &options)?)
    } else {
        None
    };

    let mut app = Router::new();
    let mut listeners = Vec::new();
    let mut ingester = None;
    if let Some(storage) = storage.as_ref().filter(|_| args.runs(Target::Ingester)) {
        let writer = SegmentWriter::start(
            SegmentWriterConfig {
                flush_interval: args.ingester_flush_interval,
                max_buffered_samples: args.ingester_max_buffered_samples,
                ..SegmentWriterConfig::default()
            },
            storage.clone(),
            Arc::clone(&metastore),
            IngesterMetrics::new(&mut registry),
        );
        let service = IngesterGrpc::server(Arc::clone(&writer) as Arc<dyn Ingester>);
        grpc_routes = Some(match grpc_routes {
            Some(routes) => routes.add_service(service),
            None => tonic::service::Routes::new(service),
        });
        kiln_ingester::recovery::spawn_sweeper(
            storage.clone(),
            Arc::clone(&metastore),
            Duration::from_secs(5),
            shutdown.clone(),
        );
        spawn_heartbeat(&metastore, "ingester", &advertise_addr, &shutdown);
        ingester = Some(writer);
    }
    if args.runs(Target::Distributor) {
        let target: Arc<dyn Ingester> = match &ingester {
            Some(writer) => Arc::clone(writer) as Arc<dyn Ingester>,
            None => IngesterRing::start(
                Arc::clone(&metastore),
                args.distributor_ingester_timeout,
                shutdown.clone(),
            ),
        };
        let limits = TenantLimits::new(args.limits.clone());
        if let Some(path) = &args.runtime_config {
            limits
                .watch(
                    path.clone(),
                    args.runtime_config_reload_period,
                    shutdown.clone(),
                )
                .map_err(anyhow::Error::msg)?;
        }
        if !all_in_one {
            spawn_distributor_count(&metastore, &limits, &shutdown);
        }
        let distributor = Distributor::new(
            DistributorConfig {
                max_body_bytes: args.limits.max_body_bytes,
                max_decompressed_bytes: args.limits.max_decompressed_bytes,
                multitenancy_enabled: args.multitenancy_enabled,
                limits,
            },
            target,
            DistributorMetrics::new(&mut registry),
        );
        app = app.merge(distributor.router());
        for (name, addr) in [
            ("otlp-grpc", args.otlp_grpc_addr),
            ("otlp-http", args.otlp_http_addr),
        ] {
            listeners.push((name, bind(name, addr).await?, distributor.otlp_router()));
        }
    }
    if let Some(storage) = storage.filter(|_| args.runs(Target::Querier)) {
        let querier = Querier::new(
            QuerierConfig {
                max_nodes_default: args.querier_max_flamegraph_nodes,
                cache_bytes: args.querier_cache_bytes as u64,
                multitenancy_enabled: args.multitenancy_enabled,
            },
            Arc::clone(&metastore),
            storage,
        );
        app = app.merge(querier.router());
    }
    if let (Some(listener), Some(routes)) = (grpc_listener, grpc_routes) {
        listeners.push(("grpc", listener, routes.into_axum_router()));
    }

    let ops = Ops {
        registry: Arc::new(registry),
        metastore: Arc::clone(&metastore),
        listening: Arc::new(AtomicBool::new(false)),
    };
    let app = Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(ops.clone())
        .merge(app);
    // Bound last: once it answers, every other listener is up.
    listeners.push(("http", bind("http", args.http_addr).await?, app));
    for role in [Target::Distributor, Target::Querier] {
        if args.runs(role) && !all_in_one {
            let name = format!("{role:?}").to_lowercase();
            let addr = listeners.last().expect("http").1.local_addr()?.to_string();
            spawn_heartbeat(&metastore, &name, &addr, &shutdown);
        }
    }
    ops.listening.store(true, Ordering::SeqCst);
    tracing::info!(targets = ?args.target, "kiln is serving");

    let draining = ingester.clone();
    let http_shutdown = CancellationToken::new();
    let http_stop = http_shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        if let Some(ingester) = draining {
            ingester.begin_drain();
        }
        http_stop.cancel();
    });
    let servers = listeners.into_iter().map(|(_, listener, router)| {
        let listener = listener.tap_io(|tcp| {
            // gRPC and small query answers must not wait for Nagle's algorithm.
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(http_shutdown.clone().cancelled_owned())
            .into_future()
    });
    let serving = futures::future::try_join_all(servers);
    // Pushes in flight finish quickly once the ingester drains; a long query whose client is
    // gone must not keep the process alive forever.
    let deadline = args.shutdown_timeout;
    let overdue = async {
        http_shutdown.cancelled().await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        served = serving => {
            served.context("http server failed")?;
            tracing::info!("requests drained");
        }
        () = overdue => {
            tracing::warn!(timeout = ?deadline, "requests still in flight at the shutdown timeout; exiting");
        }
    }
    if let Some(ingester) = ingester {
        tracing::info!("flushing the ingester");
        ingester.shutdown().await;
    }
    shutdown.cancel();
    if let Some(node) = node {
        node.shutdown().await;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Announces `role` at `addr` to the metastore every two seconds until shutdown.
fn spawn_heartbeat(
    metastore: &Arc<dyn Metastore>,
    role: &str,
    addr: &str,
    shutdown: &CancellationToken,
) {
    let (metastore, role, addr, stop) = (
        Arc::clone(metastore),
        role.to_string(),
        addr.to_string(),
        shutdown.clone(),
    );
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(e) = metastore.heartbeat(&role, &addr).await {
                tracing::warn!(role, error = %e, "heartbeat to the metastore failed");
            }
        }
    });
}

/// Keeps the count of live distributors, which share each tenant's ingestion rate.
fn spawn_distributor_count(
    metastore: &Arc<dyn Metastore>,
    limits: &Arc<TenantLimits>,
    shutdown: &CancellationToken,
) {
    let (metastore, limits, stop) = (Arc::clone(metastore), Arc::clone(limits), shutdown.clone());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Ok(members) = metastore.members(Some("distributor")).await {
                limits.set_live_distributors(members.len());
            }
        }
    });
}

/// How often roles announce themselves; the metastore forgets them after five missed beats.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

async fn bind(name: &str, addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on the {name} address {addr}"))?;
    tracing::info!(listener = name, addr = %listener.local_addr()?, "listener bound");
    Ok(listener)
}

async fn ready(State(ops): State<Ops>) -> impl IntoResponse {
    if !ops.listening.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: listeners are not up\n",
        );
    }
    if !ops.metastore.is_ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: metastore unavailable\n",
        );
    }
    (StatusCode::OK, "ready\n")
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &ops.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        );
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
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
