//! Jobs over real Go profiles in an in-memory bucket: what each path reads, and exact totals.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use kiln_block::{DatasetData, ObjectWriter, SegmentBuilder, SegmentReader, block_path};
use kiln_contract::metastore::CompactionJob;
use kiln_model::{BlockMeta, Labels, NormalizeOptions, NormalizedProfile, TenantId, normalize};
use kiln_objstore::Storage;
use kiln_objstore::object_store::{ObjectStoreExt, PutPayload};
use prometheus_client::registry::Registry;
use prost::Message;
use ulid::Ulid;

use crate::CompactorMetrics;

/// (tenant, service) -> summed sample value.
type Totals = BTreeMap<(String, String), i64>;

/// The shared test data's Go CPU profiles, decoded.
fn cpu_profiles() -> Vec<kiln_proto::google::v1::Profile> {
    kiln_testkit::testdata::pprof_files()
        .into_iter()
        .filter(|(name, _)| name.contains("cpu"))
        .map(|(_, gzipped)| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(gzipped.as_slice())
                .read_to_end(&mut raw)
                .unwrap();
            kiln_proto::google::v1::Profile::decode(raw.as_slice()).unwrap()
        })
        .collect()
}

fn normalized(
    profile: &kiln_proto::google::v1::Profile,
    service: &str,
    id: &str,
) -> NormalizedProfile {
    let options = NormalizeOptions {
        profile_id: Some(id.to_string()),
        time_nanos: Some(1_800_000_000_000_000_000),
        ..NormalizeOptions::default()
    };
    normalize(
        profile.clone(),
        &Labels::from_pairs([("service_name", service)]),
        options,
    )
    .unwrap()
}

fn total(profile: &NormalizedProfile) -> i64 {
    profile
        .series
        .iter()
        .flat_map(|s| &s.samples)
        .map(|s| s.value)
        .sum()
}

fn totals(datasets: &[DatasetData]) -> Totals {
    let mut totals = Totals::new();
    for d in datasets {
        *totals
            .entry((d.tenant.clone(), d.service_name.clone()))
            .or_default() += d.samples.iter().map(|s| s.value).sum::<i64>();
    }
    totals
}

/// Bytes of the distinct regions of `blocks`: what a job that reads each region once reads.
fn region_bytes(blocks: &[BlockMeta]) -> u64 {
    blocks
        .iter()
        .flat_map(|b| {
            b.datasets
                .iter()
                .map(|d| (b.id.clone(), d.region_offset, d.region_length))
        })
        .collect::<BTreeSet<_>>()
        .iter()
        .map(|(_, _, length)| length)
        .sum()
}

async fn put(storage: &Storage, bytes: bytes::Bytes, meta: &BlockMeta) {
    storage
        .store
        .put(&storage.path(&meta.path), PutPayload::from_bytes(bytes))
        .await
        .unwrap();
}

