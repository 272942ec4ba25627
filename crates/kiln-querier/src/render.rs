//! Pyroscope's HTTP query endpoints: `/pyroscope/render` (flamebearer JSON with a timeline,
//! optionally grouped by a label), `/pyroscope/render-diff` (flamebearer format `double`) and
//! `/api/v1/pprof` (the merged profile as gzipped pprof).

use std::collections::BTreeMap;
use std::io::Write;

use kiln_model::{ProfileType, TenantId, parse_time_nanos};
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};

use kiln_proto::querier::v1::SelectMergeStacktracesRequest;
use kiln_proto::types::v1::Series;

use crate::flamegraph::FrameTree;
use crate::fold::{SeriesFold, TreeAndSeriesFold, TreeFold};
use crate::selector::parse_query;
use crate::service::Selection;
use crate::service::now_millis;
use crate::timeseries::Aggregation;
use crate::{Querier, QuerierError};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// The timeline never has finer steps than this (seconds), as in Pyroscope.
const MIN_TIMELINE_STEP_SECONDS: i64 = 10;
/// At most this many timeline points.
const MAX_TIMELINE_POINTS: i64 = 1024;
/// Functions of a DOT graph when the request names no node limit (Pyroscope's default).
const DOT_NODES: usize = 100;

/// Parameters of `/pyroscope/render` and `/api/v1/pprof`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RenderParams {
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    /// `json` (the default) or `dot`.
    pub(crate) format: Option<String>,
    #[serde(rename = "max-nodes")]
    max_nodes_dash: Option<i64>,
    #[serde(rename = "maxNodes")]
    max_nodes_camel: Option<i64>,
    /// Label names whose values split the timeline into `groups` (comma-separated; the first
    /// names the groups, as in Pyroscope).
    #[serde(rename = "groupBy")]
    group_by: Option<String>,
    /// `sum` (default) or `avg` of the profiles of a timeline step.
    aggregation: Option<String>,
}

/// The `from` and `until` parameters of Pyroscope's HTTP endpoints as a [from, until) range in
/// nanoseconds (default the last hour), refused when from is after until or the length
/// overflows.
pub fn resolve_range(from: Option<&str>, until: Option<&str>) -> Result<(i64, i64), QuerierError> {
    let now = now_millis().saturating_mul(1_000_000);
    let from = parse_time_nanos(from.unwrap_or("now-1h"), now)?;
    let until = parse_time_nanos(until.unwrap_or("now"), now)?;
    if from > until {
        return Err(QuerierError::BadRequest(format!(
            "invalid time range: from {from} is after until {until} (nanoseconds)"
        )));
    }
    if until.checked_sub(from).is_none() {
        return Err(QuerierError::BadRequest(format!(
            "invalid time range: from {from} to until {until} (nanoseconds) overflows"
        )));
    }
    Ok((from, until))
}

/// Parameters of `/pyroscope/render-diff`: two queries and ranges.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RenderDiffParams {
    left_query: Option<String>,
    left_from: Option<String>,
    left_until: Option<String>,
    right_query: Option<String>,
    right_from: Option<String>,
    right_until: Option<String>,
    #[serde(rename = "max-nodes")]
    max_nodes_dash: Option<i64>,
    max_nodes: Option<i64>,
}

impl RenderDiffParams {
    /// Each side as the parameters of a render.
    fn sides(&self) -> Result<(RenderParams, RenderParams), QuerierError> {
        let side =
            |name: &str, query: &Option<String>, from: &Option<String>, until: &Option<String>| {
                let query = query.clone().ok_or_else(|| {
                    QuerierError::BadRequest(format!("missing query parameter {name}Query"))
                })?;
                Ok::<_, QuerierError>(RenderParams {
                    query: Some(query),
                    from: from.clone(),
                    until: until.clone(),
                    ..RenderParams::default()
                })
            };
        Ok((
            side("left", &self.left_query, &self.left_from, &self.left_until)?,
            side(
                "right",
                &self.right_query,
                &self.right_from,
                &self.right_until,
            )?,
        ))
    }
}

/// The steps of a timeline from `start` (seconds, a multiple of `step`): each point's value
/// added to its step, points outside left out.
fn timeline_samples(series: &[Series], start: i64, step: i64, points: i64) -> Vec<i64> {
    let mut samples = vec![0i64; points as usize];
    for point in series.iter().flat_map(|s| &s.points) {
        let index = (point.timestamp / 1000 - start) / step;
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| samples.get_mut(i)) {
            *slot += point.value as i64;
        }
    }
    samples
}

impl RenderParams {
    /// The query and its [from, until) range in nanoseconds; default the last hour.
    fn resolve(&self) -> Result<(String, String, i64, i64), QuerierError> {
        let query = self
            .query
            .as_deref()
            .ok_or_else(|| QuerierError::BadRequest("missing query parameter query".to_string()))?;
        let (profile_type, _) = parse_query(query)?;
        let selector = query[query.find('{').unwrap_or(query.len())..].to_string();
        let (from, until) = resolve_range(self.from.as_deref(), self.until.as_deref())?;
        Ok((profile_type, selector, from, until))
    }
}

