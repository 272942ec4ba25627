//! Round trips of real Go profiles through the segment format, compared stack by stack.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use kiln_model::{Labels, NormalizeOptions, TenantId, normalize};
use kiln_proto::google::v1::Profile;
use prost::Message;
use ulid::Ulid;

use crate::{
    DatasetData, DatasetMerger, ObjectWriter, SegmentBuilder, SegmentReader, block_path,
    decode_region,
};

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

/// Normalizes `profile` as service `service`, with a fixed profile id and time.
fn normalized(
    profile: &Profile,
    service: &str,
    profile_id: &str,
    time_nanos: i64,
) -> kiln_model::NormalizedProfile {
    let labels = Labels::from_pairs([("service_name", service)]);
    let options = NormalizeOptions {
        profile_id: Some(profile_id.to_string()),
        time_nanos: Some(time_nanos),
        ..NormalizeOptions::default()
    };
    normalize(profile.clone(), &labels, options).unwrap()
}

#[test]
fn compaction_merges_segments_into_one_region_per_dataset_exactly() {
    let profiles = load_profiles();
    let mut segments: Vec<SegmentBuilder> = (0..3).map(|_| SegmentBuilder::default()).collect();
    let mut expected = StackTotals::new();
    for (i, (name, profile)) in profiles.iter().enumerate() {
        let tenant = if i % 3 == 0 { "team-b" } else { "team-a" };
        let service = if name.ends_with("cpu") {
            "svc-cpu"
        } else {
            "svc-heap"
        };
        let time = 1_000_000_000 * (100 - i as i64);
        let profile_id = format!("profile-{i}");
        let tenant_id = TenantId::new(tenant).unwrap();
        segments[i % 3].add(&tenant_id, &normalized(profile, service, &profile_id, time));
        // At-least-once delivery: every fourth profile arrives twice, in another segment.
        if i % 4 == 0 {
            segments[(i + 1) % 3].add(&tenant_id, &normalized(profile, service, &profile_id, time));
        }
        for (key, value) in pprof_stack_totals(tenant, service, profile) {
            *expected.entry(key).or_insert(0) += value;
        }
    }
    let mut inputs: BTreeMap<(String, String), Vec<DatasetData>> = BTreeMap::new();
    for segment in segments {
        let (bytes, _) = segment.finish(Ulid::new(), 0).unwrap().unwrap();
        for dataset in SegmentReader::parse(bytes).unwrap().read_all().unwrap() {
            inputs
                .entry((dataset.tenant.clone(), dataset.service_name.clone()))
                .or_default()
                .push(dataset);
        }
    }
    let mut merged = Vec::new();
    for tenant in ["team-a", "team-b"] {
        let id = Ulid::new();
        let mut writer = ObjectWriter::new(id, block_path(0, tenant, &id), 0, 1, tenant);
        for ((_, service), datasets) in inputs.range((tenant.to_string(), String::new())..) {
            if datasets[0].tenant != tenant {
                break;
            }
            let mut merger = DatasetMerger::new(tenant, service);
            for dataset in datasets {
                merger.add(dataset);
            }
            writer.add_region(&[merger.finish()]).unwrap();
        }
        let (bytes, meta) = writer.finish().unwrap().unwrap();
        assert_eq!(meta.tenant, tenant);
        assert_eq!(meta.compaction_level, 1);
        assert_eq!(meta.size_bytes, bytes.len() as u64);
        assert_eq!(meta.datasets.len(), 2, "one dataset per service");
        // Each dataset's region, fetched alone, decodes to exactly that dataset.
        let whole = SegmentReader::parse(bytes.clone())
            .unwrap()
            .read_all()
            .unwrap();
        for (dataset, data) in meta.datasets.iter().zip(&whole) {
            let start = dataset.region_offset as usize;
            let region = bytes.slice(start..start + dataset.region_length as usize);
            assert_eq!(&decode_region(region).unwrap(), std::slice::from_ref(data));
        }
        merged.extend(whole);
    }
    // Exact totals, duplicates counted once.
    assert_eq!(stored_stack_totals(&merged), expected);
    for dataset in &merged {
        // Each (series, profile id) once; rows sorted by series, then time.
        let keys: std::collections::HashSet<_> = dataset
            .profiles
            .iter()
            .map(|p| (p.series, p.profile_id.clone()))
            .collect();
        assert_eq!(keys.len(), dataset.profiles.len());
        assert!(
            dataset
                .profiles
                .windows(2)
                .all(|w| (w[0].series, w[0].time_nanos) <= (w[1].series, w[1].time_nanos))
        );
        assert!(
            dataset
                .samples
                .windows(2)
                .all(|w| w[0].profile <= w[1].profile)
        );
        assert!(
            dataset.series.windows(2).all(|w| {
                (&w[0].profile_type, &w[0].labels) < (&w[1].profile_type, &w[1].labels)
            })
        );
        // One symbol table: every string, function, location and stack node once.
        let symbols = &dataset.symbols;
        let strings: std::collections::HashSet<_> = symbols.strings.iter().collect();
        assert_eq!(strings.len(), symbols.strings.len());
        let functions: std::collections::HashSet<_> = symbols.functions.iter().collect();
        assert_eq!(functions.len(), symbols.functions.len());
        let locations: std::collections::HashSet<_> = symbols.locations.iter().collect();
        assert_eq!(locations.len(), symbols.locations.len());
        let nodes: std::collections::HashSet<_> = symbols.stacks.iter().collect();
        assert_eq!(nodes.len(), symbols.stacks.len());
    }
}

