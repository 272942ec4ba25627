use std::time::Duration;

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
    /// The querier runs as many queries as it may (`--querier.max-concurrent`): retry later.
    #[error(
        "querier is running its maximum of {max} concurrent queries (--querier.max-concurrent); retry later"
    )]
    Overloaded { max: usize },
    /// The query ran longer than its deadline (`setting` names where the deadline came from)
    /// and was stopped.
    #[error("query stopped after its timeout of {} ({setting})", humantime::format_duration(*.timeout))]
    Timeout {
        timeout: Duration,
        setting: &'static str,
    },
    /// The query needs more blocks than its tenant's `max_query_blocks`.
    #[error(
        "tenant {tenant}: query would read {blocks} blocks, over max_query_blocks {limit}; narrow the time range or the selector"
    )]
    TooManyBlocks {
        tenant: String,
        blocks: usize,
        limit: usize,
    },
    /// The merge grew past its tenant's `max_query_merge_bytes`.
    #[error(
        "tenant {tenant}: query merge holds about {bytes} bytes, over max_query_merge_bytes {limit}; narrow the time range or the selector"
    )]
    MergeTooLarge {
        tenant: String,
        bytes: usize,
        limit: usize,
    },
    /// A part of the query, run by another querier, went over its tenant's budget there.
    #[error("{0}")]
    PartOverBudget(String),
    /// A part of the query failed on every querier (each failure named).
    #[error("part {start}..{end} of the query failed on every querier: {failures}")]
    PartFailed {
        start: i64,
        end: i64,
        failures: String,
    },
    /// A method Kiln does not implement (it names it).
    #[error("{0} is not implemented by Kiln")]
    Unimplemented(&'static str),
    /// The query was abandoned (its client went away, or it timed out); nobody sees this.
    #[error("query cancelled")]
    Cancelled,
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
            QuerierError::PartFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            QuerierError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            QuerierError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            QuerierError::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
            // The same query will never fit: not 429, which invites a retry.
            QuerierError::TooManyBlocks { .. }
            | QuerierError::MergeTooLarge { .. }
            | QuerierError::PartOverBudget(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // Client Closed Request, as nginx logs it; never sent, as the client is gone.
            QuerierError::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// The Connect error code.
    pub fn connect_code(&self) -> &'static str {
        match self {
            QuerierError::Overloaded { .. }
            | QuerierError::TooManyBlocks { .. }
            | QuerierError::MergeTooLarge { .. }
            | QuerierError::PartOverBudget(_) => "resource_exhausted",
            QuerierError::Timeout { .. } => "deadline_exceeded",
            QuerierError::Unimplemented(_) => "unimplemented",
            QuerierError::Cancelled => "canceled",
            other => kiln_api::connect_code(other.http_status()),
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            QuerierError::Overloaded { .. }
            | QuerierError::TooManyBlocks { .. }
            | QuerierError::MergeTooLarge { .. }
            | QuerierError::PartOverBudget(_) => tonic::Code::ResourceExhausted,
            QuerierError::Timeout { .. } => tonic::Code::DeadlineExceeded,
            QuerierError::Unimplemented(_) => tonic::Code::Unimplemented,
            QuerierError::Cancelled => tonic::Code::Cancelled,
            other => kiln_api::grpc_code(other.http_status()),
        }
    }

    /// The outcome label of `kiln_querier_queries_total`.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            QuerierError::Overloaded { .. } => "overloaded",
            QuerierError::Timeout { .. } => "timeout",
            QuerierError::TooManyBlocks { .. }
            | QuerierError::MergeTooLarge { .. }
            | QuerierError::PartOverBudget(_) => "over_budget",
            QuerierError::Cancelled => "cancelled",
            _ => "error",
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
        tonic::Status::new(error.grpc_code(), error.to_string())
    }
}
