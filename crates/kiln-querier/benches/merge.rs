//! Flame graph merging: stacks of decoded datasets into a frame tree and its flame graph.

use std::collections::HashMap;
use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_block::{SegmentBuilder, SegmentReader};
use kiln_model::{Labels, NormalizeOptions, TenantId, normalize};
use kiln_proto::google::v1::Profile;
use kiln_querier::FrameTree;
use prost::Message;
use ulid::Ulid;

fn datasets() -> Vec<kiln_block::DatasetData> {
    let mut builder = SegmentBuilder::default();
    let files = kiln_testkit::testdata::pprof_files();
    for (_, gzipped) in files.iter().filter(|(name, _)| name.contains(".cpu.")) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gzipped.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        let labels = Labels::from_pairs([("service_name", "bench")]);
        let profile = normalize(
            Profile::decode(raw.as_slice()).unwrap(),
            &labels,
            NormalizeOptions::default(),
        )
        .unwrap();
        builder.add(&TenantId::anonymous(), &profile);
    }
    let (bytes, _) = builder.finish(Ulid::new(), 0).unwrap().unwrap();
    SegmentReader::parse(bytes).unwrap().read_all().unwrap()
}

fn bench_merge(c: &mut Criterion) {
    let datasets = datasets();
    let values: Vec<HashMap<u32, i64>> = datasets
        .iter()
        .map(|d| {
            let mut values = HashMap::new();
            for s in &d.samples {
                *values.entry(s.stack).or_insert(0) += s.value;
            }
            values
        })
        .collect();
    let samples: usize = datasets.iter().map(|d| d.samples.len()).sum();
    let mut group = c.benchmark_group("flamegraph_merge");
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("frame_tree_and_flamegraph", |b| {
        b.iter(|| {
            let mut tree = FrameTree::default();
            for (data, values) in datasets.iter().zip(&values) {
                tree.add_stacks(data, values.clone());
            }
            std::hint::black_box(tree.flamegraph(8192))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_merge);
criterion_main!(benches);
