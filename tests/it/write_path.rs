//! The write path end to end: every protocol, durable across a restart, exact totals.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use kiln_proto::push::v1::PushRequest;
use kiln_proto::push::v1::pusher_service_client::PusherServiceClient;
use prost::Message;

use crate::support::{
    KilnServer, decode, go_profile_name, go_profiles, input_totals, kiln, stored_totals,
};

/// The ways a profile reaches Kiln; each test run uses one service name per way.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    IngestRaw,
    IngestMultipart,
    ConnectProto,
    ConnectJson,
    Grpc,
}

impl Protocol {
    const ALL: [Protocol; 5] = [
        Protocol::IngestRaw,
        Protocol::IngestMultipart,
        Protocol::ConnectProto,
        Protocol::ConnectJson,
        Protocol::Grpc,
    ];

    fn service(self) -> &'static str {
        match self {
            Protocol::IngestRaw => "ingest-raw",
            Protocol::IngestMultipart => "ingest-multipart",
            Protocol::ConnectProto => "push-connect-proto",
            Protocol::ConnectJson => "push-connect-json",
            Protocol::Grpc => "push-grpc",
        }
    }
}

fn push_request(service: &str, name: &str, gzipped: &Bytes) -> PushRequest {
    crate::support::push_request(
        &[("service_name", service), ("__name__", name)],
        gzipped,
        "",
    )
}

async fn push(server: &KilnServer, protocol: Protocol, gzipped: Bytes) -> (u16, String) {
    let client = reqwest::Client::new();
    let service = protocol.service();
    let name = go_profile_name(&decode(&gzipped));
    let ingest_url = server.url(&format!("/ingest?name={service}&spyName=gospy"));
    let response = match protocol {
        Protocol::IngestRaw => {
            client
                .post(format!("{ingest_url}&format=pprof"))
                .header("content-type", "application/octet-stream")
                .body(gzipped)
                .send()
                .await
        }
        Protocol::IngestMultipart => {
            let part = reqwest::multipart::Part::bytes(gzipped.to_vec()).file_name("profile.pprof");
            let form = reqwest::multipart::Form::new().part("profile", part);
            client.post(ingest_url).multipart(form).send().await
        }
        Protocol::ConnectProto => {
            client
                .post(server.url("/push.v1.PusherService/Push"))
                .header("content-type", "application/proto")
                .body(push_request(service, name, &gzipped).encode_to_vec())
                .send()
                .await
        }
        Protocol::ConnectJson => {
            let body = serde_json::json!({
                "series": [{
                    "labels": [
                        {"name": "service_name", "value": service},
                        {"name": "__name__", "value": name},
                    ],
                    "samples": [{
                        "rawProfile": base64::engine::general_purpose::STANDARD.encode(&gzipped),
                    }],
                }],
            });
            client
                .post(server.url("/push.v1.PusherService/Push"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
        }
        Protocol::Grpc => {
            let mut grpc = PusherServiceClient::connect(server.url("")).await.unwrap();
            return match grpc.push(push_request(service, name, &gzipped)).await {
                Ok(_) => (200, String::new()),
                Err(status) => (500, status.to_string()),
            };
        }
    };
    let response = response.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_stores_exact_totals_that_survive_a_restart() {
    let kiln = kiln();
    let server = kiln
        .clone()
        .arg("--ingester.flush-interval=50ms")
        .start()
        .await
        .unwrap();
    let files = go_profiles();

    let mut expected: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for protocol in Protocol::ALL {
        let pushes = files
            .iter()
            .map(|(_, bytes)| push(&server, protocol, bytes.clone()));
        for ((file, _), (status, body)) in files.iter().zip(futures::future::join_all(pushes).await)
        {
            assert_eq!(status, 200, "{protocol:?} {file}: {body}");
        }
        for (_, bytes) in &files {
            for (profile_type, total) in input_totals(&decode(bytes)) {
                let key = (
                    "anonymous".to_string(),
                    protocol.service().to_string(),
                    profile_type,
                );
                *expected.entry(key).or_insert(0) += total;
            }
        }
    }
    // 5 protocols x (2 CPU + 4 heap sample types).
    assert_eq!(expected.len(), 5 * 6);
    assert_eq!(
        stored_totals(&server).await,
        expected,
        "stored totals before restart"
    );

    let status = server.stop().unwrap();
    assert!(status.success(), "kiln exited with {status}");

    let server = kiln.start().await.unwrap();
    assert_eq!(
        stored_totals(&server).await,
        expected,
        "stored totals after restart"
    );
    // The restarted server keeps accepting and appends to the same index.
    let (file, bytes) = &files[0];
    let (status, body) = push(&server, Protocol::IngestRaw, bytes.clone()).await;
    assert_eq!(status, 200, "{file}: {body}");
    for (profile_type, total) in input_totals(&decode(bytes)) {
        let key = (
            "anonymous".to_string(),
            "ingest-raw".to_string(),
            profile_type,
        );
        *expected.get_mut(&key).unwrap() += total;
    }
    assert_eq!(
        stored_totals(&server).await,
        expected,
        "stored totals after a push on restart"
    );
    assert!(server.stop().unwrap().success());
}
