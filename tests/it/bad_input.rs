//! Hostile and malformed input: a clear 4xx, the server keeps serving, nothing acknowledged is
//! lost.

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use kiln_proto::google::v1::{Profile, Sample, ValueType};
use kiln_proto::push::v1::pusher_service_client::PusherServiceClient;
use kiln_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use kiln_proto::types::v1::LabelPair;
use prost::Message;

use crate::support::{decode, go_profiles, input_totals, kiln, stored_totals};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A pprof whose only sample points at a location that does not exist.
fn dangling_reference_pprof() -> Vec<u8> {
    Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        sample: vec![Sample {
            location_id: vec![42],
            value: vec![1],
            label: vec![],
        }],
        string_table: vec![String::new(), "cpu".to_string(), "nanoseconds".to_string()],
        ..Profile::default()
    }
    .encode_to_vec()
}

struct Case {
    name: &'static str,
    path: String,
    content_type: &'static str,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    message: &'static str,
}

fn cases() -> Vec<Case> {
    let pprof = |name: &'static str, query: &str, body: Vec<u8>, status, message| Case {
        name,
        path: format!("/ingest?{query}"),
        content_type: "application/octet-stream",
        content_encoding: None,
        body,
        status,
        message,
    };
    let connect =
        |name: &'static str, content_type, encoding, body: Vec<u8>, status, message| Case {
            name,
            path: "/push.v1.PusherService/Push".to_string(),
            content_type,
            content_encoding: encoding,
            body,
            status,
            message,
        };
    let mut bad_gzip = gzip(b"not a profile at all, but long enough to be cut");
    bad_gzip.truncate(bad_gzip.len() / 2);
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let bad_label_push = PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![LabelPair {
                name: "bad-label".to_string(),
                value: "x".to_string(),
            }],
            samples: vec![],
            annotations: vec![],
        }],
    };
    vec![
        pprof(
            "malformed protobuf",
            "name=app&format=pprof",
            vec![0xff; 64],
            400,
            "malformed pprof protobuf",
        ),
        pprof(
            "bad gzip",
            "name=app&format=pprof",
            bad_gzip,
            400,
            "invalid gzip body",
        ),
        pprof(
            "dangling reference",
            "name=app&format=pprof",
            dangling_reference_pprof(),
            400,
            "refers to unknown location 42",
        ),
        pprof(
            "unknown format",
            "name=app&format=speedscope2",
            vec![1],
            400,
            "unsupported format \"speedscope2",
        ),
        pprof(
            "missing name",
            "format=pprof",
            vec![1],
            400,
            "missing query parameter name",
        ),
        pprof(
            "invalid name",
            "name=%7Ba%3Db%7D&format=pprof",
            vec![1],
            400,
            "invalid application name",
        ),
        pprof(
            "invalid label name",
            "name=app%7B1bad%3Dx%7D&format=pprof",
            vec![1],
            400,
            "invalid label name \"1bad\"",
        ),
        pprof(
            "label value too long",
            &format!("name=app%7Bk%3D{}%7D&format=pprof", "v".repeat(3000)),
            vec![1],
            400,
            "over the limit of 2048",
        ),
        pprof(
            "body over the limit",
            "name=app&format=pprof",
            vec![0; 2 << 20],
            413,
            "request body exceeds max_body_bytes of 1048576 bytes",
        ),
        pprof(
            "gzip bomb",
            "name=app&format=pprof",
            bomb.clone(),
            413,
            "decompressed body exceeds max_decompressed_bytes of 4194304 bytes",
        ),
        connect(
            "connect gzip bomb",
            "application/proto",
            Some("gzip"),
            bomb,
            413,
            "resource_exhausted",
        ),
        connect(
            "connect malformed proto",
            "application/proto",
            None,
            vec![0xff; 16],
            400,
            "malformed push.v1.PushRequest protobuf",
        ),
        connect(
            "connect malformed json",
            "application/json",
            None,
            b"{\"series\": 7".to_vec(),
            400,
            "invalid JSON for push.v1.PushRequest",
        ),
        connect(
            "connect bad label",
            "application/proto",
            None,
            bad_label_push.encode_to_vec(),
            400,
            "invalid label name \\\"bad-label",
        ),
        connect(
            "connect unknown content type",
            "text/plain",
            None,
            vec![1],
            400,
            "unsupported Content-Type",
        ),
        pprof(
            "truncated pprof",
            "name=app&format=pprof",
            truncated_pprof(),
            400,
            "malformed pprof protobuf",
        ),
        pprof(
            "invalid UTF-8 in the string table",
            "name=app&format=pprof",
            // string_table: "", then the bytes ff fe.
            vec![0x32, 0x00, 0x32, 0x02, 0xff, 0xfe],
            400,
            "malformed pprof protobuf",
        ),
        pprof(
            "invalid UTF-8 in folded stacks",
            "name=app&format=folded",
            vec![b'a', b';', 0xff, 0xfe, b' ', b'1', b'\n'],
            400,
            "UTF-8",
        ),
        connect(
            "deeply nested JSON",
            "application/json",
            None,
            deeply_nested_json(),
            400,
            "invalid JSON for push.v1.PushRequest",
        ),
        pprof(
            "a JFR recording with a negative array length (made the JFR reader panic; found by fuzzing)",
            "name=app&format=jfr",
            jfr_artifact("crash-b699f6d13f06394a036912a62cd6bf3ccfef23e4"),
            400,
            "invalid JFR recording",
        ),
        pprof(
            "a JFR recording with an array of 120 M elements (made the JFR reader reserve 3.8 GB; found by fuzzing)",
            "name=app&format=jfr",
            jfr_artifact("oom-798461312cb33ddf1eac8ecba5ccfaa0dcaea90b"),
            400,
            "invalid JFR recording",
        ),
        Case {
            name: "deeply nested OTLP/JSON",
            path: "/v1development/profiles".to_string(),
            content_type: "application/json",
            content_encoding: None,
            body: deeply_nested_json(),
            status: 400,
            message: "malformed OTLP/JSON",
        },
    ]
}

