//! Reads blocks from object storage into memory, through a size-bounded cache.

use std::sync::Arc;

use kiln_block::{BlockMeta, DatasetData, SegmentReader};
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

/// Decoded data takes several times its compressed size; the cache weighs entries so.
const DECODED_SIZE_FACTOR: u64 = 8;

impl BlockReader {
    /// A reader over `storage` caching up to `cache_bytes` of decoded blocks.
    pub fn new(storage: Storage, cache_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(cache_bytes)
            .weigher(|_, data: &BlockData| {
                let rows: usize = data
                    .iter()
                    .map(|d| d.samples.len() + d.symbols.locations.len() + d.symbols.strings.len())
                    .sum();
                u32::try_from(rows as u64 * DECODED_SIZE_FACTOR * 4).unwrap_or(u32::MAX)
            })
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
