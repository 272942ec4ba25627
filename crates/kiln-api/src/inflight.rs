//! A bound on request body bytes held at once by one process (`--server.max-inflight-bytes`):
//! many large pushes at the same time wait briefly for room, then get 503 with `Retry-After: 1`,
//! instead of growing memory until the process dies.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{StatusCode, header};
use tokio::sync::Semaphore;

/// How long a request waits for room before it is refused.
const WAIT: Duration = Duration::from_secs(2);

/// What a request of unknown length (chunked) is charged: bodies are read up to their limit,
/// so a stream without Content-Length counts as this much until it is read.
const UNKNOWN_LENGTH_CHARGE: u64 = 1 << 20;

/// The process's budget of request body bytes in flight.
#[derive(Clone, Debug)]
pub struct InFlightBytes {
    budget: Arc<Semaphore>,
    /// The semaphore's permits: the budget in units of 1 KiB.
    units: u32,
    limit: u64,
}

impl InFlightBytes {
    /// A budget of `limit` bytes (at least one byte; semaphores count in u32 steps of 1 KiB).
    pub fn new(limit: usize) -> Self {
        // At most u32::MAX / 2 units, so that every request's charge fits a u32 acquire.
        let units = (limit as u64 / 1024).clamp(1, u64::from(u32::MAX) / 2) as u32;
        Self {
            budget: Arc::new(Semaphore::new(units as usize)),
            units,
            limit: limit as u64,
        }
    }

    /// Middleware: holds the request's bytes of the budget until its response is ready.
    pub async fn limit(self, request: Request, next: Next) -> Response {
        let length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(UNKNOWN_LENGTH_CHARGE);
        if length == 0 {
            return next.run(request).await;
        }
        // Never more than the whole budget: a larger charge could not be granted at all.
        let units = u32::try_from(length / 1024)
            .unwrap_or(u32::MAX)
            .clamp(1, self.units);
        let permit = tokio::time::timeout(WAIT, self.budget.acquire_many_owned(units)).await;
        let Ok(Ok(_permit)) = permit else {
            let message = format!(
                "server busy: request bodies in flight would exceed --server.max-inflight-bytes of {} bytes; retry later",
                self.limit
            );
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let mut response = crate::refusal_message(request.headers(), status, &message);
            // Room frees as soon as bodies in flight are read: tell clients to come back soon.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            return response;
        };
        next.run(request).await
    }
}
