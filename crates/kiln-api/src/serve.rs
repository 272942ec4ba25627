//! Serving a router on a listener: HTTP/1.1 and h2c (or TLS with ALPN), a bounded number of
//! connections, a bounded time for a client to send its request header, idle connections closed,
//! and a graceful shutdown that lets requests in flight finish.
//!
//! Slow clients cost a connection slot each, never a thread: a connection that has not sent a
//! complete request header within the header timeout, or has had no request in flight for the
//! idle timeout, is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS for every connection (with client certificates on the cluster port), or none.
    pub tls: Option<TlsAcceptor>,
    /// Time a new connection has to finish its TLS handshake and first request header; HTTP/1
    /// connections also get it for every later header.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("tls", &self.tls.is_some())
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
        }
    }
}

/// When a connection last did something, and how many of its requests are running.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    /// When the connection should be closed if nothing happens before.
    fn deadline(&self, options: &ServeOptions) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let quiet = if self.served.load(Ordering::SeqCst) == 0 {
            options.header_read_timeout
        } else {
            options.idle_timeout
        };
        Some(*self.last.lock() + quiet)
    }
}

/// Counts a request as in flight until dropped (also when the client goes away mid-request).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.served.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock() = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting and waits for the
/// requests in flight (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(
                limit = options.max_connections,
                "connection refused: --server.max-connections reached"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, options, shutdown) = (router.clone(), options.clone(), shutdown.clone());
        connections.spawn(async move {
            let _slot = slot;
            connection(stream, router, options, shutdown).await;
        });
    }
    while connections.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    router: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    match options.tls.clone() {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(options.header_read_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => http(tls, router, options, shutdown).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
        None => http(stream, router, options, shutdown).await,
    }
}

async fn http<I>(io: I, router: Router, options: ServeOptions, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let in_flight = InFlight::begin(&activity);
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                drop(in_flight);
                response
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = activity.deadline(&options);
        let quiet = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                // A request is running: look again soon.
                None => {
                    tokio::time::sleep(options.header_read_timeout.min(options.idle_timeout)).await
                }
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = quiet => {
                if activity.deadline(&options).is_some_and(|at| at <= Instant::now()) {
                    // Nothing in flight and quiet too long (or no complete header yet): close.
                    return;
                }
            }
        }
    }
}
