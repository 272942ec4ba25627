//! The query API's operations on Pyroscope's request and response types.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use kiln_contract::metastore::BlockQuery;
use kiln_model::{Labels, ProfileType, TenantId};
use kiln_proto::google::v1::Profile;
use kiln_proto::querier::v1::{
    FlameGraph, PprofProfile, ProfileFormat, ProfileTypesRequest, ProfileTypesResponse,
    SelectMergeProfileRequest, SelectMergeSpanProfileRequest, SelectMergeSpanProfileResponse,
    SelectMergeStacktracesRequest, SelectMergeStacktracesResponse, SelectSeriesRequest,
    SelectSeriesResponse, SeriesRequest, SeriesResponse,
};
use kiln_proto::types::v1::{
    GetProfileStatsResponse, LabelNamesRequest, LabelNamesResponse, LabelPair, LabelValuesRequest,
    LabelValuesResponse, Labels as LabelSet, StackTraceSelector, TimeSeriesAggregationType,
};

use crate::flamegraph::FrameTree;
use crate::fold::{Fold, PprofFold, SeriesFold, TreeFold};
use crate::select::Query;
use crate::selector::Selector;
use crate::stacks::StackFilter;
use crate::timeseries::Aggregation;
use crate::{Querier, QuerierError};

const NANOS_PER_MILLI: i64 = 1_000_000;

/// What one select call reads: a profile type and a label selector over a range, with an
/// optional stack filter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Selection<'a> {
    pub(crate) profile_type: &'a str,
    pub(crate) label_selector: &'a str,
    pub(crate) start_nanos: i64,
    pub(crate) end_nanos: i64,
    pub(crate) stacks: Option<&'a StackTraceSelector>,
}

impl<'a> Selection<'a> {
    /// A selection of every stack over `[start_nanos, end_nanos)`.
    pub(crate) fn new(
        profile_type: &'a str,
        label_selector: &'a str,
        start_nanos: i64,
        end_nanos: i64,
    ) -> Self {
        Self {
            profile_type,
            label_selector,
            start_nanos,
            end_nanos,
            stacks: None,
        }
    }

    /// A selection of `[start_millis, end_millis)` in unix milliseconds (an end of 0 means
    /// now) with a stack selector.
    fn requested(
        profile_type: &'a str,
        label_selector: &'a str,
        start_millis: i64,
        end_millis: i64,
        stacks: Option<&'a StackTraceSelector>,
    ) -> Result<Self, QuerierError> {
        let (start_nanos, end_nanos) = range_from_millis(start_millis, end_millis)?;
        Ok(Self {
            stacks,
            ..Self::new(profile_type, label_selector, start_nanos, end_nanos)
        })
    }
}

/// A `querier.v1` select request: a profile type, a label selector, a range in unix
/// milliseconds and a stack selector, under the same field names in every request type.
pub(crate) trait SelectRequest {
    /// What the request asks for.
    fn selection(&self) -> Result<Selection<'_>, QuerierError>;
}

macro_rules! select_request {
    ($($request:ty),*) => {$(
        impl SelectRequest for $request {
            fn selection(&self) -> Result<Selection<'_>, QuerierError> {
                Selection::requested(
                    &self.profile_type_id,
                    &self.label_selector,
                    self.start,
                    self.end,
                    self.stack_trace_selector.as_ref(),
                )
            }
        }
    )*};
}

select_request!(
    SelectMergeStacktracesRequest,
    SelectMergeProfileRequest,
    SelectSeriesRequest
);

/// Converts a [start, end) range in unix milliseconds; an end of 0 means "now".
pub(crate) fn range_from_millis(start: i64, end: i64) -> Result<(i64, i64), QuerierError> {
    let end = if end == 0 { now_millis() } else { end };
    if start > end {
        return Err(QuerierError::BadRequest(format!(
            "invalid time range: start {start} is after end {end}"
        )));
    }
    Ok((
        start.saturating_mul(NANOS_PER_MILLI),
        end.saturating_mul(NANOS_PER_MILLI),
    ))
}

