//! Segment building (stack deduplication and symbol tables), Parquet writing and reading, on
//! the real Go test profiles.

use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_block::{SegmentBuilder, SegmentReader};
use kiln_model::{Labels, NormalizeOptions, NormalizedProfile, TenantId, normalize};
use kiln_proto::google::v1::Profile;
use prost::Message;
use ulid::Ulid;

fn profiles() -> Vec<NormalizedProfile> {
    kiln_testkit::testdata::pprof_files()
        .into_iter()
        .map(|(_, gzipped)| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(gzipped.as_slice())
                .read_to_end(&mut raw)
                .unwrap();
            let labels = Labels::from_pairs([("service_name", "bench")]);
            normalize(
                Profile::decode(raw.as_slice()).unwrap(),
                &labels,
                NormalizeOptions::default(),
            )
            .unwrap()
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

criterion_group!(benches, bench_segment);
criterion_main!(benches);
