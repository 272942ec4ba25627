//! Compaction, retention and tenant deletion through real nodes, their gRPC services and the
//! contract's client.

use std::sync::Arc;
use std::time::Duration;

use kiln_contract::metastore::{
    BlockQuery, CompactionPoll, JobOutcome, JobUpdate, Metastore, MetastoreClient, RetentionCutoff,
    TombstoneReason,
};
use kiln_model::{BlockMeta, DatasetMeta};
use tonic::transport::server::TcpIncoming;

use crate::node::now_millis;
use crate::test_support::ulid;
use crate::{CompactionConfig, MetastoreGrpc, MetastoreNode, NodeConfig};

fn dataset(tenant: &str, min: i64, max: i64, profiles: u64) -> DatasetMeta {
    DatasetMeta {
        tenant: tenant.to_string(),
        service_name: "api".into(),
        min_time_nanos: min,
        max_time_nanos: max,
        profile_types: vec!["process_cpu:cpu:nanoseconds:cpu:nanoseconds".into()],
        label_names: vec!["service_name".into()],
        series: 1,
        profiles,
        samples: profiles,
        ..DatasetMeta::default()
    }
}

/// A segment written now with one dataset per tenant.
fn segment(n: u64, tenants: &[&str]) -> BlockMeta {
    let id = ulid(now_millis(), n);
    BlockMeta {
        path: format!("segments/0/{id}/block.bin"),
        id,
        min_time_nanos: 100,
        max_time_nanos: 200,
        size_bytes: 1_000,
        datasets: tenants.iter().map(|t| dataset(t, 100, 200, 2)).collect(),
        ..BlockMeta::default()
    }
}

/// A compacted block of `tenant` at level 1.
fn compacted(n: u64, tenant: &str, profiles: u64) -> BlockMeta {
    let id = ulid(now_millis(), n);
    BlockMeta {
        path: format!("blocks/{tenant}/{id}/block.bin"),
        id,
        tenant: tenant.to_string(),
        compaction_level: 1,
        min_time_nanos: 100,
        max_time_nanos: 200,
        size_bytes: 500,
        datasets: vec![dataset(tenant, 100, 200, profiles)],
        ..BlockMeta::default()
    }
}

/// Level 0 compacted by twos (or after an hour); level 1 is final.
fn compaction() -> CompactionConfig {
    CompactionConfig {
        levels: CompactionConfig::parse_levels("2/1h").unwrap(),
        ..CompactionConfig::default()
    }
}

/// Nodes of one group, each serving gRPC on its own loopback port.
struct Group {
    nodes: Vec<Arc<MetastoreNode>>,
    addrs: Vec<String>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Group {
    async fn start(size: usize) -> Self {
        let mut listeners = Vec::new();
        for _ in 0..size {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let (mut nodes, mut dirs) = (Vec::new(), Vec::new());
        for (listener, addr) in listeners.into_iter().zip(&addrs) {
            let dir = tempfile::tempdir().unwrap();
            let config = NodeConfig {
                peers: if size == 1 { Vec::new() } else { addrs.clone() },
                heartbeat_interval: Duration::from_millis(100),
                election_timeout: Duration::from_millis(500),
                compaction: compaction(),
                ..NodeConfig::single(dir.path(), addr)
            };
            let node = MetastoreNode::start(config).await.unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_routes(MetastoreGrpc::routes(Arc::clone(&node)))
                    .serve_with_incoming(TcpIncoming::from(listener)),
            );
            nodes.push(node);
            dirs.push(dir);
        }
        for node in &nodes {
            node.raft()
                .wait(Some(Duration::from_secs(20)))
                .metrics(|m| m.current_leader.is_some(), "a leader")
                .await
                .unwrap();
        }
        Self {
            nodes,
            addrs,
            _dirs: dirs,
        }
    }

    fn client(&self) -> MetastoreClient {
        MetastoreClient::new(self.addrs.clone(), Duration::from_secs(20)).unwrap()
    }

    async fn applied_index(&self, node: usize) -> u64 {
        self.nodes[node].status().await.applied_index
    }

    async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }
}

fn worker_poll(jobs: u32, updates: Vec<JobUpdate>) -> CompactionPoll {
    CompactionPoll {
        worker: "compactor-1".into(),
        updates,
        job_capacity: jobs,
        ..CompactionPoll::default()
    }
}

