use thiserror::Error;

/// Errors of the metastore.
#[derive(Debug, Error)]
pub enum MetastoreError {
    /// The index could not be read or written on disk.
    #[error("metastore storage error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A stored record does not parse.
    #[error("corrupt metastore record at {path} line {line}: {reason}")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
    /// The metastore cannot be reached (remote implementations).
    #[error("metastore unavailable: {0}")]
    Unavailable(String),
}