#[test]
fn small_datasets_share_regions_and_large_ones_get_their_own() {
    let small = |service: &str| DatasetData {
        service_name: service.to_string(),
        ..one_profile_datasets().remove(0)
    };
    // A large dataset: the small one's samples repeated past the limit (valid references).
    let mut large = small("c");
    let samples = large.samples.clone();
    while large.rows() < crate::SHARED_REGION_ROWS {
        large.samples.extend(samples.iter().cloned());
    }
    let datasets = [small("a"), small("b"), large, small("d")];
    assert!(datasets[0].rows() * 3 < crate::SHARED_REGION_ROWS);
    let id = Ulid::new();
    let mut writer = ObjectWriter::new(id, block_path(0, "t", &id), 0, 1, "t");
    for dataset in datasets.iter().cloned() {
        writer.add_dataset(dataset).unwrap();
    }
    let (bytes, meta) = writer.finish().unwrap().unwrap();
    let services: Vec<&str> = meta
        .datasets
        .iter()
        .map(|d| d.service_name.as_str())
        .collect();
    assert_eq!(services, ["a", "b", "c", "d"], "datasets keep their order");
    let region = |i: usize| {
        (
            meta.datasets[i].region_offset,
            meta.datasets[i].region_length,
        )
    };
    assert_eq!(region(0), region(1), "a and b share a region");
    assert_ne!(region(1), region(2), "the large dataset has its own region");
    assert_ne!(region(2), region(3), "d, added after it, starts a new one");
    // Each region, fetched alone, decodes to exactly its datasets.
    for (range, expected) in [
        (0..2, &datasets[0..2]),
        (2..3, &datasets[2..3]),
        (3..4, &datasets[3..4]),
    ] {
        let (offset, length) = region(range.start);
        let data = decode_region(bytes.slice(offset as usize..(offset + length) as usize)).unwrap();
        assert_eq!(data, expected);
    }
    assert_eq!(
        SegmentReader::parse(bytes).unwrap().read_all().unwrap(),
        datasets
    );
}

/// The datasets of a segment holding the first real profile, as service `svc`.
fn one_profile_datasets() -> Vec<DatasetData> {
    let (_, profile) = load_profiles().remove(0);
    let mut builder = SegmentBuilder::default();
    builder.add(
        &TenantId::anonymous(),
        &normalized(&profile, "svc", "p-1", 5_000),
    );
    builder.into_datasets()
}

