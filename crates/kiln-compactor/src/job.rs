//! Running one compaction job: every dataset of the sources, merged per (tenant, service) into
//! one block per tenant and time partition at the next level, one region per dataset.
//!
//! Datasets are merged one at a time, each region fetched with one ranged GET, so that a job
//! holds one service's data (plus the undivided segments of a level-0 job) rather than all of
//! its sources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use kiln_block::fetch::{self, RegionRange};
use kiln_block::{DatasetData, DatasetMerger, ObjectWriter, block_path};
use kiln_contract::metastore::CompactionJob;
use kiln_model::{BlockMeta, partition_of};
use kiln_objstore::Storage;
use kiln_objstore::object_store::{ObjectStoreExt, PutPayload};
use ulid::Ulid;

use crate::{CompactionError, CompactorMetrics};

/// Decoded regions of the job's sources that hold more than one dataset (segments, and the
/// shared regions of small datasets in blocks), by (block id, range), each with the last
/// (tenant, service) it holds: kept until that dataset is merged (datasets are merged in
/// (tenant, service) order); single-dataset regions are fetched, merged and dropped.
type SharedRegions = HashMap<(String, RegionRange), ((String, String), Arc<Vec<DatasetData>>)>;

/// Runs `job`: reads its sources, writes the merged blocks, and returns their metadata for the
/// commit. Nothing is registered here; an error leaves at most unregistered objects behind
/// (removed by the caller, or by the orphan sweep).
pub async fn run(
    job: &CompactionJob,
    storage: &Storage,
    metrics: &CompactorMetrics,
    written: &mut Vec<String>,
) -> Result<Vec<BlockMeta>, CompactionError> {
    let started = Instant::now();
    let keys: BTreeSet<(String, String)> = job
        .sources
        .iter()
        .flat_map(|b| b.datasets.iter())
        .map(|d| (d.tenant.clone(), d.service_name.clone()))
        .collect();
    let mut shared = SharedRegions::new();
    let mut results = Vec::new();
    // One writer per (partition) of the tenant being merged; a tenant's blocks are written
    // before the next tenant's datasets are read.
    let mut writers: BTreeMap<i64, ObjectWriter> = BTreeMap::new();
    let mut current_tenant: Option<String> = None;
    for (tenant, service) in keys {
        if current_tenant.as_ref().is_some_and(|t| *t != tenant) {
            let done = current_tenant.take().expect("a tenant");
            for (_, writer) in std::mem::take(&mut writers) {
                results.extend(upload(job, storage, metrics, &done, writer, written).await?);
            }
        }
        current_tenant = Some(tenant.clone());
        let merged = merge_dataset(job, storage, metrics, &mut shared, &tenant, &service).await?;
        // Regions whose datasets are all merged now are not needed again.
        shared.retain(|_, (last, _)| {
            (last.0.as_str(), last.1.as_str()) > (tenant.as_str(), service.as_str())
        });
        for (partition, merged) in merged {
            let writer = writers.entry(partition).or_insert_with(|| {
                let id = Ulid::new();
                let path = block_path(job.shard, &tenant, &id);
                ObjectWriter::new(id, path, job.shard, job.level + 1, &tenant)
            });
            writer
                .add_dataset(merged)
                .map_err(|source| CompactionError::Encode {
                    job: job.name.clone(),
                    tenant: tenant.clone(),
                    source,
                })?;
        }
    }
    if let Some(tenant) = current_tenant {
        for (_, writer) in writers {
            results.extend(upload(job, storage, metrics, &tenant, writer, written).await?);
        }
    }
    metrics
        .job_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(results)
}

