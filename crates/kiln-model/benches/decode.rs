//! pprof decoding: Kiln's decode and normalization against plain gunzip + prost decode of the
//! same bytes (the baseline, measured in the same run), and the decoding alone against prost's.

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
    // Decoding alone, without gunzip (which costs as much again): prost's generated decoder
    // against Kiln's (the wire counts, then vectors allocated at their sizes).
    let raw: Vec<Bytes> = files
        .iter()
        .map(|f| kiln_model::decompress(f.clone(), 64 << 20).unwrap())
        .collect();
    group.bench_function("baseline_prost_decode_uncompressed", |b| {
        b.iter(|| {
            for raw in &raw {
                std::hint::black_box(Profile::decode(raw.clone()).unwrap());
            }
        })
    });
    group.bench_function("kiln_decode_uncompressed", |b| {
        b.iter(|| {
            for raw in &raw {
                std::hint::black_box(decode_pprof(raw.clone(), DecodeLimits::default()).unwrap());
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
