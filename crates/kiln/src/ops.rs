//! The operational endpoints every process serves: `/ready` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kiln_contract::metastore::Metastore;
use prometheus_client::registry::Registry;

/// State of the operational endpoints.
#[derive(Clone, Debug)]
pub(crate) struct Ops {
    registry: Arc<Registry>,
    metastore: Arc<dyn Metastore>,
    listening: Arc<AtomicBool>,
}

impl Ops {
    /// Endpoints over `registry`'s metrics; ready once [`Ops::set_listening`] was called and the
    /// metastore can serve.
    pub(crate) fn new(registry: Registry, metastore: Arc<dyn Metastore>) -> Self {
        Self {
            registry: Arc::new(registry),
            metastore,
            listening: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks every listener as bound.
    pub(crate) fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// `/ready` and `/metrics`.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
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
