//! Compaction as separate processes on a real S3-compatible server (moto): two compactors
//! racing, one killed with SIGKILL in the middle of a job, one frozen until its lease passes to
//! the other, and the metastore leader killed while jobs run. Totals stay exact, and in the end
//! the bucket holds exactly the objects of the index.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_contract::metastore::{JobState, MetastoreClient};
use kiln_testkit::cluster::{Cluster, Network};
use kiln_testkit::emulators::Moto;
use kiln_testkit::process::KilnServer;
use prost::Message;

use crate::compaction::wait_until_compacted;
use crate::support::metastore::{GroupStatus, RAFT_TIMERS};
use crate::support::{decode, go_profiles, input_totals, kiln, push_request, stored_total};

const PREFIX: &str = "data";

async fn start_cluster() -> (Moto, Cluster) {
    let s3 = Moto::start("kiln").await.unwrap();
    let storage = s3.kiln_flags(PREFIX);
    let storage: Vec<&str> = storage.iter().map(String::as_str).collect();
    let mut metastore_flags = RAFT_TIMERS.to_vec();
    // Short leases so that the test moves fast; failures are induced on purpose (a kill, a
    // freeze, a leader change that outlasts a lease), so jobs are not parked after three.
    metastore_flags.extend([
        "--compaction.levels=4/1s,4/2s",
        "--compaction.job-lease=2s",
        "--compaction.max-failures=20",
    ]);
    let mut ingester_flags = storage.clone();
    ingester_flags.push("--ingester.flush-interval=200ms");
    let mut compactor_flags = storage.clone();
    compactor_flags.extend([
        "--compactor.poll-interval=100ms",
        "--compactor.deletion-delay=1s",
        "--compactor.orphan-grace=5s",
        "--compactor.orphan-sweep-interval=1s",
        "--compactor.job-concurrency=2",
    ]);
    let cluster = Cluster::builder(&kiln())
        .metastores(3, Network::Direct, &metastore_flags)
        .ingesters(1, &ingester_flags)
        .distributors(1, &[])
        .queriers(1, &storage)
        .compactors(2, &compactor_flags)
        .start()
        .await
        .unwrap();
    (s3, cluster)
}

/// Pushes the Go profiles over four services with profile ids, each retried until acknowledged,
/// until `stop`; returns the acknowledged totals per (service, profile type).
async fn push_until(base: String, stop: Arc<AtomicBool>) -> BTreeMap<(String, String), i64> {
    let files = go_profiles();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut acked = BTreeMap::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) || n < files.len() {
        let (_, gzipped) = &files[n % files.len()];
        let service = format!("svc-{}", n % 4);
        let request = push_request(&[("service_name", &service)], gzipped, &format!("p-{n}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let sent = http
                .post(format!("{base}/push.v1.PusherService/Push"))
                .header("content-type", "application/proto")
                .body(request.encode_to_vec())
                .send()
                .await;
            if sent.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "push {n} never acknowledged");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (profile_type, total) in input_totals(&decode(gzipped)) {
            *acked.entry((service.clone(), profile_type)).or_insert(0) += total;
        }
        n += 1;
    }
    acked
}

/// Waits until a job runs on the compactor `worker`; returns its name.
async fn running_job_on(metastore: &MetastoreClient, worker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = metastore.admin_compaction_status().await.unwrap();
        if let Some(job) = status
            .jobs
            .iter()
            .find(|j| j.state == JobState::Running && j.worker == worker)
        {
            return job.name.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no job ran on {worker} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True while job `name` is still running on `worker`.
async fn still_running_on(metastore: &MetastoreClient, name: &str, worker: &str) -> bool {
    let status = metastore.admin_compaction_status().await.unwrap();
    status
        .jobs
        .iter()
        .any(|j| j.name == name && j.state == JobState::Running && j.worker == worker)
}

fn compactor(cluster: &Cluster, index: usize) -> &KilnServer {
    cluster.compactors[index].as_ref().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_survives_killed_and_racing_compactors_and_a_leader_change() {
    let (s3, mut cluster) = start_cluster().await;
    let metastore = cluster.metastores.client();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(push_until(
        cluster.distributors[0].url(""),
        Arc::clone(&stop),
    ));

    // A compactor killed in the middle of a job: its lease expires and another one redoes it.
    let first = compactor(&cluster, 0).http_addr().to_string();
    running_job_on(&metastore, &first).await;
    let killed = cluster.compactors[0].take().unwrap();
    let restart = killed.command().clone();
    killed.kill();
    cluster.compactors[0] = Some(restart.start().await.unwrap());

    // A compactor frozen while it holds a job: the lease passes to the other one, and what the
    // frozen one reports once it runs again is refused.
    let second = compactor(&cluster, 1).http_addr().to_string();
    let job = loop {
        let job = running_job_on(&metastore, &second).await;
        compactor(&cluster, 1).pause().unwrap();
        if still_running_on(&metastore, &job, &second).await {
            break job;
        }
        // It had committed just before the pause: try another job.
        compactor(&cluster, 1).resume().unwrap();
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while still_running_on(&metastore, &job, &second).await {
        assert!(
            Instant::now() < deadline,
            "the lease of {job} never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    compactor(&cluster, 1).resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while compactor(&cluster, 1)
        .metric("kiln_compactor_jobs_total{outcome=\"refused\"}")
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the frozen compactor's stale report was not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The metastore leader killed while jobs run.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = metastore.admin_compaction_status().await.unwrap();
            if status.jobs.iter().any(|j| j.state == JobState::Running) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let leader = cluster.metastores.wait_for_leader(&[]).await;
    cluster.metastores.nodes[leader].take().unwrap().kill();
    cluster.metastores.wait_for_leader(&[leader]).await;
    cluster.metastores.restart_node(leader).await.unwrap();

    stop.store(true, Ordering::SeqCst);
    let acked = load.await.unwrap();
    wait_until_compacted(&metastore, 2).await;

    // Every acknowledged profile counted exactly once.
    for ((service, profile_type), total) in &acked {
        let stored = stored_total(&cluster.queriers[0], profile_type, service).await;
        assert_eq!(stored, *total, "{service} {profile_type}");
    }

    // Once the deletion delay and the orphan grace have passed, the bucket holds exactly the
    // objects of the index: nothing the index does not know, nothing it knows is missing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let indexed: BTreeSet<String> = metastore
            .admin_list_blocks(None)
            .await
            .unwrap()
            .into_iter()
            .map(|b| format!("{PREFIX}/{}", b.path))
            .collect();
        let mut stored = BTreeSet::new();
        for prefix in ["segments/", "blocks/"] {
            stored.extend(s3.list_keys(&format!("{PREFIX}/{prefix}")).await.unwrap());
        }
        if stored == indexed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bucket and index differ: only stored {:?}, only indexed {:?}",
            stored.difference(&indexed).collect::<Vec<_>>(),
            indexed.difference(&stored).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
