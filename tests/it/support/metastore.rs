//! Asking a metastore group (started by kiln-testkit) about itself over gRPC: clients, node
//! status, the leader.

use std::time::{Duration, Instant};

use kiln_contract::metastore::MetastoreClient;
use kiln_proto::kiln::metastore::v1::StatusResponse;
use kiln_testkit::cluster::MetastoreGroup;

/// How long the group may take to elect a leader and serve again (the bound).
pub(crate) const FAILOVER_BOUND: Duration = Duration::from_secs(15);

pub(crate) trait GroupStatus {
    /// A client of the whole group.
    fn client(&self) -> MetastoreClient;

    /// A client of one node only.
    fn client_of(&self, index: usize, retry_for: Duration) -> MetastoreClient;

    /// Node `index`'s status, when it answers.
    async fn status(&self, index: usize) -> Option<StatusResponse>;

    /// Waits until a node other than those in `excluded` leads and can serve a linearizable
    /// read.
    async fn wait_for_leader(&self, excluded: &[usize]) -> usize;

    /// Waits until `check` holds for node `index`'s status.
    async fn wait_status(&self, index: usize, what: &str, check: impl Fn(&StatusResponse) -> bool);
}

impl GroupStatus for MetastoreGroup {
    fn client(&self) -> MetastoreClient {
        MetastoreClient::new(self.peers().to_vec(), Duration::from_secs(30)).unwrap()
    }

    fn client_of(&self, index: usize, retry_for: Duration) -> MetastoreClient {
        MetastoreClient::new(vec![self.peers()[index].clone()], retry_for).unwrap()
    }

    async fn status(&self, index: usize) -> Option<StatusResponse> {
        self.client().status_of(&self.peers()[index]).await.ok()
    }

    async fn wait_for_leader(&self, excluded: &[usize]) -> usize {
        let deadline = Instant::now() + FAILOVER_BOUND;
        loop {
            for index in 0..self.nodes.len() {
                if excluded.contains(&index) || self.nodes[index].is_none() {
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
}

/// Short Raft timers for a metastore group under test.
pub(crate) const RAFT_TIMERS: [&str; 2] = [
    "--metastore.heartbeat-interval=100ms",
    "--metastore.election-timeout=500ms",
];
