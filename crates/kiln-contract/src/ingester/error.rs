use thiserror::Error;

/// Why a push was not acknowledged. None of these lose acknowledged data.
#[derive(Clone, Debug, Error)]
pub enum IngestError {
    /// The buffer is full; the client should retry later.
    #[error("ingester is overloaded: {buffered} samples buffered, limit {limit}; retry later")]
    Overloaded { buffered: usize, limit: usize },
    /// The segment could not be written or registered.
    #[error("segment could not be stored: {0}")]
    Storage(String),
    /// The ingester is shutting down and takes no new pushes.
    #[error("ingester is shutting down")]
    ShuttingDown,
    /// Every ingester that could take the push is overloaded; the client should retry later.
    #[error("ingesters are saturated: {0}; retry later")]
    Saturated(String),
    /// No ingester could be reached, or the one reached failed.
    #[error("ingester unavailable: {0}")]
    Unavailable(String),
    /// The ingester refused the request as malformed (a bug on the sending side).
    #[error("ingester refused the push: {0}")]
    Invalid(String),
}

impl From<IngestError> for tonic::Status {
    fn from(e: IngestError) -> Self {
        match &e {
            IngestError::Overloaded { .. } | IngestError::Saturated(_) => {
                tonic::Status::resource_exhausted(e.to_string())
            }
            IngestError::Invalid(_) => tonic::Status::invalid_argument(e.to_string()),
            IngestError::Storage(_) | IngestError::ShuttingDown | IngestError::Unavailable(_) => {
                tonic::Status::unavailable(e.to_string())
            }
        }
    }
}

impl IngestError {
    /// True when retrying the same push later can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, IngestError::Invalid(_))
    }

    /// True when the ingester was too busy (HTTP 429 rather than 503).
    pub fn is_overload(&self) -> bool {
        matches!(
            self,
            IngestError::Overloaded { .. } | IngestError::Saturated(_)
        )
    }
}
