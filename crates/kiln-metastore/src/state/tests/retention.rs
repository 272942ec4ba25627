//! Retention and tenant deletion.

use kiln_contract::metastore::{RetentionRemoval, TombstoneReason};

use super::{Harness, T0, block, compacted, report, worker};
use crate::types::{OutcomeRecord, PollRecord};

fn removal(tenant: &str, datasets: u64, blocks: u64) -> RetentionRemoval {
    RetentionRemoval {
        tenant: tenant.to_string(),
        datasets,
        blocks,
    }
}

#[test]
fn retention_removes_only_datasets_entirely_before_the_cutoff() {
    let mut h = Harness::new("20/1h");
    h.add(
        vec![
            // Mixed: t's old dataset goes, its straddling one and u's stay.
            block(
                "mixed",
                &[
                    ("t", "old", 0, 99),
                    ("t", "straddles", 50, 150),
                    ("u", "old", 0, 10),
                ],
            ),
            block("t-only", &[("t", "a", 0, 10), ("t", "b", 20, 30)]),
            block("recent", &[("t", "a", 100, 200)]),
        ],
        T0,
    );
    let removed = h.retention(&[("t", 100)], T0 + 1);
    assert_eq!(removed, [removal("t", 3, 1)]);
    let mixed = &h.state.list_blocks(None)[0];
    assert_eq!(mixed.id, "mixed");
    let services: Vec<_> = mixed
        .datasets
        .iter()
        .map(|d| (d.tenant.as_str(), d.service_name.as_str()))
        .collect();
    assert_eq!(services, [("t", "straddles"), ("u", "old")]);
    assert_eq!((mixed.min_time_nanos, mixed.max_time_nanos), (0, 150));
    assert_eq!(h.ids_of("t"), ["mixed", "recent"]);
    assert_eq!(h.ids_of("u"), ["mixed"]);
    // A query no longer finds t's old data in the mixed segment.
    assert!(h.state.query("t", 0, 40, &[]).is_empty());

    let tombstones = h.status().tombstones;
    assert_eq!(tombstones.len(), 1);
    assert_eq!(tombstones[0].block_id, "t-only");
    assert_eq!(tombstones[0].reason, TombstoneReason::Retention);
    assert_eq!(tombstones[0].created_millis, T0 + 1);
    assert_eq!(h.queued(0), 2, "the emptied block left its queue");

    let t = &h.state.tenants()[0];
    assert_eq!((t.blocks, t.profiles, t.first_seen_nanos), (2, 4, 0));

    assert_eq!(
        h.retention(&[("t", 100), ("nobody", 100)], T0 + 2),
        [removal("t", 0, 0), removal("nobody", 0, 0)],
        "idempotent"
    );
}

#[test]
fn retention_of_a_planned_jobs_source_shrinks_the_job_or_drops_it() {
    let mut h = Harness::new("2/1h");
    h.add(
        vec![
            block("a", &[("t", "api", 0, 10)]),
            block("b", &[("t", "api", 0, 10), ("u", "api", 0, 10)]),
        ],
        T0,
    );
    h.poll(worker("w", 0), T0);
    h.retention(&[("t", 100)], T0);
    let jobs = h.status().jobs;
    assert_eq!(jobs[0].sources, 1, "a left; b stays with u's data");
    h.retention(&[("u", 100)], T0);
    assert!(h.status().jobs.is_empty(), "no source left");
}

#[test]
fn a_running_job_loses_sources_that_retention_removed_and_commits_the_rest() {
    let mut h = Harness::new("2/1h");
    h.add(
        vec![
            block("a", &[("t", "api", 0, 10)]),
            block("b", &[("t", "api", 500, 600)]),
        ],
        T0,
    );
    let job = h.poll(worker("w", 1), T0).jobs.remove(0);
    h.retention(&[("t", 100)], T0 + 1);
    assert_eq!(h.status().jobs[0].sources, 1);
    let result = compacted(T0, 1, "t", 1, 2);
    h.poll(
        PollRecord {
            updates: vec![report(&job, OutcomeRecord::Success(vec![result.clone()]))],
            ..worker("w", 0)
        },
        T0 + 2,
    );
    assert_eq!(h.ids_of("t"), [result.id]);
    let reasons: Vec<_> = h
        .status()
        .tombstones
        .iter()
        .map(|t| (t.block_id.clone(), t.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("a".to_string(), TombstoneReason::Retention),
            ("b".to_string(), TombstoneReason::Compacted)
        ]
    );
}

#[test]
fn a_running_job_left_without_sources_is_dropped_and_its_report_refused() {
    let mut h = Harness::new("1/1h");
    h.add(vec![block("a", &[("t", "api", 0, 10)])], T0);
    let job = h.poll(worker("w", 1), T0).jobs.remove(0);
    h.retention(&[("t", 100)], T0 + 1);
    assert!(h.status().jobs.is_empty());
    let late = compacted(T0, 1, "t", 1, 2);
    let polled = h.poll(
        PollRecord {
            updates: vec![report(&job, OutcomeRecord::Success(vec![late]))],
            ..worker("w", 0)
        },
        T0 + 2,
    );
    assert!(
        !polled.refused[0].discard_outputs,
        "left to the orphan sweep"
    );
    assert!(h.ids_of("t").is_empty(), "retained data does not come back");
}

#[test]
fn deleting_a_tenant_removes_its_data_everywhere_and_the_tenant() {
    let mut h = Harness::new("20/1h");
    h.add(
        vec![
            block("shared", &[("t", "api", 0, 10), ("u", "api", 0, 10)]),
            block("own", &[("t", "api", 500, 600)]),
            block("other", &[("u", "api", 500, 600)]),
            compacted(T0, 1, "t", 1, 5),
        ],
        T0,
    );
    assert_eq!(h.delete("t", T0 + 1), 3);
    assert!(h.ids_of("t").is_empty());
    assert!(h.state.query("t", 0, 1_000, &[]).is_empty());
    assert_eq!(h.ids_of("u"), ["other", "shared"]);
    let tenants: Vec<_> = h.state.tenants().into_iter().map(|t| t.id).collect();
    assert_eq!(tenants, ["u"]);
    let tombstones = h.status().tombstones;
    assert_eq!(tombstones.len(), 2);
    assert!(
        tombstones
            .iter()
            .all(|t| t.reason == TombstoneReason::TenantDeleted && t.created_millis == T0 + 1)
    );
    assert_eq!(tombstones.iter().filter(|t| t.tenant == "t").count(), 1);
    assert_eq!(h.state.deleted_tenants.get("t"), Some(&h.last_index));
    assert_eq!(h.delete("t", T0 + 2), 0, "nothing left");
}
