use thiserror::Error;

/// Errors of the metastore.
#[derive(Debug, Error)]
pub enum MetastoreError {
    /// A file of the metastore could not be read or written.
    #[error("metastore storage error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The Raft store failed or Raft stopped.
    #[error("metastore storage error: {0}")]
    Storage(String),
    /// The request was wrong: a bad matcher, block or address.
    #[error("{0}")]
    InvalidArgument(String),
    /// No leader, no quorum, or the metastore cannot be reached: retry later.
    #[error("metastore unavailable: {0}")]
    Unavailable(String),
    /// The caller lacks a credential or a right for the call.
    #[error("refused: {0}")]
    Denied(String),
}

impl MetastoreError {
    /// True when the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<MetastoreError> for tonic::Status {
    fn from(e: MetastoreError) -> Self {
        match &e {
            MetastoreError::InvalidArgument(_) => tonic::Status::invalid_argument(e.to_string()),
            MetastoreError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
            MetastoreError::Denied(_) => tonic::Status::permission_denied(e.to_string()),
            MetastoreError::Io { .. } | MetastoreError::Storage(_) => {
                tonic::Status::internal(e.to_string())
            }
        }
    }
}
