//! Planning, assignment and commit.

use kiln_contract::metastore::{JobState, TombstoneReason};
use kiln_model::BlockMeta;

use super::{Harness, T0, block, compacted, ids, report, segment, worker};
use crate::types::OutcomeRecord;

#[test]
fn a_full_queue_makes_a_job_of_its_oldest_blocks() {
    let mut h = Harness::new("3/1h,2/1h");
    // Registered newest first: the queue orders by the time in the id.
    let blocks: Vec<_> = (0..4)
        .rev()
        .map(|n| segment(T0 + n * 1_000, n as u64, 0))
        .collect();
    h.add(blocks.clone(), T0 + 5_000);
    let polled = h.poll(worker("w", 5), T0 + 5_000);
    assert_eq!(polled.jobs.len(), 1);
    let job = &polled.jobs[0];
    assert_eq!((job.tenant.as_str(), job.shard, job.level), ("", 0, 0));
    let oldest: Vec<&str> = blocks.iter().rev().take(3).map(|b| b.id.as_str()).collect();
    assert_eq!(ids(&job.sources), oldest);
    assert_eq!(job.token, h.last_index);
    assert_eq!(job.lease_expires_millis, T0 + 5_000 + 15_000);
    assert_eq!(h.queued(0), 1);
    assert_eq!(h.status().jobs[0].state, JobState::Running);
}

#[test]
fn the_oldest_block_old_enough_makes_a_job() {
    let mut h = Harness::new("20/30s");
    h.add(
        vec![segment(T0, 1, 0), segment(T0 + 10_000, 2, 0)],
        T0 + 10_000,
    );
    let status_before = h.status();
    assert!(h.poll(worker("w", 1), T0 + 29_999).jobs.is_empty());
    assert_eq!(h.status(), status_before);
    let polled = h.poll(worker("w", 1), T0 + 30_000);
    assert_eq!(
        polled.jobs[0].sources.len(),
        2,
        "both blocks go, oldest first"
    );

    // A block whose id is not a ULID ages from its registration.
    let mut h = Harness::new("20/30s");
    h.add(vec![block("plain", &[("t", "api", 0, 1)])], T0 + 100_000);
    assert!(h.poll(worker("w", 1), T0 + 129_999).jobs.is_empty());
    let polled = h.poll(worker("w", 1), T0 + 130_000);
    assert_eq!(ids(&polled.jobs[0].sources), ["plain"]);
}

#[test]
fn queues_are_per_tenant_shard_and_level_and_the_top_level_is_final() {
    let mut h = Harness::new("2/1h,2/1h");
    h.add(
        vec![
            segment(T0, 1, 0),
            segment(T0, 2, 1),
            compacted(T0, 3, "a", 1, 1),
            compacted(T0, 4, "b", 1, 1),
            compacted(T0, 5, "a", 2, 1),
            compacted(T0, 6, "a", 2, 1),
        ],
        T0,
    );
    assert!(h.poll(worker("w", 10), T0 + 1).jobs.is_empty());
    assert_eq!((h.queued(0), h.queued(1), h.queued(2)), (2, 2, 0));
    h.add(vec![segment(T0, 7, 1), compacted(T0, 8, "a", 1, 1)], T0);
    let polled = h.poll(worker("w", 10), T0 + 1);
    let keys: Vec<_> = polled
        .jobs
        .iter()
        .map(|j| (j.tenant.as_str(), j.shard, j.level, j.sources.len()))
        .collect();
    assert_eq!(keys, [("", 1, 0, 2), ("a", 0, 1, 2)]);
}

#[test]
fn jobs_are_assigned_smallest_level_first_then_oldest() {
    let mut h = Harness::new("1/1h,1/1h");
    h.add(vec![compacted(T0, 1, "a", 1, 1)], T0);
    assert!(
        h.poll(worker("w", 0), T0).jobs.is_empty(),
        "planned, not assigned"
    );
    let level1 = h.status().jobs[0].name.clone();
    h.add(vec![segment(T0, 2, 0)], T0);
    h.poll(worker("w", 0), T0);
    h.add(vec![segment(T0, 3, 0)], T0);
    assert_eq!(
        h.status().jobs.len(),
        2,
        "the last segment waits for the next poll"
    );
    let first = h.poll(worker("w", 1), T0);
    let second = h.poll(worker("w", 1), T0);
    let third = h.poll(worker("w", 1), T0);
    let order: Vec<(&str, u32)> = [&first, &second, &third]
        .iter()
        .map(|p| (p.jobs[0].name.as_str(), p.jobs[0].level))
        .collect();
    assert_eq!(
        order,
        [("job-4-0", 0), ("job-6-0", 0), (level1.as_str(), 1)]
    );
    assert_eq!(level1, "job-2-0");
}

