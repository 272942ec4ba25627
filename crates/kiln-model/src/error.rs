use thiserror::Error;

/// Everything that can be wrong with a profile or its metadata.
///
/// Every variant is the client's fault; [`ModelError::is_too_large`] tells the size-limit ones
/// apart so that transports can answer 413 / RESOURCE_EXHAUSTED instead of 400.
#[derive(Clone, Debug, Error)]
pub enum ModelError {
    /// The compressed stream is not valid gzip.
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    /// The decompressed size exceeds the configured limit.
    #[error("decompressed body exceeds max_decompressed_bytes of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    /// The protobuf does not decode.
    #[error("malformed {what} protobuf: {reason}")]
    Protobuf { what: &'static str, reason: String },
    /// A reference inside the pprof points outside its tables.
    #[error("invalid pprof: {0}")]
    InvalidPprof(String),
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_.]*`.
    #[error(
        "invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_.]* and be at most {max} bytes"
    )]
    InvalidLabelName { name: String, max: usize },
    /// A label value is too long.
    #[error("invalid value for label {name:?}: {len} bytes is over the limit of {max}")]
    LabelValueTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    /// The same label name appears twice in one series.
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
    /// The application name (`name=` of /ingest) cannot be parsed.
    #[error("invalid application name {name:?}: {reason}")]
    InvalidAppName { name: String, reason: String },
    /// A tenant id breaks the naming rules.
    #[error("invalid tenant id {id:?}: {reason}")]
    InvalidTenant { id: String, reason: String },
    /// A timestamp parameter cannot be parsed.
    #[error("invalid time {value:?}: {reason}")]
    InvalidTime { value: String, reason: String },
    /// A label matcher's regular expression does not compile.
    #[error("invalid regex {pattern:?} for label {name}: {reason}")]
    InvalidMatcher {
        name: String,
        pattern: String,
        reason: String,
    },
    /// The series has no service name after defaults were applied.
    #[error("missing service_name label")]
    MissingServiceName,
    /// Over one of the limits that bound the cost of decoding and normalizing a request.
    #[error(transparent)]
    Limit(#[from] crate::LimitExceeded),
}

impl ModelError {
    /// True for the errors that mean "the request is too large" rather than "malformed".
    pub fn is_too_large(&self) -> bool {
        matches!(self, ModelError::DecompressedTooLarge { .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
