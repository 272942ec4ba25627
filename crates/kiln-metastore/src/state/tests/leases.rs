//! Leases of jobs and tombstones, fencing tokens, failures and parking, and when a poll needs a
//! write at all.

use kiln_contract::metastore::JobState;

use super::{Harness, PollRecord, T0, UpdateRecord, block, ids, report, segment, worker};
use crate::types::OutcomeRecord;

fn with_updates(name: &str, updates: Vec<UpdateRecord>) -> PollRecord {
    PollRecord {
        updates,
        ..worker(name, 1)
    }
}

#[test]
fn progress_extends_the_lease() {
    let mut h = Harness::new("1/1h");
    h.add(vec![segment(T0, 1, 0)], T0);
    let job = h.poll(worker("a", 1), T0).jobs.remove(0);
    assert_eq!(job.lease_expires_millis, T0 + 15_000);
    let progress = report(&job, OutcomeRecord::InProgress);
    let polled = h.poll(with_updates("a", vec![progress]), T0 + 10_000);
    assert!(polled.refused.is_empty() && polled.jobs.is_empty());
    assert_eq!(h.status().jobs[0].lease_expires_millis, T0 + 25_000);
    assert!(h.poll(worker("b", 1), T0 + 20_000).jobs.is_empty());
    let taken = h.poll(worker("b", 1), T0 + 25_000);
    assert_eq!(
        taken.jobs[0].name, job.name,
        "the lease ended: b takes the job"
    );
    assert_eq!(h.status().jobs[0].failures, 1);
    assert_eq!(h.status().jobs[0].worker, "b");
}

#[test]
fn an_ended_lease_fences_off_the_old_worker() {
    let mut h = Harness::new("1/1h");
    let source = segment(T0, 1, 0);
    h.add(vec![source.clone()], T0);
    let first = h.poll(worker("a", 1), T0).jobs.remove(0);
    let second = h.poll(worker("b", 1), T0 + 15_000).jobs.remove(0);
    assert_eq!(first.name, second.name);
    assert!(second.token > first.token);
    let info = &h.status().jobs[0];
    assert_eq!((info.failures, info.state), (1, JobState::Running));
    assert_eq!(info.last_error, "the lease of worker a ended");

    let late = report(
        &first,
        OutcomeRecord::Success(vec![super::compacted(T0, 2, "t", 1, 1)]),
    );
    let polled = h.poll(with_updates("a", vec![late]), T0 + 16_000);
    assert_eq!(polled.refused.len(), 1);
    assert!(
        polled.refused[0].discard_outputs,
        "the job lives on elsewhere"
    );
    assert_eq!(h.ids_of("t"), [source.id.as_str()], "nothing committed");
}

#[test]
fn a_failure_plans_the_job_again_and_enough_of_them_park_it_for_good() {
    let mut h = Harness::new("1/1h");
    let source = segment(T0, 1, 0);
    h.add(vec![source.clone()], T0);
    let mut job = h.poll(worker("a", 1), T0).jobs.remove(0);
    for attempt in 1..=3 {
        let failure = report(&job, OutcomeRecord::Failure(format!("boom {attempt}")));
        let polled = h.poll(with_updates("a", vec![failure]), T0 + attempt);
        assert!(polled.refused.is_empty());
        let info = h.status().jobs[0].clone();
        assert_eq!(info.failures, attempt as u32);
        assert_eq!(info.last_error, format!("boom {attempt}"));
        if attempt < 3 {
            assert_eq!(
                info.state,
                JobState::Running,
                "planned again, then assigned at once"
            );
            job = polled.jobs.into_iter().next().unwrap();
        } else {
            assert_eq!(info.state, JobState::Parked);
            assert!(polled.jobs.is_empty());
        }
    }
    for later in [T0 + 100, T0 + 10_000_000] {
        assert!(
            h.poll(worker("b", 5), later).jobs.is_empty(),
            "never planned again"
        );
    }
    assert_eq!(h.queued(0), 0);
    assert_eq!(
        h.ids_of("t"),
        [source.id.as_str()],
        "its sources stay queryable"
    );
    let cfg = h.config.clone();
    assert!(
        !h.state
            .poll_has_work(&worker("b", 5), &cfg, T0 + 20_000_000)
    );

    let stale = report(&job, OutcomeRecord::InProgress);
    let polled = h.poll(with_updates("a", vec![stale]), T0 + 200);
    assert!(polled.refused[0].discard_outputs);
}

