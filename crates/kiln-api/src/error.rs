use http::StatusCode;
use kiln_model::ModelError;
use thiserror::Error;

/// A request that cannot be served as sent.
#[derive(Debug, Error)]
pub enum RequestError {
    /// The request is malformed (parameters, headers, body encoding).
    #[error("{0}")]
    BadRequest(String),
    /// The body exceeds the configured limit.
    #[error("request body exceeds max_body_bytes of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The body did not arrive within the body read timeout.
    #[error("request body not received within --server.body-read-timeout of {timeout:?}")]
    BodyTimeout { timeout: std::time::Duration },
    /// No valid credential (auth on).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential without the right, or for another tenant (auth on).
    #[error("{0}")]
    PermissionDenied(String),
    /// Multitenancy is on and the request names no tenant.
    #[error("no tenant: the X-Scope-OrgID header is required")]
    MissingTenant,
    /// Decoding failed in the model (invalid tenant id, bad gzip, too large once inflated).
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl RequestError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            RequestError::MissingTenant | RequestError::Unauthenticated(_) => {
                StatusCode::UNAUTHORIZED
            }
            RequestError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            RequestError::Model(e) if e.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Model(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A short reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::BadRequest(_) => "bad_request",
            RequestError::BodyTooLarge { .. } => "body_too_large",
            RequestError::BodyTimeout { .. } => "body_timeout",
            RequestError::MissingTenant => "missing_tenant",
            RequestError::Unauthenticated(_) => "unauthenticated",
            RequestError::PermissionDenied(_) => "permission_denied",
            RequestError::Model(e) if e.is_too_large() => "decompressed_too_large",
            RequestError::Model(_) => "invalid_request",
        }
    }
}

/// The gRPC status code that matches an HTTP status.
pub fn grpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
            tonic::Code::ResourceExhausted
        }
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::REQUEST_TIMEOUT => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Internal,
    }
}