async fn read(storage: &Storage, meta: &BlockMeta) -> Vec<DatasetData> {
    let bytes = storage
        .store
        .get(&storage.path(&meta.path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    SegmentReader::parse(bytes).unwrap().read_all().unwrap()
}

/// Runs a job of `level` over `sources`; returns its metrics and the blocks it wrote.
async fn run(
    storage: &Storage,
    level: u32,
    sources: &[BlockMeta],
) -> (CompactorMetrics, Vec<BlockMeta>) {
    let job = CompactionJob {
        name: "test".to_string(),
        tenant: String::new(),
        shard: 0,
        level,
        sources: sources.to_vec(),
        token: 1,
        lease_expires_millis: 0,
    };
    let metrics = CompactorMetrics::new(&mut Registry::default());
    let blocks = super::run(&job, storage, &metrics, &mut Vec::new())
        .await
        .unwrap();
    (metrics, blocks)
}

/// Segments hold every tenant in one region: the job reads each segment once, whatever the
/// number of tenants, keeps each tenant's totals exactly, and keeps the first copy (in the
/// job's order) of a profile sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_0_job_reads_each_segment_once_and_keeps_every_total() {
    let profiles = cpu_profiles();
    assert!(profiles.len() >= 6, "{}", profiles.len());
    let storage = Storage::in_memory();
    let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
    let mut expected = Totals::new();
    let mut sources = Vec::new();
    for segment in 0..3 {
        let mut builder = SegmentBuilder::default();
        for (tenant, service, n) in [(&a, "x", 0), (&a, "y", 1), (&b, "z", 2)] {
            let profile = normalized(
                &profiles[segment * 2 + n % 2],
                service,
                &format!("{segment}-{n}"),
            );
            *expected
                .entry((tenant.as_str().to_string(), service.to_string()))
                .or_default() += total(&profile);
            builder.add(tenant, &profile);
        }
        // The same id in every segment: only the first segment's copy counts.
        let twice = normalized(&profiles[segment], "dup", "the-same-id");
        if segment == 0 {
            expected.insert(("a".to_string(), "dup".to_string()), total(&twice));
        }
        builder.add(&a, &twice);
        let (bytes, meta) = builder.finish(Ulid::new(), 0).unwrap().unwrap();
        put(&storage, bytes, &meta).await;
        sources.push(meta);
    }
    assert!(
        total(&normalized(&profiles[1], "dup", "")) != total(&normalized(&profiles[0], "dup", "")),
        "the copies must differ for the order to show"
    );
    let (metrics, blocks) = run(&storage, 0, &sources).await;

    assert_eq!(metrics.bytes_read.get(), region_bytes(&sources));
    // Counted per series: each later copy has one per sample type.
    let later_copies: usize = (1..3)
        .map(|segment| normalized(&profiles[segment], "dup", "").series.len())
        .sum();
    assert_eq!(metrics.duplicate_profiles.get(), later_copies as u64);
    let tenants: Vec<&str> = blocks.iter().map(|b| b.tenant.as_str()).collect();
    assert_eq!(tenants, ["a", "b"]);
    let mut merged = Vec::new();
    for block in &blocks {
        assert_eq!(block.compaction_level, 1);
        merged.extend(read(&storage, block).await);
    }
    assert_eq!(totals(&merged), expected);
}

/// Blocks are merged one service at a time: a region of their own or shared by every service,
/// each is read once, and every total is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_merged_by_service_reading_each_region_once() {
    let profiles = cpu_profiles();
    let storage = Storage::in_memory();
    let tenant = TenantId::new("a").unwrap();
    let mut expected = Totals::new();
    let mut sources = Vec::new();
    for block in 0..2 {
        let dataset = |service: &str, n: usize| {
            let profile = normalized(&profiles[block * 3 + n], service, &format!("{block}-{n}"));
            let mut builder = SegmentBuilder::default();
            builder.add(&tenant, &profile);
            (total(&profile), builder.into_datasets().remove(0))
        };
        let id = Ulid::new();
        let mut writer = ObjectWriter::new(id, block_path(0, "a", &id), 0, 1, "a");
        let (own, x) = dataset("x", 0);
        let (shared_y, y) = dataset("y", 1);
        let (shared_z, z) = dataset("z", 2);
        if block == 0 {
            writer.add_region(&[x]).unwrap();
            writer.add_region(&[y, z]).unwrap();
        } else {
            writer.add_region(&[x, y, z]).unwrap();
        }
        for (service, value) in [("x", own), ("y", shared_y), ("z", shared_z)] {
            *expected
                .entry(("a".to_string(), service.to_string()))
                .or_default() += value;
        }
        let (bytes, meta) = writer.finish().unwrap().unwrap();
        put(&storage, bytes, &meta).await;
        sources.push(meta);
    }
    let (metrics, blocks) = run(&storage, 1, &sources).await;

    assert_eq!(metrics.bytes_read.get(), region_bytes(&sources));
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].compaction_level, 2);
    assert_eq!(totals(&read(&storage, &blocks[0]).await), expected);
}
