//! Running one compaction job: every dataset of the sources, merged per (tenant, service) into
//! one block per tenant and time partition at the next level, one region per dataset.
//!
//! A job holds as little decoded source data as it can: each region is fetched with one
//! ranged GET, decoded, added to the merge of its datasets and dropped, in the job's order of
//! sources (the first copy of a duplicate profile is kept). The order of the work depends on
//! how the sources lay out their datasets:
//!
//! - Segments (a level-0 job) hold every service of every tenant in one region: a tenant whose
//!   datasets all share such regions is merged source by source with all its services' merges
//!   open, so that one segment is decoded at a time (rather than all of them until the last
//!   service is merged).
//! - Blocks give a large dataset a region of its own and let small ones share regions in
//!   service order: their tenant is merged one service at a time, keeping a shared region
//!   decoded until its last service is merged, which holds about one region per source (rather
//!   than every service's merge, as merging source by source would).
//!
//! Either way a tenant's blocks are written before the next tenant's datasets are read, and
//! each service's merge is finished and added to its block (a large one encoded at once) before
//! the next one is finished. Each merge reserves room for the samples its sources' metadata
//! counts, since they are most of what it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// Decoded regions of the job's sources that hold more than one dataset, by (block id, range),
/// each with the last service it holds: kept until that service is merged (services are
/// merged in order); single-dataset regions are fetched, merged and dropped.
type SharedRegions = HashMap<(String, RegionRange), (String, Arc<Vec<DatasetData>>)>;

/// The merge of one (tenant, service): one merger per time partition, fed one source dataset
/// at a time.
struct ServiceMerge {
    tenant: String,
    service: String,
    partitions: BTreeMap<i64, DatasetMerger>,
    /// Samples the sources' metadata puts in each partition (from the datasets that lie within
    /// one), reserved when the partition's merger is created: the samples are what a merge
    /// holds most of, and a vector grown by doubling would hold up to twice their size.
    expected_samples: BTreeMap<i64, usize>,
}

impl ServiceMerge {
    fn new(job: &CompactionJob, tenant: &str, service: &str) -> Self {
        let mut expected_samples: BTreeMap<i64, usize> = BTreeMap::new();
        for dataset in job.sources.iter().flat_map(|b| b.datasets.iter()) {
            let partition = partition_of(dataset.min_time_nanos);
            if dataset.tenant == tenant
                && dataset.service_name == service
                && partition == partition_of(dataset.max_time_nanos)
            {
                let samples = usize::try_from(dataset.samples).unwrap_or(usize::MAX);
                let expected = expected_samples.entry(partition).or_default();
                *expected = expected.saturating_add(samples);
            }
        }
        Self {
            tenant: tenant.to_string(),
            service: service.to_string(),
            partitions: BTreeMap::new(),
            expected_samples,
        }
    }

    /// Adds the next source's dataset of this service.
    fn add(&mut self, dataset: &DatasetData) {
        let partitions: BTreeSet<i64> = dataset
            .profiles
            .iter()
            .map(|p| partition_of(p.time_nanos))
            .collect();
        for partition in partitions {
            let merger = self.partitions.entry(partition).or_insert_with(|| {
                let mut merger = DatasetMerger::new(&self.tenant, &self.service);
                if let Some(&samples) = self.expected_samples.get(&partition) {
                    merger.reserve_samples(samples);
                }
                merger
            });
            merger.add_where(dataset, |p| partition_of(p.time_nanos) == partition);
        }
    }

