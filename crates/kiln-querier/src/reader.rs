//! Reads the regions of blocks that a query needs from object storage into memory, through a
//! size-bounded cache; and, for label calls, only the regions' series sections, through a cache
//! of their own, located by the regions' directories (tables of contents), cached too.

use std::sync::Arc;

use kiln_block::DatasetData;
use kiln_block::fetch::{self, RegionDirectory, RegionRange};
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_objstore::Storage;
use moka::future::Cache;

use crate::QuerierError;
use crate::metrics::QuerierMetrics;
use crate::pool::MergePool;

/// The decoded datasets of one region of a block (the whole block for a segment).
pub type BlockData = Arc<Vec<DatasetData>>;

/// Loads and caches decoded regions and series sections; blocks are immutable, so entries
/// never go stale.
#[derive(Clone, Debug)]
pub struct BlockReader {
    storage: Storage,
    cache: Cache<(String, RegionRange), BlockData>,
    /// The datasets of a region with only their series.
    series_cache: Cache<(String, RegionRange), BlockData>,
    /// Regions' directories (tables of contents): a series section missing from its cache is
    /// then one ranged GET.
    directory_cache: Cache<(String, RegionRange), Arc<RegionDirectory>>,
    pool: MergePool,
    metrics: QuerierMetrics,
}

/// An estimate of the memory the decoded datasets of a block take, for the cache's weigher.
fn decoded_bytes(data: &BlockData) -> u64 {
    data.iter()
        .map(|d| {
            let strings: usize = d.symbols.strings.iter().map(|s| s.len() + 24).sum();
            let labels: usize = d
                .series
                .iter()
                .flat_map(|s| s.labels.iter())
                .map(|(n, v)| n.len() + v.len() + 48)
                .sum();
            (d.samples.len() * std::mem::size_of::<kiln_block::SampleRow>()
                + d.profiles.len() * (std::mem::size_of::<kiln_block::ProfileRow>() + 36)
                + d.symbols.stacks.len() * 8
                + d.symbols.locations.len() * 64
                + d.symbols.functions.len() * std::mem::size_of::<kiln_block::Function>()
                + strings
                + labels) as u64
        })
        .sum()
}

impl BlockReader {
    /// A reader over `storage` caching up to `cache_bytes` of decoded regions,
    /// `series_cache_bytes` of decoded series sections and `directory_cache_bytes` of region
    /// directories, decoding on `pool`.
    pub(crate) fn new(
        storage: Storage,
        cache_bytes: u64,
        series_cache_bytes: u64,
        directory_cache_bytes: u64,
        pool: MergePool,
        metrics: QuerierMetrics,
    ) -> Self {
        let weighed = |bytes: u64| {
            Cache::builder()
                .max_capacity(bytes)
                .weigher(|_, data: &BlockData| {
                    u32::try_from(decoded_bytes(data)).unwrap_or(u32::MAX)
                })
                .build()
        };
        Self {
            storage,
            cache: weighed(cache_bytes),
            series_cache: weighed(series_cache_bytes),
            directory_cache: Cache::builder()
                .max_capacity(directory_cache_bytes)
                .weigher(|_, directory: &Arc<RegionDirectory>| {
                    u32::try_from(directory.memory_bytes()).unwrap_or(u32::MAX)
                })
                .build(),
            pool,
            metrics,
        }
    }

    /// The datasets of `block` that `wanted` selects, with only their series (label sets and
    /// profile types), region by region, from the series cache or from storage: each region's
    /// table of contents and series section only. A region already in the region cache is
    /// taken from there; objects without regions are loaded whole.
    pub async fn load_series(
        &self,
        block: &BlockMeta,
        wanted: impl Fn(&DatasetMeta) -> bool,
    ) -> Result<Vec<BlockData>, QuerierError> {
        let mut regions = Vec::new();
        for range in fetch::ranges_of(block, wanted) {
            let key = (block.id.clone(), range.clone());
            if let Some(region) = self.cache.get(&key).await {
                self.metrics.cache_lookup("regions", true);
                regions.push(region);
                continue;
            }
            let (reader, meta) = (self.clone(), block.clone());
            let entry = self
                .series_cache
                .entry(key.clone())
                .or_try_insert_with(async move {
                    let Some(directory) = reader.directory(&meta, &range).await? else {
                        // Objects of the first format have no sections to read alone.
                        return reader.fetch_region(&meta, range).await;
                    };
                    let (section, read) =
                        fetch::fetch_series(&reader.storage, &meta, &range, directory)
                            .await
                            .map_err(|e| e.to_string())?;
                    reader.metrics.fetched("series", read);
                    reader
                        .pool
                        .run("series decode", move || section.decode())
                        .await
                        .map_err(|e| e.to_string())?
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|reason| block_error(block, &reason))?;
            self.metrics.cache_lookup("series", !entry.is_fresh());
            regions.push(entry.into_value());
        }
        Ok(regions)
    }

    /// The datasets of `block` that `wanted` selects, region by region (plus the other datasets
    /// sharing their regions), from the cache or from storage: only those regions are fetched.
    pub async fn load(
        &self,
        block: &BlockMeta,
        wanted: impl Fn(&DatasetMeta) -> bool,
    ) -> Result<Vec<BlockData>, QuerierError> {
        let mut regions = Vec::new();
        for range in fetch::ranges_of(block, wanted) {
            let key = (block.id.clone(), range.clone());
            let (reader, meta) = (self.clone(), block.clone());
            let entry = self
                .cache
                .entry(key)
                .or_try_insert_with(async move { reader.fetch_region(&meta, range).await })
                .await
                .map_err(|reason| block_error(block, &reason))?;
            self.metrics.cache_lookup("regions", !entry.is_fresh());
            regions.push(entry.into_value());
        }
        Ok(regions)
    }

    /// The directory of region `range` of `block`, from the directory cache or from the region's
    /// end; `None` for objects without regions.
    async fn directory(
        &self,
        block: &BlockMeta,
        range: &RegionRange,
    ) -> Result<Option<Arc<RegionDirectory>>, String> {
        if *range == RegionRange::Whole {
            return Ok(None);
        }
        let (reader, meta, region) = (self.clone(), block.clone(), range.clone());
        let entry = self
            .directory_cache
            .entry((block.id.clone(), range.clone()))
            .or_try_insert_with(async move {
                let Some((directory, read)) =
                    fetch::fetch_directory(&reader.storage, &meta, &region)
                        .await
                        .map_err(|e| e.to_string())?
                else {
                    return Err(format!("{}: no region directory", meta.path));
                };
                reader.metrics.fetched("directory", read);
                Ok(Arc::new(directory))
            })
            .await
            .map_err(|e: Arc<String>| e.to_string())?;
        self.metrics.cache_lookup("directory", !entry.is_fresh());
        Ok(Some(entry.into_value()))
    }

    /// Fetches `range` of `block` from storage and decodes it on the merge pool, counting the
    /// bytes read.
    async fn fetch_region(
        &self,
        block: &BlockMeta,
        range: RegionRange,
    ) -> Result<BlockData, String> {
        let bytes = fetch::fetch(&self.storage, block, &range)
            .await
            .map_err(|e| e.to_string())?;
        self.metrics.fetched("regions", bytes.len() as u64);
        self.pool
            .run("block decode", move || fetch::decode(bytes, &range))
            .await
            .map_err(|e| e.to_string())?
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

/// The error of a block whose region could not be read or decoded.
fn block_error(block: &BlockMeta, reason: &str) -> QuerierError {
    QuerierError::Block {
        block: block.id.clone(),
        reason: reason.to_string(),
    }
}