#[test]
fn objects_of_format_1_are_still_read() {
    let datasets = one_profile_datasets();
    // Format 1: the sections straight after the magic, located by the footer.
    let mut body = b"KILNBLK1".to_vec();
    let mut sections = Vec::new();
    for (name, bytes) in crate::sections::encode(&datasets, crate::sections::Codec::Zstd).unwrap() {
        sections.push(serde_json::json!({
            "name": name, "offset": body.len(), "length": bytes.len()
        }));
        body.extend_from_slice(&bytes);
    }
    let mut meta = kiln_model::BlockMeta {
        id: Ulid::new().to_string(),
        path: "segments/0/x/block.bin".to_string(),
        datasets: vec![kiln_model::DatasetMeta {
            tenant: datasets[0].tenant.clone(),
            service_name: "svc".to_string(),
            ..kiln_model::DatasetMeta::default()
        }],
        ..kiln_model::BlockMeta::default()
    };
    meta.size_bytes = 0;
    let footer = serde_json::to_vec(&serde_json::json!({
        "format_version": 1, "sections": sections, "meta": meta
    }))
    .unwrap();
    body.extend_from_slice(&footer);
    body.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    body.extend_from_slice(&crc32fast::hash(&footer).to_le_bytes());
    body.extend_from_slice(b"KILNBLK1");
    let read = SegmentReader::parse(Bytes::from(body))
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(read, datasets);
}

