//! Encodes generated profiles for each ingest protocol and sends them.

use std::io::Write;

use bytes::Bytes;
use kiln_proto::google::v1::Profile;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use kiln_proto::opentelemetry::proto::profiles::v1development as otlp;
use kiln_proto::opentelemetry::proto::resource::v1::Resource;
use kiln_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use kiln_proto::types::v1::LabelPair;
use prost::Message;
use rand::Rng;
use rand::rngs::StdRng;

use crate::workload::ServiceModel;

/// The ingest protocols the generator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub(crate) enum Protocol {
    /// push.v1 over Connect, binary protobuf, as the Python SDK and Alloy send.
    Push,
    /// /ingest with a raw gzipped pprof body, as @pyroscope/nodejs sends.
    Ingest,
    /// OTLP/HTTP protobuf with eBPF-like 19 Hz timestamps-only CPU profiles.
    Otlp,
}

/// One request, ready to send.
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    pub(crate) path: String,
    pub(crate) content_type: &'static str,
    pub(crate) body: Bytes,
    /// Size of the decoded profile data (pprof or OTLP) in bytes.
    pub(crate) decoded_bytes: usize,
    /// Stack-and-value pairs in the input.
    pub(crate) samples: usize,
    /// Profiles in the request.
    pub(crate) profiles: usize,
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn sample_pairs(profile: &Profile) -> usize {
    profile
        .sample
        .iter()
        .map(|s| s.value.iter().filter(|v| **v != 0).count())
        .sum()
}

/// Series labels of an instance.
pub(crate) fn labels(model: &ServiceModel, instance: usize, name: &str) -> Vec<(String, String)> {
    vec![
        ("service_name".to_string(), model.name.clone()),
        ("__name__".to_string(), name.to_string()),
        ("instance".to_string(), format!("instance-{instance}")),
        ("label_0".to_string(), model.label_value(instance)),
    ]
}

/// push.v1 with the given pprofs of one series (`labels`) in one request.
pub(crate) fn push_payload(labels: Vec<(String, String)>, profiles: &[Profile]) -> Payload {
    let mut decoded = 0;
    let mut samples = 0;
    let raw: Vec<RawSample> = profiles
        .iter()
        .map(|p| {
            let encoded = p.encode_to_vec();
            decoded += encoded.len();
            samples += sample_pairs(p);
            RawSample {
                raw_profile: Bytes::from(gzip(&encoded)),
                id: String::new(),
            }
        })
        .collect();
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| LabelPair { name, value })
                .collect(),
            samples: raw,
            annotations: vec![],
        }],
    };
    Payload {
        path: "/push.v1.PusherService/Push".to_string(),
        content_type: "application/proto",
        body: Bytes::from(request.encode_to_vec()),
        decoded_bytes: decoded,
        samples,
        profiles: profiles.len(),
    }
}

/// /ingest with one gzipped pprof.
pub(crate) fn ingest_payload(model: &ServiceModel, instance: usize, profile: &Profile) -> Payload {
    let encoded = profile.encode_to_vec();
    let name = format!(
        "{}{{instance=instance-{instance},label_0={}}}",
        model.name,
        model.label_value(instance)
    );
    Payload {
        path: format!(
            "/ingest?format=pprof&spyName=loadgen&name={}",
            encode_query(&name)
        ),
        content_type: "application/octet-stream",
        body: Bytes::from(gzip(&encoded)),
        decoded_bytes: encoded.len(),
        samples: sample_pairs(profile),
        profiles: 1,
    }
}

fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An eBPF-like OTLP CPU profile: 19 Hz for 10 s, timestamps-only samples.
pub(crate) fn otlp_payload(
    model: &ServiceModel,
    instance: usize,
    rng: &mut StdRng,
    time_nanos: i64,
) -> Payload {
    let mut strings: Vec<String> = vec![String::new()];
    let string = |s: &str, strings: &mut Vec<String>| -> i32 {
        if let Some(i) = strings.iter().position(|x| x == s) {
            return i as i32;
        }
        strings.push(s.to_string());
        strings.len() as i32 - 1
    };
    let mut dictionary = otlp::ProfilesDictionary {
        mapping_table: vec![otlp::Mapping::default()],
        location_table: vec![otlp::Location::default()],
        function_table: vec![otlp::Function::default()],
        link_table: vec![otlp::Link::default()],
        attribute_table: vec![otlp::KeyValueAndUnit::default()],
        stack_table: vec![otlp::Stack::default()],
        ..Default::default()
    };
    let mut functions: std::collections::HashMap<String, i32> = std::collections::HashMap::new();
    let mut stacks: std::collections::HashMap<usize, i32> = std::collections::HashMap::new();
    let mut samples: std::collections::HashMap<i32, Vec<u64>> = std::collections::HashMap::new();
    let period = 1_000_000_000 / 19;
    for tick in 0..190u64 {
        let stack = model.random_stack(rng);
        let index = match stacks.get(&stack) {
            Some(&i) => i,
            None => {
                let mut locations = Vec::new();
                for name in model.stack_names(stack) {
                    let location = match functions.get(name) {
                        Some(&l) => l,
                        None => {
                            let name_index = string(name, &mut strings);
                            dictionary.function_table.push(otlp::Function {
                                name_strindex: name_index,
                                ..Default::default()
                            });
                            dictionary.location_table.push(otlp::Location {
                                lines: vec![otlp::Line {
                                    function_index: dictionary.function_table.len() as i32 - 1,
                                    line: 1,
                                    column: 0,
                                }],
                                ..Default::default()
                            });
                            let l = dictionary.location_table.len() as i32 - 1;
                            functions.insert(name.to_string(), l);
                            l
                        }
                    };
                    locations.push(location);
                }
                dictionary.stack_table.push(otlp::Stack {
                    location_indices: locations,
                });
                let i = dictionary.stack_table.len() as i32 - 1;
                stacks.insert(stack, i);
                i
            }
        };
        let _ = rng.random::<u8>();
        samples
            .entry(index)
            .or_default()
            .push(time_nanos as u64 + tick * period as u64);
    }
    let sample_type = otlp::ValueType {
        type_strindex: string("samples", &mut strings),
        unit_strindex: string("count", &mut strings),
    };
    let period_type = otlp::ValueType {
        type_strindex: string("cpu", &mut strings),
        unit_strindex: string("nanoseconds", &mut strings),
    };
    dictionary.string_table = strings;
    let pairs = samples.values().map(|t| t.len()).sum();
    let kv = |key: &str, value: String| KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        key_strindex: 0,
    };
    let request = ExportProfilesServiceRequest {
        resource_profiles: vec![otlp::ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", model.name.clone()),
                    kv("host.name", format!("instance-{instance}")),
                    kv("label_0", model.label_value(instance)),
                ],
                dropped_attributes_count: 0,
            }),
            scope_profiles: vec![otlp::ScopeProfiles {
                scope: None,
                profiles: vec![otlp::Profile {
                    sample_type: Some(sample_type),
                    period_type: Some(period_type),
                    period,
                    time_unix_nano: time_nanos as u64,
                    duration_nano: 10_000_000_000,
                    samples: samples
                        .into_iter()
                        .map(|(stack_index, timestamps_unix_nano)| otlp::Sample {
                            stack_index,
                            timestamps_unix_nano,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(dictionary),
    };
    let body = request.encode_to_vec();
    Payload {
        path: "/v1development/profiles".to_string(),
        content_type: "application/x-protobuf",
        decoded_bytes: body.len(),
        body: Bytes::from(body),
        samples: pairs,
        profiles: 1,
    }
}

/// Sends one payload; returns the HTTP status (0 for a transport error).
pub(crate) async fn send(client: &reqwest::Client, base: &str, payload: &Payload) -> u16 {
    let response = client
        .post(format!("{base}{}", payload.path))
        .header("content-type", payload.content_type)
        .body(payload.body.clone())
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            status
        }
        Err(_) => 0,
    }
}
