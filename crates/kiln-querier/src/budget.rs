//! Per-query budgets: how many blocks a query may read and how much memory its merge may hold
//! (per tenant, from the limits), and the flag that stops its work once nobody waits for it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kiln_config::Limits;
use kiln_model::Labels;

use crate::QuerierError;

/// Bytes a hash table entry costs beyond its key and value (control bytes, spare capacity).
pub(crate) const ENTRY_OVERHEAD: usize = 16;
/// Bytes of a `String` beyond its text.
pub(crate) const STRING_OVERHEAD: usize = std::mem::size_of::<String>();

/// An estimate of the heap memory a merge accumulator holds, in bytes. Estimates err on the
/// side of counting more: they bound a query, they do not bill it.
pub trait MergeMemory {
    /// The estimate.
    fn merge_bytes(&self) -> usize;
}

impl MergeMemory for i64 {
    fn merge_bytes(&self) -> usize {
        0
    }
}

impl<A: MergeMemory, B: MergeMemory> MergeMemory for (A, B) {
    fn merge_bytes(&self) -> usize {
        self.0.merge_bytes() + self.1.merge_bytes()
    }
}

/// The size of a label set on the heap.
pub(crate) fn labels_bytes(labels: &Labels) -> usize {
    labels
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2 * STRING_OVERHEAD)
        .sum::<usize>()
        + STRING_OVERHEAD
}

impl MergeMemory for BTreeSet<Labels> {
    fn merge_bytes(&self) -> usize {
        self.iter()
            .map(|labels| labels_bytes(labels) + ENTRY_OVERHEAD)
            .sum()
    }
}

/// The profiles a query has counted, by service and series, so that each profile id counts
/// once per series (a retried push stored twice, or a profile in a segment and in the block
/// compacted from it), with an estimate of its size. A series' labels are held once, not once
/// per profile.
#[derive(Debug, Default)]
pub(crate) struct SeenProfiles {
    ids: HashMap<String, HashMap<Labels, HashSet<String>>>,
    bytes: usize,
}

impl SeenProfiles {
    /// Records profile `id` of the series `labels` of `service`; false when it was seen.
    pub(crate) fn insert(&mut self, service: &str, labels: &Labels, id: &str) -> bool {
        let series = match self.ids.get_mut(service) {
            Some(series) => series,
            None => {
                self.bytes += service.len() + STRING_OVERHEAD + ENTRY_OVERHEAD;
                self.ids.entry(service.to_string()).or_default()
            }
        };
        let profiles = match series.get_mut(labels) {
            Some(profiles) => profiles,
            None => {
                self.bytes += labels_bytes(labels) + ENTRY_OVERHEAD;
                series.entry(labels.clone()).or_default()
            }
        };
        let new = profiles.insert(id.to_string());
        if new {
            self.bytes += id.len() + STRING_OVERHEAD + ENTRY_OVERHEAD;
        }
        new
    }

    /// The estimated size of the set.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What one query may spend, and whether it is still wanted.
#[derive(Clone, Debug)]
pub(crate) struct QueryBudget {
    tenant: String,
    max_blocks: usize,
    max_merge_bytes: usize,
    cancelled: Arc<AtomicBool>,
}

impl QueryBudget {
    /// The budget of a query of `tenant` with its `limits` (0 turns a limit off).
    pub(crate) fn new(tenant: &str, limits: &Limits) -> Self {
        Self {
            tenant: tenant.to_string(),
            max_blocks: limits.max_query_blocks,
            max_merge_bytes: limits.max_query_merge_bytes,
            cancelled: Arc::default(),
        }
    }

    /// Refuses a query that would read `blocks` blocks, over `max_query_blocks`.
    pub(crate) fn check_blocks(&self, blocks: usize) -> Result<(), QuerierError> {
        if self.max_blocks > 0 && blocks > self.max_blocks {
            return Err(QuerierError::TooManyBlocks {
                tenant: self.tenant.clone(),
                blocks,
                limit: self.max_blocks,
            });
        }
        Ok(())
    }

    /// Stops a merge holding `bytes`, over `max_query_merge_bytes`, or one nobody waits for.
    pub(crate) fn check_merge(&self, bytes: usize) -> Result<(), QuerierError> {
        self.check_wanted()?;
        if self.max_merge_bytes > 0 && bytes > self.max_merge_bytes {
            return Err(QuerierError::MergeTooLarge {
                tenant: self.tenant.clone(),
                bytes,
                limit: self.max_merge_bytes,
            });
        }
        Ok(())
    }

    /// [`QuerierError::Cancelled`] once the query was abandoned.
    pub(crate) fn check_wanted(&self) -> Result<(), QuerierError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(QuerierError::Cancelled);
        }
        Ok(())
    }

    /// A guard that marks the query abandoned when dropped: when the future running the query
    /// is dropped (its client went away, or its deadline passed), work already handed to other
    /// threads sees it and stops.
    pub(crate) fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Arc::clone(&self.cancelled))
    }
}

/// Marks a query abandoned when dropped; see [`QueryBudget::cancel_on_drop`].
#[derive(Debug)]
pub(crate) struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(blocks: usize, bytes: usize) -> Limits {
        Limits {
            max_query_blocks: blocks,
            max_query_merge_bytes: bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn limits_name_themselves_and_zero_turns_them_off() {
        let budget = QueryBudget::new("t", &limits(2, 100));
        budget.check_blocks(2).unwrap();
        assert_eq!(
            budget.check_blocks(3).unwrap_err().to_string(),
            "tenant t: query would read 3 blocks, over max_query_blocks 2; narrow the time range or the selector"
        );
        budget.check_merge(100).unwrap();
        assert_eq!(
            budget.check_merge(101).unwrap_err().to_string(),
            "tenant t: query merge holds about 101 bytes, over max_query_merge_bytes 100; narrow the time range or the selector"
        );
        let unlimited = QueryBudget::new("t", &limits(0, 0));
        unlimited.check_blocks(usize::MAX).unwrap();
        unlimited.check_merge(usize::MAX).unwrap();
    }

    #[test]
    fn dropping_the_guard_cancels() {
        let budget = QueryBudget::new("t", &limits(0, 0));
        let worker = budget.clone();
        let guard = budget.cancel_on_drop();
        worker.check_wanted().unwrap();
        drop(guard);
        assert!(matches!(
            worker.check_merge(0),
            Err(QuerierError::Cancelled)
        ));
    }

    #[test]
    fn seen_profiles_count_each_id_once_per_series_and_grow_their_estimate() {
        let mut seen = SeenProfiles::default();
        let a = Labels::from_pairs([("service_name", "a")]);
        let b = Labels::from_pairs([("service_name", "a"), ("pod", "1")]);
        assert!(seen.insert("a", &a, "p1"));
        let one = seen.bytes();
        assert!(one > 0);
        assert!(!seen.insert("a", &a, "p1"));
        assert_eq!(seen.bytes(), one);
        assert!(seen.insert("a", &b, "p1"));
        assert!(seen.insert("a", &a, "p2"));
        assert!(seen.bytes() > one);
    }
}
