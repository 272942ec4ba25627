//! Reads what a query needs of the blocks from object storage, through size-bounded caches.
//!
//! A select reads, of each region holding a wanted dataset, its directory (table of contents),
//! its head (series and profiles), the footer of its samples section, its symbols, and of its
//! samples only the row groups whose statistics say they may hold a profile the query selects.
//! Each of these is cached on its own, so that another query of the same region reads only the
//! samples it wants and not yet cached. Label calls read only the regions' series sections.

use std::sync::Arc;

use kiln_block::fetch::{self, RegionDirectory, RegionRange};
use kiln_block::pruned::{self, SamplesFooter};
use kiln_block::{DatasetData, Symbols};
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_objstore::Storage;
use moka::future::Cache;

use crate::QuerierError;
use crate::metrics::QuerierMetrics;
use crate::pool::MergePool;

/// The decoded datasets of one region of a block (the whole block for a segment).
pub type BlockData = Arc<Vec<DatasetData>>;

/// Memory for each of the reader's caches, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct CacheSizes {
    /// Decoded samples of regions, with their heads and symbols shared (`--querier.cache-bytes`).
    pub regions: u64,
    /// Decoded series sections and heads (series and profiles).
    pub series: u64,
    /// Regions' directories and their samples sections' footers.
    pub directory: u64,
    /// Decoded symbols of regions.
    pub symbols: u64,
}

/// Which rows of a region a read wants: per dataset (in the region's order), the sorted profile
/// rows whose samples it needs.
pub(crate) type WantedProfiles = Vec<Vec<u32>>;

/// Metadata of a region, small and cached together.
#[derive(Clone, Debug)]
enum RegionMeta {
    Directory(Arc<RegionDirectory>),
    Footer(Arc<SamplesFooter>),
}

impl RegionMeta {
    fn memory_bytes(&self) -> usize {
        match self {
            RegionMeta::Directory(directory) => directory.memory_bytes(),
            RegionMeta::Footer(footer) => footer.memory_bytes(),
        }
    }
}

/// A region of a block: the cache key of what is read from it.
type RegionKey = (String, RegionRange);

/// Loads and caches the parts of regions; blocks are immutable, so entries never go stale.
#[derive(Clone, Debug)]
pub struct BlockReader {
    storage: Storage,
    /// Datasets with the samples of some row groups (all for objects without regions), keyed
    /// by region and row groups.
    cache: Cache<(String, RegionRange, Vec<usize>), BlockData>,
    /// Datasets with only the sections named in the key ([`fetch::SERIES`] for label calls,
    /// [`fetch::HEAD`] for selects).
    series_cache: Cache<(String, RegionRange, &'static [&'static str]), BlockData>,
    /// Directories and samples footers: `true` in the key for a footer.
    directory_cache: Cache<(String, RegionRange, bool), RegionMeta>,
    symbols_cache: Cache<RegionKey, Arc<Vec<Arc<Symbols>>>>,
    pool: MergePool,
    metrics: QuerierMetrics,
}

/// An estimate of the memory the decoded rows of datasets take (symbols apart), for a cache's
/// weigher.
fn rows_bytes(data: &BlockData) -> u64 {
    data.iter()
        .map(|d| {
            let labels: usize = d
                .series
                .iter()
                .flat_map(|s| s.labels.iter())
                .map(|(n, v)| n.len() + v.len() + 48)
                .sum();
            (d.samples.len() * std::mem::size_of::<kiln_block::SampleRow>()
                + d.profiles.len() * (std::mem::size_of::<kiln_block::ProfileRow>() + 36)
                + labels) as u64
        })
        .sum()
}

/// An estimate of the memory decoded symbols take.
fn symbols_bytes(symbols: &[Arc<Symbols>]) -> u64 {
    symbols
        .iter()
        .map(|s| {
            let strings: usize = s.strings.iter().map(|s| s.len() + 24).sum();
            (s.stacks.len() * 8
                + s.locations.len() * 64
                + s.functions.len() * std::mem::size_of::<kiln_block::Function>()
                + s.mappings.len() * std::mem::size_of::<kiln_block::Mapping>()
                + strings) as u64
        })
        .sum()
}

