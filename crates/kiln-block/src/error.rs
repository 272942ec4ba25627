use thiserror::Error;

/// Errors reading or writing blocks.
#[derive(Debug, Error)]
pub enum BlockError {
    /// Parquet encoding or decoding failed.
    #[error("parquet error in section {section}: {source}")]
    Parquet {
        section: &'static str,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow failed to build or read a batch.
    #[error("arrow error in section {section}: {source}")]
    Arrow {
        section: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// Object storage failed to serve the object.
    #[error("cannot read block object {0}")]
    Storage(String),
    /// The object is not a Kiln block, or is damaged.
    #[error("corrupt block: {0}")]
    Corrupt(String),
}

/// Result alias of this crate.
pub type Result<T, E = BlockError> = std::result::Result<T, E>;
