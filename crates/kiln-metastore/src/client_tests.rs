//! The gRPC client of `kiln-contract` against a real node of this crate.

use std::sync::Arc;
use std::time::Duration;

use kiln_contract::metastore::{BlockQuery, Metastore, MetastoreClient};
use kiln_model::{BlockMeta, DatasetMeta};
use tonic::transport::server::TcpIncoming;

use crate::{MetastoreGrpc, MetastoreNode, NodeConfig};

fn block(id: &str) -> BlockMeta {
    BlockMeta {
        id: id.to_string(),
        path: format!("segments/0/{id}/block.bin"),
        shard: 0,
        compaction_level: 0,
        min_time_nanos: 1,
        max_time_nanos: 2,
        size_bytes: 1,
        datasets: vec![DatasetMeta {
            tenant: "t".into(),
            service_name: "s".into(),
            min_time_nanos: 1,
            max_time_nanos: 2,
            profile_types: vec![],
            label_names: vec![],
            series: 1,
            profiles: 1,
            samples: 1,
            ..DatasetMeta::default()
        }],
        ..BlockMeta::default()
    }
}

/// Addresses that refuse connections: listeners bound and dropped.
fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_rotating_until_a_node_answers() {
    // The only node comes up after the client has gone around the list once, at a position
    // the rotation must reach again.
    let late = dead_addr();
    let peers = vec![dead_addr(), late.clone(), dead_addr()];
    let client = Arc::new(MetastoreClient::new(peers, Duration::from_secs(20)).unwrap());
    let first = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.add_block(block("b0")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind(&late).await.unwrap();
    let node = MetastoreNode::start(NodeConfig::single(dir.path(), &late))
        .await
        .unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(MetastoreGrpc::routes(Arc::clone(&node)))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    first.await.unwrap().unwrap();
    for n in 1..8 {
        client.add_block(block(&format!("b{n}"))).await.unwrap();
    }
    let found = client
        .query_blocks(&BlockQuery::new("t", 0, 10))
        .await
        .unwrap();
    assert_eq!(found.len(), 8);
    node.shutdown().await;
}
