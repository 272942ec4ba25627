//! Reads blocks from object storage into memory, through a size-bounded cache.

use std::sync::Arc;

use kiln_block::{DatasetData, SegmentReader};
use kiln_model::BlockMeta;
use kiln_objstore::Storage;
use kiln_objstore::object_store::ObjectStoreExt;
use moka::future::Cache;

use crate::QuerierError;

/// The decoded datasets of one block.
pub type BlockData = Arc<Vec<DatasetData>>;

/// Loads and caches decoded blocks; blocks are immutable, so entries never go stale.
#[derive(Clone, Debug)]
pub struct BlockReader {
    storage: Storage,
    cache: Cache<String, BlockData>,
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
    /// A reader over `storage` caching up to `cache_bytes` of decoded blocks.
    pub fn new(storage: Storage, cache_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|_, data: &BlockData| u32::try_from(decoded_bytes(data)).unwrap_or(u32::MAX))
            .build();
        Self { storage, cache }
    }

    /// The datasets of `block`, from the cache or from storage.
    pub async fn load(&self, block: &BlockMeta) -> Result<BlockData, QuerierError> {
        let storage = self.storage.clone();
        let meta = block.clone();
        self.cache
            .try_get_with(block.id.clone(), async move {
                let path = storage.path(&meta.path);
                let bytes = storage
                    .store
                    .get(&path)
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(move || {
                    let reader = SegmentReader::parse(bytes).map_err(|e| e.to_string())?;
                    reader.read_all().map(Arc::new).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| format!("decoding panicked: {e}"))?
            })
            .await
            .map_err(|reason: Arc<String>| QuerierError::Block {
                block: block.id.clone(),
                reason: reason.to_string(),
            })
    }
}
