use thiserror::Error;

/// Why a part of a query has no result.
#[derive(Clone, Debug, Error)]
pub enum PartError {
    /// The part is over a query budget of its tenant (blocks, merge memory): it would be on
    /// any querier, so the query fails with this message.
    #[error("{0}")]
    OverBudget(String),
    /// The querier cannot read the request (a bug on the sending side): the query fails.
    #[error("{0}")]
    Invalid(String),
    /// The querier could not be reached or failed (storage, shutdown); another may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl PartError {
    /// True when another querier may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PartError::Unavailable(_))
    }
}

impl From<PartError> for tonic::Status {
    fn from(e: PartError) -> Self {
        match e {
            PartError::OverBudget(message) => tonic::Status::resource_exhausted(message),
            PartError::Invalid(message) => tonic::Status::invalid_argument(message),
            PartError::Unavailable(message) => tonic::Status::unavailable(message),
        }
    }
}
