//! The other roles' membership: who sent a heartbeat lately. Kept in the leader's memory only, so
//! heartbeats cost no Raft write; after a leader change the table refills within one heartbeat
//! interval of the members.

use std::collections::HashMap;

use kiln_contract::Role;
use kiln_contract::metastore::{MEMBER_TTL, Member};
use parking_lot::Mutex;

use crate::node::now_millis;

/// The heartbeat table.
#[derive(Debug, Default)]
pub(crate) struct Members {
    by_key: Mutex<HashMap<(Role, String), Member>>,
}

impl Members {
    pub(crate) fn heartbeat(&self, role: Role, addr: &str) {
        let now = now_millis();
        let mut members = self.by_key.lock();
        members
            .entry((role, addr.to_string()))
            .and_modify(|m| m.last_seen_millis = now)
            .or_insert_with(|| Member {
                role,
                addr: addr.to_string(),
                first_seen_millis: now,
                last_seen_millis: now,
            });
    }

    /// Members alive now, of one role or all, ordered by role and address. Expired ones go.
    pub(crate) fn alive(&self, role: Option<Role>) -> Vec<Member> {
        let oldest = now_millis() - MEMBER_TTL.as_millis() as i64;
        let mut members = self.by_key.lock();
        members.retain(|_, m| m.last_seen_millis >= oldest);
        let mut alive: Vec<Member> = members
            .values()
            .filter(|m| role.is_none_or(|r| m.role == r))
            .cloned()
            .collect();
        alive.sort_by(|a, b| (&a.role, &a.addr).cmp(&(&b.role, &b.addr)));
        alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_listed_by_role() {
        let members = Members::default();
        members.heartbeat(Role::Ingester, "b:9095");
        members.heartbeat(Role::Ingester, "a:9095");
        members.heartbeat(Role::Querier, "c:9095");
        members.heartbeat(Role::Ingester, "a:9095");
        let ingesters = members.alive(Some(Role::Ingester));
        assert_eq!(
            ingesters
                .iter()
                .map(|m| m.addr.as_str())
                .collect::<Vec<_>>(),
            ["a:9095", "b:9095"]
        );
        assert_eq!(members.alive(None).len(), 3);
    }
}
