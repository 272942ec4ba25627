//! What goes wrong with a SQL query, and the HTTP status of each.

use axum::http::StatusCode;
use datafusion::common::DataFusionError;
use kiln_querier::QuerierError;

/// Why a SQL query was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement is not a read-only query (DDL, DML, COPY, SET...).
    #[error("only queries are allowed: {0}")]
    NotAQuery(String),
    /// The samples table was read without a lower bound on `time`.
    #[error(
        "a time range is required: add WHERE time >= <start> (for example time >= now() - interval '1 hour'); the end defaults to now"
    )]
    NoTimeRange,
    /// More rows than `--sql.max-rows`.
    #[error("the result has more than {limit} rows (--sql.max-rows): aggregate, or add LIMIT")]
    TooManyRows {
        /// The limit.
        limit: usize,
    },
    /// The query does not parse, names what does not exist, or fails to plan or run.
    #[error("{0}")]
    Query(String),
    /// The query's memory is over `--sql.memory-bytes`.
    #[error(
        "the query needs more memory than --sql.memory-bytes allows ({0}): aggregate to fewer groups, read a shorter range, or add LIMIT"
    )]
    Memory(String),
    /// Reading the profiles failed or was refused (over a limit of the tenant, overloaded).
    #[error("{message}")]
    Read {
        /// The querier's status for it.
        status: StatusCode,
        /// The querier's message.
        message: String,
    },
}

impl SqlError {
    /// The HTTP status of the answer.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::Read { status, .. } => *status,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::External(inner) => {
                if let Some(sql) = inner.downcast_ref::<SqlError>() {
                    return match sql {
                        Self::NoTimeRange => Self::NoTimeRange,
                        Self::Read { status, message } => Self::Read {
                            status: *status,
                            message: message.clone(),
                        },
                        other => Self::Query(other.to_string()),
                    };
                }
                Self::Query(inner.to_string())
            }
            DataFusionError::ResourcesExhausted(message) => Self::Memory(
                // DataFusion lists every consumer; the last line says what did not fit.
                message
                    .lines()
                    .rev()
                    .find_map(|line| line.split_once("Failed to allocate additional "))
                    .map(|(_, rest)| rest.split(" with ").next().unwrap_or(rest).to_string())
                    .map_or_else(|| message.clone(), |what| format!("needed {what}")),
            ),
            DataFusionError::Plan(message) => Self::Query(message.clone()),
            DataFusionError::SQL(error, _) => {
                use datafusion::sql::sqlparser::parser::ParserError;
                let message = match &**error {
                    ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
                    ParserError::RecursionLimitExceeded => "the query nests too deeply".to_string(),
                };
                Self::Query(format!("invalid SQL: {message}"))
            }
            root => Self::Query(root.to_string()),
        }
    }
}

impl From<QuerierError> for SqlError {
    fn from(e: QuerierError) -> Self {
        Self::Read {
            status: e.http_status(),
            message: e.to_string(),
        }
    }
}

/// A querier error inside DataFusion's stream.
pub(crate) fn querier_error(e: QuerierError) -> DataFusionError {
    DataFusionError::External(Box::new(SqlError::from(e)))
}
