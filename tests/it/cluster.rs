//! The distributed write path as separate processes on loopback: three metastore nodes, two
//! ingesters, two distributors and a querier on a real S3-compatible server (moto). Clients push
//! through push.v1 (Connect and gRPC), /ingest and OTLP while an ingester is killed, the metastore
//! leader is killed, object storage freezes, and the whole metastore is unreachable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kiln_contract::metastore::Metastore;
use kiln_proto::push::v1::PushRequest;
use kiln_proto::push::v1::pusher_service_client::PusherServiceClient;
use kiln_testkit::cluster::{Cluster, Network};
use kiln_testkit::emulators::Moto;
use prost::Message;

use crate::support::metastore::{GroupStatus, RAFT_TIMERS};
use crate::support::{decode, go_profile_name, go_profiles, input_totals, kiln, stored_total};

/// Every role in its own process, on a moto S3 server: three metastore nodes, two ingesters,
/// two distributors and a querier.
async fn start_cluster() -> (Moto, Cluster) {
    let s3 = Moto::start("kiln").await.unwrap();
    let storage = s3.kiln_flags("data");
    let storage: Vec<&str> = storage.iter().map(String::as_str).collect();
    let mut ingester_flags = storage.clone();
    ingester_flags.push("--ingester.flush-interval=200ms");
    let cluster = Cluster::builder(&kiln())
        .metastores(3, Network::Proxied, &RAFT_TIMERS)
        .ingesters(2, &ingester_flags)
        .distributors(2, &[])
        .queriers(1, &storage)
        .start()
        .await
        .unwrap();
    wait_for_ingesters(&cluster, 2).await;
    (s3, cluster)
}

/// Waits until the metastore lists `n` live ingesters.
pub(crate) async fn wait_for_ingesters(cluster: &Cluster, n: usize) {
    let client = cluster.metastores.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .members(Some(kiln_contract::Role::Ingester))
        .await
        .map(|m| m.len())
        .unwrap_or(0)
        != n
    {
        assert!(
            Instant::now() < deadline,
            "the ingesters never announced themselves"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Clone, Copy, Debug)]
enum Client {
    /// push.v1 over Connect (protobuf), with a profile id: retried until acknowledged.
    Connect,
    /// push.v1 over gRPC, with a profile id: retried until acknowledged.
    Grpc,
    /// /ingest, which carries no profile id: a failed push is not retried.
    Ingest,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Connect => "connect",
            Client::Grpc => "grpc",
            Client::Ingest => "ingest",
        }
    }
}

/// What a client had acknowledged, and what it sent without an acknowledgement.
#[derive(Debug, Default)]
struct Outcome {
    acked: BTreeMap<(String, String), i64>,
    unacked: BTreeMap<(String, String), i64>,
    failures: usize,
}

fn push_request(service: &str, name: &str, id: &str, gzipped: &Bytes) -> PushRequest {
    crate::support::push_request(
        &[("service_name", service), ("__name__", name)],
        gzipped,
        id,
    )
}

async fn push_once(client: Client, base: &str, service: &str, id: &str, gzipped: &Bytes) -> bool {
    let name = go_profile_name(&decode(gzipped));
    // A push that hangs counts as failed (and is retried) instead of stalling the test.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    match client {
        Client::Connect => http
            .post(format!("{base}/push.v1.PusherService/Push"))
            .header("content-type", "application/proto")
            .body(push_request(service, name, id, gzipped).encode_to_vec())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200),
        Client::Grpc => match PusherServiceClient::connect(base.to_string()).await {
            Ok(mut grpc) => {
                let mut request = tonic::Request::new(push_request(service, name, id, gzipped));
                request.set_timeout(Duration::from_secs(60));
                grpc.push(request).await.is_ok()
            }
            Err(_) => false,
        },
        Client::Ingest => http
            .post(format!("{base}/ingest?name={service}&format=pprof"))
            .body(gzipped.clone())
            .send()
            .await
            .is_ok_and(|r| r.status() == 200),
    }
}

