//! Round trips of real Go profiles through the segment format, compared stack by stack.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use kiln_model::{Labels, NormalizeOptions, TenantId, normalize};
use kiln_proto::google::v1::Profile;
use prost::Message;
use ulid::Ulid;

use crate::{DatasetData, SegmentBuilder, SegmentReader};

/// (tenant, service, profile type, frames root first) -> summed value.
type StackTotals = BTreeMap<(String, String, String, Vec<String>), i64>;

fn load_profiles() -> Vec<(String, Profile)> {
    kiln_testkit::testdata::pprof_files()
        .into_iter()
        .map(|(name, gzipped)| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(gzipped.as_slice())
                .read_to_end(&mut raw)
                .unwrap();
            (
                name.replace(".pb.gz", ""),
                Profile::decode(raw.as_slice()).unwrap(),
            )
        })
        .collect()
}

/// The reference: stacks as pprof spells them, inlined lines expanded, root first.
fn pprof_stack_totals(tenant: &str, service: &str, profile: &Profile) -> StackTotals {
    let s = |i: i64| profile.string_table[i as usize].clone();
    let name = if s(profile.period_type.unwrap().r#type) == "cpu" {
        "process_cpu"
    } else {
        "memory"
    };
    let period = profile.period_type.unwrap();
    let mut totals = StackTotals::new();
    for sample in &profile.sample {
        let mut frames = Vec::new();
        for id in sample.location_id.iter().rev() {
            let location = profile.location.iter().find(|l| l.id == *id).unwrap();
            for line in location.line.iter().rev() {
                let function = profile
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .unwrap();
                frames.push(s(function.name));
            }
        }
        for (index, sample_type) in profile.sample_type.iter().enumerate() {
            if sample.value[index] == 0 {
                continue;
            }
            let profile_type = format!(
                "{name}:{}:{}:{}:{}",
                s(sample_type.r#type),
                s(sample_type.unit),
                s(period.r#type),
                s(period.unit)
            );
            let key = (
                tenant.to_string(),
                service.to_string(),
                profile_type,
                frames.clone(),
            );
            *totals.entry(key).or_insert(0) += sample.value[index];
        }
    }
    totals
}

fn stored_stack_totals(datasets: &[DatasetData]) -> StackTotals {
    let mut totals = StackTotals::new();
    for dataset in datasets {
        let symbols = &dataset.symbols;
        for sample in &dataset.samples {
            let profile = &dataset.profiles[sample.profile as usize];
            let series = &dataset.series[profile.series as usize];
            let mut frames = Vec::new();
            for location in symbols.stack_locations(sample.stack).iter().rev() {
                let location = &symbols.locations[*location as usize];
                for (function, _) in location.lines.iter().rev() {
                    let function = &symbols.functions[*function as usize];
                    frames.push(symbols.string(function.name).to_string());
                }
            }
            let key = (
                dataset.tenant.clone(),
                dataset.service_name.clone(),
                series.profile_type.clone(),
                frames,
            );
            *totals.entry(key).or_insert(0) += sample.value;
        }
    }
    totals
}

#[test]
fn real_profiles_round_trip_stack_by_stack() {
    let profiles = load_profiles();
    assert!(profiles.len() >= 20);
    let mut builder = SegmentBuilder::default();
    let mut expected = StackTotals::new();
    for (i, (name, profile)) in profiles.iter().enumerate() {
        let tenant = if (i / 2) % 2 == 0 { "team-a" } else { "team-b" };
        // Two services, so datasets mix CPU and heap profiles of different programs.
        let service = if name.ends_with("cpu") {
            "svc-cpu"
        } else {
            "svc-heap"
        };
        let labels = Labels::from_pairs([("service_name", service)]);
        let normalized = normalize(profile.clone(), &labels, NormalizeOptions::default()).unwrap();
        builder.add(&TenantId::new(tenant).unwrap(), &normalized);
        for (key, value) in pprof_stack_totals(tenant, service, profile) {
            *expected.entry(key).or_insert(0) += value;
        }
    }
    let (bytes, meta) = builder.finish(Ulid::new(), 7).unwrap().unwrap();
    assert_eq!(meta.size_bytes, bytes.len() as u64);
    assert_eq!(meta.datasets.len(), 4);

    let reader = SegmentReader::parse(bytes).unwrap();
    assert_eq!(reader.meta(), &meta);
    let datasets = reader.read_all().unwrap();
    assert_eq!(stored_stack_totals(&datasets), expected);

    // Symbols are deduplicated: every stack node and location is distinct within a dataset.
    for dataset in &datasets {
        let nodes: std::collections::HashSet<_> = dataset.symbols.stacks.iter().collect();
        assert_eq!(nodes.len(), dataset.symbols.stacks.len());
        let locations: std::collections::HashSet<_> = dataset.symbols.locations.iter().collect();
        assert_eq!(locations.len(), dataset.symbols.locations.len());
    }
}

#[test]
fn an_empty_builder_writes_nothing() {
    assert!(
        SegmentBuilder::default()
            .finish(Ulid::new(), 0)
            .unwrap()
            .is_none()
    );
}

#[test]
fn damaged_objects_are_errors_not_panics() {
    let (_, profile) = load_profiles().remove(0);
    let labels = Labels::from_pairs([("service_name", "svc")]);
    let mut builder = SegmentBuilder::default();
    builder.add(
        &TenantId::anonymous(),
        &normalize(profile, &labels, NormalizeOptions::default()).unwrap(),
    );
    let (bytes, _) = builder.finish(Ulid::new(), 0).unwrap().unwrap();

    assert!(SegmentReader::parse(Bytes::from_static(b"short")).is_err());
    let mut flipped = bytes.to_vec();
    let footer_byte = flipped.len() - 20;
    flipped[footer_byte] ^= 0xff;
    let err = SegmentReader::parse(Bytes::from(flipped)).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // Corrupt every byte of the first section in turn (cheaply: a stride) and read.
    for offset in (8..200).step_by(7) {
        let mut damaged = bytes.to_vec();
        damaged[offset] ^= 0x5a;
        if let Ok(reader) = SegmentReader::parse(Bytes::from(damaged)) {
            let _ = reader.read_all();
        }
    }
}
