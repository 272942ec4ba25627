//! Retention and tenant deletion: a tenant's datasets leave the blocks' metadata; a block left
//! without any dataset leaves the index and its object is tombstoned.

use kiln_contract::metastore::{RetentionRemoval, TombstoneReason};

use super::{MetastoreState, with_datasets};
use crate::types::CutoffRecord;

impl MetastoreState {
    /// For each cutoff, removes the tenant's datasets that end before it. Idempotent.
    pub(crate) fn apply_retention(
        &mut self,
        cutoffs: &[CutoffRecord],
        now_millis: i64,
    ) -> Vec<RetentionRemoval> {
        cutoffs
            .iter()
            .map(|cutoff| {
                let (datasets, blocks) = self.remove_datasets(
                    &cutoff.tenant,
                    Some(cutoff.before_nanos),
                    TombstoneReason::Retention,
                    now_millis,
                );
                RetentionRemoval {
                    tenant: cutoff.tenant.clone(),
                    datasets,
                    blocks,
                }
            })
            .collect()
    }

    /// Removes every dataset of `tenant` and the tenant, and remembers that it was deleted at
    /// `log_index`. Returns how many blocks held its data.
    pub(crate) fn delete_tenant(&mut self, tenant: &str, now_millis: i64, log_index: u64) -> u64 {
        let blocks = self.index.tenant_blocks(tenant, None).len() as u64;
        self.remove_datasets(tenant, None, TombstoneReason::TenantDeleted, now_millis);
        self.index.remove_tenant(tenant);
        let deleted_at = self.deleted_tenants.entry(tenant.to_string()).or_default();
        *deleted_at = (*deleted_at).max(log_index);
        blocks
    }

    /// Removes the datasets of `tenant` that end before `before_nanos` (every one for `None`)
    /// from the blocks' metadata. Returns how many datasets were removed and how many blocks
    /// were left empty (removed and tombstoned for `reason`).
    fn remove_datasets(
        &mut self,
        tenant: &str,
        before_nanos: Option<i64>,
        reason: TombstoneReason,
        now_millis: i64,
    ) -> (u64, u64) {
        let (mut datasets, mut emptied) = (0, 0);
        for block in self.index.tenant_blocks(tenant, before_nanos) {
            let kept: Vec<_> = block
                .datasets
                .iter()
                .filter(|d| {
                    d.tenant != tenant || before_nanos.is_some_and(|b| d.max_time_nanos >= b)
                })
                .cloned()
                .collect();
            if kept.len() == block.datasets.len() {
                continue;
            }
            datasets += (block.datasets.len() - kept.len()) as u64;
            if kept.is_empty() {
                self.drop_block(&block.id, reason, now_millis);
                emptied += 1;
            } else {
                self.index.replace(with_datasets(&block, kept));
            }
        }
        (datasets, emptied)
    }
}