/// A real pprof cut in the middle of a message.
fn truncated_pprof() -> Vec<u8> {
    let (_, gzipped) = &go_profiles()[0];
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_end(&mut raw)
        .unwrap();
    raw.truncate(raw.len() / 2 + 1);
    raw
}

/// `{"series": [[[[...]]]]}` nested 100,000 deep.
fn deeply_nested_json() -> Vec<u8> {
    let depth = 100_000;
    format!("{{\"series\": {}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_input_is_refused_and_nothing_is_lost() {
    let server = kiln()
        .args([
            "--ingester.flush-interval=50ms",
            "--limits.max-body-bytes=1MiB",
            "--limits.max-decompressed-bytes=4MiB",
        ])
        .start()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let (_, good) = &go_profiles()[0];
    let acknowledged = |client: &reqwest::Client| {
        client
            .post(server.url("/ingest?name=survivor&format=pprof"))
            .body(good.clone())
            .send()
    };
    assert_eq!(acknowledged(&client).await.unwrap().status(), 200);

    for case in cases() {
        let mut request = client
            .post(server.url(&case.path))
            .header("content-type", case.content_type)
            .body(case.body);
        if let Some(encoding) = case.content_encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert!(
            body.contains(case.message),
            "{}: {body:?} lacks {:?}",
            case.name,
            case.message
        );
    }

    // gRPC reports the same validation errors as status codes.
    let mut grpc = PusherServiceClient::connect(server.url("")).await.unwrap();
    let bad = PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![],
            samples: vec![RawSample {
                raw_profile: Bytes::from_static(&[0xff; 8]),
                id: String::new(),
            }],
            annotations: vec![],
        }],
    };
    let status = grpc.push(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("malformed pprof protobuf"),
        "{status}"
    );

    // Still serving, and what was acknowledged is intact.
    assert_eq!(acknowledged(&client).await.unwrap().status(), 200);
    let expected: Vec<i64> = input_totals(&decode(good))
        .values()
        .map(|v| v * 2)
        .collect();
    let stored: Vec<i64> = stored_totals(&server).await.values().copied().collect();
    assert_eq!(stored, expected);
    let rejected = server.metric("kiln_distributor_rejected_requests_total{protocol=\"ingest\",tenant=\"anonymous\",reason=\"body_too_large\"}").await.unwrap();
    assert_eq!(rejected, 1.0);
}

fn jfr_artifact(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/artifacts/jfr")
            .join(name),
    )
    .unwrap()
}
