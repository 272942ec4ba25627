//! The compactor: Kiln's background worker for compaction and retention.
//!
//! The metastore plans compaction jobs in its replicated state machine; any number of
//! compactors poll it for jobs ([`worker`]), merge each job's source blocks into one block per
//! tenant at the next level ([`job`]), write it, and report back; the commit swaps the sources
//! for the result in one replicated command. The same poll hands out deletions of objects that
//! left the index (tombstones) once no running query can still read them. On timers, a compactor
//! also applies each tenant's retention ([`retention`]) and deletes objects that were written
//! but never registered ([`orphans`]).

mod config;
mod error;
pub mod job;
mod metrics;
pub mod orphans;
pub mod retention;
pub mod worker;

pub use config::CompactorConfig;
pub use error::CompactionError;
pub use metrics::CompactorMetrics;
pub use worker::Compactor;
