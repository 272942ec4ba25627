//! Finds the profiles a query selects: blocks from the metastore, datasets by tenant and
//! service, series by profile type and label selector, profiles by time, each profile id once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kiln_block::DatasetData;
use kiln_contract::metastore::BlockQuery;
use kiln_model::LabelMatcher;
use kiln_model::{BlockMeta, DatasetMeta, LABEL_SERVICE_NAME, Labels};
use kiln_proto::types::v1::StackTraceSelector;
use parking_lot::Mutex;

use crate::budget::{ENTRY_OVERHEAD, MergeMemory, QueryBudget, SeenProfiles, labels_bytes};
use crate::fold::Fold;
use crate::partial::Partial;
use crate::peers::QuerierPeers;
use crate::plan::{self, BLOCKS_PER_PART, Part};
use crate::reader::BlockData;
use crate::remote::{PARTS_IN_FLIGHT_PER_QUERIER, PartResult};
use crate::selector::{MatchOp, Selector};
use crate::stacks::StackFilter;
use crate::{Querier, QuerierError};

/// What to select.
#[derive(Clone, Debug)]
pub struct Query {
    /// The tenant whose data is read; nothing else is ever visible.
    pub tenant: String,
    /// Only series of this profile type; `None` selects every type.
    pub profile_type: Option<String>,
    /// Series label matchers, any of which may match (one entry: a plain conjunction).
    pub selectors: Vec<Selector>,
    /// Start of the range, unix nanoseconds, inclusive.
    pub start_nanos: i64,
    /// End of the range, unix nanoseconds, exclusive.
    pub end_nanos: i64,
    /// Only the stacks this filter keeps; `None` keeps every stack.
    pub stack_filter: Option<Arc<StackFilter>>,
    /// The request's selector that `stack_filter` was made from, for other queriers.
    pub stack_selector: Option<StackTraceSelector>,
}

impl Query {
    pub(crate) fn series_matches(&self, profile_type: &str, labels: &Labels) -> bool {
        self.profile_type
            .as_deref()
            .is_none_or(|t| t == profile_type)
            && (self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(labels)))
    }

    /// The metastore query: the range, the profile type and, with a single selector, its
    /// matchers (several selectors are alternatives, which the metastore's conjunction cannot
    /// express; `may_contain` prunes those after).
    pub(crate) fn block_query(&self) -> Result<BlockQuery, QuerierError> {
        let mut query = BlockQuery::new(&self.tenant, self.start_nanos, self.end_nanos);
        if let Some(profile_type) = &self.profile_type {
            query.matchers.push(LabelMatcher::new(
                "__profile_type__",
                MatchOp::Equal,
                profile_type,
            )?);
        }
        if let [selector] = self.selectors.as_slice() {
            query.matchers.extend(selector.matchers.iter().cloned());
        }
        Ok(query)
    }

    /// The profile rows of `data` in this query's series and time range, in order: what a reader
    /// must load the samples of (each profile id is counted once later, by `select_rows`).
    pub(crate) fn profile_rows(&self, data: &DatasetData) -> Vec<u32> {
        if data.tenant != self.tenant {
            return Vec::new();
        }
        let series_ok: Vec<bool> = data
            .series
            .iter()
            .map(|s| self.series_matches(&s.profile_type, &s.labels))
            .collect();
        if !series_ok.contains(&true) {
            return Vec::new();
        }
        (0..data.profiles.len() as u32)
            .filter(|&row| self.selects(data, &series_ok, row))
            .collect()
    }

    /// True when profile `row` of `data` is of a series `series_ok` marks and in the range.
    fn selects(&self, data: &DatasetData, series_ok: &[bool], row: u32) -> bool {
        let profile = &data.profiles[row as usize];
        series_ok[profile.series as usize]
            && profile.time_nanos >= self.start_nanos
            && profile.time_nanos < self.end_nanos
    }

    /// True when `dataset` (from the index) may hold profiles this query selects.
    pub(crate) fn wants(&self, dataset: &DatasetMeta) -> bool {
        dataset.tenant == self.tenant
            && dataset.overlaps(self.start_nanos, self.end_nanos)
            && self.may_contain(&dataset.service_name, &dataset.profile_types)
    }

    fn may_contain(&self, service_name: &str, profile_types: &[String]) -> bool {
        let type_ok = self
            .profile_type
            .as_ref()
            .is_none_or(|t| profile_types.iter().any(|p| p == t));
        let service_ok = self.selectors.is_empty()
            || self
                .selectors
                .iter()
                .any(|s| s.accepts(LABEL_SERVICE_NAME, service_name));
        type_ok && service_ok
    }
}

