//! The Raft metastore as separate `kiln server --target metastore` processes on loopback: leader
//! loss under load, catch-up from a snapshot, node replacement, and a partitioned leader.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_contract::metastore::{BlockQuery, Metastore, MetastoreClient};
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_testkit::cluster::{MetastoreGroup, Network};
use tokio_util::sync::CancellationToken;

use crate::support::kiln;
use crate::support::metastore::{FAILOVER_BOUND, GroupStatus, RAFT_TIMERS};

const TENANT: &str = "raft-test";

/// A group of `size` nodes behind proxies (so a test can partition it), with short Raft timers
/// and `extra` flags.
async fn start_group(size: usize, extra: &[&str]) -> MetastoreGroup {
    let command = kiln().args(RAFT_TIMERS).args(extra);
    MetastoreGroup::start(&command, size, Network::Proxied)
        .await
        .unwrap()
}

fn block(id: &str) -> BlockMeta {
    BlockMeta {
        id: id.to_string(),
        path: format!("segments/0/{id}/block.bin"),
        shard: 0,
        compaction_level: 0,
        min_time_nanos: 1_000,
        max_time_nanos: 2_000,
        size_bytes: 100,
        datasets: vec![DatasetMeta {
            tenant: TENANT.to_string(),
            service_name: "svc".to_string(),
            min_time_nanos: 1_000,
            max_time_nanos: 2_000,
            profile_types: vec!["process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string()],
            label_names: vec!["service_name".to_string()],
            series: 1,
            profiles: 1,
            samples: 3,
            ..DatasetMeta::default()
        }],
        ..BlockMeta::default()
    }
}

/// Registers blocks one at a time, one every few milliseconds, until stopped; remembers which
/// registrations were acknowledged.
struct Writer {
    acked: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(client: MetastoreClient, prefix: &str) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (acked_in, stop_in, prefix) = (Arc::clone(&acked), stop.clone(), prefix.to_string());
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            for n in 0.. {
                tokio::select! {
                    _ = stop_in.cancelled() => return,
                    _ = interval.tick() => {}
                }
                let id = format!("{prefix}-{n:06}");
                match client.add_block(block(&id)).await {
                    Ok(()) => acked_in.lock().unwrap().push(id),
                    Err(e) => eprintln!("registration of {id} failed: {e}"),
                }
            }
        });
        Self { acked, stop, task }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `n` more registrations than now were acknowledged.
    async fn wait_for_more(&self, n: usize) {
        let target = self.count() + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < target {
            assert!(
                Instant::now() < deadline,
                "registrations stalled at {}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.cancel();
        self.task.await.unwrap();
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Every acknowledged block is in the index, no block twice, and the tenant's totals count each
/// block once (a registration applied twice would count twice).
async fn assert_index_holds(client: &MetastoreClient, acked: &[String]) -> usize {
    let blocks = client
        .query_blocks(&BlockQuery::new(TENANT, 0, 10_000))
        .await
        .unwrap();
    let ids: HashSet<&str> = blocks.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids.len(), blocks.len(), "a block is listed twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let tenants = client.tenants().await.unwrap();
    let tenant = tenants.iter().find(|t| t.id == TENANT).unwrap();
    assert_eq!(
        tenant.blocks,
        blocks.len() as u64,
        "a registration was applied twice"
    );
    assert_eq!(tenant.samples, 3 * blocks.len() as u64);
    blocks.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_acknowledged_is_lost() {
    let mut cluster = start_group(3, &[]).await;
    let writer = Writer::start(cluster.client(), "kill");
    writer.wait_for_more(50).await;

    let leader = cluster.wait_for_leader(&[]).await;
    let old_term = cluster.status(leader).await.unwrap().term;
    cluster.nodes[leader].take().unwrap().kill();
    let killed_at = Instant::now();
    let new_leader = cluster.wait_for_leader(&[leader]).await;
    let failover = killed_at.elapsed();
    assert!(failover < FAILOVER_BOUND, "failover took {failover:?}");
    eprintln!("a new leader served {failover:?} after the old one was killed");
    assert!(cluster.status(new_leader).await.unwrap().term > old_term);
    writer.wait_for_more(50).await;
    let acked = writer.finish().await;

    let stored = assert_index_holds(&cluster.client(), &acked).await;
    assert!(stored >= acked.len());

    // The killed node comes back and serves the same index from its own state.
    cluster.restart_node(leader).await.unwrap();
    let only_it = cluster.client_of(leader, Duration::from_secs(30));
    assert_eq!(assert_index_holds(&only_it, &acked).await, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_log_compaction_catches_up_from_a_snapshot() {
    let mut cluster = start_group(3, &["--metastore.snapshot-logs=20"]).await;
    let client = cluster.client();
    for n in 0..10 {
        client
            .add_block(block(&format!("early-{n}")))
            .await
            .unwrap();
    }
    let leader = cluster.wait_for_leader(&[]).await;
    let follower = (leader + 1) % 3;
    let applied_before = cluster.status(follower).await.unwrap().applied_index;
    cluster.nodes[follower].take().unwrap().kill();

    let mut acked: Vec<String> = (0..10).map(|n| format!("early-{n}")).collect();
    for n in 0..150 {
        let id = format!("late-{n}");
        client.add_block(block(&id)).await.unwrap();
        acked.push(id);
    }
    // The survivors compacted their logs past what the stopped node has.
    cluster
        .wait_status(leader, "log purged past the stopped node", |s| {
            s.purged_index > applied_before
        })
        .await;

    cluster.restart_node(follower).await.unwrap();
    let status = cluster.status(follower).await.unwrap();
    assert!(
        status.snapshots_installed >= 1,
        "caught up without a snapshot: {status:?}"
    );
    assert!(status.snapshot_index > applied_before, "{status:?}");
    let only_it = cluster.client_of(follower, Duration::from_secs(30));
    assert_eq!(assert_index_holds(&only_it, &acked).await, acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_replaced_under_load() {
    let mut cluster = start_group(3, &[]).await;
    let writer = Writer::start(cluster.client(), "replace");
    writer.wait_for_more(30).await;
    let leader = cluster.wait_for_leader(&[]).await;
    let leaving = (leader + 1) % 3;

    let admin = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["admin", "metastore"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kiln admin metastore {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let peers = cluster.peers_flag();
    let removed = admin(&["remove", &cluster.peers()[leaving], &peers]);
    assert!(removed.contains("removed"), "{removed}");
    cluster.nodes[leaving].take().unwrap().kill();
    writer.wait_for_more(30).await;

    // A fresh node, started with the current group as its peers, waits to be added.
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != leaving)
        .map(|i| cluster.peers()[i].clone())
        .collect();
    let fresh = cluster.add_node(&survivors).await.unwrap();
    let added = admin(&["add", &cluster.peers()[fresh], &peers]);
    assert!(added.contains("added"), "{added}");
    writer.wait_for_more(30).await;
    let acked = writer.finish().await;

    let status = cluster.status(fresh).await.unwrap();
    let mut voters: Vec<String> = status.voters.iter().map(|n| n.addr.clone()).collect();
    voters.sort();
    let mut expected = survivors.clone();
    expected.push(cluster.peers()[fresh].clone());
    expected.sort();
    assert_eq!(voters, expected);
    let status_table = admin(&[
        "status",
        &format!("--metastore.peers={}", expected.join(",")),
    ]);
    assert_eq!(
        status_table
            .lines()
            .filter(|l| l.contains(" true "))
            .count(),
        3,
        "{status_table}"
    );

    let only_fresh = cluster.client_of(fresh, Duration::from_secs(30));
    assert_index_holds(&only_fresh, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_without_split_brain_or_loss() {
    let cluster = start_group(3, &[]).await;
    let writer = Writer::start(cluster.client(), "partition");
    writer.wait_for_more(30).await;
    let old_leader = cluster.wait_for_leader(&[]).await;
    let old_term = cluster.status(old_leader).await.unwrap().term;

    cluster.partition(old_leader);
    let cut_at = Instant::now();
    let new_leader = cluster.wait_for_leader(&[old_leader]).await;
    // Cut off from the majority, the old leader stops being ready and acknowledges nothing.
    cluster
        .wait_status(old_leader, "not ready while partitioned", |s| !s.ready)
        .await;
    eprintln!(
        "the partitioned leader was not ready {:?} after the cut",
        cut_at.elapsed()
    );
    let isolated = cluster.client_of(old_leader, Duration::from_secs(3));
    let refused = isolated.add_block(block("written-to-the-minority")).await;
    assert!(refused.is_err(), "the minority acknowledged a write");
    writer.wait_for_more(30).await;
    // At no point do two ready leaders exist.
    let ready_leaders = {
        let mut n = 0;
        for index in 0..3 {
            if let Some(s) = cluster.status(index).await
                && s.state == "leader"
                && s.ready
            {
                n += 1;
            }
        }
        n
    };
    assert_eq!(ready_leaders, 1);

    cluster.heal();
    cluster
        .wait_status(old_leader, "a follower of the new term", |s| {
            s.state == "follower" && s.term > old_term && s.ready
        })
        .await;
    assert_ne!(new_leader, old_leader);
    let acked = writer.finish().await;
    let only_old = cluster.client_of(old_leader, Duration::from_secs(30));
    assert_index_holds(&only_old, &acked).await;
}
