//! Every ingest decoder, from the bytes a client sends to normalized profiles, exactly as the
//! server runs it (through the `fuzzing` entry points), beside the floor for the same bytes
//! measured in the same run: prost decoding for OTLP, a plain line split for folded and lines,
//! a walk over the chunk and event headers for JFR. pprof is in kiln-model's `decode` bench.

use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_distributor::fuzzing;
use kiln_proto::google::v1::Profile;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::ExportProfilesServiceRequest;
use kiln_proto::opentelemetry::proto::profiles::v1development as otlp;
use prost::Message;

fn go_profiles() -> Vec<Profile> {
    kiln_testkit::testdata::pprof_files()
        .into_iter()
        .map(|(_, gzipped)| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&gzipped[..])
                .read_to_end(&mut raw)
                .unwrap();
            Profile::decode(raw.as_slice()).unwrap()
        })
        .collect()
}

/// Function names of a sample's stack, root first, one per line of each location.
fn stack_names(profile: &Profile, location_ids: &[u64]) -> Vec<String> {
    let mut names = Vec::new();
    for id in location_ids.iter().rev() {
        let location = profile.location.iter().find(|l| l.id == *id).unwrap();
        for line in location.line.iter().rev() {
            let function = profile
                .function
                .iter()
                .find(|f| f.id == line.function_id)
                .unwrap();
            names.push(profile.string_table[function.name as usize].clone());
        }
    }
    names
}

/// The Go test profiles as collapsed stacks: `folded` (one line per sample with its first value)
/// and `lines` (each sample's stack once).
fn collapsed(profiles: &[Profile]) -> (Vec<u8>, Vec<u8>) {
    let (mut folded, mut lines) = (String::new(), String::new());
    for profile in profiles {
        for sample in &profile.sample {
            let stack = stack_names(profile, &sample.location_id).join(";");
            let value = sample.value[0];
            folded.push_str(&format!("{stack} {value}\n"));
            lines.push_str(&stack);
            lines.push('\n');
        }
    }
    (folded.into_bytes(), lines.into_bytes())
}