fn ids(blocks: &[BlockMeta]) -> Vec<&str> {
    blocks.iter().map(|b| b.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_compacts_segments_and_deletes_their_objects_after_the_delay() {
    let group = Group::start(1).await;
    let client = group.client();
    let segments = vec![
        segment(1, &["t", "u"]),
        segment(2, &["t"]),
        segment(3, &["t"]),
    ];
    assert_eq!(client.add_blocks(segments.clone()).await.unwrap(), 3);

    // Nothing for a worker without room: answered without a write.
    let applied = group.applied_index(0).await;
    let idle = client
        .poll_compaction(worker_poll(0, vec![]))
        .await
        .unwrap();
    assert!(idle.jobs.is_empty() && idle.deletions.is_empty());
    assert_eq!(group.applied_index(0).await, applied, "no Raft write");

    let mut assigned = client
        .poll_compaction(worker_poll(1, vec![]))
        .await
        .unwrap();
    assert_eq!(assigned.jobs.len(), 1);
    let job = assigned.jobs.remove(0);
    assert_eq!((job.tenant.as_str(), job.level), ("", 0));
    assert_eq!(ids(&job.sources), ids(&segments[..2]), "the two oldest");
    let status = client.compaction_status().await.unwrap();
    assert_eq!(status.jobs[0].worker, "compactor-1");
    assert_eq!(status.levels[0].queued, 1);
    assert_eq!(
        status.oldest_level0_created_millis,
        segments[0].created_millis()
    );

    let results = vec![compacted(10, "t", 3), compacted(11, "u", 2)];
    let success = JobUpdate {
        name: job.name.clone(),
        token: job.token,
        outcome: JobOutcome::Success(results.clone()),
    };
    let reply = client
        .poll_compaction(worker_poll(0, vec![success.clone()]))
        .await
        .unwrap();
    assert!(reply.refused.is_empty());
    // The first reply was lost: the retry is acknowledged, not refused.
    let retried = client
        .poll_compaction(worker_poll(0, vec![success]))
        .await
        .unwrap();
    assert!(retried.refused.is_empty());

    let found = client
        .query_blocks(&BlockQuery::new("t", 0, 1_000))
        .await
        .unwrap();
    assert_eq!(
        ids(&found),
        [segments[2].id.as_str(), results[0].id.as_str()]
    );
    let u = client.list_blocks(Some("u")).await.unwrap();
    assert_eq!(u, [results[1].clone()]);
    let t = client.tenants().await.unwrap();
    assert_eq!((t[0].id.as_str(), t[0].blocks, t[0].profiles), ("t", 2, 5));

    let status = client.compaction_status().await.unwrap();
    assert!(status.jobs.is_empty());
    let levels: Vec<_> = status
        .levels
        .iter()
        .map(|l| (l.level, l.blocks, l.bytes, l.queued))
        .collect();
    assert_eq!(levels, [(0, 1, 1_000, 1), (1, 2, 1_000, 0)]);
    let tombstoned: Vec<_> = status
        .tombstones
        .iter()
        .map(|t| (t.block_id.as_str(), t.reason))
        .collect();
    assert_eq!(
        tombstoned,
        [
            (segments[0].id.as_str(), TombstoneReason::Compacted),
            (segments[1].id.as_str(), TombstoneReason::Compacted),
        ]
    );
    assert_eq!(
        status.oldest_level0_created_millis,
        segments[2].created_millis()
    );

    // Tombstones are due once the deletion delay has passed since the commit.
    let deleter = |deleted: Vec<String>| CompactionPoll {
        worker: "compactor-1".into(),
        deleted,
        deletion_capacity: 10,
        deletion_delay_millis: 1_500,
        ..CompactionPoll::default()
    };
    let early = client.poll_compaction(deleter(vec![])).await.unwrap();
    assert!(early.deletions.is_empty());
    let committed_at = status.tombstones[0].created_millis;
    let wait = (committed_at + 1_550 - now_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let due = client.poll_compaction(deleter(vec![])).await.unwrap();
    let paths: Vec<_> = due.deletions.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(
        paths,
        [segments[0].path.as_str(), segments[1].path.as_str()]
    );
    let leased = client.poll_compaction(deleter(vec![])).await.unwrap();
    assert!(leased.deletions.is_empty(), "leased to the first caller");
    let done = due.deletions.iter().map(|t| t.block_id.clone()).collect();
    client.poll_compaction(deleter(done)).await.unwrap();
    assert!(
        client
            .compaction_status()
            .await
            .unwrap()
            .tombstones
            .is_empty()
    );

    // A compacted segment registered again stays gone.
    assert_eq!(client.add_blocks(segments[..1].to_vec()).await.unwrap(), 0);
    group.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_polls_retention_and_tenant_deletion() {
    let group = Group::start(3).await;
    let mut follower = None;
    for (n, node) in group.nodes.iter().enumerate() {
        if node.status().await.state == "follower" {
            follower = Some(n);
        }
    }
    let node = &group.nodes[follower.expect("a follower")];
    let old = BlockMeta {
        min_time_nanos: 0,
        max_time_nanos: 10,
        datasets: vec![dataset("t", 0, 10, 1), dataset("u", 0, 10, 1)],
        ..segment(1, &[])
    };
    node.add_blocks(vec![old.clone(), segment(2, &["t"])])
        .await
        .unwrap();

    let assigned = node.poll_compaction(worker_poll(1, vec![])).await.unwrap();
    assert_eq!(assigned.jobs[0].sources.len(), 2);
    let removed = node
        .apply_retention(vec![RetentionCutoff {
            tenant: "t".into(),
            before_nanos: 50,
        }])
        .await
        .unwrap();
    assert_eq!((removed[0].datasets, removed[0].blocks), (1, 0));
    assert_eq!(node.delete_tenant("u").await.unwrap(), 1);
    let status = node.compaction_status().await.unwrap();
    assert_eq!(status.tombstones.len(), 1);
    assert_eq!(status.tombstones[0].reason, TombstoneReason::TenantDeleted);
    let listed = node.list_blocks(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(node.delete_tenant("").await.is_err());
    group.shutdown().await;
}