#[test]
fn series_sections_are_read_alone_with_their_table_of_contents() {
    use kiln_objstore::object_store::ObjectStoreExt;

    let profiles = load_profiles();
    let by_size = |(_, p): &&(String, Profile)| p.sample.len();
    let smallest = &profiles
        .iter()
        .filter(|(_, p)| p.sample.len() >= 10)
        .min_by_key(by_size)
        .unwrap()
        .1;
    let largest = &profiles.iter().max_by_key(by_size).unwrap().1;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A segment of a few large datasets, and one whose table of contents (over 500 datasets
    // with long names) is longer than the first read from the region's end.
    for (datasets, profile) in [(3, largest), (520, smallest)] {
        let mut segment = SegmentBuilder::default();
        for i in 0..datasets {
            let tenant = TenantId::new(&format!("tenant-{}", i % 2)).unwrap();
            let service = format!("a-service-with-a-rather-long-name-number-{i:04}");
            segment.add(&tenant, &normalized(profile, &service, "", 1_000_000_000));
        }
        let id = Ulid::new();
        let (bytes, meta) = segment.finish(id, 0).unwrap().unwrap();
        let storage = kiln_objstore::Storage::in_memory();
        runtime
            .block_on(
                storage
                    .store
                    .put(&storage.path(&meta.path), bytes.clone().into()),
            )
            .unwrap();
        let whole = SegmentReader::parse(bytes).unwrap().read_all().unwrap();
        let range = crate::fetch::RegionRange::of(&meta.datasets[0]);
        let (directory, directory_read) = runtime
            .block_on(crate::fetch::fetch_directory(&storage, &meta, &range))
            .unwrap()
            .expect("segments have regions");
        let (section, section_read) = runtime
            .block_on(crate::fetch::fetch_sections(
                &storage,
                &meta,
                &range,
                std::sync::Arc::new(directory),
                crate::fetch::SERIES,
            ))
            .unwrap();
        let read = directory_read + section_read;
        let series = section.decode().unwrap();
        assert_eq!(series.len(), datasets);
        for (alone, full) in series.iter().zip(&whole) {
            assert_eq!(
                (&alone.tenant, &alone.service_name, &alone.series),
                (&full.tenant, &full.service_name, &full.series)
            );
            assert!(alone.samples.is_empty() && alone.profiles.is_empty());
        }
        // Where profiles are large, the series are a small part of the region.
        let region_len = range.byte_len().unwrap();
        if datasets == 3 {
            assert!(
                read * 4 < region_len,
                "{datasets} datasets: read {read} of {region_len} bytes"
            );
        }
    }
}

#[test]
fn a_compacted_region_reads_only_the_row_groups_of_the_profiles_wanted() {
    use crate::fetch::{self, RegionRange};
    use crate::pruned;
    use kiln_objstore::object_store::ObjectStoreExt;
    use std::sync::Arc;

    // Sixteen heap profiles of thousands of samples in each of 4 types: a dataset of several
    // row groups, sorted by series and time as the
    // compactor writes them.
    let heap = load_profiles()
        .into_iter()
        .find(|(name, _)| name == "go_parser.heap")
        .unwrap()
        .1;
    let tenant = TenantId::new("t").unwrap();
    let mut segment = SegmentBuilder::default();
    for i in 0..16 {
        let profile = normalized(&heap, "parser", &format!("p{i}"), i * 10_000_000_000);
        segment.add(&tenant, &profile);
    }
    let (bytes, _) = segment.finish(Ulid::new(), 0).unwrap().unwrap();
    let mut merger = DatasetMerger::new("t", "parser");
    for dataset in SegmentReader::parse(bytes).unwrap().read_all().unwrap() {
        merger.add(&dataset);
    }
    let merged = merger.finish();
    let id = Ulid::new();
    let mut writer = ObjectWriter::new(id, block_path(0, "t", &id), 0, 1, "t");
    writer.add_region(std::slice::from_ref(&merged)).unwrap();
    let (bytes, meta) = writer.finish().unwrap().unwrap();
    let storage = kiln_objstore::Storage::in_memory();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(storage.store.put(&storage.path(&meta.path), bytes.into()))
        .unwrap();
    let range = RegionRange::of(&meta.datasets[0]);
    let region_len = range.byte_len().unwrap();

    let (directory, mut read) = runtime
        .block_on(fetch::fetch_directory(&storage, &meta, &range))
        .unwrap()
        .unwrap();
    let directory = Arc::new(directory);
    let sections = |names| {
        let (bytes, read) = runtime
            .block_on(fetch::fetch_sections(
                &storage,
                &meta,
                &range,
                directory.clone(),
                names,
            ))
            .unwrap();
        (bytes.decode().unwrap(), read)
    };
    let (head, head_read) = sections(fetch::HEAD);
    let (symbols, symbols_read) = sections(fetch::SYMBOLS);
    let symbols: Vec<_> = symbols.into_iter().map(|d| d.symbols).collect();
    let (footer, footer_read) = runtime
        .block_on(pruned::fetch_samples_footer(
            &storage, &meta, &range, &directory,
        ))
        .unwrap();
    read += head_read + symbols_read + footer_read;
    let footer = Arc::new(footer);
    assert!(
        footer.row_group_count() >= 4,
        "{}",
        footer.row_group_count()
    );
    let read_rows = |wanted: &[u32]| {
        let groups = footer
            .matching_row_groups(|dataset, rows| {
                dataset == 0 && wanted.iter().any(|row| rows.contains(row))
            })
            .unwrap();
        let (samples, read) = runtime
            .block_on(pruned::fetch_row_groups(
                &storage,
                &meta,
                &range,
                &directory,
                footer.clone(),
                groups.clone(),
            ))
            .unwrap();
        let data = pruned::assemble(&head, &symbols, samples).unwrap();
        (groups, data, read)
    };

    // Every profile: exactly the region as decoded whole.
    let all: Vec<u32> = (0..merged.profiles.len() as u32).collect();
    let (groups, data, _) = read_rows(&all);
    assert_eq!(groups.len(), footer.row_group_count());
    assert_eq!(data, vec![merged.clone()]);

    // One profile type over the first half of the range: its samples, and far fewer bytes.
    let inuse = merged
        .series
        .iter()
        .position(|s| s.profile_type.starts_with("memory:inuse_space"))
        .unwrap() as u32;
    let wanted: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&row| {
            let profile = &merged.profiles[row as usize];
            profile.series == inuse && profile.time_nanos < 80_000_000_000
        })
        .collect();
    assert_eq!(wanted.len(), 8);
    let (groups, data, samples_read) = read_rows(&wanted);
    assert!(groups.len() < footer.row_group_count() / 2, "{groups:?}");
    let of_wanted = |data: &DatasetData| -> Vec<_> {
        data.samples
            .iter()
            .filter(|s| wanted.contains(&s.profile))
            .cloned()
            .collect()
    };
    assert_eq!(of_wanted(&data[0]), of_wanted(&merged));
    assert!(!of_wanted(&merged).is_empty());
    assert!(
        (read + samples_read) * 2 < region_len,
        "read {} of {region_len} bytes",
        read + samples_read
    );
}

