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
}

impl IngestError {
    /// True when retrying the same push later can succeed.
    pub fn is_retryable(&self) -> bool {
        true
    }
}
