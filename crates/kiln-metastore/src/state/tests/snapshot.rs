//! Snapshots: what they keep, what is rebuilt, and the version-1 format.

use kiln_contract::metastore::JobState;

use super::{Harness, PollRecord, T0, block, compacted, ids, report, segment, worker};
use crate::state::MetastoreState;
use crate::types::OutcomeRecord;

/// A state with a running, a planned and a parked job, queued blocks, tombstones (one leased),
/// a committed job and a deleted tenant.
fn busy() -> Harness {
    let mut h = Harness::new("1/1h,2/1h");
    h.add(vec![block("plain", &[("t", "api", 0, 10)])], T0);
    let parked = h.poll(worker("w", 1), T0).jobs.remove(0);
    let mut job = parked;
    for n in 0..3 {
        let failure = report(&job, OutcomeRecord::Failure(format!("boom {n}")));
        let polled = h.poll(
            PollRecord {
                updates: vec![failure],
                ..worker("w", 1)
            },
            T0 + n,
        );
        if let Some(next) = polled.jobs.into_iter().next() {
            job = next;
        }
    }
    h.add(vec![segment(T0, 1, 0)], T0 + 10);
    let committed = h.poll(worker("w", 1), T0 + 10).jobs.remove(0);
    let result = compacted(T0 + 11, 2, "t", 1, 2);
    h.poll(
        PollRecord {
            updates: vec![report(&committed, OutcomeRecord::Success(vec![result]))],
            ..worker("w", 0)
        },
        T0 + 11,
    );
    h.add(vec![segment(T0, 3, 0), segment(T0, 4, 1)], T0 + 12);
    h.poll(worker("w", 1), T0 + 12);
    h.add(vec![block("gone", &[("d", "api", 0, 10)])], T0 + 13);
    h.delete("d", T0 + 14);
    h.poll(
        PollRecord {
            deletion_capacity: 1,
            ..worker("w", 0)
        },
        T0 + 15,
    );
    h
}

#[test]
fn a_snapshot_keeps_jobs_tombstones_and_deleted_tenants_and_rebuilds_queues() {
    let mut h = busy();
    let status = h.status();
    let states: Vec<JobState> = status.jobs.iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        [JobState::Parked, JobState::Running, JobState::Planned]
    );
    assert!(status.tombstones.len() >= 2);
    assert_eq!(h.queued(1), 1);

    let bytes = h.state.to_snapshot();
    let restored = MetastoreState::from_snapshot(&bytes).unwrap();
    assert_eq!(restored.compaction_status(&h.config), status);
    assert_eq!(restored.tenants(), h.state.tenants());
    assert_eq!(restored.list_blocks(None), h.state.list_blocks(None));
    assert_eq!(restored.deleted_tenants, h.state.deleted_tenants);
    assert_eq!(restored.to_snapshot(), bytes);

    // Both go on the same way: same plans, same leases, same acknowledgements.
    let mut twin = Harness {
        state: restored,
        last_index: h.last_index,
        config: h.config.clone(),
    };
    let committed = h
        .state
        .jobs
        .committed_record()
        .keys()
        .next()
        .unwrap()
        .clone();
    let token = h.state.jobs.committed(&committed).unwrap().token;
    let retried = PollRecord {
        updates: vec![crate::types::UpdateRecord {
            name: committed,
            token,
            outcome: OutcomeRecord::Success(vec![]),
        }],
        deletion_capacity: 5,
        ..worker("v", 5)
    };
    let later = T0 + 3_600_000;
    h.add(vec![segment(later, 9, 0)], later);
    twin.add(vec![segment(later, 9, 0)], later);
    let polled = h.poll(retried.clone(), later);
    assert_eq!(twin.poll(retried, later), polled);
    assert!(polled.refused.is_empty(), "the committed record survived");
    assert_eq!(twin.state.to_snapshot(), h.state.to_snapshot());
}

#[test]
fn a_version_1_snapshot_still_loads() {
    let blocks = [segment(T0, 1, 0), block("plain", &[("t", "api", 0, 10)])];
    // Written before blocks had a tenant.
    let blocks: Vec<serde_json::Value> = blocks
        .iter()
        .map(|b| {
            let mut value = serde_json::to_value(b).unwrap();
            value.as_object_mut().unwrap().remove("tenant");
            value
        })
        .collect();
    let v1 = serde_json::json!({
        "version": 1,
        "blocks": blocks,
        "tenants": [{"id": "t", "first_seen_nanos": 0, "blocks": 2, "profiles": 4, "samples": 20}],
    });
    let state = MetastoreState::from_snapshot(&serde_json::to_vec(&v1).unwrap()).unwrap();
    assert_eq!(ids(&state.query("t", 0, 100, &[])).len(), 2);
    assert_eq!(state.tenants()[0].profiles, 4);
    let mut h = Harness::new("2/1h");
    h.state = state;
    let status = h.status();
    assert!(status.jobs.is_empty() && status.tombstones.is_empty());
    assert_eq!(h.queued(0), 2, "queues rebuilt from the index");
    let polled = h.poll(worker("w", 1), T0);
    assert_eq!(polled.jobs[0].sources.len(), 2);
}

#[test]
fn unknown_and_damaged_snapshots_are_refused() {
    let v9 = br#"{"version": 9, "blocks": [], "tenants": []}"#;
    assert_eq!(
        MetastoreState::from_snapshot(v9).unwrap_err(),
        "unknown snapshot version 9"
    );
    assert!(MetastoreState::from_snapshot(b"{").is_err());
    assert_eq!(MetastoreState::from_snapshot(b"").unwrap().block_count(), 0);
}
