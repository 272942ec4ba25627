//! The Raft type configuration and the replicated commands.

use std::io::Cursor;

use kiln_contract::metastore::{
    CompactionAssignment, CompactionPoll, JobOutcome, RetentionCutoff, RetentionRemoval,
};
use kiln_model::BlockMeta;
use serde::{Deserialize, Serialize};

use crate::config::CompactionConfig;

openraft::declare_raft_types!(
    /// Openraft's types for the metastore group: u64 node ids, nodes known by their gRPC address,
    /// snapshots held in memory.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
);

/// The Raft handle of a metastore node.
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// A node as the group knows it: its advertised gRPC address.
pub(crate) type NodeInfo = openraft::BasicNode;

/// The node id, derived from the advertised address (see [`node_id_of`]).
pub(crate) type NodeId = u64;

/// A change to the replicated state, applied in log order on every node. Applying one depends
/// only on the command, its log index and the state: the time it carries is the proposing
/// leader's clock, and the compaction settings travel in the poll. An old node refuses a log
/// it cannot decode instead of skipping it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Registers blocks; ids already present, tombstoned, or sources of a recently committed
    /// compaction are skipped.
    AddBlocks {
        /// The blocks to register.
        blocks: Vec<BlockMeta>,
        /// The leader's clock (unix milliseconds) when it proposed the command; 0 in entries
        /// written before commands carried it.
        #[serde(default)]
        now_millis: i64,
    },
    /// A compactor's poll: its reports, then new jobs and due deletions for it.
    PollCompaction {
        /// What the worker sent.
        poll: PollRecord,
        /// The leader's clock (unix milliseconds).
        now_millis: i64,
        /// The leader's compaction settings.
        config: CompactionConfig,
    },
    /// Removes each tenant's datasets entirely older than its cutoff.
    ApplyRetention {
        /// One cutoff per tenant.
        cutoffs: Vec<CutoffRecord>,
        /// The leader's clock (unix milliseconds).
        now_millis: i64,
    },
    /// Removes one block from the index and tombstones its object (an operator's decision, e.g.
    /// for an object that cannot be read).
    RemoveBlock {
        /// The block's id.
        id: String,
        /// The leader's clock (unix milliseconds).
        now_millis: i64,
    },
    /// Removes every dataset of a tenant and the tenant itself.
    DeleteTenant {
        /// The tenant.
        tenant: String,
        /// The leader's clock (unix milliseconds).
        now_millis: i64,
    },
}

/// A compactor's poll as the log keeps it (the contract's `CompactionPoll`; the log has its own
/// types so that its format changes only with this crate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRecord {
    /// The worker's name.
    pub worker: String,
    /// Its reports about the jobs it holds.
    pub updates: Vec<UpdateRecord>,
    /// How many new jobs it can take.
    pub job_capacity: u32,
    /// Block ids of tombstones whose objects it deleted.
    pub deleted: Vec<String>,
    /// How many tombstones it can delete now.
    pub deletion_capacity: u32,
    /// Only tombstones at least this old (milliseconds) are due.
    pub deletion_delay_millis: i64,
}

/// A report about one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// The job's name.
    pub name: String,
    /// The token of the assignment the worker holds.
    pub token: u64,
    /// What happened.
    pub outcome: OutcomeRecord,
}

/// What a worker reports about a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutcomeRecord {
    /// Still running.
    InProgress,
    /// Done: these blocks replace the sources.
    Success(Vec<BlockMeta>),
    /// Failed with this error.
    Failure(String),
}

/// Data of `tenant` entirely older than `before_nanos` leaves the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoffRecord {
    /// The tenant.
    pub tenant: String,
    /// Unix nanoseconds.
    pub before_nanos: i64,
}

impl From<CompactionPoll> for PollRecord {
    fn from(poll: CompactionPoll) -> Self {
        Self {
            worker: poll.worker,
            updates: poll
                .updates
                .into_iter()
                .map(|u| UpdateRecord {
                    name: u.name,
                    token: u.token,
                    outcome: match u.outcome {
                        JobOutcome::InProgress => OutcomeRecord::InProgress,
                        JobOutcome::Success(blocks) => OutcomeRecord::Success(blocks),
                        JobOutcome::Failure(error) => OutcomeRecord::Failure(error),
                    },
                })
                .collect(),
            job_capacity: poll.job_capacity,
            deleted: poll.deleted,
            deletion_capacity: poll.deletion_capacity,
            deletion_delay_millis: poll.deletion_delay_millis,
        }
    }
}

impl From<RetentionCutoff> for CutoffRecord {
    fn from(cutoff: RetentionCutoff) -> Self {
        Self {
            tenant: cutoff.tenant,
            before_nanos: cutoff.before_nanos,
        }
    }
}

/// What applying a [`Command`] produced. Responses stay in the process that proposed the command
/// (a follower's caller gets the leader's answer over gRPC), so the variants holding contract
/// types are never serialized.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Nothing to tell (blank and membership entries).
    #[default]
    Empty,
    /// How many blocks were new.
    Added(u32),
    /// The answer to a poll.
    #[serde(skip)]
    Polled(CompactionAssignment),
    /// What retention removed, per cutoff.
    #[serde(skip)]
    Retained(Vec<RetentionRemoval>),
    /// How many blocks held data of the deleted tenant.
    TenantDeleted(u64),
    /// Whether the block was in the index.
    BlockRemoved(bool),
}

/// The node id of an advertised address: a stable 64-bit FNV-1a hash, so that every node computes
/// the same id for a peer from the peer list alone, with no id assignment step.
pub fn node_id_of(addr: &str) -> NodeId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in addr.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 0 reads as "no node" in the status API.
    hash.max(1)
}
