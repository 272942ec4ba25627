//! The Raft type configuration and the replicated commands.

use std::io::Cursor;

use kiln_model::BlockMeta;
use serde::{Deserialize, Serialize};

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

/// A change to the replicated state. New kinds of state (compaction jobs, tombstones) arrive as
/// new variants; an old node refuses a log it cannot decode instead of skipping it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// Registers blocks; ids already present are skipped.
    AddBlocks {
        /// The blocks to register.
        blocks: Vec<BlockMeta>,
    },
}

/// What applying a [`Command`] produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CommandResponse {
    /// How many blocks were new.
    pub added: u32,
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