/// Pyroscope's display units and sample rate for a profile type.
fn units(profile_type: &ProfileType) -> (&'static str, i64) {
    match (
        profile_type.name.as_str(),
        profile_type.sample_unit.as_str(),
    ) {
        (_, "bytes") => ("bytes", 100),
        ("mutex" | "block", "nanoseconds") => ("lock_nanoseconds", NANOS_PER_SECOND),
        ("mutex" | "block", _) => ("lock_samples", 100),
        ("goroutines", _) => ("goroutines", 100),
        ("memory", _) => ("objects", 100),
        (_, "nanoseconds") => ("samples", NANOS_PER_SECOND),
        (_, "microseconds") => ("samples", 1_000_000),
        _ => ("samples", 100),
    }
}

/// The flamebearer `metadata` of a profile type.
fn metadata(profile_type: &str, format: &str) -> Value {
    let parsed = ProfileType::parse(profile_type).expect("parse_query validated it");
    let (units, sample_rate) = units(&parsed);
    json!({
        "format": format,
        "spyName": "",
        "sampleRate": sample_rate,
        "units": units,
        "name": profile_type,
    })
}

impl Querier {
    /// `/pyroscope/render?query=&from=&until=&format=json&max-nodes=&groupBy=&aggregation=`.
    pub(crate) async fn render(
        &self,
        tenant: &TenantId,
        params: RenderParams,
    ) -> Result<Value, QuerierError> {
        if let Some(format) = params.format.as_deref().filter(|f| *f != "json") {
            return Err(QuerierError::BadRequest(format!(
                "unsupported format {format:?}: use json or dot"
            )));
        }
        let aggregation = match params.aggregation.as_deref() {
            None | Some("" | "sum") => Aggregation::Sum,
            Some("avg" | "average") => Aggregation::Average,
            Some(other) => {
                return Err(QuerierError::BadRequest(format!(
                    "unknown aggregation {other:?}: use sum or avg"
                )));
            }
        };
        let group_by: Vec<String> = params
            .group_by
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(String::from)
            .collect();
        let (profile_type, selector, from, until) = params.resolve()?;
        let max_nodes = self.max_nodes(params.max_nodes_dash.or(params.max_nodes_camel));
        // `resolve` checked the range: `until - from` does not overflow, so neither does any
        // of this, and the timeline has at most MAX_TIMELINE_POINTS + 2 points.
        let (from, until) = self.bounded_range(tenant.as_str(), from, until)?;
        let range_seconds = (until - from) / NANOS_PER_SECOND;
        let step = MIN_TIMELINE_STEP_SECONDS
            .max((range_seconds + MAX_TIMELINE_POINTS - 1) / MAX_TIMELINE_POINTS);
        let start = (from / NANOS_PER_SECOND).div_euclid(step) * step;
        let points = ((until / NANOS_PER_SECOND - start) / step + 1).max(1);
        if points > MAX_TIMELINE_POINTS + 2 {
            return Err(QuerierError::Internal(format!(
                "timeline of {points} points for {from}..{until}"
            )));
        }
        let selection = Selection::new(&profile_type, &selector, from, until);
        let fold = TreeAndSeriesFold(SeriesFold {
            group_by: group_by.clone(),
            start_millis: start * 1000,
            step_millis: step * 1000,
        });
        let (mut tree, series) = self.fold_profiles(tenant, selection, fold).await?;
        let (flamegraph, series) = self
            .pool
            .run("flame graph", move || {
                (tree.flamegraph(max_nodes), series.finish(aggregation, 0))
            })
            .await?;

        let timeline = |series: &[Series]| {
            json!({
                "startTime": start,
                "samples": timeline_samples(series, start, step, points),
                "durationDelta": step,
                "watermarks": null,
            })
        };
        let main_timeline = timeline(&series);
        // Groups by the value of the first groupBy label ("*" where a series lacks it). Each
        // is a timeline of `points` numbers: the answer's size is known before it is built.
        let groups = match group_by.first() {
            None => None,
            Some(name) => {
                let mut groups: BTreeMap<String, Vec<Series>> = BTreeMap::new();
                for s in series {
                    let value = s
                        .labels
                        .iter()
                        .find(|pair| &pair.name == name)
                        .map_or("*", |pair| pair.value.as_str())
                        .to_string();
                    groups.entry(value).or_default().push(s);
                }
                let estimate = groups
                    .keys()
                    .map(|value| value.len() + 64 + 21 * points as usize)
                    .sum::<usize>();
                self.check_response_bytes(estimate)?;
                Some(
                    groups
                        .into_iter()
                        .map(|(value, series)| (value, timeline(&series)))
                        .collect::<serde_json::Map<String, Value>>(),
                )
            }
        };
        let levels: Vec<&Vec<i64>> = flamegraph.levels.iter().map(|l| &l.values).collect();
        Ok(json!({
            "version": 1,
            "flamebearer": {
                "names": flamegraph.names,
                "levels": levels,
                "numTicks": flamegraph.total,
                "maxSelf": flamegraph.max_self,
            },
            "metadata": metadata(&profile_type, "single"),
            "timeline": main_timeline,
            "groups": groups,
            "heatmap": null,
        }))
    }

