//! TLS on the public listeners (HTTP, gRPC and both OTLP listeners) and mutual TLS on the cluster port, with certificates made by
//! openssl in the test.

use std::process::Command;
use std::time::Duration;

use crate::support::KilnServer;
use kiln_contract::metastore::{Metastore, MetastoreClient};
use kiln_contract::{ChannelPool, ClusterTls};
use kiln_proto::kiln::ingester::v1::ingester_service_client::IngesterServiceClient;
use kiln_proto::kiln::ingester::v1::{NormalizedProfile, PushRequest, Sample, Series};
use kiln_proto::kiln::metastore::v1::metastore_service_client::MetastoreServiceClient;
use kiln_proto::kiln::querier::v1::ExecutePartRequest;
use kiln_proto::kiln::querier::v1::query_part_service_client::QueryPartServiceClient;
use kiln_proto::kiln::raft::v1::RaftPayload;
use kiln_proto::kiln::raft::v1::raft_service_client::RaftServiceClient;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use kiln_testkit::ports::free_port;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::support::certs::{Pem, authority, issue};
use crate::support::kiln;

fn tls_flags(ca: &Pem, node: &Pem) -> Vec<String> {
    vec![
        format!("--cluster.tls-ca-file={}", ca.cert.display()),
        format!("--cluster.tls-cert-file={}", node.cert.display()),
        format!("--cluster.tls-key-file={}", node.key.display()),
    ]
}

/// A channel to `addr` over TLS trusting `ca`, presenting `identity` when given.
async fn channel(addr: &str, ca: &Pem, identity: Option<&Pem>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca.cert).unwrap()));
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&pem.cert).unwrap(),
            std::fs::read(&pem.key).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// A push whose sample refers to a location its symbols do not hold.
