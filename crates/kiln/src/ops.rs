//! The operational endpoints every process serves: `/ready` and `/metrics`.
//!
//! `/ready` answers 200 only while the process can work: its listeners are bound, the metastore
//! can serve, and every loop its roles cannot work without (the ingester's flush loop, the
//! compactor's poll loop) still runs. A loop that ended — a panic, or an error that ended it —
//! turns the process unready, so that a load balancer stops sending it work and an orchestrator
//! restarts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kiln_contract::metastore::Metastore;
use prometheus_client::registry::Registry;

/// Tells whether a watched loop still runs.
type Alive = Arc<dyn Fn() -> bool + Send + Sync>;

/// State of the operational endpoints.
#[derive(Clone)]
pub(crate) struct Ops {
    registry: Arc<Registry>,
    metastore: Arc<dyn Metastore>,
    listening: Arc<AtomicBool>,
    /// The loops the process cannot work without, by what they are.
    loops: Arc<RwLock<Vec<(&'static str, Alive)>>>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loops: Vec<&str> = self.loops.read().iter().map(|(what, _)| *what).collect();
        f.debug_struct("Ops")
            .field("listening", &self.listening)
            .field("loops", &loops)
            .finish_non_exhaustive()
    }
}

impl Ops {
    /// Endpoints over `registry`'s metrics; ready once [`Ops::set_listening`] was called and the
    /// metastore can serve.
    pub(crate) fn new(registry: Registry, metastore: Arc<dyn Metastore>) -> Self {
        Self {
            registry: Arc::new(registry),
            metastore,
            listening: Arc::new(AtomicBool::new(false)),
            loops: Arc::default(),
        }
    }

    /// Watches a loop named `what` (`the ingester's flush loop`): once `alive` answers false,
    /// `/ready` answers 503 naming it.
    pub(crate) fn watch(
        &self,
        what: &'static str,
        alive: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        self.loops.write().push((what, Arc::new(alive)));
    }

    /// The first watched loop that stopped, if any.
    fn stopped_loop(&self) -> Option<&'static str> {
        self.loops
            .read()
            .iter()
            .find(|(_, alive)| !alive())
            .map(|(what, _)| *what)
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
            "not ready: listeners are not up\n".to_string(),
        );
    }
    if let Some(what) = ops.stopped_loop() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {what} stopped\n"),
        );
    }
    if !ops.metastore.is_ready().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: metastore unavailable\n".to_string(),
        );
    }
    (StatusCode::OK, "ready\n".to_string())
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

#[cfg(test)]
mod tests {
    use kiln_metastore::{MetastoreNode, NodeConfig};

    use super::*;

    async fn ready_answer(client: &reqwest::Client, addr: std::net::SocketAddr) -> (u16, String) {
        let response = client
            .get(format!("http://{addr}/ready"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    #[tokio::test]
    async fn ready_turns_503_when_a_watched_loop_ends() {
        let dir = tempfile::tempdir().unwrap();
        let node = MetastoreNode::start(NodeConfig::single(dir.path(), "127.0.0.1:1"))
            .await
            .unwrap();
        let ops = Ops::new(Registry::default(), node as Arc<dyn Metastore>);
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        // A loop that panics once told to, as a flush loop with a bug would.
        let flush_loop = tokio::spawn(async move {
            finished.await.ok();
            panic!("the flush loop hit a bug");
        });
        let watched = flush_loop.abort_handle();
        ops.watch("the test's flush loop", move || !watched.is_finished());
        ops.set_listening();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, ops.router()).await });
        let client = reqwest::Client::new();
        // The single node elects itself; until then the metastore is the reason.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while ready_answer(&client, addr).await.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        finish.send(()).unwrap();
        assert!(flush_loop.await.unwrap_err().is_panic());
        assert_eq!(
            ready_answer(&client, addr).await,
            (
                503,
                "not ready: the test's flush loop stopped\n".to_string()
            )
        );
    }
}