/// Pushes every Go test profile `rounds` times over three services, counting acknowledgements.
async fn run_client(
    client: Client,
    base: String,
    rounds: usize,
    progress: Arc<AtomicUsize>,
) -> Outcome {
    let files = go_profiles();
    let mut outcome = Outcome::default();
    for n in 0..rounds * files.len() {
        let (_, gzipped) = &files[n % files.len()];
        let service = format!("{}-{}", client.name(), n % 3);
        let id = format!("{}-{n}", client.name());
        let mut acked = push_once(client, &base, &service, &id, gzipped).await;
        if !matches!(client, Client::Ingest) {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !acked {
                assert!(Instant::now() < deadline, "{id} never acknowledged");
                outcome.failures += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                acked = push_once(client, &base, &service, &id, gzipped).await;
            }
        }
        let totals = if acked {
            progress.fetch_add(1, Ordering::SeqCst);
            &mut outcome.acked
        } else {
            outcome.failures += 1;
            &mut outcome.unacked
        };
        for (profile_type, total) in input_totals(&decode(gzipped)) {
            *totals.entry((service.clone(), profile_type)).or_insert(0) += total;
        }
    }
    outcome
}

async fn wait_for_progress(progress: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "pushes stalled at {}",
            progress.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_profile_survives_ingester_and_metastore_failures() {
    let (s3, mut cluster) = start_cluster().await;
    let progress = Arc::new(AtomicUsize::new(0));
    let clients = [
        (Client::Connect, cluster.distributors[0].url("")),
        (Client::Grpc, cluster.distributors[1].url("")),
        (Client::Ingest, cluster.distributors[1].url("")),
    ];
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(client, base)| tokio::spawn(run_client(client, base, 2, Arc::clone(&progress))))
        .collect();

    wait_for_progress(&progress, 15).await;
    cluster.ingesters[0].take().unwrap().kill();
    // OTLP through the other distributor while the others push on.
    let otlp_target = format!("http://{}", cluster.distributors[0].otlp_http_addr());
    let otlp = tokio::task::spawn_blocking(move || {
        crate::otlp::send("http-proto", &otlp_target, "ebpf-cpu", false)
    });
    wait_for_progress(&progress, 50).await;
    let leader = cluster.metastores.wait_for_leader(&[]).await;
    cluster.metastores.nodes[leader].take().unwrap().kill();
    wait_for_progress(&progress, 80).await;
    // Object storage freezes for a while: pushes wait or fail retryably, then go on.
    s3.pause().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    s3.resume().unwrap();

    let mut expected = BTreeMap::new();
    let mut maybe = BTreeMap::new();
    for task in tasks {
        let outcome = task.await.unwrap();
        expected.extend(outcome.acked);
        maybe.extend(outcome.unacked);
    }
    crate::otlp::check_scenario(&cluster.queriers[0], &otlp.await.unwrap()).await;

    for ((service, profile_type), acked) in &expected {
        let stored = stored_total(&cluster.queriers[0], profile_type, service).await;
        let unacked = maybe
            .get(&(service.clone(), profile_type.clone()))
            .copied()
            .unwrap_or(0);
        if service.starts_with("ingest") {
            // Unacknowledged /ingest pushes may or may not be stored; acknowledged ones are.
            assert!(
                (*acked..=acked + unacked).contains(&stored),
                "{service} {profile_type}: stored {stored}, acknowledged {acked}, unacknowledged {unacked}"
            );
        } else {
            assert_eq!(stored, *acked, "{service} {profile_type}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_while_the_metastore_is_down_are_registered_when_it_returns() {
    let (_s3, cluster) = start_cluster().await;
    let base = cluster.distributors[0].url("");
    let files = go_profiles();
    let (_, gzipped) = &files[0];
    assert!(push_once(Client::Connect, &base, "before", "before-1", gzipped).await);

    // Every metastore node frozen: the ingester parks the registration and acknowledges.
    for node in cluster.metastores.nodes.iter().flatten() {
        node.pause().unwrap();
    }
    let acked = push_once(Client::Connect, &base, "during", "during-1", gzipped).await;
    for node in cluster.metastores.nodes.iter().flatten() {
        node.resume().unwrap();
    }
    assert!(
        acked,
        "a push during the metastore outage was not acknowledged"
    );
    let resumed = Instant::now();
    let expected = input_totals(&decode(gzipped));
    let (profile_type, total) = expected.iter().next().unwrap();
    let deadline = resumed + Duration::from_secs(30);
    loop {
        if stored_total(&cluster.queriers[0], profile_type, "during").await == *total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the parked block was not queryable within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "parked block queryable {:?} after the metastore returned",
        resumed.elapsed()
    );
    let parked = cluster
        .ingesters
        .iter()
        .flatten()
        .map(|i| async move { i.metric("kiln_ingester_segments_parked_total").await });
    let parked: f64 = futures::future::join_all(parked)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert!(parked >= 1.0, "no segment went through the recovery area");
}