/// Merges the dataset (tenant, service) of every source, one result per time partition.
async fn merge_dataset(
    job: &CompactionJob,
    storage: &Storage,
    metrics: &CompactorMetrics,
    shared: &mut SharedRegions,
    tenant: &str,
    service: &str,
) -> Result<Vec<(i64, DatasetData)>, CompactionError> {
    let mut inputs: Vec<Arc<Vec<DatasetData>>> = Vec::new();
    for block in &job.sources {
        let Some(dataset) = block
            .datasets
            .iter()
            .find(|d| d.tenant == tenant && d.service_name == service)
        else {
            continue;
        };
        let range = RegionRange::of(dataset);
        let sharing: Vec<(&str, &str)> = block
            .datasets
            .iter()
            .filter(|d| RegionRange::of(d) == range)
            .map(|d| (d.tenant.as_str(), d.service_name.as_str()))
            .collect();
        let key = (block.id.clone(), range.clone());
        let region = match shared.get(&key) {
            Some((_, region)) => Arc::clone(region),
            None => {
                let region = Arc::new(load(job, storage, metrics, block, &range).await?);
                if let Some(&(tenant, service)) = sharing.iter().max().filter(|_| sharing.len() > 1)
                {
                    let last = (tenant.to_string(), service.to_string());
                    shared.insert(key, (last, Arc::clone(&region)));
                }
                region
            }
        };
        inputs.push(region);
    }
    let (tenant, service, name) = (tenant.to_string(), service.to_string(), job.name.clone());
    let merged = tokio::task::spawn_blocking(move || {
        let datasets: Vec<&DatasetData> = inputs
            .iter()
            .flat_map(|region| region.iter())
            .filter(|d| d.tenant == tenant && d.service_name == service)
            .collect();
        let partitions: BTreeSet<i64> = datasets
            .iter()
            .flat_map(|d| d.profiles.iter().map(|p| partition_of(p.time_nanos)))
            .collect();
        let mut duplicates = 0;
        let mut merged = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let mut merger = DatasetMerger::new(&tenant, &service);
            // Sources in the job's order (oldest first): the first copy of a duplicate is kept.
            for dataset in &datasets {
                merger.add_where(dataset, |p| partition_of(p.time_nanos) == partition);
            }
            duplicates += merger.duplicates();
            let dataset = merger.finish();
            if !dataset.samples.is_empty() {
                merged.push((partition, dataset));
            }
        }
        (merged, duplicates)
    })
    .await
    .map_err(|e| CompactionError::Panicked {
        job: name,
        reason: e.to_string(),
    })?;
    metrics.duplicate_profiles.inc_by(merged.1);
    Ok(merged.0)
}

async fn load(
    job: &CompactionJob,
    storage: &Storage,
    metrics: &CompactorMetrics,
    block: &BlockMeta,
    range: &RegionRange,
) -> Result<Vec<DatasetData>, CompactionError> {
    let source = |source| CompactionError::Source {
        job: job.name.clone(),
        block: block.id.clone(),
        source,
    };
    let bytes = fetch::fetch(storage, block, range).await.map_err(source)?;
    metrics.bytes_read.inc_by(bytes.len() as u64);
    let range = range.clone();
    tokio::task::spawn_blocking(move || fetch::decode(bytes, &range))
        .await
        .map_err(|e| CompactionError::Panicked {
            job: job.name.clone(),
            reason: e.to_string(),
        })?
        .map_err(source)
}

/// Finishes and writes one result block; `None` when it holds nothing.
async fn upload(
    job: &CompactionJob,
    storage: &Storage,
    metrics: &CompactorMetrics,
    tenant: &str,
    writer: ObjectWriter,
    written: &mut Vec<String>,
) -> Result<Option<BlockMeta>, CompactionError> {
    let encoded = writer.finish().map_err(|source| CompactionError::Encode {
        job: job.name.clone(),
        tenant: tenant.to_string(),
        source,
    })?;
    let Some((bytes, meta)) = encoded else {
        return Ok(None);
    };
    let size = bytes.len() as u64;
    written.push(meta.path.clone());
    storage
        .store
        .put(&storage.path(&meta.path), PutPayload::from_bytes(bytes))
        .await
        .map_err(|e| CompactionError::Storage(format!("cannot write {}: {e}", meta.path)))?;
    metrics.bytes_written.inc_by(size);
    metrics.blocks_written.inc();
    Ok(Some(meta))
}

/// Deletes objects a failed or refused job wrote; best effort (the orphan sweep is the backstop).
pub async fn discard(storage: &Storage, paths: &[String]) {
    for path in paths {
        if let Err(e) = storage.store.delete(&storage.path(path)).await {
            tracing::warn!(path, error = %e, "cannot delete the output of a discarded job; the orphan sweep will");
        }
    }
}
