//! pprof decoding: Kiln's decode and normalization against plain gunzip + prost decode of the
//! same bytes (the baseline, measured in the same run).

use std::io::Read;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_model::{DecodeLimits, Labels, NormalizeOptions, decode_pprof, normalize};
use kiln_proto::google::v1::Profile;
use prost::Message;

fn testdata() -> Vec<Bytes> {
    kiln_testkit::testdata::pprof_files()
        .into_iter()
        .map(|(_, bytes)| Bytes::from(bytes))
        .collect()
}

fn decoded_len(files: &[Bytes]) -> u64 {
    files
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&f[..])
                .read_to_end(&mut out)
                .unwrap();
            out.len() as u64
        })
        .sum()
}

fn bench_decode(c: &mut Criterion) {
    let files = testdata();
    let mut group = c.benchmark_group("pprof_decode");
    group.throughput(Throughput::Bytes(decoded_len(&files)));
    group.bench_function("baseline_gunzip_prost_decode", |b| {
        b.iter(|| {
            for file in &files {
                let mut raw = Vec::new();
                flate2::read::GzDecoder::new(&file[..])
                    .read_to_end(&mut raw)
                    .unwrap();
                std::hint::black_box(Profile::decode(raw.as_slice()).unwrap());
            }
        })
    });
    group.bench_function("kiln_decode", |b| {
        b.iter(|| {
            for file in &files {
                std::hint::black_box(decode_pprof(file.clone(), DecodeLimits::default()).unwrap());
            }
        })
    });
    let labels = Labels::from_pairs([("service_name", "bench")]);
    group.bench_function("kiln_decode_and_normalize", |b| {
        b.iter(|| {
            for file in &files {
                let profile = decode_pprof(file.clone(), DecodeLimits::default()).unwrap();
                std::hint::black_box(
                    normalize(profile, &labels, NormalizeOptions::default()).unwrap(),
                );
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
