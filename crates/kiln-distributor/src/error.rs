use http::StatusCode;
use kiln_api::RequestError;
use kiln_contract::ingester::IngestError;
use kiln_model::ModelError;
use thiserror::Error;

/// Why the distributor refused a request.
#[derive(Debug, Error)]
pub enum DistributorError {
    /// The profile or its metadata is invalid.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The ingester did not acknowledge.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The request itself is malformed (parameters, headers, multipart, body encoding).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// Over one of the tenant's limits.
    #[error(transparent)]
    Limit(#[from] crate::LimitError),
    /// A format that Kiln does not accept (yet).
    #[error("unsupported format {0:?}")]
    UnsupportedFormat(String),
}

impl DistributorError {
    /// This error with a limit that decoding or normalization found exceeded turned into
    /// `tenant`'s limit error, so that it names the tenant and counts as a discarded profile.
    pub(crate) fn for_tenant(self, tenant: &str) -> Self {
        match self {
            DistributorError::Model(ModelError::Limit(exceeded)) => {
                crate::LimitError::exceeded(tenant, exceeded).into()
            }
            other => other,
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            DistributorError::Model(e) if e.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
            DistributorError::Model(_) | DistributorError::UnsupportedFormat(_) => {
                StatusCode::BAD_REQUEST
            }
            DistributorError::Request(e) => e.http_status(),
            DistributorError::Ingest(e) if e.is_overload() => StatusCode::TOO_MANY_REQUESTS,
            DistributorError::Limit(e) if e.is_rate_limit() => StatusCode::TOO_MANY_REQUESTS,
            DistributorError::Limit(e) if e.is_too_large() => StatusCode::PAYLOAD_TOO_LARGE,
            DistributorError::Limit(_) => StatusCode::BAD_REQUEST,
            DistributorError::Ingest(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        kiln_api::grpc_code(self.http_status())
    }

    /// A short reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            DistributorError::Model(e) if e.is_too_large() => "decompressed_too_large",
            DistributorError::Model(_) => "invalid_profile",
            DistributorError::Ingest(e) if e.is_overload() => "overloaded",
            DistributorError::Limit(e) => e.reason(),
            DistributorError::Ingest(_) => "ingester_unavailable",
            DistributorError::Request(e) => e.reason(),
            DistributorError::UnsupportedFormat(_) => "unsupported_format",
        }
    }
}

impl From<DistributorError> for tonic::Status {
    fn from(error: DistributorError) -> Self {
        tonic::Status::new(error.grpc_code(), error.to_string())
    }
}