/// A length in nanoseconds as whole seconds, for messages (`90s`, `2days 1h`).
fn format_seconds(nanos: i64) -> String {
    let seconds = u64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn parse_matchers(matchers: &[String]) -> Result<Vec<Selector>, QuerierError> {
    matchers.iter().map(|m| Selector::parse(m)).collect()
}

fn parse_profile_type(id: &str) -> Result<ProfileType, QuerierError> {
    ProfileType::parse(id).ok_or_else(|| {
        QuerierError::BadRequest(format!(
            "invalid profile type {id:?}: expected <name>:<sample_type>:<sample_unit>:<period_type>:<period_unit>"
        ))
    })
}

impl Querier {
    /// Renders `tree` as a flame graph of at most `max_nodes` nodes on a merge thread.
    async fn render_flamegraph(
        &self,
        tree: FrameTree,
        max_nodes: usize,
    ) -> Result<FlameGraph, QuerierError> {
        let mut tree = tree;
        self.pool
            .run("flame graph", move || tree.flamegraph(max_nodes))
            .await
    }

    /// The flame graph node limit for a request: what it asks for, at most the server's
    /// maximum, which is also what 0 or less means; the default when it names none.
    pub(crate) fn max_nodes(&self, requested: Option<i64>) -> usize {
        let max = self.config.max_nodes_max.max(1);
        let nodes = match requested {
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(_) => max,
            None if self.config.max_nodes_default == 0 => max,
            None => self.config.max_nodes_default,
        };
        nodes.min(max)
    }

    /// The range a query of `tenant` over `[start, end)` nanoseconds reads: refused when it
    /// overflows or is longer than the querier's `max_query_range` or the tenant's
    /// `max_query_length`; its start moved up to the tenant's `max_query_lookback` (an empty
    /// range, start == end, when all of it is older), as Pyroscope does.
    pub fn bounded_range(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
    ) -> Result<(i64, i64), QuerierError> {
        let Some(length) = end.checked_sub(start) else {
            return Err(QuerierError::BadRequest(format!(
                "invalid time range: {start} to {end} (nanoseconds) overflows"
            )));
        };
        let max = self.config.max_query_range;
        if !max.is_zero() && length as u128 > max.as_nanos() {
            return Err(QuerierError::BadRequest(format!(
                "query range of {} is over max_query_range {} (--querier.max-query-range)",
                format_seconds(length),
                humantime::format_duration(max)
            )));
        }
        let limits = self.overrides.limits(tenant);
        let mut start = start;
        if !limits.max_query_lookback.is_zero() {
            let lookback = i64::try_from(limits.max_query_lookback.as_nanos()).unwrap_or(i64::MAX);
            let oldest = now_millis()
                .saturating_mul(NANOS_PER_MILLI)
                .saturating_sub(lookback);
            if end <= oldest {
                return Ok((end, end));
            }
            start = start.max(oldest);
        }
        let max = limits.max_query_length;
        let length = end - start;
        if !max.is_zero() && length as u128 > max.as_nanos() {
            return Err(QuerierError::BadRequest(format!(
                "tenant {tenant}: query range of {} is over max_query_length {}",
                format_seconds(length),
                humantime::format_duration(max)
            )));
        }
        Ok((start, end))
    }

    /// Refuses a response larger than `max_response_bytes`.
    pub fn check_response_bytes(&self, bytes: usize) -> Result<(), QuerierError> {
        let max = self.config.max_response_bytes;
        if max > 0 && bytes > max {
            return Err(QuerierError::BadRequest(format!(
                "response of {bytes} bytes is over max_response_bytes {max}; narrow the query or ask for fewer nodes"
            )));
        }
        Ok(())
    }

    /// Folds the datasets of one selection with `fold` (see [`Querier::select_fold`]).
    pub(crate) async fn fold_profiles<Fo: Fold>(
        &self,
        tenant: &TenantId,
        selection: Selection<'_>,
        fold: Fo,
    ) -> Result<Fo::Acc, QuerierError> {
        parse_profile_type(selection.profile_type)?;
        let (start_nanos, end_nanos) =
            self.bounded_range(tenant.as_str(), selection.start_nanos, selection.end_nanos)?;
        let query = Query {
            tenant: tenant.as_str().to_string(),
            profile_type: Some(selection.profile_type.to_string()),
            selectors: vec![Selector::parse(selection.label_selector)?],
            start_nanos,
            end_nanos,
            stack_filter: StackFilter::from_selector(selection.stacks)?.map(Arc::new),
            stack_selector: selection.stacks.cloned(),
        };
        self.select_fold(&query, fold).await
    }

    /// `ProfileTypes`: every profile type with data in the range.
    pub async fn profile_types(
        &self,
        tenant: &TenantId,
        request: ProfileTypesRequest,
    ) -> Result<ProfileTypesResponse, QuerierError> {
        let (start, end) = range_from_millis(request.start, request.end)?;
        let (start, end) = self.bounded_range(tenant.as_str(), start, end)?;
        let start = start.max(self.retained_from(tenant.as_str()));
        if start >= end {
            return Ok(ProfileTypesResponse::default());
        }
        let blocks = self
            .metastore
            .query_blocks(&BlockQuery::new(tenant.as_str(), start, end))
            .await?;
        let ids: BTreeSet<&str> = blocks
            .iter()
            .flat_map(|b| &b.datasets)
            .filter(|d| d.tenant == tenant.as_str() && d.overlaps(start, end))
            .flat_map(|d| d.profile_types.iter().map(String::as_str))
            .collect();
        let profile_types = ids
            .into_iter()
            .filter_map(ProfileType::parse)
            .map(|t| kiln_proto::types::v1::ProfileType {
                id: t.id(),
                name: t.name,
                sample_type: t.sample_type,
                sample_unit: t.sample_unit,
                period_type: t.period_type,
                period_unit: t.period_unit,
            })
            .collect();
        Ok(ProfileTypesResponse { profile_types })
    }

    /// Label sets of the series matching any of `matchers` (and of `profile_type` when
    /// given) with data in `[start_nanos, end_nanos)`, from the series sections alone
    /// ([`Querier::select_label_sets`]).
    pub(crate) async fn series_labels(
        &self,
        tenant: &TenantId,
        profile_type: Option<String>,
        selectors: Vec<Selector>,
        start_nanos: i64,
        end_nanos: i64,
    ) -> Result<BTreeSet<Labels>, QuerierError> {
        let (start_nanos, end_nanos) =
            self.bounded_range(tenant.as_str(), start_nanos, end_nanos)?;
        let query = Query {
            tenant: tenant.as_str().to_string(),
            profile_type,
            selectors,
            start_nanos,
            end_nanos,
            stack_filter: None,
            stack_selector: None,
        };
        self.select_label_sets(&query).await
    }

    /// `LabelNames`: label names of the matching series.
    pub async fn label_names(
        &self,
        tenant: &TenantId,
        request: LabelNamesRequest,
    ) -> Result<LabelNamesResponse, QuerierError> {
        let (start, end) = range_from_millis(request.start, request.end)?;
        let sets = self
            .series_labels(tenant, None, parse_matchers(&request.matchers)?, start, end)
            .await?;
        let names: BTreeSet<String> = sets
            .iter()
            .flat_map(|l| l.iter().map(|(n, _)| n.to_string()))
            .collect();
        Ok(LabelNamesResponse {
            names: names.into_iter().collect(),
        })
    }

    /// `LabelValues`: values of one label on the matching series.
    pub async fn label_values(
        &self,
        tenant: &TenantId,
        request: LabelValuesRequest,
    ) -> Result<LabelValuesResponse, QuerierError> {
        let (start, end) = range_from_millis(request.start, request.end)?;
        let sets = self
            .series_labels(tenant, None, parse_matchers(&request.matchers)?, start, end)
            .await?;
        let values: BTreeSet<String> = sets
            .iter()
            .filter_map(|l| l.get(&request.name).map(String::from))
            .collect();
        Ok(LabelValuesResponse {
            names: values.into_iter().collect(),
        })
    }

    /// `Series`: the matching label sets, restricted to `label_names` when given.
    pub async fn series(
        &self,
        tenant: &TenantId,
        request: SeriesRequest,
    ) -> Result<SeriesResponse, QuerierError> {
        let (start, end) = range_from_millis(request.start, request.end)?;
        let sets = self
            .series_labels(tenant, None, parse_matchers(&request.matchers)?, start, end)
            .await?;
        let projected: BTreeSet<Vec<(String, String)>> = sets
            .iter()
            .map(|labels| {
                labels
                    .iter()
                    .filter(|(n, _)| {
                        request.label_names.is_empty() || request.label_names.iter().any(|w| w == n)
                    })
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            })
            .collect();
        let labels_set = projected
            .into_iter()
            .map(|pairs| LabelSet {
                labels: pairs
                    .into_iter()
                    .map(|(name, value)| LabelPair { name, value })
                    .collect(),
            })
            .collect();
        Ok(SeriesResponse { labels_set })
    }

    /// The merged frame tree of a `SelectMergeStacktraces` request.
    pub(crate) async fn merged_tree(
        &self,
        tenant: &TenantId,
        request: &SelectMergeStacktracesRequest,
    ) -> Result<FrameTree, QuerierError> {
        let selection = request.selection()?;
        self.fold_profiles(tenant, selection, TreeFold::default())
            .await
    }

    /// `SelectMergeStacktraces`: the merged flame graph, or with `format` TREE the tree in
    /// Pyroscope's serialization.
    pub async fn select_merge_stacktraces(
        &self,
        tenant: &TenantId,
        request: SelectMergeStacktracesRequest,
    ) -> Result<SelectMergeStacktracesResponse, QuerierError> {
        let format = ProfileFormat::try_from(request.format)
            .map_err(|_| QuerierError::BadRequest(format!("unknown format {}", request.format)))?;
        if format == ProfileFormat::Pprof {
            let selection = request.selection()?;
            let profile = self.merged_pprof(tenant, selection).await?;
            return Ok(SelectMergeStacktracesResponse {
                pprof: Some(PprofProfile {
                    profile: Some(profile),
                }),
                ..Default::default()
            });
        }
        let tree = self.merged_tree(tenant, &request).await?;
        let max_nodes = self.max_nodes(request.max_nodes);
        match format {
            ProfileFormat::Unspecified | ProfileFormat::Flamegraph => {
                let flamegraph = self.render_flamegraph(tree, max_nodes).await?;
                Ok(SelectMergeStacktracesResponse {
                    flamegraph: Some(flamegraph),
                    ..Default::default()
                })
            }
            ProfileFormat::Tree => {
                let mut tree = tree;
                let bytes = self
                    .pool
                    .run("tree", move || tree.pyroscope_tree(max_nodes))
                    .await?;
                Ok(SelectMergeStacktracesResponse {
                    tree: bytes.into(),
                    ..Default::default()
                })
            }
            ProfileFormat::Dot => {
                let nodes = self.dot_nodes(request.max_nodes);
                let dot = self.dot_of(tree, nodes, &request.profile_type_id).await?;
                Ok(SelectMergeStacktracesResponse {
                    dot,
                    ..Default::default()
                })
            }
            ProfileFormat::Pprof => Err(QuerierError::Internal(
                "PPROF is answered before a tree is merged".to_string(),
            )),
        }
    }

    /// `SelectMergeSpanProfile`: the flame graph of the samples taken in the given spans
    /// (16 hex digits each), as Grafana's traces-to-profiles link asks for it.
    pub async fn select_merge_span_profile(
        &self,
        tenant: &TenantId,
        request: SelectMergeSpanProfileRequest,
    ) -> Result<SelectMergeSpanProfileResponse, QuerierError> {
        let (start, end) = range_from_millis(request.start, request.end)?;
        let spans: HashSet<String> = request
            .span_selector
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if let Some(bad) = spans
            .iter()
            .find(|s| s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(QuerierError::BadRequest(format!(
                "invalid span id {bad:?} in span_selector: expected 16 hex digits"
            )));
        }
        let selection = Selection::new(
            &request.profile_type_id,
            &request.label_selector,
            start,
            end,
        );
        let fold = TreeFold { spans: Some(spans) };
        let tree = self.fold_profiles(tenant, selection, fold).await?;
        let max_nodes = self.max_nodes(request.max_nodes);
        let flamegraph = self.render_flamegraph(tree, max_nodes).await?;
        Ok(SelectMergeSpanProfileResponse {
            flamegraph: Some(flamegraph),
            ..Default::default()
        })
    }

    /// `SelectMergeProfile`: the merged profile as pprof with the queried sample type.
    pub async fn select_merge_profile(
        &self,
        tenant: &TenantId,
        request: SelectMergeProfileRequest,
    ) -> Result<Profile, QuerierError> {
        let selection = request.selection()?;
        self.merged_pprof(tenant, selection).await
    }

    /// The merged pprof of one selection.
    pub(crate) async fn merged_pprof(
        &self,
        tenant: &TenantId,
        selection: Selection<'_>,
    ) -> Result<Profile, QuerierError> {
        let parsed = parse_profile_type(selection.profile_type)?;
        let (start, end) = (selection.start_nanos, selection.end_nanos);
        let (builder, period) = self.fold_profiles(tenant, selection, PprofFold).await?;
        self.pool
            .run("merge", move || builder.finish(&parsed, period, start, end))
            .await
    }

    /// `SelectSeries`: totals over time, grouped and aggregated.
    pub async fn select_series(
        &self,
        tenant: &TenantId,
        request: SelectSeriesRequest,
    ) -> Result<SelectSeriesResponse, QuerierError> {
        let selection = request.selection()?;
        if request.step.is_nan() || request.step <= 0.0 {
            return Err(QuerierError::BadRequest(format!(
                "invalid step {}: must be a positive number of seconds",
                request.step
            )));
        }
        let aggregation = match request.aggregation.map(TimeSeriesAggregationType::try_from) {
            None | Some(Ok(TimeSeriesAggregationType::Sum)) => Aggregation::Sum,
            Some(Ok(TimeSeriesAggregationType::Average)) => Aggregation::Average,
            Some(Err(_)) => {
                return Err(QuerierError::BadRequest(
                    "unknown aggregation type".to_string(),
                ));
            }
        };
        let step_millis = (request.step * 1000.0).round() as i64;
        let limit = request.limit.unwrap_or(0).max(0) as usize;
        let fold = SeriesFold {
            group_by: request.group_by.clone(),
            start_millis: request.start,
            step_millis,
        };
        let builder = self.fold_profiles(tenant, selection, fold).await?;
        let series = builder.finish(aggregation, limit);
        let max = self.config.max_points_per_series;
        if let Some(long) = series.iter().find(|s| s.points.len() > max) {
            return Err(QuerierError::BadRequest(format!(
                "series has {} points, over max_points_per_series {max}; use a larger step",
                long.points.len()
            )));
        }
        Ok(SelectSeriesResponse { series })
    }

    /// `GetProfileStats`: whether the tenant has data, and its time span.
    pub async fn profile_stats(
        &self,
        tenant: &TenantId,
    ) -> Result<GetProfileStatsResponse, QuerierError> {
        let retained_from = self.retained_from(tenant.as_str());
        let blocks = self
            .metastore
            .query_blocks(&BlockQuery::new(tenant.as_str(), retained_from, i64::MAX))
            .await?;
        let mut span: Option<(i64, i64)> = None;
        for d in blocks
            .iter()
            .flat_map(|b| &b.datasets)
            .filter(|d| d.tenant == tenant.as_str() && d.max_time_nanos >= retained_from)
        {
            let oldest = d.min_time_nanos.max(retained_from);
            span = Some(match span {
                None => (oldest, d.max_time_nanos),
                Some((first, newest)) => (first.min(oldest), newest.max(d.max_time_nanos)),
            });
        }
        Ok(match span {
            Some((oldest, newest)) => GetProfileStatsResponse {
                data_ingested: true,
                oldest_profile_time: oldest / NANOS_PER_MILLI,
                newest_profile_time: newest / NANOS_PER_MILLI,
            },
            None => GetProfileStatsResponse {
                data_ingested: false,
                oldest_profile_time: 0,
                newest_profile_time: 0,
            },
        })
    }
}