    /// The merged dataset of each partition that has samples, in partition order, and the
    /// duplicate profiles left out.
    fn finish(self) -> (Vec<(i64, DatasetData)>, u64) {
        let mut duplicates = 0;
        let mut merged = Vec::with_capacity(self.partitions.len());
        for (partition, merger) in self.partitions {
            duplicates += merger.duplicates();
            let dataset = merger.finish();
            if !dataset.samples.is_empty() {
                merged.push((partition, dataset));
            }
        }
        (merged, duplicates)
    }
}

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
    let mut tenants: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for dataset in job.sources.iter().flat_map(|b| b.datasets.iter()) {
        tenants
            .entry(dataset.tenant.as_str())
            .or_default()
            .insert(dataset.service_name.as_str());
    }
    // Only a level-0 job merges source by source (see the module's documentation).
    let (by_service, by_source): (BTreeMap<_, _>, BTreeMap<_, _>) = if job.level == 0 {
        let own_regions = tenants_with_own_regions(job);
        tenants
            .into_iter()
            .partition(|(tenant, _)| own_regions.contains(tenant))
    } else {
        (tenants, BTreeMap::new())
    };
    let mut merged_by_source = merge_by_source(job, storage, metrics, &by_source).await?;
    let mut results = Vec::new();
    let order: BTreeSet<&str> = by_source.keys().chain(by_service.keys()).copied().collect();
    for tenant in order {
        let mut blocks = TenantBlocks::new(job, tenant);
        match merged_by_source.remove(tenant) {
            // Each service finished and added (a large one encoded) before the next is
            // finished: one service's rows at a time beside the merges not yet finished.
            Some(merges) => {
                for merge in merges {
                    blocks.add(finish(job, metrics, merge).await?)?;
                }
            }
            None => {
                let services = &by_service[tenant];
                merge_by_service(job, storage, metrics, &mut blocks, services).await?;
            }
        }
        for (_, writer) in blocks.writers {
            results.extend(upload(job, storage, metrics, tenant, writer, written).await?);
        }
    }
    metrics
        .job_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(results)
}

/// The tenants with a dataset in a region of its own in one of the job's sources.
fn tenants_with_own_regions(job: &CompactionJob) -> HashSet<&str> {
    let mut tenants = HashSet::new();
    for block in &job.sources {
        let mut datasets_per_region: HashMap<RegionRange, usize> = HashMap::new();
        for dataset in &block.datasets {
            *datasets_per_region
                .entry(RegionRange::of(dataset))
                .or_default() += 1;
        }
        for dataset in &block.datasets {
            if datasets_per_region[&RegionRange::of(dataset)] == 1 {
                tenants.insert(dataset.tenant.as_str());
            }
        }
    }
    tenants
}

/// Merges every service of `tenants` at once, each region of theirs fetched, added and dropped
/// in the job's order: one region decoded at a time (once, however many tenants it holds),
/// beside the merges. Returns each tenant's merges, not yet finished, in service order.
async fn merge_by_source(
    job: &CompactionJob,
    storage: &Storage,
    metrics: &CompactorMetrics,
    tenants: &BTreeMap<&str, BTreeSet<&str>>,
) -> Result<BTreeMap<String, Vec<ServiceMerge>>, CompactionError> {
    let mut merges: BTreeMap<(String, String), ServiceMerge> = tenants
        .iter()
        .flat_map(|(&tenant, services)| services.iter().map(move |&service| (tenant, service)))
        .map(|(tenant, service)| {
            let key = (tenant.to_string(), service.to_string());
            (key, ServiceMerge::new(job, tenant, service))
        })
        .collect();
    for block in &job.sources {
        let mut seen = HashSet::new();
        let ranges: Vec<RegionRange> = block
            .datasets
            .iter()
            .filter(|d| tenants.contains_key(d.tenant.as_str()))
            .map(RegionRange::of)
            .filter(|range| seen.insert(range.clone()))
            .collect();
        for range in ranges {
            let region = load(job, storage, metrics, block, &range).await?;
            merges = blocking(job, move || {
                for dataset in region {
                    let key = (dataset.tenant.clone(), dataset.service_name.clone());
                    if let Some(merge) = merges.get_mut(&key) {
                        merge.add(&dataset);
                    }
                }
                merges
            })
            .await?;
        }
    }
    let mut by_tenant: BTreeMap<String, Vec<ServiceMerge>> = BTreeMap::new();
    for ((tenant, _), merge) in merges {
        by_tenant.entry(tenant).or_default().push(merge);
    }
    Ok(by_tenant)
}

/// The merged datasets of `merge`, one per time partition with samples, off the async threads;
/// counts the duplicate profiles it left out.
async fn finish(
    job: &CompactionJob,
    metrics: &CompactorMetrics,
    merge: ServiceMerge,
) -> Result<Vec<(i64, DatasetData)>, CompactionError> {
    let (merged, duplicates) = blocking(job, move || merge.finish()).await?;
    metrics.duplicate_profiles.inc_by(duplicates);
    Ok(merged)
}