/// The selected profile rows of one dataset.
#[derive(Debug)]
pub struct SelectedDataset {
    block: BlockData,
    index: usize,
    /// Per profile row of the dataset: selected or not.
    pub selected: Vec<bool>,
    /// Per stack node of the dataset, when the query filters stacks: kept or not.
    kept_stacks: Option<Vec<bool>>,
}

impl SelectedDataset {
    pub(crate) fn new(
        block: BlockData,
        index: usize,
        selected: Vec<bool>,
        kept_stacks: Option<Vec<bool>>,
    ) -> Self {
        Self {
            block,
            index,
            selected,
            kept_stacks,
        }
    }

    /// The samples of the selected profile rows whose stacks the query keeps.
    pub fn selected_samples(&self) -> impl Iterator<Item = &kiln_block::SampleRow> {
        self.data()
            .samples
            .iter()
            .filter(|s| self.selected[s.profile as usize] && self.keeps_stack(s.stack))
    }

    /// The dataset.
    pub fn data(&self) -> &DatasetData {
        &self.block[self.index]
    }

    fn keeps_stack(&self, stack: u32) -> bool {
        self.kept_stacks
            .as_ref()
            .is_none_or(|kept| kept.get(stack as usize).copied().unwrap_or(false))
    }

    /// Sum of selected sample values per stack node.
    pub fn stack_values(&self) -> HashMap<u32, i64> {
        let mut values = HashMap::new();
        for sample in &self.data().samples {
            if self.selected[sample.profile as usize] && self.keeps_stack(sample.stack) {
                *values.entry(sample.stack).or_insert(0) += sample.value;
            }
        }
        values
    }

    /// Sum of selected sample values of the samples `keep` keeps, per stack node: one entry
    /// per stack node of the dataset (the empty stack 0 included).
    pub fn stack_value_table(&self, keep: impl Fn(&kiln_model::SampleLabels) -> bool) -> Vec<i64> {
        let mut values = vec![0; self.data().symbols.stacks.len() + 1];
        for sample in &self.data().samples {
            if self.selected[sample.profile as usize]
                && self.keeps_stack(sample.stack)
                && keep(&sample.labels)
            {
                values[sample.stack as usize] += sample.value;
            }
        }
        values
    }

    /// Sum of sample values per selected profile row: `(row, total)`.
    pub fn profile_totals(&self) -> Vec<(u32, i64)> {
        let mut totals = vec![0i64; self.selected.len()];
        for sample in &self.data().samples {
            if self.selected[sample.profile as usize] && self.keeps_stack(sample.stack) {
                totals[sample.profile as usize] += sample.value;
            }
        }
        totals
            .into_iter()
            .enumerate()
            .filter(|(row, _)| self.selected[*row])
            .map(|(row, total)| (row as u32, total))
            .collect()
    }
}

/// Marks the profile rows of `data` that `query` selects, skipping profiles already seen
/// (the same profile id in the same series, e.g. a retried push), or `None` when none are.
pub(crate) fn select_rows(
    query: &Query,
    data: &DatasetData,
    seen: &mut SeenProfiles,
) -> Option<Vec<bool>> {
    if data.tenant != query.tenant {
        return None;
    }
    let series_ok: Vec<bool> = data
        .series
        .iter()
        .map(|s| query.series_matches(&s.profile_type, &s.labels))
        .collect();
    if !series_ok.contains(&true) {
        return None;
    }
    let rows: Vec<bool> = (0..data.profiles.len() as u32)
        .map(|row| {
            let p = &data.profiles[row as usize];
            query.selects(data, &series_ok, row)
                && seen.insert(
                    &data.service_name,
                    &data.series[p.series as usize].labels,
                    &p.profile_id,
                )
        })
        .collect();
    rows.contains(&true).then_some(rows)
}

