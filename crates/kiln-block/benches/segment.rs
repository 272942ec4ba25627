//! Segment building (stack deduplication and symbol tables), Parquet writing and reading, on
//! the real Go test profiles; and the small-profile workload's segments (one small Go CPU
//! profile per service, as `kiln-loadgen run --profiles go-small` pushes them) through a
//! level-1 compaction.

use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_block::{DatasetMerger, ObjectWriter, SegmentBuilder, SegmentReader};
use kiln_model::{Labels, NormalizeOptions, NormalizedProfile, TenantId, normalize};
use kiln_proto::google::v1::Profile;
use prost::Message;
use ulid::Ulid;

/// The decoded test profiles, by file name.
fn raw_profiles() -> Vec<(String, Vec<u8>)> {
    kiln_testkit::testdata::pprof_files()
        .into_iter()
        .map(|(name, gzipped)| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(gzipped.as_slice())
                .read_to_end(&mut raw)
                .unwrap();
            (name, raw)
        })
        .collect()
}

fn normalized(raw: &[u8], service: &str) -> NormalizedProfile {
    let labels = Labels::from_pairs([("service_name", service)]);
    normalize(
        Profile::decode(raw).unwrap(),
        &labels,
        NormalizeOptions::default(),
    )
    .unwrap()
}

fn profiles() -> Vec<NormalizedProfile> {
    raw_profiles()
        .iter()
        .map(|(_, raw)| normalized(raw, "bench"))
        .collect()
}

/// Profiles in a small-profile segment: one flush of the workload's 48 clients.
const SMALL_PER_SEGMENT: usize = 48;
/// Segments in a level-1 compaction job (the first of the default `--compaction.levels`).
const SEGMENTS_PER_JOB: usize = 20;

/// `SEGMENTS_PER_JOB` segments of the small-profile workload: Go CPU profiles of 8 to 32 KB
/// decoded, each in its own service of 50, the services' profiles rotating from segment to
/// segment as the load generator's round robin does.
fn small_segments() -> Vec<Vec<NormalizedProfile>> {
    let small: Vec<Vec<u8>> = raw_profiles()
        .into_iter()
        .filter(|(name, raw)| {
            name.ends_with(".cpu.pb.gz")
                && kiln_testkit::testdata::SMALL_PROFILE_BYTES.contains(&raw.len())
        })
        .map(|(_, raw)| raw)
        .collect();
    assert!(
        !small.is_empty(),
        "no small Go CPU profile in the test data"
    );
    (0..SEGMENTS_PER_JOB)
        .map(|segment| {
            (0..SMALL_PER_SEGMENT)
                .map(|i| {
                    let push = segment * SMALL_PER_SEGMENT + i;
                    let (service, round) = (push % 50, push / 50);
                    normalized(
                        &small[(service + round) % small.len()],
                        &format!("small-{service:02}"),
                    )
                })
                .collect()
        })
        .collect()
}

fn build(profiles: &[NormalizedProfile]) -> SegmentBuilder {
    let tenant = TenantId::anonymous();
    let mut builder = SegmentBuilder::default();
    for profile in profiles {
        builder.add(&tenant, profile);
    }
    builder
}

fn bench_segment(c: &mut Criterion) {
    let profiles = profiles();
    let samples: usize = profiles.iter().map(|p| p.sample_count()).sum();
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("build_dedupe_stacks_and_symbols", |b| {
        b.iter(|| std::hint::black_box(build(&profiles)))
    });
    group.bench_function("write_parquet", |b| {
        b.iter_batched(
            || build(&profiles),
            |builder| builder.finish(Ulid::new(), 0).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    let (bytes, _) = build(&profiles).finish(Ulid::new(), 0).unwrap().unwrap();
    group.bench_function("read_parquet", |b| {
        b.iter(|| {
            std::hint::black_box(
                SegmentReader::parse(bytes.clone())
                    .unwrap()
                    .read_all()
                    .unwrap(),
            )
        })
    });
    group.finish();
}

/// What the ingester does per flush, and compaction's level 1 does with 20 flushes: decode
/// them, merge each service's datasets, write them as the compactor does (small datasets share
/// regions).
fn bench_small_profiles(c: &mut Criterion) {
    let segments = small_segments();
    let objects: Vec<bytes::Bytes> = segments
        .iter()
        .map(|profiles| build(profiles).finish(Ulid::new(), 0).unwrap().unwrap().0)
        .collect();
    let mut group = c.benchmark_group("small_profiles");
    group.throughput(Throughput::Elements(SMALL_PER_SEGMENT as u64));
    group.bench_function("build_segment", |b| {
        b.iter(|| std::hint::black_box(build(&segments[0])))
    });
    group.bench_function("write_segment", |b| {
        b.iter_batched(
            || build(&segments[0]),
            |builder| builder.finish(Ulid::new(), 0).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(
        (SMALL_PER_SEGMENT * SEGMENTS_PER_JOB) as u64,
    ));
    group.sample_size(20);
    let compact = || {
        let inputs: Vec<_> = objects
            .iter()
            .map(|bytes| {
                SegmentReader::parse(bytes.clone())
                    .unwrap()
                    .read_all()
                    .unwrap()
            })
            .collect();
        let services: std::collections::BTreeSet<&str> = inputs
            .iter()
            .flatten()
            .map(|d| d.service_name.as_str())
            .collect();
        let tenant = TenantId::anonymous();
        let id = Ulid::new();
        let mut writer = ObjectWriter::new(id, id.to_string(), 0, 1, tenant.as_str());
        for service in services {
            let mut merger = DatasetMerger::new(tenant.as_str(), service);
            for dataset in inputs
                .iter()
                .flatten()
                .filter(|d| d.service_name == service)
            {
                merger.add(dataset);
            }
            writer.add_dataset(merger.finish()).unwrap();
        }
        writer.finish().unwrap().unwrap().0
    };
    group.bench_function("compact_level_1", |b| {
        b.iter(|| std::hint::black_box(compact()))
    });
    group.finish();
    let bytes: usize = objects.iter().map(|o| o.len()).sum();
    println!(
        "small_profiles: {} bytes per segment, {} bytes per level-1 block of {SEGMENTS_PER_JOB}",
        bytes / objects.len(),
        compact().len()
    );
}

criterion_group!(benches, bench_segment, bench_small_profiles);
criterion_main!(benches);
