//! The block index: registration, tenants' totals, queries, listing.

use kiln_contract::metastore::TenantInfo;
use kiln_model::{LabelMatcher, MatchOp};

use super::{Harness, block, ids, ulid};

#[test]
fn adds_are_idempotent_and_tenants_are_counted_once_per_block() {
    let mut h = Harness::new("20/30s");
    let a = block("a", &[("t1", "api", 10, 20), ("t1", "db", 15, 30)]);
    let b = block("b", &[("t2", "api", 40, 50)]);
    assert_eq!(h.add(vec![a.clone(), b, a.clone()], 0), 2);
    assert_eq!(h.add(vec![a], 0), 0);
    let tenants = h.state.tenants();
    assert_eq!(
        tenants[0],
        TenantInfo {
            id: "t1".into(),
            first_seen_nanos: 10,
            blocks: 1,
            profiles: 4,
            samples: 20
        }
    );
    assert_eq!(tenants[1].blocks, 1);
    assert_eq!(h.state.block_count(), 2);
}

#[test]
fn queries_find_overlaps_including_long_blocks_that_start_early() {
    let mut h = Harness::new("20/30s");
    h.add(
        vec![
            block("long", &[("t", "api", 0, 1_000)]),
            block("early", &[("t", "api", 10, 20)]),
            block("late", &[("t", "api", 500, 600)]),
            block("edge", &[("t", "api", 700, 700)]),
        ],
        0,
    );
    let state = &h.state;
    assert_eq!(ids(&state.query("t", 550, 560, &[])), ["long", "late"]);
    assert_eq!(ids(&state.query("t", 20, 21, &[])), ["long", "early"]);
    assert_eq!(ids(&state.query("t", 600, 700, &[])), ["long", "late"]);
    assert_eq!(ids(&state.query("t", 700, 701, &[])), ["long", "edge"]);
    assert!(state.query("t", 2_000, 3_000, &[]).is_empty());
    assert!(state.query("other", 0, 3_000, &[]).is_empty());
    assert!(state.query("t", 10, 10, &[]).is_empty());
}

#[test]
fn matchers_prune_by_service_profile_type_and_label_presence() {
    let mut h = Harness::new("20/30s");
    h.add(
        vec![
            block("a", &[("t", "api", 0, 10)]),
            block("b", &[("t", "db", 0, 10)]),
            block("c", &[("u", "api", 0, 10)]),
        ],
        0,
    );
    let state = &h.state;
    let m = |name: &str, op, value: &str| LabelMatcher::new(name, op, value).unwrap();
    let api = [m("service_name", MatchOp::Equal, "api")];
    assert_eq!(ids(&state.query("t", 0, 100, &api)), ["a"]);
    let not_api = [m("service_name", MatchOp::NotRegex, "a.*")];
    assert_eq!(ids(&state.query("t", 0, 100, &not_api)), ["b"]);
    let memory = [m("__profile_type__", MatchOp::Regex, "memory:.*")];
    assert!(state.query("t", 0, 100, &memory).is_empty());
    let unknown_label = [m("pod", MatchOp::Equal, "x")];
    assert!(state.query("t", 0, 100, &unknown_label).is_empty());
    let absent_ok = [m("pod", MatchOp::Equal, "")];
    assert_eq!(ids(&state.query("t", 0, 100, &absent_ok)).len(), 2);
    let region = [m("region", MatchOp::Equal, "eu")];
    assert_eq!(ids(&state.query("t", 0, 100, &region)).len(), 2);
    assert!(LabelMatcher::new("x", MatchOp::Regex, "(").is_err());
}

#[test]
fn blocks_are_listed_by_id_for_a_tenant_or_all() {
    let mut h = Harness::new("20/30s");
    h.add(
        vec![
            block("c", &[("t", "api", 0, 10)]),
            block("a", &[("t", "api", 50, 60), ("u", "api", 0, 10)]),
            block("b", &[("u", "db", 0, 10)]),
        ],
        0,
    );
    assert_eq!(ids(&h.state.list_blocks(None)), ["a", "b", "c"]);
    assert_eq!(h.ids_of("t"), ["a", "c"]);
    assert_eq!(h.ids_of("u"), ["a", "b"]);
    assert!(h.ids_of("nobody").is_empty());
}

#[test]
fn a_test_ulid_carries_its_time() {
    let block = kiln_model::BlockMeta {
        id: ulid(super::T0 + 5, 7),
        ..kiln_model::BlockMeta::default()
    };
    assert_eq!(block.created_millis(), Some(super::T0 + 5));
    assert_ne!(ulid(super::T0, 1), ulid(super::T0, 2));
}
