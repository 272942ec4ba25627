//! The heap a level-0 compaction job holds: merges real segment files as the compactor merges a
//! job of segments (every service's merge open, one segment decoded at a time, each merge's
//! samples reserved from the segments' metadata), then finishes and encodes one service at a
//! time, and prints the bytes allocated at each step and at the peak. Counts the allocations
//! of this process (a counting global allocator), not RSS.
//!
//! ```sh
//! # Segments of the generated workload, kept by a server without a compactor:
//! kiln server --retention-period=0 --target=distributor,ingester,metastore,querier --cluster.insecure &
//! kiln-loadgen run --duration 8s --rate 0 --concurrency 64
//! cargo run --release -p kiln-block --example merge_memory -- $(ls data/objects/segments/0/*/block.bin | head -20)
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use kiln_block::{DatasetMerger, ObjectWriter, SegmentReader};

/// The system allocator, counting the bytes allocated now and at the peak.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Prints the bytes allocated now and at the peak, in MB, above `base`.
fn report(step: &str, base: usize) {
    let mb = |bytes: usize| bytes.saturating_sub(base) as f64 / 1e6;
    println!(
        "{step}: {:.1} MB held, {:.1} MB at the peak",
        mb(NOW.load(Relaxed)),
        mb(PEAK.load(Relaxed))
    );
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        return Err("usage: merge_memory SEGMENT_FILE...".into());
    }
    // Segment ids are ULIDs under their folder: the path order is the job's order.
    paths.sort();
    let read = |path: &str| -> Result<SegmentReader> {
        Ok(SegmentReader::parse(bytes::Bytes::from(std::fs::read(
            path,
        )?))?)
    };
    let mut expected_samples: BTreeMap<(String, String), usize> = BTreeMap::new();
    for path in &paths {
        for dataset in &read(path)?.meta().datasets {
            let key = (dataset.tenant.clone(), dataset.service_name.clone());
            *expected_samples.entry(key).or_default() += usize::try_from(dataset.samples)?;
        }
    }
    let base = NOW.load(Relaxed);
    PEAK.store(base, Relaxed);
    let mut merges: BTreeMap<(String, String), DatasetMerger> = BTreeMap::new();
    for path in &paths {
        for dataset in read(path)?.read_all()? {
            let key = (dataset.tenant.clone(), dataset.service_name.clone());
            merges
                .entry(key.clone())
                .or_insert_with(|| {
                    let mut merger = DatasetMerger::new(&key.0, &key.1);
                    merger.reserve_samples(expected_samples[&key]);
                    merger
                })
                .add(&dataset);
        }
    }
    let samples: usize = expected_samples.values().sum();
    println!(
        "{} segments, {} datasets, {samples} samples",
        paths.len(),
        merges.len()
    );
    report("merged", base);
    let mut writers: BTreeMap<String, ObjectWriter> = BTreeMap::new();
    for ((tenant, _), merger) in merges {
        let writer = writers.entry(tenant.clone()).or_insert_with(|| {
            let id = ulid::Ulid::new();
            ObjectWriter::new(id, kiln_block::block_path(0, &tenant, &id), 0, 1, &tenant)
        });
        writer.add_dataset(merger.finish())?;
    }
    report("finished and encoded", base);
    for (_, writer) in writers {
        if let Some((bytes, _)) = writer.finish()? {
            println!("block: {} bytes", bytes.len());
        }
    }
    report("written", base);
    Ok(())
}
