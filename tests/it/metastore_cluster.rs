//! The Raft metastore as separate `kiln server --target metastore` processes on loopback: leader
//! loss under load, catch-up from a snapshot, node replacement, and a partitioned leader.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_contract::metastore::{BlockQuery, Metastore, MetastoreClient};
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_proto::kiln::metastore::v1::StatusResponse;
use tokio_util::sync::CancellationToken;

use crate::harness::KilnServer;
use crate::proxy::Proxy;

const TENANT: &str = "raft-test";
/// How long the group may take to elect a leader and serve again (the bound).
const FAILOVER_BOUND: Duration = Duration::from_secs(15);

/// A metastore group: one process and one proxy per node.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    pub(crate) nodes: Vec<Option<KilnServer>>,
    proxies: Vec<Proxy>,
    pub(crate) peers: Vec<String>,
    extra: Vec<String>,
}

fn node_ip(index: usize) -> IpAddr {
    format!("127.0.1.{}", index + 1).parse().unwrap()
}

impl Cluster {
    pub(crate) async fn start(size: usize, extra: &[&str]) -> Self {
        let mut proxies = Vec::new();
        for index in 0..size {
            proxies.push(Proxy::bind(&node_ip(index).to_string()).await);
        }
        let peers: Vec<String> = proxies.iter().map(|p| p.addr.to_string()).collect();
        let mut cluster = Self {
            dir: tempfile::tempdir().unwrap(),
            nodes: Vec::new(),
            proxies,
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for index in 0..size {
            let node = cluster.spawn(index, &cluster.peers.join(","));
            cluster.nodes.push(Some(node));
        }
        for node in cluster.nodes.iter().flatten() {
            node.wait_ready().await.unwrap();
        }
        cluster
    }

    fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.path().join(format!("node-{index}"))
    }

    /// Starts node `index` (its data dir survives restarts) and points its proxy at it.
    fn spawn(&self, index: usize, peers: &str) -> KilnServer {
        let mut args = vec![
            "--target".to_string(),
            "metastore".to_string(),
            format!("--metastore.peers={peers}"),
            format!("--metastore.advertise-addr={}", self.proxies[index].addr),
            "--metastore.heartbeat-interval=100ms".to_string(),
            "--metastore.election-timeout=500ms".to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = KilnServer::spawn(&self.data_dir(index), &args).unwrap();
        self.proxies[index].set_target(&node.grpc_addr);
        node
    }

    /// A client of the whole group, through the proxies.
    pub(crate) fn client(&self) -> MetastoreClient {
        MetastoreClient::new(self.peers.clone(), Duration::from_secs(30)).unwrap()
    }

    /// A client of one node only.
    fn client_of(&self, index: usize, retry_for: Duration) -> MetastoreClient {
        MetastoreClient::new(vec![self.peers[index].clone()], retry_for).unwrap()
    }

    async fn status(&self, index: usize) -> Option<StatusResponse> {
        MetastoreClient::status_of(&self.peers[index]).await.ok()
    }

    /// Waits until a node other than those in `excluded` leads and can serve a linearizable read.
    pub(crate) async fn wait_for_leader(&self, excluded: &[usize]) -> usize {
        let deadline = Instant::now() + FAILOVER_BOUND;
        loop {
            for index in 0..self.proxies.len() {
                if excluded.contains(&index) || self.nodes.get(index).is_none_or(Option::is_none) {
                    continue;
                }
                if let Some(status) = self.status(index).await
                    && status.state == "leader"
                    && status.ready
                {
                    return index;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {FAILOVER_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `check` holds for node `index`'s status.
    async fn wait_status(&self, index: usize, what: &str, check: impl Fn(&StatusResponse) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.status(index).await
                && check(&status)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {index}: {what} never happened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cuts node `index` off from every other node, both ways.
    fn partition(&self, index: usize) {
        for (other, proxy) in self.proxies.iter().enumerate() {
            if other == index {
                for peer in 0..self.proxies.len() {
                    if peer != index {
                        proxy.block(node_ip(peer));
                    }
                }
            } else {
                proxy.block(node_ip(index));
            }
        }
    }

    fn heal(&self) {
        for proxy in &self.proxies {
            proxy.heal();
        }
    }
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
        }],
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
    let mut cluster = Cluster::start(3, &[]).await;
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
    let node = cluster.spawn(leader, &cluster.peers.join(","));
    node.wait_ready().await.unwrap();
    cluster.nodes[leader] = Some(node);
    let only_it = cluster.client_of(leader, Duration::from_secs(30));
    assert_eq!(assert_index_holds(&only_it, &acked).await, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_log_compaction_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(3, &["--metastore.snapshot-logs=20"]).await;
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

    let node = cluster.spawn(follower, &cluster.peers.join(","));
    node.wait_ready().await.unwrap();
    cluster.nodes[follower] = Some(node);
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
    let mut cluster = Cluster::start(3, &[]).await;
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
    let peers = format!("--metastore.peers={}", cluster.peers.join(","));
    let removed = admin(&["remove", &cluster.peers[leaving], &peers]);
    assert!(removed.contains("removed"), "{removed}");
    cluster.nodes[leaving].take().unwrap().kill();
    writer.wait_for_more(30).await;

    // A fresh node, started with the current group as its peers, waits to be added.
    cluster
        .proxies
        .push(Proxy::bind(&node_ip(3).to_string()).await);
    cluster.peers.push(cluster.proxies[3].addr.to_string());
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != leaving)
        .map(|i| cluster.peers[i].clone())
        .collect();
    let fresh = cluster.spawn(3, &survivors.join(","));
    cluster.nodes.push(Some(fresh));
    let added = admin(&["add", &cluster.peers[3], &peers]);
    assert!(added.contains("added"), "{added}");
    writer.wait_for_more(30).await;
    let acked = writer.finish().await;

    let status = cluster.status(3).await.unwrap();
    let mut voters: Vec<String> = status.voters.iter().map(|n| n.addr.clone()).collect();
    voters.sort();
    let mut expected = survivors.clone();
    expected.push(cluster.peers[3].clone());
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

    let only_fresh = cluster.client_of(3, Duration::from_secs(30));
    assert_index_holds(&only_fresh, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_steps_down_without_split_brain_or_loss() {
    let cluster = Cluster::start(3, &[]).await;
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