/// One OTLP export per Go test profile (its first sample type), with the pprof's own tables.
fn otlp_requests(profiles: &[Profile]) -> Vec<Vec<u8>> {
    profiles
        .iter()
        .map(|profile| {
            let function_index =
                |id: u64| profile.function.iter().position(|f| f.id == id).unwrap() as i32 + 1;
            let location_index =
                |id: u64| profile.location.iter().position(|l| l.id == id).unwrap() as i32 + 1;
            let mut function_table = vec![otlp::Function::default()];
            function_table.extend(profile.function.iter().map(|f| otlp::Function {
                name_strindex: f.name as i32,
                system_name_strindex: f.system_name as i32,
                filename_strindex: f.filename as i32,
                start_line: f.start_line,
            }));
            let mut location_table = vec![otlp::Location::default()];
            location_table.extend(profile.location.iter().map(|l| {
                otlp::Location {
                    address: l.address,
                    lines: l
                        .line
                        .iter()
                        .map(|line| otlp::Line {
                            function_index: function_index(line.function_id),
                            line: line.line,
                            column: 0,
                        })
                        .collect(),
                    ..Default::default()
                }
            }));
            let mut stack_table = vec![otlp::Stack::default()];
            let mut samples = Vec::new();
            for sample in &profile.sample {
                stack_table.push(otlp::Stack {
                    location_indices: sample
                        .location_id
                        .iter()
                        .map(|id| location_index(*id))
                        .collect(),
                });
                samples.push(otlp::Sample {
                    stack_index: stack_table.len() as i32 - 1,
                    values: vec![sample.value[0]],
                    ..Default::default()
                });
            }
            let value_type = |t: &kiln_proto::google::v1::ValueType| otlp::ValueType {
                type_strindex: t.r#type as i32,
                unit_strindex: t.unit as i32,
            };
            let request = ExportProfilesServiceRequest {
                resource_profiles: vec![otlp::ResourceProfiles {
                    scope_profiles: vec![otlp::ScopeProfiles {
                        profiles: vec![otlp::Profile {
                            sample_type: profile.sample_type.first().map(value_type),
                            period_type: profile.period_type.as_ref().map(value_type),
                            period: profile.period,
                            time_unix_nano: 1_000_000_000,
                            duration_nano: 10_000_000_000,
                            samples,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                dictionary: Some(otlp::ProfilesDictionary {
                    mapping_table: vec![otlp::Mapping::default()],
                    location_table,
                    function_table,
                    link_table: vec![otlp::Link::default()],
                    string_table: profile.string_table.clone(),
                    attribute_table: vec![otlp::KeyValueAndUnit::default()],
                    stack_table,
                }),
            };
            request.encode_to_vec()
        })
        .collect()
}

/// The JFR floor: every chunk header, then every event's size and type id, without decoding
/// any event (what any JFR reader must at least do).
fn walk_jfr(recording: &[u8]) -> usize {
    let mut events = 0;
    let mut chunk = 0usize;
    while chunk + 68 <= recording.len() && &recording[chunk..chunk + 4] == b"FLR\0" {
        let size =
            u64::from_be_bytes(recording[chunk + 8..chunk + 16].try_into().unwrap()) as usize;
        let compressed = recording[chunk + 67] & 1 == 1;
        let end = (chunk + size).min(recording.len());
        let mut at = chunk + 68;
        while at < end {
            let (event_size, type_at) = if compressed {
                varint(recording, at)
            } else {
                let bytes: [u8; 4] = recording[at..at + 4].try_into().unwrap();
                (u32::from_be_bytes(bytes) as u64, at + 4)
            };
            let (_type_id, _) = varint(recording, type_at);
            if event_size == 0 {
                break;
            }
            at += event_size as usize;
            events += 1;
        }
        chunk += size.max(68);
    }
    events
}

fn varint(data: &[u8], mut at: usize) -> (u64, usize) {
    let mut value = 0u64;
    for shift in 0..9 {
        let byte = data[at];
        at += 1;
        if shift == 8 {
            return (value | (u64::from(byte) << 56), at);
        }
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte < 0x80 {
            break;
        }
    }
    (value, at)
}

fn bench_decoders(c: &mut Criterion) {
    let profiles = go_profiles();

    let requests = otlp_requests(&profiles);
    let mut group = c.benchmark_group("otlp_decode");
    group.throughput(Throughput::Bytes(
        requests.iter().map(|r| r.len() as u64).sum(),
    ));
    group.bench_function("baseline_prost_decode", |b| {
        b.iter(|| {
            for request in &requests {
                std::hint::black_box(ExportProfilesServiceRequest::decode(&request[..]).unwrap());
            }
        })
    });
    group.bench_function("kiln_decode_and_normalize", |b| {
        b.iter(|| {
            for request in &requests {
                assert_eq!(fuzzing::otlp(request), 1);
            }
        })
    });
    group.finish();

    // CPU profiles only: collapsed stacks are what CPU profilers (perf, async-profiler, rbspy)
    // emit, and the heap profiles' stacks would take the body past the 4 MiB fuzzing limit.
    let cpu: Vec<Profile> = profiles
        .iter()
        .filter(|p| p.string_table[p.sample_type[0].r#type as usize] == "samples")
        .cloned()
        .collect();
    let (folded, lines) = collapsed(&cpu);
    for (name, body, kiln) in [
        ("folded_decode", &folded, fuzzing::folded as fuzzing::Target),
        ("lines_decode", &lines, fuzzing::lines),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("baseline_line_split", |b| {
            b.iter(|| {
                let text = std::str::from_utf8(body).unwrap();
                let mut total = 0i64;
                for line in text.lines() {
                    total += match line.rsplit_once(' ') {
                        Some((_, count)) if name == "folded_decode" => {
                            count.parse::<i64>().unwrap()
                        }
                        _ => 1,
                    };
                }
                std::hint::black_box(total)
            })
        });
        group.bench_function("kiln_decode_and_normalize", |b| {
            b.iter(|| assert_eq!(kiln(body), 1))
        });
        group.finish();
    }

    for file in ["java17-cpu-alloc-locks.jfr", "java17-hotspot-profile.jfr"] {
        let recording =
            std::fs::read(kiln_testkit::testdata::path(&format!("jfr/{file}"))).unwrap();
        let mut group = c.benchmark_group(format!("jfr_decode/{file}"));
        group.throughput(Throughput::Bytes(recording.len() as u64));
        group.sample_size(20);
        group.bench_function("baseline_chunk_and_event_header_walk", |b| {
            b.iter(|| assert!(walk_jfr(&recording) > 0))
        });
        group.bench_function("kiln_decode_and_normalize", |b| {
            b.iter(|| assert!(fuzzing::jfr(&recording) > 0))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_decoders);
criterion_main!(benches);
