//! `AnalyzeQuery`: what a query would read, from the block index alone (nothing is fetched):
//! blocks, series, profiles and samples of the datasets it selects, and their bytes, for the
//! segments that ingesters wrote and for the blocks that compactors made.

use std::collections::HashSet;

use kiln_model::TenantId;
use kiln_proto::querier::v1::{AnalyzeQueryRequest, AnalyzeQueryResponse, QueryImpact, QueryScope};

use crate::select::Query;
use crate::selector::parse_selection;
use crate::service::range_from_millis;
use crate::{Querier, QuerierError};

/// The scopes of the answer, by compaction level: 0 (segments) and above.
const SCOPES: [&str; 2] = ["Segments", "Compacted blocks"];

impl Querier {
    /// `AnalyzeQuery`: `query` is `<profile type>{matchers}`, `{matchers}` or empty (every
    /// profile type). Counts are those of the selected datasets, whose rows cover all their
    /// profile types: an upper bound where the selector has matchers other than
    /// `service_name` or names one of several types.
    pub async fn analyze_query(
        &self,
        tenant: &TenantId,
        request: AnalyzeQueryRequest,
    ) -> Result<AnalyzeQueryResponse, QuerierError> {
        let (profile_type, selectors) = parse_selection(&request.query)?;
        let (start, end) = range_from_millis(request.start, request.end)?;
        let (start, end) = self.bounded_range(tenant.as_str(), start, end)?;
        let start = start.max(self.retained_from(tenant.as_str()));
        let mut scopes: Vec<QueryScope> = SCOPES
            .iter()
            .map(|name| QueryScope {
                component_type: name.to_string(),
                component_count: 1,
                ..Default::default()
            })
            .collect();
        if start >= end {
            return Ok(AnalyzeQueryResponse {
                query_scopes: scopes,
                query_impact: Some(QueryImpact::default()),
            });
        }
        let query = Query {
            tenant: tenant.as_str().to_string(),
            profile_type,
            selectors,
            start_nanos: start,
            end_nanos: end,
            stack_filter: None,
            stack_selector: None,
        };
        let blocks = self.metastore.query_blocks(&query.block_query()?).await?;
        let mut impact = QueryImpact::default();
        for block in &blocks {
            let scope = &mut scopes[usize::from(block.compaction_level > 0)];
            let mut regions = HashSet::new();
            let mut wanted = false;
            for dataset in block.datasets.iter().filter(|d| query.wants(d)) {
                wanted = true;
                scope.series_count += dataset.series;
                scope.profile_count += dataset.profiles;
                scope.sample_count += dataset.samples;
                if regions.insert(dataset.region_offset) {
                    // Objects of the first format have no regions: they are read whole.
                    scope.profile_bytes += match dataset.region_length {
                        0 => block.size_bytes,
                        length => length,
                    };
                }
            }
            if wanted {
                scope.block_count += 1;
                // Segments hold what ingesters wrote as it came: a retried push is there twice.
                impact.deduplication_needed |= block.compaction_level == 0;
            }
        }
        impact.total_bytes_in_time_range = scopes.iter().map(|s| s.profile_bytes).sum();
        impact.total_queried_series = scopes.iter().map(|s| s.series_count).sum();
        Ok(AnalyzeQueryResponse {
            query_scopes: scopes,
            query_impact: Some(impact),
        })
    }
}
