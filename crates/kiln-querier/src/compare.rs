//! `Diff`: two selections merged side by side into one flame graph (Pyroscope's
//! `FlameGraphDiff`), the call behind `/pyroscope/render-diff` and Grafana's comparison view.

use kiln_model::TenantId;
use kiln_proto::querier::v1::{
    DiffRequest, DiffResponse, FlameGraphDiff, SelectMergeStacktracesRequest,
};

use crate::flamegraph::DiffTree;
use crate::{Querier, QuerierError};

impl Querier {
    /// The diff of the flame graphs of `left` and `right`, with at most about `max_nodes`
    /// nodes (the server's default when `None`). Both sides must be of one profile type; they
    /// are merged at once, each within the query budgets.
    pub(crate) async fn diff_requests(
        &self,
        tenant: &TenantId,
        left: SelectMergeStacktracesRequest,
        right: SelectMergeStacktracesRequest,
        max_nodes: Option<i64>,
    ) -> Result<FlameGraphDiff, QuerierError> {
        if left.profile_type_id != right.profile_type_id {
            return Err(QuerierError::BadRequest(format!(
                "profile types must match: left is {}, right is {}",
                left.profile_type_id, right.profile_type_id
            )));
        }
        let max_nodes = self.max_nodes(max_nodes);
        let (left, right) = tokio::try_join!(
            self.merged_tree(tenant, &left),
            self.merged_tree(tenant, &right)
        )?;
        self.pool
            .run("flame graph diff", move || {
                DiffTree::from_sides(left, right).diff(max_nodes)
            })
            .await
    }

    /// `Diff`: `left` and `right` are SelectMergeStacktraces requests (their `format` is
    /// ignored); the node limit is the larger of their `max_nodes`.
    pub async fn diff(
        &self,
        tenant: &TenantId,
        request: DiffRequest,
    ) -> Result<DiffResponse, QuerierError> {
        let (Some(left), Some(right)) = (request.left, request.right) else {
            return Err(QuerierError::BadRequest(
                "Diff needs both left and right".to_string(),
            ));
        };
        // Each side's limit as the server reads it (0 or less: the maximum), then the larger.
        let max_nodes = self
            .max_nodes(left.max_nodes)
            .max(self.max_nodes(right.max_nodes));
        let max_nodes = Some(i64::try_from(max_nodes).unwrap_or(i64::MAX));
        let flamegraph = self.diff_requests(tenant, left, right, max_nodes).await?;
        Ok(DiffResponse {
            flamegraph: Some(flamegraph),
        })
    }
}