#[test]
fn a_commit_swaps_sources_for_results_and_tombstones_the_sources() {
    let mut h = Harness::new("2/1h,10/1h");
    let (a, b) = (segment(T0, 1, 0), segment(T0, 2, 0));
    h.add(vec![a.clone(), b.clone()], T0);
    let before = h.state.tenants();
    let job = h.poll(worker("w", 1), T0 + 1).jobs.remove(0);
    let result = compacted(T0 + 2, 3, "t", 1, 3);
    let polled = h.poll(
        super::PollRecord {
            updates: vec![report(&job, OutcomeRecord::Success(vec![result.clone()]))],
            ..worker("w", 0)
        },
        T0 + 2,
    );
    assert!(polled.refused.is_empty());
    assert_eq!(h.ids_of("t"), [result.id.as_str()]);
    assert_eq!(ids(&h.state.query("t", 0, 100, &[])), [result.id.as_str()]);
    let status = h.status();
    assert!(status.jobs.is_empty());
    let tombstoned: Vec<_> = status
        .tombstones
        .iter()
        .map(|t| {
            (
                t.block_id.as_str(),
                t.reason,
                t.created_millis,
                t.path.as_str(),
            )
        })
        .collect();
    assert_eq!(
        tombstoned,
        [
            (
                a.id.as_str(),
                TombstoneReason::Compacted,
                T0 + 2,
                a.path.as_str()
            ),
            (
                b.id.as_str(),
                TombstoneReason::Compacted,
                T0 + 2,
                b.path.as_str()
            ),
        ]
    );
    assert_eq!(h.queued(1), 1, "the result waits at level 1");
    assert_eq!(status.oldest_level0_created_millis, None);
    // Compaction deduplicated: the totals follow the index.
    let after = h.state.tenants();
    assert_eq!((before[0].blocks, before[0].profiles), (2, 4));
    assert_eq!(
        (after[0].blocks, after[0].profiles, after[0].samples),
        (1, 3, 15)
    );
}

#[test]
fn a_retried_success_is_acknowledged_and_an_unknown_job_refused_for_the_sweep() {
    let mut h = Harness::new("1/1h");
    h.add(vec![segment(T0, 1, 0)], T0);
    let job = h.poll(worker("w", 1), T0).jobs.remove(0);
    let success = report(
        &job,
        OutcomeRecord::Success(vec![compacted(T0, 2, "t", 1, 2)]),
    );
    let poll = super::PollRecord {
        updates: vec![success.clone()],
        ..worker("w", 0)
    };
    assert!(h.poll(poll.clone(), T0 + 1).refused.is_empty());
    let tenants = h.state.tenants();
    assert!(
        h.poll(poll.clone(), T0 + 2).refused.is_empty(),
        "acknowledged again"
    );
    assert_eq!(h.state.tenants(), tenants, "and changed nothing");

    let other_token = super::UpdateRecord {
        token: job.token + 1,
        ..success.clone()
    };
    let unknown = super::UpdateRecord {
        name: "job-999-0".into(),
        ..success
    };
    let polled = h.poll(
        super::PollRecord {
            updates: vec![other_token, unknown],
            ..worker("w", 0)
        },
        T0 + 3,
    );
    let refused: Vec<_> = polled
        .refused
        .iter()
        .map(|r| (r.name.as_str(), r.discard_outputs))
        .collect();
    assert_eq!(refused, [(job.name.as_str(), false), ("job-999-0", false)]);

    // After an hour the committed record forgets the job.
    let late = h.poll(poll, T0 + 1 + 3_600_001);
    assert!(!late.refused[0].discard_outputs);
}