impl Querier {
    /// `query` without what is past its tenant's retention period: older data disappears from
    /// every query at once, before compactors delete it.
    pub(crate) fn within_retention(&self, query: &Query) -> Query {
        let mut query = query.clone();
        query.start_nanos = query.start_nanos.max(self.retained_from(&query.tenant));
        query
    }

    /// The oldest time (unix nanoseconds) of `tenant`'s data that queries still see.
    pub(crate) fn retained_from(&self, tenant: &str) -> i64 {
        let Some(period) = self.overrides.retention(tenant) else {
            return i64::MIN;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        now.saturating_sub(i64::try_from(period.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Folds every dataset that `query` selects with `fold`, each profile id counted once per
    /// series, and returns the merge of its accumulators.
    ///
    /// The query is split into parts (`plan::parts`: time windows of about
    /// [`BLOCKS_PER_PART`] blocks, ADR 0005), which deduplicate on their own. Workers take parts
    /// in turn and fold each into an accumulator of their own; their accumulators are merged at
    /// the end. Alone, a querier has one worker per merge thread and folds every part itself;
    /// with other queriers (`ClusterPeers`), it has [`PARTS_IN_FLIGHT_PER_QUERIER`] workers per
    /// querier, and each part runs on the querier its window is placed on (`QuerierPeers`),
    /// possibly itself, and on the next one when it fails there. Within a part blocks stream through: a few load
    /// ahead while the previous one is folded on a merge thread, and each is dropped (or left
    /// to the cache) once folded, so memory stays bounded by the cache and the accumulators
    /// however long the range is. The tenant's `max_query_blocks` is checked before anything
    /// is read and `max_query_merge_bytes` after every dataset folded (per part) and after
    /// every merge. Dropping the returned future stops the work: loads and calls to other
    /// queriers are aborted and the folds stop at their next dataset.
    pub(crate) async fn select_fold<Fo: Fold>(
        &self,
        query: &Query,
        fold: Fo,
    ) -> Result<Fo::Acc, QuerierError> {
        let query = self.within_retention(query);
        if query.start_nanos >= query.end_nanos {
            return Ok(fold.new_acc());
        }
        let budget = QueryBudget::new(&query.tenant, &self.overrides.limits(&query.tenant));
        let _cancel = budget.cancel_on_drop();
        let blocks = self.plan(&query, &budget).await?;
        let parts = plan::parts(&blocks, query.start_nanos, query.end_nanos, BLOCKS_PER_PART);
        // Shared only when another querier is there to share with.
        let peers = self.peers.as_ref().filter(|p| p.count() > 1);
        let workers = match peers {
            Some(peers) => peers.count() * PARTS_IN_FLIGHT_PER_QUERIER,
            None => self.pool.threads().max(1),
        };
        let work = PartQueue {
            query: &query,
            blocks: &blocks,
            parts: Mutex::new(parts.into()),
            fold: Arc::new(fold),
            budget: &budget,
            peers,
        };
        let workers = (0..workers.min(work.parts.lock().len()).max(1))
            .map(|_| self.fold_parts(&work, work.fold.new_acc()));
        let mut folded = futures::future::try_join_all(workers).await?.into_iter();
        let mut merged = folded.next().unwrap_or_else(|| work.fold.new_acc());
        for acc in folded {
            merged = self
                .pool
                .run("merge parts", move || {
                    merged.merge(acc);
                    merged
                })
                .await?;
            budget.check_merge(merged.merge_bytes())?;
        }
        Ok(merged)
    }

    /// Takes parts from `work` until none is left, folding each into `acc`: here, or with
    /// other queriers, wherever it runs.
    async fn fold_parts<Fo: Fold>(
        &self,
        work: &PartQueue<'_, Fo>,
        mut acc: Fo::Acc,
    ) -> Result<Fo::Acc, QuerierError> {
        loop {
            let Some(part) = work.parts.lock().pop_front() else {
                return Ok(acc);
            };
            let mut window = work.query.clone();
            (window.start_nanos, window.end_nanos) = (part.start, part.end);
            let blocks: Vec<BlockMeta> = part
                .blocks
                .iter()
                .map(|&i| work.blocks[i].clone())
                .collect();
            let Some(peers) = work.peers else {
                self.metrics.parts_executed.inc();
                acc = self
                    .fold_blocks(Arc::new(window), blocks, acc, &work.fold, work.budget)
                    .await?;
                continue;
            };
            acc = match self
                .run_part(peers, &work.fold, window, blocks, work.budget)
                .await?
            {
                PartResult::Local(part) => {
                    self.pool
                        .run("merge parts", move || {
                            acc.merge(part);
                            acc
                        })
                        .await?
                }
                PartResult::Remote(mut response) => self
                    .pool
                    .run("merge a part", move || {
                        acc.merge_part(&mut response).map(|()| acc)
                    })
                    .await?
                    .map_err(|e| {
                        QuerierError::Internal(format!("malformed part from a querier: {e}"))
                    })?,
            };
            work.budget.check_merge(acc.merge_bytes())?;
        }
    }

    /// Folds the datasets of `blocks` (oldest first) that `query` selects into `acc`, each
    /// profile id once.
    pub(crate) async fn fold_blocks<Fo: Fold>(
        &self,
        query: Arc<Query>,
        blocks: Vec<BlockMeta>,
        acc: Fo::Acc,
        fold: &Arc<Fo>,
        budget: &QueryBudget,
    ) -> Result<Fo::Acc, QuerierError> {
        let mut loads = self.load_ahead(&query, blocks);
        let mut state = (acc, SeenProfiles::default());
        while let Some(loaded) = loads.next().await {
            let regions = loaded
                .map_err(|e| QuerierError::Internal(format!("block load panicked: {e}")))??;
            let (fold, query, budget) = (fold.clone(), query.clone(), budget.clone());
            state = self
                .pool
                .run("merge", move || {
                    let (mut acc, mut seen) = state;
                    for block in regions {
                        for index in 0..block.len() {
                            budget.check_wanted()?;
                            if let Some(selected) = select_rows(&query, &block[index], &mut seen) {
                                let kept_stacks = query
                                    .stack_filter
                                    .as_ref()
                                    .map(|f| f.kept_stacks(&block[index].symbols));
                                let dataset = SelectedDataset::new(
                                    block.clone(),
                                    index,
                                    selected,
                                    kept_stacks,
                                );
                                fold.add(&mut acc, &dataset);
                                budget.check_merge(acc.merge_bytes() + seen.bytes())?;
                            }
                        }
                    }
                    Ok::<_, QuerierError>((acc, seen))
                })
                .await??;
        }
        Ok(state.0)
    }
}

/// The parts of one query left to fold, and what folding them needs.
struct PartQueue<'a, Fo> {
    query: &'a Query,
    blocks: &'a [BlockMeta],
    parts: Mutex<std::collections::VecDeque<Part>>,
    fold: Arc<Fo>,
    budget: &'a QueryBudget,
    /// The queriers to share the parts with; `None`: this one alone.
    peers: Option<&'a Arc<QuerierPeers>>,
}

impl Querier {
    /// The label sets of the series `query` selects, read from the blocks' series sections
    /// alone (no profiles, samples or symbols): the series of the datasets whose time overlaps
    /// the range, so that at the range's edges a series may be listed whose profiles all lie
    /// just outside it (the granularity of a dataset, as Pyroscope's index answers).
    pub(crate) async fn select_label_sets(
        &self,
        query: &Query,
    ) -> Result<BTreeSet<Labels>, QuerierError> {
        let query = self.within_retention(query);
        if query.start_nanos >= query.end_nanos {
            return Ok(BTreeSet::new());
        }
        let budget = QueryBudget::new(&query.tenant, &self.overrides.limits(&query.tenant));
        let blocks = self.plan(&query, &budget).await?;
        let query = Arc::new(query);
        let reader = self.reader.clone();
        let mut loads = read_ahead(blocks, SERIES_LOADS, {
            let query = query.clone();
            move |block| {
                let (reader, query) = (reader.clone(), query.clone());
                async move {
                    // The services of this block whose data overlaps the range.
                    let services: HashSet<String> = block
                        .datasets
                        .iter()
                        .filter(|d| query.wants(d))
                        .map(|d| d.service_name.clone())
                        .collect();
                    let regions = reader.load_series(&block, |d| query.wants(d)).await?;
                    Ok::<_, QuerierError>((services, regions))
                }
            }
        });
        let mut sets = BTreeSet::new();
        // The sets' estimated size, kept as they grow (as `MergeMemory` would count it).
        let mut bytes = 0;
        while let Some(loaded) = loads.next().await {
            let (services, regions) = loaded
                .map_err(|e| QuerierError::Internal(format!("series load panicked: {e}")))??;
            for data in regions.iter().flat_map(|region| region.iter()) {
                if data.tenant != query.tenant || !services.contains(&data.service_name) {
                    continue;
                }
                for series in &data.series {
                    if query.series_matches(&series.profile_type, &series.labels)
                        && !sets.contains(&series.labels)
                    {
                        bytes += labels_bytes(&series.labels) + ENTRY_OVERHEAD;
                        sets.insert(series.labels.clone());
                    }
                }
            }
            budget.check_merge(bytes)?;
        }
        Ok(sets)
    }
}

impl Querier {
    /// The blocks `query` (already within retention) reads: those the index names that hold
    /// a dataset it wants, checked against the tenant's block budget, oldest first (so that
    /// the first copy of a duplicated profile is the one kept).
    pub(crate) async fn plan(
        &self,
        query: &Query,
        budget: &QueryBudget,
    ) -> Result<Vec<BlockMeta>, QuerierError> {
        let mut blocks = self.metastore.query_blocks(&query.block_query()?).await?;
        blocks.retain(|b| b.datasets.iter().any(|d| query.wants(d)));
        budget.check_blocks(blocks.len())?;
        blocks.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(blocks)
    }
}

impl Querier {
    /// The regions of `blocks` that `query` reads, in block order, loading
    /// [`region_loads`] blocks ahead of the reader.
    pub(crate) fn load_ahead(
        &self,
        query: &Arc<Query>,
        blocks: Vec<BlockMeta>,
    ) -> impl futures::Stream<
        Item = Result<Result<Vec<BlockData>, QuerierError>, tokio::task::JoinError>,
    > + Send
    + 'static {
        let reader = self.reader.clone();
        let query = Arc::clone(query);
        read_ahead(blocks, region_loads(), move |block| {
            let (reader, query) = (reader.clone(), query.clone());
            async move {
                reader
                    .load(&block, |d| query.wants(d), |d| query.profile_rows(d))
                    .await
            }
        })
    }
}

/// Whole regions loading at once for one part: twice as many as cores, since each is decoded
/// (CPU) once fetched, and held in memory until folded.
fn region_loads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Series sections loading at once for one label call: they are small (kilobytes) and their
/// fetch is mostly waiting on object storage (two ranged GETs each), so many overlap.
const SERIES_LOADS: usize = 32;

/// Runs `load` on each block as its own task, at most `parallelism` at once, and yields the
/// results in block order: loads progress while the caller works on the previous result.
/// Dropping the stream aborts the loads in flight.
fn read_ahead<T, F, Fut>(
    blocks: Vec<BlockMeta>,
    parallelism: usize,
    load: F,
) -> impl futures::Stream<Item = Result<T, tokio::task::JoinError>>
where
    T: Send + 'static,
    F: Fn(BlockMeta) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    futures::stream::iter(blocks)
        .map(move |block| AbortOnDrop(tokio::spawn(load(block))))
        .buffered(parallelism)
}

/// A spawned task that is aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
