//! `kiln server`: builds the roles named by `--target` and serves them until SIGTERM.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kiln_config::{ServerArgs, Target};
use kiln_distributor::{Distributor, DistributorConfig, DistributorMetrics};
use kiln_ingester::{IngesterMetrics, SegmentWriter, SegmentWriterConfig};
use kiln_metastore::{Metastore, MetastoreGrpc};
use kiln_objstore::S3Options;
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
    let all_roles = [
        Target::Distributor,
        Target::Ingester,
        Target::Metastore,
        Target::Querier,
        Target::Compactor,
    ];
    let all_in_one = all_roles.iter().all(|&role| args.runs(role));
    let metastore_only = args.target == [Target::Metastore];
    if !all_in_one && !metastore_only {
        bail!(
            "--target {:?}: this version runs every role in one process (--target all) or the \
             metastore alone (--target metastore); the other roles alone need the distributed \
             write path",
            args.target
        );
    }

    let grpc_listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on the grpc address {}", args.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    tracing::info!(listener = "grpc", addr = %grpc_addr, "listener bound");
    let node = metastore::start_node(&args, grpc_addr).await?;
    let metastore: Arc<dyn Metastore> = Arc::clone(&node) as Arc<dyn Metastore>;

    let mut registry = Registry::default();
    let mut app = Router::new();
    let mut listeners = vec![(
        "grpc",
        grpc_listener,
        MetastoreGrpc::routes(Arc::clone(&node)).into_axum_router(),
    )];
    let mut ingester = None;
    if all_in_one {
        let storage_url = args
            .storage_url()
            .context("cannot resolve the data directory")?;
        let s3 = S3Options {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            force_path_style: args.s3_force_path_style,
            allow_http: args.s3_allow_http,
            access_key_id: args.s3_access_key_id.clone(),
            secret_access_key: args.s3_secret_access_key.clone(),
        };
        let storage = kiln_objstore::open(&storage_url, &s3)?;
        let writer = SegmentWriter::start(
            SegmentWriterConfig {
                flush_interval: args.ingester_flush_interval,
                ..SegmentWriterConfig::default()
            },
            storage.clone(),
            Arc::clone(&metastore),
            IngesterMetrics::new(&mut registry),
        );
        let querier = Querier::new(
            QuerierConfig {
                max_nodes_default: args.querier_max_flamegraph_nodes,
                cache_bytes: args.querier_cache_bytes as u64,
                multitenancy_enabled: args.multitenancy_enabled,
            },
            Arc::clone(&metastore),
            storage,
        );
        let distributor = Distributor::new(
            DistributorConfig {
                max_body_bytes: args.max_body_bytes,
                max_decompressed_bytes: args.max_decompressed_bytes,
                multitenancy_enabled: args.multitenancy_enabled,
            },
            Arc::clone(&writer) as Arc<dyn kiln_ingester::Ingester>,
            DistributorMetrics::new(&mut registry),
        );
        app = app.merge(distributor.router()).merge(querier.router());
        for (name, addr) in [
            ("otlp-grpc", args.otlp_grpc_addr),
            ("otlp-http", args.otlp_http_addr),
        ] {
            listeners.push((name, bind(name, addr).await?, distributor.otlp_router()));
        }
        tracing::info!(storage = %storage_url, "object storage opened");
        ingester = Some(writer);
    }

    let ops = Ops {
        registry: Arc::new(registry),
        metastore,
        listening: Arc::new(AtomicBool::new(false)),
    };
    let app = Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(ops.clone())
        .merge(app);
    listeners.insert(1, ("http", bind("http", args.http_addr).await?, app));
    ops.listening.store(true, Ordering::SeqCst);
    tracing::info!(targets = ?args.target, "kiln is serving");

    let shutdown = CancellationToken::new();
    let draining = ingester.clone();
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        if let Some(ingester) = draining {
            ingester.begin_drain();
        }
        signalled.cancel();
    });
    let servers = listeners.into_iter().map(|(_, listener, router)| {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future()
    });
    let serving = futures::future::try_join_all(servers);
    // Pushes in flight finish quickly once the ingester drains; a long query whose client is
    // gone must not keep the process alive forever.
    let deadline = args.shutdown_timeout;
    let overdue = async {
        shutdown.cancelled().await;
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
    node.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

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