#[test]
fn stacks_shared_across_sample_types_build_the_same_dataset_as_unshared_ones() {
    // normalize gives the series of one pprof's sample types one `Arc` per sample, which the
    // builder resolves once; copies of every stack must build exactly the same dataset.
    let mut with_several_types = 0;
    for (name, profile) in load_profiles() {
        let shared = normalized(&profile, "svc", "p", 1);
        with_several_types += usize::from(shared.series.len() > 1);
        let mut unshared = shared.clone();
        for series in &mut unshared.series {
            for sample in &mut series.samples {
                sample.locations = std::sync::Arc::from(sample.locations.to_vec());
            }
        }
        let build = |profile: &kiln_model::NormalizedProfile| {
            let mut builder = crate::DatasetBuilder::new("t", "svc");
            builder.add(profile);
            builder.add(profile);
            builder.finish()
        };
        let (a, b) = (build(&shared), build(&unshared));
        assert_eq!(a.samples, b.samples, "{name}");
        assert_eq!(a.symbols.stacks, b.symbols.stacks, "{name}");
        assert_eq!(a.symbols.locations, b.symbols.locations, "{name}");
    }
    assert!(
        with_several_types > 0,
        "no profile has several sample types"
    );
}

/// `profile` with every table in another order and every reference renumbered: the string
/// table reversed with a second copy of each function's name for its system name, and the
/// locations, functions and mappings reversed with sparse ids. The same profile to a reader.
fn renumbered(profile: &Profile) -> Profile {
    let mut out = profile.clone();
    let n = profile.string_table.len() as i64;
    let string = |index: i64| if index == 0 { 0 } else { n - index };
    out.string_table = std::iter::once(String::new())
        .chain(profile.string_table[1..].iter().rev().cloned())
        .collect();
    let id = |id: u64| if id == 0 { 0 } else { id * 7 + 100 };
    for value_type in out.sample_type.iter_mut().chain(out.period_type.as_mut()) {
        value_type.r#type = string(value_type.r#type);
        value_type.unit = string(value_type.unit);
    }
    for label in out.sample.iter_mut().flat_map(|s| &mut s.label) {
        (label.key, label.str, label.num_unit) =
            (string(label.key), string(label.str), string(label.num_unit));
    }
    for sample in &mut out.sample {
        sample.location_id.iter_mut().for_each(|l| *l = id(*l));
    }
    for comment in &mut out.comment {
        *comment = string(*comment);
    }
    (out.drop_frames, out.keep_frames, out.default_sample_type) = (
        string(out.drop_frames),
        string(out.keep_frames),
        string(out.default_sample_type),
    );
    for mapping in &mut out.mapping {
        mapping.id = id(mapping.id);
        (mapping.filename, mapping.build_id) = (string(mapping.filename), string(mapping.build_id));
    }
    for location in &mut out.location {
        (location.id, location.mapping_id) = (id(location.id), id(location.mapping_id));
        location
            .line
            .iter_mut()
            .for_each(|l| l.function_id = id(l.function_id));
    }
    for function in &mut out.function {
        function.id = id(function.id);
        (function.name, function.filename) = (string(function.name), string(function.filename));
        let name = out.string_table[function.name as usize].clone();
        function.system_name = out.string_table.len() as i64;
        out.string_table.push(name);
    }
    out.mapping.reverse();
    out.location.reverse();
    out.function.reverse();
    out
}

#[test]
fn profiles_numbering_the_same_symbols_differently_build_the_same_dataset() {
    // The builder memoizes each pprof's strings, locations and functions by position: a second
    // profile with other positions and ids for the same symbols must map onto the first's.
    for (name, profile) in load_profiles() {
        let first = normalized(&profile, "svc", "p", 1);
        let build = |second: &Profile| {
            let mut builder = crate::DatasetBuilder::new("t", "svc");
            builder.add(&first);
            builder.add(&normalized(second, "svc", "p", 1));
            builder.finish()
        };
        let (same, other) = (build(&profile), build(&renumbered(&profile)));
        assert_eq!(same, other, "{name}");
    }
}