/// A weigher's weight: moka weighs in u32.
fn weight(bytes: u64) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl BlockReader {
    /// A reader over `storage` with caches of `sizes`, decoding on `pool`.
    pub(crate) fn new(
        storage: Storage,
        sizes: CacheSizes,
        pool: MergePool,
        metrics: QuerierMetrics,
    ) -> Self {
        Self {
            storage,
            cache: Cache::builder()
                .max_capacity(sizes.regions)
                .weigher(|_, data: &BlockData| weight(rows_bytes(data)))
                .build(),
            series_cache: Cache::builder()
                .max_capacity(sizes.series)
                .weigher(|_, data: &BlockData| weight(rows_bytes(data)))
                .build(),
            directory_cache: Cache::builder()
                .max_capacity(sizes.directory)
                .weigher(|_, meta: &RegionMeta| weight(meta.memory_bytes() as u64))
                .build(),
            symbols_cache: Cache::builder()
                .max_capacity(sizes.symbols)
                .weigher(|_, symbols: &Arc<Vec<Arc<Symbols>>>| weight(symbols_bytes(symbols)))
                .build(),
            pool,
            metrics,
        }
    }

    /// The datasets of `block` that `wanted` selects, with their series (label sets and profile
    /// types), region by region: from a head a select cached, else from the series cache or
    /// from storage (the series section only). Objects without regions are loaded whole.
    pub async fn load_series(
        &self,
        block: &BlockMeta,
        wanted: impl Fn(&DatasetMeta) -> bool,
    ) -> Result<Vec<BlockData>, QuerierError> {
        let mut regions = Vec::new();
        for range in fetch::ranges_of(block, wanted) {
            // A region's head (series and profiles), cached by a select, holds its series too.
            let head = (block.id.clone(), range.clone(), fetch::HEAD);
            if let Some(head) = self.series_cache.get(&head).await {
                self.metrics.cache_lookup("head", true);
                regions.push(head);
                continue;
            }
            regions.push(self.sections(block, &range, fetch::SERIES).await?);
        }
        Ok(regions)
    }

    /// The datasets of `block` that `wanted` selects, region by region (with the other datasets
    /// sharing their regions), holding the samples of at least the profiles `profiles` picks
    /// from each region's head (series and profiles): only the row groups of the samples
    /// section that may hold those are read. Regions where it picks none are left out.
    pub async fn load(
        &self,
        block: &BlockMeta,
        wanted: impl Fn(&DatasetMeta) -> bool,
        profiles: impl Fn(&DatasetData) -> Vec<u32>,
    ) -> Result<Vec<BlockData>, QuerierError> {
        let mut regions = Vec::new();
        for range in fetch::ranges_of(block, wanted) {
            if range == RegionRange::Whole {
                // Objects of the first format have no sections to read alone.
                let key = (block.id.clone(), range.clone(), Vec::new());
                let region = self.fetch_region(block, range);
                let data = self.cached(&self.cache, key, "regions", region).await;
                regions.push(data.map_err(|reason| block_error(block, &reason))?);
                continue;
            }
            // At once, to spare a round trip to storage when neither is cached; a region the
            // index lists is rarely one without a profile the query selects.
            let (head, footer) = futures::try_join!(
                self.sections(block, &range, fetch::HEAD),
                self.footer(block, &range)
            )?;
            let wanted: WantedProfiles = head.iter().map(&profiles).collect();
            if wanted.iter().all(Vec::is_empty) {
                continue;
            }
            let row_groups = footer
                .matching_row_groups(|dataset, rows| {
                    wanted.get(dataset as usize).is_some_and(|wanted| {
                        let first = wanted.partition_point(|&row| row < *rows.start());
                        wanted.get(first).is_some_and(|&row| row <= *rows.end())
                    })
                })
                .map_err(|e| block_error(block, &e.to_string()))?;
            let key = (block.id.clone(), range.clone(), row_groups.clone());
            let assembled = async {
                let samples = async {
                    let directory = self.directory(block, &range).await?;
                    pruned::fetch_row_groups(
                        &self.storage,
                        block,
                        &range,
                        &directory,
                        footer,
                        row_groups,
                    )
                    .await
                    .map_err(|e| e.to_string())
                };
                let (symbols, (samples, read)) =
                    futures::try_join!(self.symbols(block, &range), samples)?;
                self.metrics.fetched("samples", read);
                self.decode("samples decode", move || {
                    pruned::assemble(&head, &symbols, samples)
                })
                .await
                .map(Arc::new)
            };
            let data = self.cached(&self.cache, key, "regions", assembled).await;
            regions.push(data.map_err(|reason| block_error(block, &reason))?);
        }
        Ok(regions)
    }

    /// The datasets of region `range` of `block` with only the sections `names`, from the series
    /// cache or from storage: one ranged GET of the series section where the block index
    /// records its range, else the region's directory and one ranged GET of the sections.
    async fn sections(
        &self,
        block: &BlockMeta,
        range: &RegionRange,
        names: &'static [&'static str],
    ) -> Result<BlockData, QuerierError> {
        let read = async {
            if *range == RegionRange::Whole {
                return self.fetch_region(block, range.clone()).await;
            }
            if names == fetch::SERIES
                && let Some((series, read)) =
                    fetch::fetch_indexed_series(&self.storage, block, range)
                        .await
                        .map_err(|e| e.to_string())?
            {
                // The index locates the section: no table of contents to read first.
                self.metrics.fetched("series", read);
                return self
                    .decode("series decode", move || series.decode())
                    .await
                    .map(Arc::new);
            }
            let directory = self.directory(block, range).await?;
            let (sections, read) =
                fetch::fetch_sections(&self.storage, block, range, directory, names)
                    .await
                    .map_err(|e| e.to_string())?;
            self.metrics.fetched(section_label(names), read);
            self.decode("sections decode", move || sections.decode())
                .await
                .map(Arc::new)
        };
        let key = (block.id.clone(), range.clone(), names);
        self.cached(&self.series_cache, key, section_label(names), read)
            .await
            .map_err(|reason| block_error(block, &reason))
    }

    /// The symbols of each dataset of region `range` of `block`, from the symbols cache or
    /// from storage (one ranged GET of the symbol sections).
    async fn symbols(
        &self,
        block: &BlockMeta,
        range: &RegionRange,
    ) -> Result<Arc<Vec<Arc<Symbols>>>, String> {
        let read = async {
            let directory = self.directory(block, range).await?;
            let (sections, read) =
                fetch::fetch_sections(&self.storage, block, range, directory, fetch::SYMBOLS)
                    .await
                    .map_err(|e| e.to_string())?;
            self.metrics.fetched("symbols", read);
            let datasets = self
                .decode("symbols decode", move || sections.decode())
                .await?;
            Ok(Arc::new(datasets.into_iter().map(|d| d.symbols).collect()))
        };
        let key = (block.id.clone(), range.clone());
        self.cached(&self.symbols_cache, key, "symbols", read).await
    }

    /// The footer of the samples section of region `range` of `block`, from the directory
    /// cache or from the section's end.
    async fn footer(
        &self,
        block: &BlockMeta,
        range: &RegionRange,
    ) -> Result<Arc<SamplesFooter>, QuerierError> {
        let read = async {
            let directory = self.directory(block, range).await?;
            let (footer, read) =
                pruned::fetch_samples_footer(&self.storage, block, range, &directory)
                    .await
                    .map_err(|e| e.to_string())?;
            self.metrics.fetched("footer", read);
            Ok(RegionMeta::Footer(Arc::new(footer)))
        };
        let key = (block.id.clone(), range.clone(), true);
        match self
            .cached(&self.directory_cache, key, "footer", read)
            .await
        {
            Ok(RegionMeta::Footer(footer)) => Ok(footer),
            Ok(RegionMeta::Directory(_)) => Err(block_error(block, "footer cached as a directory")),
            Err(reason) => Err(block_error(block, &reason)),
        }
    }

    /// The directory of region `range` of `block` (not the whole object), from the directory
    /// cache or from the region's end.
    async fn directory(
        &self,
        block: &BlockMeta,
        range: &RegionRange,
    ) -> Result<Arc<RegionDirectory>, String> {
        let read = async {
            let Some((directory, read)) = fetch::fetch_directory(&self.storage, block, range)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Err(format!("{}: no region directory", block.path));
            };
            self.metrics.fetched("directory", read);
            Ok(RegionMeta::Directory(Arc::new(directory)))
        };
        let key = (block.id.clone(), range.clone(), false);
        match self
            .cached(&self.directory_cache, key, "directory", read)
            .await?
        {
            RegionMeta::Directory(directory) => Ok(directory),
            RegionMeta::Footer(_) => Err("directory cached as a footer".to_string()),
        }
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
        self.decode("block decode", move || fetch::decode(bytes, &range))
            .await
            .map(Arc::new)
    }

    /// Runs `decode` on the merge pool.
    async fn decode<T: Send + 'static>(
        &self,
        what: &'static str,
        decode: impl FnOnce() -> kiln_block::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        self.pool
            .run(what, decode)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// The value of `key` in `cache`, or what `read` makes of it (once, however many ask at
    /// once), counting the lookup as a hit or a miss of the cache named `what`.
    async fn cached<K, V>(
        &self,
        cache: &Cache<K, V>,
        key: K,
        what: &'static str,
        read: impl std::future::Future<Output = Result<V, String>>,
    ) -> Result<V, String>
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let entry = cache
            .entry(key)
            .or_try_insert_with(read)
            .await
            .map_err(|reason: Arc<String>| reason.to_string())?;
        self.metrics.cache_lookup(what, !entry.is_fresh());
        Ok(entry.into_value())
    }
}

/// The metric label of what the sections `names` are.
fn section_label(names: &[&str]) -> &'static str {
    if names == fetch::HEAD {
        "head"
    } else {
        "series"
    }
}

/// The error of a block whose region could not be read or decoded.
fn block_error(block: &BlockMeta, reason: &str) -> QuerierError {
    QuerierError::Block {
        block: block.id.clone(),
        reason: reason.to_string(),
    }
}