    /// `/pyroscope/render?format=dot`: the merged profile as Graphviz text with at most
    /// `max-nodes` functions (100 when absent or 0, as Pyroscope).
    pub(crate) async fn render_dot(
        &self,
        tenant: &TenantId,
        params: RenderParams,
    ) -> Result<String, QuerierError> {
        let (profile_type, selector, from, until) = params.resolve()?;
        let nodes = self.dot_nodes(params.max_nodes_dash.or(params.max_nodes_camel));
        let selection = Selection::new(&profile_type, &selector, from, until);
        let tree = self
            .fold_profiles(tenant, selection, TreeFold::default())
            .await?;
        self.dot_of(tree, nodes, &profile_type).await
    }

    /// Functions of a DOT graph: what the request asks for, [`DOT_NODES`] when it names none
    /// (or 0 or less), never more than the default flame graph node limit
    /// (`--querier.max-flamegraph-nodes`, or [`DOT_NODES`] if that is lower).
    pub(crate) fn dot_nodes(&self, requested: Option<i64>) -> usize {
        requested
            .filter(|n| *n > 0)
            .map_or(DOT_NODES, |n| usize::try_from(n).unwrap_or(usize::MAX))
            .min(self.max_nodes(None).max(DOT_NODES))
    }

    /// Graphviz text of `tree` with at most `nodes` functions, on a merge thread.
    pub(crate) async fn dot_of(
        &self,
        tree: FrameTree,
        nodes: usize,
        profile_type: &str,
    ) -> Result<String, QuerierError> {
        let parsed = ProfileType::parse(profile_type).ok_or_else(|| {
            QuerierError::BadRequest(format!("invalid profile type {profile_type:?}"))
        })?;
        let mut tree = tree;
        self.pool
            .run("dot", move || {
                tree.dot(nodes, &parsed.sample_type, &parsed.sample_unit)
            })
            .await
    }

    /// `/pyroscope/render-diff?leftQuery=&leftFrom=&leftUntil=&rightQuery=&rightFrom=&rightUntil=`:
    /// the two selections' flame graphs as one in flamebearer format `double`.
    pub(crate) async fn render_diff(
        &self,
        tenant: &TenantId,
        params: RenderDiffParams,
    ) -> Result<Value, QuerierError> {
        let (left, right) = params.sides()?;
        let (left_type, left_selector, left_from, left_until) = left.resolve()?;
        let (right_type, right_selector, right_from, right_until) = right.resolve()?;
        if left_type != right_type {
            return Err(QuerierError::BadRequest(format!(
                "profile types must match: left is {left_type}, right is {right_type}"
            )));
        }
        let request = |selector: String, from: i64, until: i64| SelectMergeStacktracesRequest {
            profile_type_id: left_type.clone(),
            label_selector: selector,
            start: from.div_euclid(1_000_000),
            end: until.div_euclid(1_000_000),
            ..Default::default()
        };
        let max_nodes = params.max_nodes_dash.or(params.max_nodes);
        let diff = self
            .diff_requests(
                tenant,
                request(left_selector, left_from, left_until),
                request(right_selector, right_from, right_until),
                max_nodes,
            )
            .await?;
        let levels: Vec<&Vec<i64>> = diff.levels.iter().map(|l| &l.values).collect();
        Ok(json!({
            "version": 1,
            "flamebearer": {
                "names": diff.names,
                "levels": levels,
                "numTicks": diff.total,
                "maxSelf": diff.max_self,
            },
            "metadata": metadata(&left_type, "double"),
            "timeline": null,
            "groups": null,
            "heatmap": null,
            "leftTicks": diff.left_ticks,
            "rightTicks": diff.right_ticks,
        }))
    }

    /// `/api/v1/pprof?query=&from=&until=`: gzipped pprof.
    pub(crate) async fn pprof_export(
        &self,
        tenant: &TenantId,
        params: RenderParams,
    ) -> Result<Vec<u8>, QuerierError> {
        let (profile_type, selector, from, until) = params.resolve()?;
        let selection = Selection::new(&profile_type, &selector, from, until);
        let profile = self.merged_pprof(tenant, selection).await?;
        self.check_response_bytes(profile.encoded_len())?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(&profile.encode_to_vec())
            .and_then(|_| encoder.finish())
            .map_err(|e| QuerierError::BadRequest(format!("cannot compress the profile: {e}")))
    }
}