fn forged_push() -> PushRequest {
    PushRequest {
        tenant: "victim".to_string(),
        profiles: vec![NormalizedProfile {
            service_name: "forged".to_string(),
            time_nanos: 1,
            symbols: Some(Default::default()),
            series: vec![Series {
                profile_type: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
                samples: vec![Sample {
                    locations: vec![99],
                    value: 1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Calls every cluster service on `metastore`, `ingester` and `querier` through `channel`s;
/// returns the gRPC code of each answer (`Ok` when the call went through).
async fn cluster_calls(
    metastore: Channel,
    ingester: Channel,
    querier: Channel,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    let vote = RaftServiceClient::new(metastore.clone())
        .vote(RaftPayload {
            json: bytes::Bytes::from_static(b"{\"not\": \"a vote\"}"),
        })
        .await
        .map(drop);
    let register = MetastoreServiceClient::new(metastore)
        .add_blocks(kiln_proto::kiln::metastore::v1::AddBlocksRequest::default())
        .await
        .map(drop);
    let push = IngesterServiceClient::new(ingester)
        .push(forged_push())
        .await
        .map(drop);
    // A part of a query on another tenant's data, naming no fold.
    let part = QueryPartServiceClient::new(querier)
        .execute(ExecutePartRequest {
            tenant: "victim".to_string(),
            ..Default::default()
        })
        .await
        .map(drop);
    vec![
        ("raft vote", vote),
        ("add blocks", register),
        ("ingester push", push),
        ("query part", part),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_port_accepts_only_peers_holding_a_cluster_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority(dir.path(), "cluster-ca");
    let node = issue(dir.path(), "node", &ca);
    let rogue_ca = authority(dir.path(), "rogue-ca");
    let rogue = issue(dir.path(), "rogue", &rogue_ca);
    let tls = tls_flags(&ca, &node);

    // A cluster role refuses to start without cluster TLS (or --cluster.insecure).
    let output = kiln()
        .args(["--target", "ingester", "--metastore.peers=127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cluster.insecure"), "{stderr}");

    let metastore_addr = format!("127.0.0.1:{}", free_port().unwrap());
    let peers = format!("--metastore.peers={metastore_addr}");
    let _metastore: KilnServer = kiln()
        .grpc_addr(&metastore_addr)
        .args(["--target", "metastore", &peers])
        .args(&tls)
        .start()
        .await
        .unwrap();
    // The ingester is ready only once it reached the metastore: over mutual TLS.
    // Its push service takes messages of at most twice the decompressed-bytes limit (2 MiB).
    let ingester = kiln()
        .args([
            "--target",
            "ingester",
            &peers,
            "--limits.max-decompressed-bytes=1MiB",
        ])
        .args(&tls)
        .start()
        .await
        .unwrap();
    let ingester_addr = ingester.grpc_addr().to_string();
    let querier = kiln()
        .args(["--target", "querier", &peers])
        .args(&tls)
        .start()
        .await
        .unwrap();
    let querier_addr = querier.grpc_addr().to_string();

    // Without a certificate, and with one of another CA: refused during the handshake, before
    // any service sees the call.
    for (case, identity) in [
        ("no certificate", None),
        ("a foreign CA's certificate", Some(&rogue)),
    ] {
        let calls = cluster_calls(
            channel(&metastore_addr, &ca, identity).await,
            channel(&ingester_addr, &ca, identity).await,
            channel(&querier_addr, &ca, identity).await,
        )
        .await;
        for (call, result) in calls {
            let status = result.expect_err(call);
            assert!(
                matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ),
                "{call} with {case} must fail in the transport: {status:?}"
            );
        }
    }
    // Plaintext is refused too.
    let plain = MetastoreClient::new(vec![metastore_addr.clone()], Duration::from_secs(2)).unwrap();
    plain.tenants().await.unwrap_err();

    // With the cluster certificate every call reaches its service, and the forged ones are
    // refused there with a clear error.
    let calls = cluster_calls(
        channel(&metastore_addr, &ca, Some(&node)).await,
        channel(&ingester_addr, &ca, Some(&node)).await,
        channel(&querier_addr, &ca, Some(&node)).await,
    )
    .await;
    for (call, result) in calls {
        match call {
            "add blocks" => result.expect("an empty registration is accepted"),
            _ => {
                let status = result.expect_err(call);
                assert_eq!(
                    status.code(),
                    tonic::Code::InvalidArgument,
                    "{call}: {status:?}"
                );
                if call == "ingester push" {
                    assert!(status.message().contains("location"), "{status:?}");
                }
                if call == "query part" {
                    assert!(status.message().contains("no fold"), "{status:?}");
                }
            }
        }
    }
    // A member's message over the service's size bound is refused before it is decoded.
    let mut oversized = forged_push();
    oversized.profiles[0].service_name = "x".repeat(3 << 20);
    let status = IngesterServiceClient::new(channel(&ingester_addr, &ca, Some(&node)).await)
        .push(oversized)
        .await
        .expect_err("a 3 MiB push");
    assert!(
        matches!(
            status.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{status:?}"
    );
    // The metastore's services take messages of at most 256 MiB (a Raft snapshot's bound):
    // one byte more is refused from a member too.
    let status = RaftServiceClient::new(channel(&metastore_addr, &ca, Some(&node)).await)
        .vote(RaftPayload {
            json: bytes::Bytes::from(vec![b' '; (256 << 20) + 1]),
        })
        .await
        .expect_err("a vote of 256 MiB and a byte");
    assert!(
        matches!(
            status.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{status:?}"
    );
    let member = MetastoreClient::new(vec![metastore_addr.clone()], Duration::from_secs(5))
        .unwrap()
        .with_pool(ChannelPool::with_tls(Some(
            ClusterTls::from_files(&ca.cert, &node.cert, &node.key).unwrap(),
        )));
    assert!(
        member.tenants().await.unwrap().is_empty(),
        "nothing forged was registered"
    );
    assert_eq!(
        reqwest::get(ingester.url("/ready")).await.unwrap().status(),
        200,
        "the ingester keeps serving"
    );

    // The admin CLI speaks mutual TLS with the cluster flags.
    let status = |extra: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["admin", "metastore", "status", &peers])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(
        !status(&[]).status.success(),
        "plaintext admin call accepted"
    );
    let output = status(&tls);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_listeners_serve_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = authority(dir.path(), "public-ca");
    let cert = issue(dir.path(), "server", &ca);
    let server = kiln()
        .arg(format!("--server.tls-cert-file={}", cert.cert.display()))
        .arg(format!("--server.tls-key-file={}", cert.key.display()))
        .spawn()
        .unwrap();
    let https = format!("https://{}/ready", server.http_addr());
    let curl = |extra: &[&str], url: &str| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let output = curl(&["--cacert", ca.cert.to_str().unwrap()], &https);
        if String::from_utf8_lossy(&output.stdout) == "200" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no TLS /ready: {output:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // HTTP/2 over TLS (ALPN), as gRPC clients use it.
    let output = curl(&["--http2", "--cacert", ca.cert.to_str().unwrap()], &https);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200");
    // A client that does not trust the CA is refused, and plaintext gets no HTTP answer.
    let output = curl(&[], &https);
    assert_ne!(String::from_utf8_lossy(&output.stdout), "200");
    let output = curl(&[], &format!("http://{}/ready", server.http_addr()));
    assert_ne!(String::from_utf8_lossy(&output.stdout), "200");

    // The OTLP listeners serve the same certificate: OTLP/HTTP as exporters post it, and
    // OTLP/gRPC from a tonic client trusting the CA; plaintext is refused on both.
    let export = ExportProfilesServiceRequest::default().encode_to_vec();
    let export_file = dir.path().join("export.pb");
    std::fs::write(&export_file, &export).unwrap();
    let otlp_http = |scheme: &str, trust: &[&str]| {
        let mut args = vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-protobuf",
            "--data-binary",
        ];
        let data = format!("@{}", export_file.display());
        args.push(&data);
        args.extend_from_slice(trust);
        let url = format!(
            "{scheme}://{}/v1development/profiles",
            server.otlp_http_addr()
        );
        String::from_utf8_lossy(&curl(&args, &url).stdout).into_owned()
    };
    assert_eq!(
        otlp_http("https", &["--cacert", ca.cert.to_str().unwrap()]),
        "200"
    );
    assert_ne!(
        otlp_http("https", &[]),
        "200",
        "an untrusted CA was accepted"
    );
    assert_ne!(
        otlp_http("http", &[]),
        "200",
        "plaintext OTLP/HTTP answered"
    );
    let otlp_grpc = |tls: Option<ClientTlsConfig>| {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", server.otlp_grpc_addr()))
            .unwrap()
            .timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let mut client = ProfilesServiceClient::new(endpoint.connect_lazy());
        async move { client.export(ExportProfilesServiceRequest::default()).await }
    };
    let trusted = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca.cert).unwrap()));
    otlp_grpc(Some(trusted)).await.expect("OTLP/gRPC over TLS");
    otlp_grpc(None)
        .await
        .expect_err("plaintext OTLP/gRPC was answered");

    // A renewed certificate (here of another CA) is served once its files change, without a
    // restart.
    let renewed_ca = authority(dir.path(), "renewed-ca");
    let renewed = issue(dir.path(), "renewed", &renewed_ca);
    std::fs::rename(&renewed.key, &cert.key).unwrap();
    std::fs::rename(&renewed.cert, &cert.cert).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let output = curl(&["--cacert", renewed_ca.cert.to_str().unwrap()], &https);
        if String::from_utf8_lossy(&output.stdout) == "200" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was never served: {output:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = curl(&["--cacert", ca.cert.to_str().unwrap()], &https);
    assert_ne!(
        String::from_utf8_lossy(&output.stdout),
        "200",
        "the old certificate is still served"
    );
}