/// The Parquet metadata of each section of the first region of `object`, by section name.
fn section_metadata(
    object: Bytes,
) -> Vec<(&'static str, parquet::file::metadata::ParquetMetaData)> {
    let reader = SegmentReader::parse(object.clone()).unwrap();
    let dataset = &reader.meta().datasets[0];
    let start = dataset.region_offset as usize;
    let region = object.slice(start..start + dataset.region_length as usize);
    let crate::region::TocTail::Complete(toc, _) =
        crate::region::toc_from_tail(&region, region.len() as u64).unwrap()
    else {
        panic!("the whole region holds its table of contents");
    };
    toc.slice_named(&region, 0, &crate::sections::SECTIONS)
        .unwrap()
        .into_iter()
        .map(|(name, bytes)| {
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .parse_and_finish(&bytes)
                .unwrap();
            (name, metadata)
        })
        .collect()
}

/// A segment of [`one_profile_datasets`].
fn one_profile_segment() -> Bytes {
    crate::encode_segment(one_profile_datasets(), Ulid::new(), 0)
        .unwrap()
        .unwrap()
        .0
}

/// The compression of every column chunk of the first region of `object`, by section.
fn section_codecs(
    object: Bytes,
) -> BTreeMap<&'static str, std::collections::BTreeSet<&'static str>> {
    use parquet::basic::Compression;

    let mut codecs = BTreeMap::new();
    for (name, metadata) in section_metadata(object) {
        let kinds = metadata
            .row_groups()
            .iter()
            .flat_map(|group| group.columns())
            .map(|column| match column.compression() {
                Compression::ZSTD(_) => "zstd",
                Compression::LZ4_RAW => "lz4",
                Compression::UNCOMPRESSED => "none",
                _ => "other",
            })
            .collect();
        codecs.insert(name, kinds);
    }
    codecs
}

#[test]
fn segments_are_compressed_with_lz4_blocks_with_zstd_and_a_small_series_section_not_at_all() {
    let datasets = one_profile_datasets();
    let segment = one_profile_segment();
    let id = Ulid::new();
    let mut writer = ObjectWriter::new(id, "blocks/x".to_string(), 0, 1, "anonymous");
    writer.add_region(&datasets).unwrap();
    let (block, _) = writer.finish().unwrap().unwrap();
    // One profile's series (one row) is tiny; every other section is compressed, small or not:
    // with LZ4 in a segment (level 0), with ZSTD in a compacted block.
    for (object, codec) in [(segment, "lz4"), (block, "zstd")] {
        let codecs = section_codecs(object.clone());
        assert_eq!(codecs.len(), crate::sections::SECTIONS.len());
        for (name, kinds) in &codecs {
            let expected = if *name == "series" { "none" } else { codec };
            assert_eq!(kinds, &[expected].into(), "{name}: {codecs:?}");
        }
        // Either is read back exactly.
        let read = SegmentReader::parse(object).unwrap().read_all().unwrap();
        assert_eq!(read, datasets);
    }
}

#[test]
fn high_cardinality_columns_are_written_without_a_dictionary_and_the_others_with_one() {
    // (section, column) of every column chunk, and whether it has a dictionary page.
    let mut dictionaries = BTreeMap::new();
    for (name, metadata) in section_metadata(one_profile_segment()) {
        for column in metadata.row_groups().iter().flat_map(|g| g.columns()) {
            let path = column.column_path().string();
            dictionaries.insert((name, path), column.dictionary_page_offset().is_some());
        }
    }
    for (section, column) in crate::sections::PLAIN_COLUMNS {
        let key = (section, column.to_string());
        assert_eq!(dictionaries.get(&key), Some(&false), "{key:?}");
    }
    // The columns with few distinct values keep their dictionaries.
    for (section, column) in [
        ("samples", "dataset"),
        ("samples", "profile"),
        ("samples", "value"),
    ] {
        let key = (section, column.to_string());
        assert_eq!(dictionaries.get(&key), Some(&true), "{key:?}");
    }
}
