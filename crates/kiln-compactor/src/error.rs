use kiln_block::BlockError;
use kiln_contract::metastore::MetastoreError;
use thiserror::Error;

/// Why a compaction job or a maintenance pass failed.
#[derive(Debug, Error)]
pub enum CompactionError {
    /// A source could not be read or decoded.
    #[error("job {job}: cannot read source block {block}: {source}")]
    Source {
        job: String,
        block: String,
        #[source]
        source: BlockError,
    },
    /// The result could not be encoded.
    #[error("job {job}: cannot encode the result for tenant {tenant}: {source}")]
    Encode {
        job: String,
        tenant: String,
        #[source]
        source: BlockError,
    },
    /// Object storage refused a write, listing or deletion.
    #[error("object storage: {0}")]
    Storage(String),
    /// The metastore could not be reached or refused a call.
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
    /// Merging panicked (a bug); the job fails and is retried elsewhere.
    #[error("job {job}: merging failed: {reason}")]
    Panicked { job: String, reason: String },
}
