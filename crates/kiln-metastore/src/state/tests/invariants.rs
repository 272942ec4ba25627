//! Invariants over a long random-ish mix of registrations, polls (commits, failures, ended
//! leases, deletions), retention and tenant deletion.

use std::collections::BTreeMap;

use kiln_contract::metastore::CompactionJob;
use kiln_model::BlockMeta;

use super::{Harness, T0, dataset, report, ulid};
use crate::state::MetastoreState;
use crate::state::index::tenants_of;
use crate::types::{OutcomeRecord, PollRecord};

const TENANTS: [&str; 4] = ["a", "b", "c", "d"];

/// A fixed-seed linear congruential generator: the same sequence on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Tenants' totals equal the sums over the blocks in the index; the sources of every job are in
/// the index; with `rebuild`, the queues equal those rebuilt from a snapshot.
fn check(state: &MetastoreState, rebuild: bool) {
    let mut sums: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for block in state.list_blocks(None) {
        for tenant in tenants_of(&block) {
            sums.entry(tenant.to_string()).or_default().0 += 1;
        }
        for d in &block.datasets {
            let sum = sums.entry(d.tenant.clone()).or_default();
            sum.1 += d.profiles;
            sum.2 += d.samples;
        }
    }
    for tenant in state.tenants() {
        let sum = sums.remove(&tenant.id).unwrap_or_default();
        assert_eq!(
            (tenant.blocks, tenant.profiles, tenant.samples),
            sum,
            "totals of tenant {}",
            tenant.id
        );
    }
    assert!(
        sums.is_empty(),
        "data of tenants without an entry: {sums:?}"
    );
    for job in state.jobs.iter() {
        for source in &job.sources {
            assert!(
                state.index.get(source).is_some(),
                "{source} of {}",
                job.name
            );
        }
    }
    if rebuild {
        let restored = MetastoreState::from_snapshot(&state.to_snapshot()).unwrap();
        assert_eq!(restored.queues, state.queues);
    }
}

/// A compactor's results for `job`: per tenant one block a level up, with duplicates removed.
fn results(job: &CompactionJob, now: i64, next_id: &mut u64, rng: &mut Lcg) -> Vec<BlockMeta> {
    let mut by_tenant: BTreeMap<&str, (u64, i64, i64)> = BTreeMap::new();
    for d in job.sources.iter().flat_map(|b| &b.datasets) {
        let e = by_tenant
            .entry(&d.tenant)
            .or_insert((0, i64::MAX, i64::MIN));
        *e = (
            e.0 + d.profiles,
            e.1.min(d.min_time_nanos),
            e.2.max(d.max_time_nanos),
        );
    }
    by_tenant
        .into_iter()
        .map(|(tenant, (profiles, min, max))| {
            *next_id += 1;
            let id = ulid(now, *next_id);
            let kept = profiles - rng.below(profiles / 2 + 1);
            BlockMeta {
                path: format!("blocks/{tenant}/{id}"),
                id,
                tenant: tenant.to_string(),
                shard: job.shard,
                compaction_level: job.level + 1,
                min_time_nanos: min,
                max_time_nanos: max,
                size_bytes: 10,
                datasets: vec![dataset(tenant, "merged", min, max, kept)],
            }
        })
        .collect()
}

#[test]
fn totals_queues_and_jobs_stay_consistent() {
    let mut h = Harness::new("3/5s,2/20s");
    h.config.max_failures = 2;
    let mut rng = Lcg(7);
    let mut now = T0;
    let mut next_id = 0;
    let mut registered: Vec<BlockMeta> = Vec::new();
    let mut held: Vec<CompactionJob> = Vec::new();
    let mut handed: Vec<String> = Vec::new();
    for step in 0..600 {
        // Now and then a pause long enough for leases to end.
        now += match rng.below(25) {
            0 => 20_000,
            _ => rng.below(4_000) as i64,
        };
        match rng.below(20) {
            0..=7 => {
                let blocks: Vec<BlockMeta> = (0..1 + rng.below(3))
                    .map(|_| {
                        next_id += 1;
                        let datasets = (0..1 + rng.below(3))
                            .map(|_| {
                                let tenant = TENANTS[rng.below(4) as usize];
                                let min = rng.below(1_000) as i64;
                                dataset(tenant, "api", min, min + 50, 1 + rng.below(9))
                            })
                            .collect();
                        let id = ulid(now, next_id);
                        BlockMeta {
                            path: format!("segments/{id}"),
                            id,
                            shard: rng.below(2) as u32,
                            size_bytes: 10,
                            min_time_nanos: 0,
                            max_time_nanos: 1_050,
                            datasets,
                            ..BlockMeta::default()
                        }
                    })
                    .collect();
                registered.extend(blocks.iter().cloned());
                h.add(blocks, now);
            }
            8 => {
                // A late retried registration of any block seen so far.
                let again = registered[rng.below(registered.len() as u64) as usize].clone();
                h.add(vec![again], now);
            }
            9..=15 => {
                // Reports on the jobs held: some succeed, some fail, some are still running,
                // some wait for a later poll (and may be stale by then).
                let mut updates = Vec::new();
                for job in std::mem::take(&mut held) {
                    match rng.below(10) {
                        0 => updates.push(report(&job, OutcomeRecord::Failure("boom".into()))),
                        1 => {
                            updates.push(report(&job, OutcomeRecord::InProgress));
                            held.push(job);
                        }
                        2 => held.push(job),
                        _ => {
                            let blocks = results(&job, now, &mut next_id, &mut rng);
                            updates.push(report(&job, OutcomeRecord::Success(blocks)));
                        }
                    }
                }
                let deleted = std::mem::take(&mut handed);
                let polled = h.poll(
                    PollRecord {
                        worker: "w".into(),
                        updates,
                        job_capacity: rng.below(3) as u32,
                        deleted,
                        deletion_capacity: 2,
                        deletion_delay_millis: 10_000,
                    },
                    now,
                );
                held.extend(polled.jobs);
                handed.extend(polled.deletions.into_iter().map(|t| t.block_id));
            }
            16..=18 => {
                let tenant = TENANTS[rng.below(4) as usize];
                h.retention(&[(tenant, rng.below(600) as i64)], now);
            }
            _ => {
                h.delete(TENANTS[rng.below(4) as usize], now);
            }
        }
        check(&h.state, step % 10 == 0);
    }
    let status = h.status();
    assert!(
        status.levels.iter().any(|l| l.level > 0 && l.blocks > 0),
        "{status:?}"
    );
}
