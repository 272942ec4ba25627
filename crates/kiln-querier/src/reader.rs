//! Reads the regions of blocks that a query needs from object storage into memory, through a
//! size-bounded cache.

use std::sync::Arc;

use kiln_block::DatasetData;
use kiln_block::fetch::{self, RegionRange};
use kiln_model::{BlockMeta, DatasetMeta};
use kiln_objstore::Storage;
use moka::future::Cache;

use crate::QuerierError;
use crate::pool::MergePool;

/// The decoded datasets of one region of a block (the whole block for a segment).
pub type BlockData = Arc<Vec<DatasetData>>;

/// Loads and caches decoded regions; blocks are immutable, so entries never go stale.
#[derive(Clone, Debug)]
pub struct BlockReader {
    storage: Storage,
    cache: Cache<(String, RegionRange), BlockData>,
    pool: MergePool,
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
    /// A reader over `storage` caching up to `cache_bytes` of decoded regions, decoding on
    /// `pool`.
    pub(crate) fn new(storage: Storage, cache_bytes: u64, pool: MergePool) -> Self {
        let cache = Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|_, data: &BlockData| u32::try_from(decoded_bytes(data)).unwrap_or(u32::MAX))
            .build();
        Self {
            storage,
            cache,
            pool,
        }
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
            let (storage, meta, pool) = (self.storage.clone(), block.clone(), self.pool.clone());
            let region = self
                .cache
                .try_get_with(key, async move {
                    let bytes = fetch::fetch(&storage, &meta, &range)
                        .await
                        .map_err(|e| e.to_string())?;
                    pool.run("block decode", move || fetch::decode(bytes, &range))
                        .await
                        .map_err(|e| e.to_string())?
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|reason: Arc<String>| QuerierError::Block {
                    block: block.id.clone(),
                    reason: reason.to_string(),
                })?;
            regions.push(region);
        }
        Ok(regions)
    }
}
