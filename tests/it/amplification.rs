//! Amplification (issue #16): small requests that used to grow into gigabytes of memory or a
//! billion timeline points. Each is sent to a running server, which must refuse it naming the
//! limit or answer it within seconds, keep its peak RSS (VmHWM) under 1 GiB, and keep serving.

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use kiln_proto::google::v1::{Function, Label, Line, Location, Profile, Sample, ValueType};
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use kiln_proto::opentelemetry::proto::profiles::v1development as otlp;
use kiln_proto::opentelemetry::proto::resource::v1::Resource;
use prost::Message;
use serde_json::Value;

use crate::support::{KilnServer, UNTIL_SECONDS, cpu_profile, kiln};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// The most a request may take.
const MAX_SECONDS: u64 = 20;
/// The most the server's peak RSS may reach.
const MAX_RSS_BYTES: u64 = 1 << 30;

/// The server's peak resident set size (VmHWM), in bytes.
fn peak_rss(server: &KilnServer) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Gzip of `chunk` repeated `times` times, without holding the whole input.
fn gzip_repeated(chunk: &[u8], times: usize) -> Vec<u8> {
    // The best level: about 1,000 to 1 on repeated bytes, as an attacker would send.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    let block = chunk.repeat((1 << 20) / chunk.len().max(1));
    let mut left = times * chunk.len();
    while left > 0 {
        let n = left.min(block.len());
        encoder.write_all(&block[..n]).unwrap();
        left -= n;
    }
    encoder.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A pprof of `alloc_objects` whose samples all have `depth` frames of one function with a
/// name of `name_bytes` bytes.
fn deep_pprof(samples: usize, depth: usize, name_bytes: usize, value: i64) -> Vec<u8> {
    Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        sample: (0..samples)
            .map(|_| Sample {
                location_id: vec![1; depth],
                value: vec![value],
                label: vec![],
            })
            .collect(),
        location: vec![Location {
            id: 1,
            line: vec![Line {
                function_id: 1,
                ..Line::default()
            }],
            ..Location::default()
        }],
        function: vec![Function {
            id: 1,
            name: 3,
            ..Function::default()
        }],
        string_table: vec![
            String::new(),
            "alloc_objects".into(),
            "count".into(),
            "f".repeat(name_bytes),
        ],
        ..Profile::default()
    }
    .encode_to_vec()
}

/// A pprof of `types` sample types whose `samples` samples each have a label value of their own,
/// 2,000 bytes long: `types × samples` series of long labels.
fn many_series_pprof(types: usize, samples: usize) -> Vec<u8> {
    let mut strings = vec![String::new(), "count".to_string(), "region".to_string()];
    let base = strings.len();
    strings.extend((0..types).map(|t| format!("t{t}")));
    let values = strings.len();
    strings.extend((0..samples).map(|s| format!("{s:0>2000}")));
    Profile {
        sample_type: (0..types)
            .map(|t| ValueType {
                r#type: (base + t) as i64,
                unit: 1,
            })
            .collect(),
        sample: (0..samples)
            .map(|s| Sample {
                location_id: vec![],
                value: vec![1; types],
                label: vec![Label {
                    key: 2,
                    str: (values + s) as i64,
                    ..Label::default()
                }],
            })
            .collect(),
        string_table: strings,
        ..Profile::default()
    }
    .encode_to_vec()
}

/// One sample with `labels` distinct string labels.
fn many_labels_pprof(labels: usize) -> Vec<u8> {
    let mut strings = vec![String::new(), "cpu".to_string(), "nanoseconds".to_string()];
    let first = strings.len();
    strings.extend((0..labels).map(|l| format!("l{l}")));
    Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        sample: vec![Sample {
            location_id: vec![],
            value: vec![1],
            label: (0..labels)
                .map(|l| Label {
                    key: (first + l) as i64,
                    str: (first + l) as i64,
                    ..Label::default()
                })
                .collect(),
        }],
        string_table: strings,
        ..Profile::default()
    }
    .encode_to_vec()
}

/// An OTLP export of `profiles` one-sample CPU profiles over one dictionary that also holds
/// `padding` strings of 4 KiB.
fn otlp_request(profiles: usize, padding: usize) -> ExportProfilesServiceRequest {
    let mut strings: Vec<String> = ["", "samples", "count", "cpu", "nanoseconds", "main", "work"]
        .map(String::from)
        .to_vec();
    strings.extend((0..padding).map(|i| format!("{i:0>4096}")));
    let location = |function_index| otlp::Location {
        lines: vec![otlp::Line {
            function_index,
            line: 1,
            column: 0,
        }],
        ..Default::default()
    };
    let function = |name_strindex| otlp::Function {
        name_strindex,
        ..Default::default()
    };
    let dictionary = otlp::ProfilesDictionary {
        string_table: strings,
        function_table: vec![otlp::Function::default(), function(5), function(6)],
        location_table: vec![otlp::Location::default(), location(1), location(2)],
        stack_table: vec![
            otlp::Stack::default(),
            otlp::Stack {
                location_indices: vec![2, 1],
            },
        ],
        ..Default::default()
    };
    let profile = otlp::Profile {
        sample_type: Some(otlp::ValueType {
            type_strindex: 1,
            unit_strindex: 2,
        }),
        period_type: Some(otlp::ValueType {
            type_strindex: 3,
            unit_strindex: 4,
        }),
        period: 10_000_000,
        time_unix_nano: 1_700_000_000_000_000_000,
        samples: vec![otlp::Sample {
            stack_index: 1,
            values: vec![1],
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![otlp::ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".to_string(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("amplified".to_string())),
                    }),
                    ..Default::default()
                }],
                dropped_attributes_count: 0,
            }),
            scope_profiles: vec![otlp::ScopeProfiles {
                scope: None,
                profiles: vec![profile; profiles],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(dictionary),
    }
}

