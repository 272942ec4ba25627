//! The block index and the tenants' totals: blocks by id and, per tenant, by the start of the
//! tenant's data in them. The totals always equal the sum over the blocks in the index.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kiln_contract::metastore::TenantInfo;
use kiln_model::{BlockMeta, LabelMatcher};

/// The blocks of one tenant ordered by the start of the tenant's data in them.
#[derive(Debug, Default)]
struct TenantBlocks {
    by_start: BTreeMap<(i64, String), Arc<BlockMeta>>,
    /// The longest time span of the tenant's data in one block: a query for `[start, end)` scans
    /// the blocks starting in `[start - longest_span, end)`.
    longest_span: i64,
}

/// The block index and the tenants.
#[derive(Debug, Default)]
pub(crate) struct BlockIndex {
    blocks: HashMap<String, Arc<BlockMeta>>,
    /// When each block whose id is not a ULID was registered (unix milliseconds): its age for
    /// compaction. Snapshotted, so that every node agrees on it.
    registered: HashMap<String, i64>,
    tenant_blocks: HashMap<String, TenantBlocks>,
    tenants: BTreeMap<String, TenantInfo>,
}

impl BlockIndex {
    /// The block with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Arc<BlockMeta>> {
        self.blocks.get(id)
    }

    /// Every block, in no order.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = &Arc<BlockMeta>> {
        self.blocks.values()
    }

    /// When the block was written: the time in its ULID, else when it was registered.
    pub(crate) fn created_millis(&self, block: &BlockMeta) -> i64 {
        block
            .created_millis()
            .or_else(|| self.registered.get(&block.id).copied())
            .unwrap_or_default()
    }

    /// Adds a block whose id is new, registered at `now_millis`, and counts it into its tenants'
    /// totals. False when the id is present.
    pub(crate) fn add(&mut self, block: BlockMeta, now_millis: i64) -> bool {
        if self.blocks.contains_key(&block.id) {
            return false;
        }
        if block.created_millis().is_none() {
            self.registered.insert(block.id.clone(), now_millis);
        }
        self.count(&block, true);
        self.insert(Arc::new(block));
        true
    }

    /// Removes a block and takes it out of its tenants' totals.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Arc<BlockMeta>> {
        let block = self.blocks.remove(id)?;
        self.registered.remove(id);
        self.unlink(&block);
        self.count(&block, false);
        Some(block)
    }

    /// Replaces a block by a version of it with fewer datasets (same id), adjusting the totals.
    pub(crate) fn replace(&mut self, block: BlockMeta) {
        let Some(old) = self.blocks.remove(&block.id) else {
            return;
        };
        self.unlink(&old);
        self.count(&old, false);
        self.count(&block, true);
        self.insert(Arc::new(block));
    }

    /// Puts a block into the maps, without counting it (snapshots carry the totals).
    pub(crate) fn insert(&mut self, block: Arc<BlockMeta>) {
        for tenant in tenants_of(&block) {
            let (start, end) = tenant_span(&block, tenant);
            let entry = self.tenant_blocks.entry(tenant.to_string()).or_default();
            entry.longest_span = entry.longest_span.max(end - start);
            entry
                .by_start
                .insert((start, block.id.clone()), Arc::clone(&block));
        }
        self.blocks.insert(block.id.clone(), block);
    }

    fn unlink(&mut self, block: &BlockMeta) {
        for tenant in tenants_of(block) {
            let (start, _) = tenant_span(block, tenant);
            if let Some(entry) = self.tenant_blocks.get_mut(tenant) {
                entry.by_start.remove(&(start, block.id.clone()));
                if entry.by_start.is_empty() {
                    self.tenant_blocks.remove(tenant);
                }
            }
        }
    }

    /// Adds a block's datasets to its tenants' totals (a tenant seen first is created), or
    /// subtracts them.
    fn count(&mut self, block: &BlockMeta, add: bool) {
        for dataset in &block.datasets {
            let tenant = match self.tenants.get_mut(&dataset.tenant) {
                Some(tenant) => tenant,
                None if add => self
                    .tenants
                    .entry(dataset.tenant.clone())
                    .or_insert_with(|| TenantInfo {
                        id: dataset.tenant.clone(),
                        first_seen_nanos: dataset.min_time_nanos,
                        ..TenantInfo::default()
                    }),
                None => continue,
            };
            if add {
                tenant.first_seen_nanos = tenant.first_seen_nanos.min(dataset.min_time_nanos);
                tenant.profiles += dataset.profiles;
                tenant.samples += dataset.samples;
            } else {
                tenant.profiles = tenant.profiles.saturating_sub(dataset.profiles);
                tenant.samples = tenant.samples.saturating_sub(dataset.samples);
            }
        }
        for tenant in tenants_of(block) {
            if let Some(info) = self.tenants.get_mut(tenant) {
                info.blocks = if add {
                    info.blocks + 1
                } else {
                    info.blocks.saturating_sub(1)
                };
            }
        }
    }

    /// The blocks holding data of `tenant`, ordered by the start of that data; only those where
    /// it starts before `before_nanos` when given.
    pub(crate) fn tenant_blocks(
        &self,
        tenant: &str,
        before_nanos: Option<i64>,
    ) -> Vec<Arc<BlockMeta>> {
        let Some(index) = self.tenant_blocks.get(tenant) else {
            return Vec::new();
        };
        index
            .by_start
            .iter()
            .take_while(|((start, _), _)| before_nanos.is_none_or(|before| *start < before))
            .map(|(_, block)| Arc::clone(block))
            .collect()
    }

    /// Forgets a tenant (its data is gone).
    pub(crate) fn remove_tenant(&mut self, tenant: &str) {
        self.tenants.remove(tenant);
    }

    /// The blocks with data of `tenant` overlapping `[start, end)` in a dataset that may match
    /// every matcher, ordered by start time.
    pub(crate) fn query(
        &self,
        tenant: &str,
        start_nanos: i64,
        end_nanos: i64,
        matchers: &[LabelMatcher],
    ) -> Vec<BlockMeta> {
        let Some(index) = self.tenant_blocks.get(tenant) else {
            return Vec::new();
        };
        if end_nanos <= start_nanos {
            return Vec::new();
        }
        let scan_from = start_nanos.saturating_sub(index.longest_span);
        index
            .by_start
            .range((scan_from, String::new())..(end_nanos, String::new()))
            .map(|(_, block)| block)
            .filter(|block| {
                block.datasets.iter().any(|d| {
                    d.tenant == tenant
                        && d.overlaps(start_nanos, end_nanos)
                        && matchers.iter().all(|m| m.may_match(d))
                })
            })
            .map(|block| BlockMeta::clone(block))
            .collect()
    }

    /// Every block holding data of `tenant`, or every block, ordered by id.
    pub(crate) fn list(&self, tenant: Option<&str>) -> Vec<BlockMeta> {
        let mut blocks: Vec<BlockMeta> = match tenant {
            Some(tenant) => self
                .tenant_blocks
                .get(tenant)
                .map(|index| {
                    index
                        .by_start
                        .values()
                        .map(|b| BlockMeta::clone(b))
                        .collect()
                })
                .unwrap_or_default(),
            None => self.blocks.values().map(|b| BlockMeta::clone(b)).collect(),
        };
        blocks.sort_by(|a, b| a.id.cmp(&b.id));
        blocks
    }

    /// Every tenant, ordered by id.
    pub(crate) fn tenants(&self) -> Vec<TenantInfo> {
        self.tenants.values().cloned().collect()
    }

    /// Every tenant, by id, for a snapshot.
    pub(crate) fn tenants_ref(&self) -> impl Iterator<Item = &TenantInfo> {
        self.tenants.values()
    }

    /// Number of blocks in the index.
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Number of tenants.
    pub(crate) fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// The registration times kept for blocks whose id is not a ULID, for a snapshot.
    pub(crate) fn registered(&self) -> &HashMap<String, i64> {
        &self.registered
    }

    /// Restores the state a snapshot holds: blocks, their registration times, the tenants.
    pub(crate) fn restore(
        blocks: Vec<BlockMeta>,
        registered: HashMap<String, i64>,
        tenants: Vec<TenantInfo>,
    ) -> Self {
        let mut index = Self::default();
        for block in blocks {
            index.insert(Arc::new(block));
        }
        index.registered = registered;
        index.tenants = tenants.into_iter().map(|t| (t.id.clone(), t)).collect();
        index
    }
}

/// The distinct tenants of a block, in dataset order.
pub(crate) fn tenants_of(block: &BlockMeta) -> Vec<&str> {
    let mut tenants: Vec<&str> = Vec::new();
    for dataset in &block.datasets {
        if !tenants.contains(&dataset.tenant.as_str()) {
            tenants.push(&dataset.tenant);
        }
    }
    tenants
}

/// The time span of one tenant's datasets in a block.
fn tenant_span(block: &BlockMeta, tenant: &str) -> (i64, i64) {
    block
        .datasets
        .iter()
        .filter(|d| d.tenant == tenant)
        .fold((i64::MAX, i64::MIN), |(lo, hi), d| {
            (lo.min(d.min_time_nanos), hi.max(d.max_time_nanos))
        })
}
