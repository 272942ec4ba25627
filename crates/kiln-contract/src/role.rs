//! The names of the roles, as heartbeats and membership carry them.

use std::fmt;
use std::str::FromStr;

/// A role whose instances announce themselves to the metastore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Ingest protocols, validation, placement onto ingesters.
    Distributor,
    /// The segment writer.
    Ingester,
    /// The block index (a Raft group).
    Metastore,
    /// The query API.
    Querier,
    /// Merges segments into blocks and applies retention.
    Compactor,
}

impl Role {
    /// Every role, in the order of the architecture's write and read paths.
    pub const ALL: [Role; 5] = [
        Role::Distributor,
        Role::Ingester,
        Role::Metastore,
        Role::Querier,
        Role::Compactor,
    ];

    /// The role's name on the wire, in metrics and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Distributor => "distributor",
            Role::Ingester => "ingester",
            Role::Metastore => "metastore",
            Role::Querier => "querier",
            Role::Compactor => "compactor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that no role has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of distributor, ingester, metastore, querier, compactor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| UnknownRole(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("all".parse::<Role>(), Err(UnknownRole("all".to_string())));
    }
}