#[test]
fn ended_leases_park_a_job_too() {
    let mut h = Harness::new("1/1h");
    h.add(vec![block("plain", &[("t", "api", 0, 1)])], T0);
    for n in 0..3 {
        let polled = h.poll(worker("w", 1), T0 + n * 15_000);
        assert_eq!(polled.jobs.len(), 1);
    }
    assert!(h.poll(worker("w", 1), T0 + 45_000).jobs.is_empty());
    let info = &h.status().jobs[0];
    assert_eq!((info.state, info.failures), (JobState::Parked, 3));
}

#[test]
fn tombstones_are_due_after_the_delay_and_leased_to_one_worker_at_a_time() {
    let mut h = Harness::new("1/1h");
    h.add(vec![block("old", &[("t", "api", 0, 10)])], T0);
    h.retention(&[("t", 100)], T0);
    let deleter = |name: &str| PollRecord {
        worker: name.to_string(),
        deletion_capacity: 10,
        deletion_delay_millis: 60_000,
        ..PollRecord::default()
    };
    let cfg = h.config.clone();
    assert!(!h.state.poll_has_work(&deleter("a"), &cfg, T0 + 59_999));
    assert!(h.poll(deleter("a"), T0 + 59_999).deletions.is_empty());
    assert!(h.state.poll_has_work(&deleter("a"), &cfg, T0 + 60_000));
    let handed = h.poll(deleter("a"), T0 + 60_000).deletions;
    assert_eq!(handed.len(), 1);
    assert_eq!(
        (handed[0].block_id.as_str(), handed[0].created_millis),
        ("old", T0)
    );
    assert!(
        h.poll(deleter("b"), T0 + 74_999).deletions.is_empty(),
        "leased to a"
    );
    assert_eq!(
        h.poll(deleter("b"), T0 + 75_000).deletions.len(),
        1,
        "a's lease ended"
    );
    let done = PollRecord {
        deleted: vec!["old".into()],
        ..deleter("b")
    };
    assert!(h.poll(done, T0 + 76_000).deletions.is_empty());
    assert!(h.status().tombstones.is_empty());
}

#[test]
fn a_poll_needs_a_write_only_when_it_can_change_something() {
    let mut h = Harness::new("2/30s");
    let cfg = h.config.clone();
    let idle = worker("w", 1);
    assert!(!h.state.poll_has_work(&idle, &cfg, T0));
    h.add(vec![segment(T0, 1, 0)], T0);
    assert!(
        !h.state.poll_has_work(&idle, &cfg, T0 + 29_999),
        "not due yet"
    );
    assert!(
        h.state.poll_has_work(&idle, &cfg, T0 + 30_000),
        "old enough"
    );
    assert!(
        !h.state.poll_has_work(&worker("w", 0), &cfg, T0 + 30_000),
        "no room"
    );
    let job = h.poll(idle.clone(), T0 + 30_000).jobs.remove(0);
    assert_eq!(ids(&job.sources).len(), 1);
    assert!(!h.state.poll_has_work(&idle, &cfg, T0 + 30_001), "running");
    assert!(
        h.state.poll_has_work(&worker("w", 0), &cfg, T0 + 45_000),
        "its lease ended"
    );
    let progress = with_updates("w", vec![report(&job, OutcomeRecord::InProgress)]);
    assert!(
        h.state.poll_has_work(&progress, &cfg, T0 + 30_001),
        "an update"
    );
}