/// A push.v1 request of `profiles` copies of 256 MiB of empty samples, gzipped.
fn empty_samples_push(profiles: usize) -> kiln_proto::push::v1::PushRequest {
    let bomb = bytes::Bytes::from(gzip_repeated(&[0x12, 0x00], 128 << 20));
    let mut request = crate::support::push_request(&[("service_name", "amp")], &bomb, "");
    let sample = request.series[0].samples[0].clone();
    request.series[0].samples = vec![sample; profiles];
    request
}

/// A multipart /ingest body of the given fields.
fn multipart(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, data) in fields {
        write!(
            body,
            "--amp\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--amp--\r\n");
    body
}

struct Outcome {
    status: u16,
    body: String,
    seconds: f64,
}

async fn send(request: reqwest::RequestBuilder) -> Outcome {
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(120), request.send())
        .await
        .expect("an answer within two minutes")
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    Outcome {
        status,
        body,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_requests_are_refused_or_answered_within_memory_and_time() {
    let server = kiln().start().await.unwrap();
    let http = reqwest::Client::new();
    let ingest = |query: &str, content_type: &str, body: Vec<u8>| {
        http.post(server.url(&format!("/ingest?{query}")))
            .header("content-type", content_type.to_string())
            .body(body)
    };
    let octet = "application/octet-stream";
    let form = "multipart/form-data; boundary=amp";

    // (name, request, expected status, a part of the expected message)
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "256 MiB of empty samples, about 256 KiB gzipped",
            ingest(
                "name=amp.empty&format=pprof",
                octet,
                gzip_repeated(&[0x12, 0x00], 128 << 20),
            ),
            400,
            "profile has 134217728 samples, over max_samples_per_profile 16000",
        ),
        (
            "push.v1: 64 such profiles in one request of 16 MiB",
            http.post(server.url("/push.v1.PusherService/Push"))
                .header("content-type", "application/proto")
                .body(empty_samples_push(64).encode_to_vec()),
            400,
            "over max_samples_per_profile 16000",
        ),
        (
            "OTLP: 2,000 profiles over a dictionary of 16 MiB",
            http.post(server.url("/v1development/profiles"))
                .header("content-type", "application/x-protobuf")
                .body(otlp_request(2_000, 4_000).encode_to_vec()),
            200,
            "",
        ),
        (
            "prev_profile: 8,000 samples of 512 frames of a 60 KB function name",
            ingest(
                "name=amp.delta&format=pprof",
                form,
                multipart(&[
                    ("profile", &gzip(&deep_pprof(8_000, 512, 60_000, 5))),
                    ("prev_profile", &gzip(&deep_pprof(8_000, 512, 60_000, 3))),
                ]),
            ),
            200,
            "",
        ),
        (
            "label groups: 1,000 sample types times 2,000 label values of 2 KB",
            ingest(
                "name=amp.groups&format=pprof",
                octet,
                gzip(&many_series_pprof(1_000, 2_000)),
            ),
            400,
            "push would make 2000000 active series, over max_series_per_tenant 5000",
        ),
        (
            "one sample with 200,000 labels",
            ingest(
                "name=amp.labels&format=pprof",
                octet,
                gzip(&many_labels_pprof(200_000)),
            ),
            400,
            "over max_label_names_per_series 30",
        ),
        (
            "render from the smallest time",
            http.get(server.url(&format!(
                "/pyroscope/render?query={CPU}%7B%7D&from=-9223372036854775808"
            ))),
            400,
            "overflows",
        ),
        (
            "render with max-nodes 0 over all time",
            http.get(server.url(&format!(
                "/pyroscope/render?query={CPU}%7B%7D&from=0&until={UNTIL_SECONDS}&max-nodes=0"
            ))),
            200,
            "",
        ),
    ];
    for (name, request, status, message) in cases {
        let outcome = send(request).await;
        let rss = peak_rss(&server);
        println!(
            "{name}: {} in {:.2}s, peak RSS {} MiB: {}",
            outcome.status,
            outcome.seconds,
            rss >> 20,
            outcome.body.chars().take(160).collect::<String>()
        );
        assert_eq!(outcome.status, status, "{name}: {}", outcome.body);
        assert!(outcome.body.contains(message), "{name}: {}", outcome.body);
        assert!(
            outcome.seconds < MAX_SECONDS as f64,
            "{name} took {:.1}s",
            outcome.seconds
        );
        assert!(rss < MAX_RSS_BYTES, "{name}: peak RSS {} MiB", rss >> 20);
    }

    // Still serving: ready, a normal push, and a query that finds it.
    let ready = http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let pushed = send(ingest(
        "name=ampafter&format=pprof",
        octet,
        cpu_profile().to_vec(),
    ))
    .await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let rendered = send(http.get(server.url(&format!(
        "/pyroscope/render?query={CPU}%7Bservice_name%3D%22ampafter%22%7D&from=0&until={UNTIL_SECONDS}"
    ))))
    .await;
    assert_eq!(rendered.status, 200, "{}", rendered.body);
    let answer: Value = serde_json::from_str(&rendered.body).unwrap();
    assert!(answer["flamebearer"]["numTicks"].as_i64().unwrap() > 0);
    println!("peak RSS at the end: {} MiB", peak_rss(&server) >> 20);
}