#[test]
fn a_compacted_source_registered_again_stays_gone() {
    let mut h = Harness::new("1/1h");
    let source = segment(T0, 1, 0);
    h.add(vec![source.clone()], T0);
    let job = h.poll(worker("w", 1), T0).jobs.remove(0);
    let result = compacted(T0, 2, "t", 1, 2);
    h.poll(
        super::PollRecord {
            updates: vec![report(&job, OutcomeRecord::Success(vec![result.clone()]))],
            ..worker("w", 0)
        },
        T0,
    );
    assert_eq!(h.add(vec![source.clone()], T0 + 1), 0, "tombstoned");
    h.poll(
        super::PollRecord {
            deleted: vec![source.id.clone()],
            ..worker("w", 0)
        },
        T0 + 2,
    );
    assert!(h.status().tombstones.is_empty());
    assert_eq!(
        h.add(vec![source], T0 + 3),
        0,
        "a source of a committed job"
    );
    assert_eq!(h.ids_of("t"), [result.id]);
}

#[test]
fn results_of_a_tenant_deleted_after_planning_are_dropped() {
    let mut h = Harness::new("1/1h");
    h.add(
        vec![block(
            "seg",
            &[("gone", "api", 0, 10), ("kept", "api", 0, 10)],
        )],
        T0,
    );
    let job = h.poll(worker("w", 1), T0).jobs.remove(0);
    assert_eq!(h.delete("gone", T0 + 1), 1);
    let gone = compacted(T0, 1, "gone", 1, 2);
    let kept = compacted(T0, 2, "kept", 1, 2);
    h.poll(
        super::PollRecord {
            updates: vec![report(
                &job,
                OutcomeRecord::Success(vec![gone.clone(), kept.clone()]),
            )],
            ..worker("w", 0)
        },
        T0 + 2,
    );
    assert!(h.ids_of("gone").is_empty());
    assert_eq!(h.ids_of("kept"), [kept.id.as_str()]);
    let reasons: Vec<_> = h
        .status()
        .tombstones
        .iter()
        .map(|t| (t.block_id.clone(), t.reason))
        .collect();
    assert!(reasons.contains(&(gone.id.clone(), TombstoneReason::TenantDeleted)));
    assert!(reasons.contains(&("seg".to_string(), TombstoneReason::Compacted)));
    assert!(h.state.tenants().iter().all(|t| t.id != "gone"));

    // A tenant that comes back after its deletion compacts as any other.
    h.add(vec![block("again", &[("gone", "api", 0, 10)])], T0 + 3);
    let job = h.poll(worker("w", 1), T0 + 3).jobs.remove(0);
    let back = compacted(T0, 3, "gone", 1, 2);
    h.poll(
        super::PollRecord {
            updates: vec![report(&job, OutcomeRecord::Success(vec![back.clone()]))],
            ..worker("w", 0)
        },
        T0 + 4,
    );
    assert_eq!(h.ids_of("gone"), [back.id]);
}

#[test]
fn a_result_that_keeps_a_sources_object_keeps_it_alive() {
    let mut h = Harness::new("1/1h,1/1h");
    let source = compacted(T0, 1, "t", 1, 2);
    h.add(vec![source.clone()], T0);
    let job = h.poll(worker("w", 1), T0).jobs.remove(0);
    // The worker passed the block up a level unchanged, same id and object.
    let promoted = BlockMeta {
        compaction_level: 2,
        ..source.clone()
    };
    h.poll(
        super::PollRecord {
            updates: vec![report(&job, OutcomeRecord::Success(vec![promoted.clone()]))],
            ..worker("w", 0)
        },
        T0 + 1,
    );
    assert_eq!(h.state.list_blocks(None), [promoted]);
    assert!(h.status().tombstones.is_empty());
}

#[test]
fn same_commands_make_the_same_state() {
    let run = || {
        let mut h = Harness::new("2/10s,2/1m");
        for n in 0..7 {
            h.add(
                vec![segment(T0 + n * 3_000, n as u64, (n % 2) as u32)],
                T0 + n * 3_000,
            );
            let polled = h.poll(worker("w", 1), T0 + n * 3_000);
            for job in polled.jobs {
                let result = compacted(T0 + n * 3_000, 100 + n as u64, "t", job.level + 1, 1);
                h.poll(
                    super::PollRecord {
                        updates: vec![report(&job, OutcomeRecord::Success(vec![result]))],
                        ..worker("w", 0)
                    },
                    T0 + n * 3_000 + 1,
                );
            }
        }
        h.state.to_snapshot()
    };
    assert_eq!(run(), run());
}