/// The blocks one tenant's merged datasets go to: one writer per time partition, datasets added
/// in service order (a small one waits in its writer for a shared region; a large one is
/// encoded at once).
struct TenantBlocks<'a> {
    job: &'a CompactionJob,
    tenant: &'a str,
    writers: BTreeMap<i64, ObjectWriter>,
}

impl<'a> TenantBlocks<'a> {
    fn new(job: &'a CompactionJob, tenant: &'a str) -> Self {
        Self {
            job,
            tenant,
            writers: BTreeMap::new(),
        }
    }

    /// Adds merged datasets, each to the writer of its partition.
    fn add(&mut self, merged: Vec<(i64, DatasetData)>) -> Result<(), CompactionError> {
        let (job, tenant) = (self.job, self.tenant);
        for (partition, dataset) in merged {
            let writer = self.writers.entry(partition).or_insert_with(|| {
                let id = Ulid::new();
                let path = block_path(job.shard, tenant, &id);
                ObjectWriter::new(id, path, job.shard, job.level + 1, tenant)
            });
            writer
                .add_dataset(dataset)
                .map_err(|source| CompactionError::Encode {
                    job: job.name.clone(),
                    tenant: tenant.to_string(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Merges the services of the tenant of `blocks` one after the other, each from its regions in
/// the job's order, and adds each to `blocks` once merged.
async fn merge_by_service(
    job: &CompactionJob,
    storage: &Storage,
    metrics: &CompactorMetrics,
    blocks: &mut TenantBlocks<'_>,
    services: &BTreeSet<&str>,
) -> Result<(), CompactionError> {
    let mut shared = SharedRegions::new();
    let tenant = blocks.tenant;
    for &service in services {
        let merged = merge_service(job, storage, metrics, &mut shared, tenant, service).await?;
        blocks.add(merged)?;
        // Regions whose datasets are all merged now are not needed again.
        shared.retain(|_, (last, _)| last.as_str() > service);
    }
    Ok(())
}

/// Merges the dataset (tenant, service) of every source, one result per time partition.
async fn merge_service(
    job: &CompactionJob,
    storage: &Storage,
    metrics: &CompactorMetrics,
    shared: &mut SharedRegions,
    tenant: &str,
    service: &str,
) -> Result<Vec<(i64, DatasetData)>, CompactionError> {
    let mut merge = ServiceMerge::new(job, tenant, service);
    for block in &job.sources {
        let Some(dataset) = block
            .datasets
            .iter()
            .find(|d| d.tenant == tenant && d.service_name == service)
        else {
            continue;
        };
        let range = RegionRange::of(dataset);
        let sharing: Vec<&str> = block
            .datasets
            .iter()
            .filter(|d| d.tenant == tenant && RegionRange::of(d) == range)
            .map(|d| d.service_name.as_str())
            .collect();
        let key = (block.id.clone(), range.clone());
        let region = match shared.get(&key) {
            Some((_, region)) => Arc::clone(region),
            None => {
                let region = Arc::new(load(job, storage, metrics, block, &range).await?);
                if let Some(&last) = sharing.iter().max().filter(|_| sharing.len() > 1) {
                    shared.insert(key, (last.to_string(), Arc::clone(&region)));
                }
                region
            }
        };
        let (tenant, service) = (tenant.to_string(), service.to_string());
        merge = blocking(job, move || {
            for dataset in region
                .iter()
                .filter(|d| d.tenant == tenant && d.service_name == service)
            {
                merge.add(dataset);
            }
            merge
        })
        .await?;
    }
    finish(job, metrics, merge).await
}

/// Runs merge work off the async threads.
async fn blocking<T: Send + 'static>(
    job: &CompactionJob,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CompactionError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CompactionError::Panicked {
            job: job.name.clone(),
            reason: e.to_string(),
        })
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
    blocking(job, move || fetch::decode(bytes, &range))
        .await?
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

#[cfg(test)]
mod tests;
