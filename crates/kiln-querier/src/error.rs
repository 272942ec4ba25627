use http::StatusCode;
use kiln_api::RequestError;
use thiserror::Error;

/// Why a query failed.
#[derive(Debug, Error)]
pub enum QuerierError {
    /// The query is malformed (selector, profile type, time range, parameters).
    #[error("{0}")]
    BadRequest(String),
    /// The request could not be read (body, encoding, tenant).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The block index could not be consulted.
    #[error("metastore error: {0}")]
    Metastore(#[from] kiln_contract::metastore::MetastoreError),
    /// A block could not be read from object storage or decoded.
    #[error(
        "cannot read block {block}: {reason} (if its object is lost, `kiln admin blocks remove {block}` takes it out of the index)"
    )]
    Block { block: String, reason: String },
    /// A bug: a merge or load task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QuerierError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            QuerierError::BadRequest(_) => StatusCode::BAD_REQUEST,
            QuerierError::Request(e) => e.http_status(),
            QuerierError::Metastore(_) => StatusCode::SERVICE_UNAVAILABLE,
            QuerierError::Block { .. } | QuerierError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl From<kiln_model::ModelError> for QuerierError {
    fn from(error: kiln_model::ModelError) -> Self {
        QuerierError::BadRequest(error.to_string())
    }
}

impl From<QuerierError> for tonic::Status {
    fn from(error: QuerierError) -> Self {
        tonic::Status::new(kiln_api::grpc_code(error.http_status()), error.to_string())
    }
}
