//! The unary Connect protocol as Pyroscope's clients use it: proto or JSON bodies, optional
//! gzip, errors as `{"code": ..., "message": ...}`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use prost::Message;

use crate::RequestError;

/// Serves a request with the gRPC service `grpc` when its Content-Type is `application/grpc*`,
/// and with `connect` otherwise, so that both protocols share one path as in Pyroscope.
pub async fn grpc_or<S, B, F, Fut>(request: Request, grpc: S, connect: F) -> Response
where
    S: tower::Service<Request, Response = http::Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return connect(request).await;
    }
    match tower::ServiceExt::oneshot(grpc, request).await {
        Ok(mut response) => {
            fix_decode_status(response.headers_mut());
            response.map(Body::new)
        }
        Err(never) => match never {},
    }
}

/// tonic reports a request it cannot decode as INTERNAL and one over the size limit as
/// OUT_OF_RANGE; both are the client's doing, so answer INVALID_ARGUMENT and
/// RESOURCE_EXHAUSTED as the protocols' specifications ask. Such errors come before any
/// message, so the status is in the (trailers-only) headers.
fn fix_decode_status(headers: &mut HeaderMap) {
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    // grpc-message is percent-encoded; spaces are all that matter for the prefixes below.
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .replace("%20", " ");
    let code = match status {
        Some("13") if message.starts_with("failed to decode") => tonic::Code::InvalidArgument,
        Some("11") if message.contains("message length too large") => {
            tonic::Code::ResourceExhausted
        }
        _ => return,
    };
    headers.insert("grpc-status", HeaderValue::from(code as i32));
}

/// How a Connect message is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Proto,
    Json,
}

impl Codec {
    /// The codec named by the Content-Type, failing with a clear message for any other type.
    pub fn require(headers: &HeaderMap) -> Result<Self, RequestError> {
        Self::from_headers(headers).ok_or_else(|| {
            RequestError::BadRequest(
                "unsupported Content-Type: use application/proto, application/json or application/grpc"
                    .to_string(),
            )
        })
    }

    /// The codec named by the Content-Type, if it is a unary Connect one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = content_type.split(';').next()?.trim();
        match essence {
            "application/proto" | "application/protobuf" | "application/x-protobuf" => {
                Some(Codec::Proto)
            }
            "application/json" => Some(Codec::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Codec::Proto => "application/proto",
            Codec::Json => "application/json",
        }
    }

    /// Decodes a request message called `full_name`.
    pub fn decode<M: Message + Default>(
        self,
        full_name: &str,
        body: &[u8],
    ) -> Result<M, RequestError> {
        match self {
            Codec::Proto => M::decode(body).map_err(|e| {
                RequestError::BadRequest(format!("malformed {full_name} protobuf: {e}"))
            }),
            Codec::Json => kiln_proto::json::from_json(full_name, body)
                .map_err(|e| RequestError::BadRequest(e.to_string())),
        }
    }

    /// Encodes a response message called `full_name` as a 200 response.
    pub fn respond<M: Message>(self, full_name: &str, message: &M) -> Response {
        let body = match self {
            Codec::Proto => message.encode_to_vec(),
            Codec::Json => match kiln_proto::json::to_json(full_name, message) {
                Ok(body) => body,
                Err(e) => {
                    return error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        &e.to_string(),
                    );
                }
            },
        };
        ([(header::CONTENT_TYPE, self.content_type())], body).into_response()
    }
}

/// After a body went over its limit, at most this much more is read and discarded so that
/// the client, still sending, receives the 413 instead of a reset connection.
const MAX_DRAIN_BYTES: usize = 64 << 20;

/// How long a request body may take to arrive, in milliseconds (`--server.body-read-timeout`).
static BODY_READ_TIMEOUT_MILLIS: AtomicU64 = AtomicU64::new(60_000);

/// Sets how long a request body may take to arrive, for the whole process.
pub fn set_body_read_timeout(timeout: Duration) {
    BODY_READ_TIMEOUT_MILLIS.store(timeout.as_millis() as u64, Ordering::Relaxed);
}

/// Reads a whole request body, failing with 413 past `limit` bytes and with 408 when it takes
/// longer than the body read timeout (a client trickling bytes holds no handler for ever).
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, RequestError> {
    let timeout = Duration::from_millis(BODY_READ_TIMEOUT_MILLIS.load(Ordering::Relaxed));
    tokio::time::timeout(timeout, read_body_within(body, limit))
        .await
        .map_err(|_| RequestError::BodyTimeout { timeout })?
}

async fn read_body_within(mut body: Body, limit: usize) -> Result<Bytes, RequestError> {
    let mut collected = bytes::BytesMut::new();
    let mut drained = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| RequestError::BadRequest(format!("cannot read request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if drained > 0 || collected.len() + data.len() > limit {
            drained += data.len();
            if drained > MAX_DRAIN_BYTES {
                break;
            }
            continue;
        }
        collected.extend_from_slice(&data);
    }
    if drained > 0 {
        return Err(RequestError::BodyTooLarge { limit });
    }
    Ok(collected.freeze())
}

/// Undoes `Content-Encoding` (gzip or identity) within `limit` decompressed bytes.
pub fn decode_content_encoding(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, RequestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => {
            if !body.starts_with(&[0x1f, 0x8b]) {
                return Err(kiln_model::ModelError::Gzip(
                    "Content-Encoding is gzip but the body is not gzip".to_string(),
                )
                .into());
            }
            Ok(kiln_model::decompress(body, limit)?)
        }
        other => Err(RequestError::BadRequest(format!(
            "unsupported Content-Encoding {other:?}: use gzip or identity"
        ))),
    }
}

/// A Connect error response.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The Connect error code for an HTTP status.
pub fn connect_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_argument",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "permission_denied",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => "resource_exhausted",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::REQUEST_TIMEOUT => "deadline_exceeded",
        _ => "internal",
    }
}
