//! Pyroscope's HTTP query endpoints: `/pyroscope/render` (flamebearer JSON with a timeline)
//! and `/api/v1/pprof` (the merged profile as gzipped pprof).

use std::io::Write;

use kiln_model::{ProfileType, TenantId, parse_time_nanos};
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::flamegraph::FrameTree;
use crate::selector::parse_query;
use crate::service::now_millis;
use crate::timeseries::{Aggregation, SeriesBuilder};
use crate::{Querier, QuerierError};

const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// The timeline never has finer steps than this (seconds), as in Pyroscope.
const MIN_TIMELINE_STEP_SECONDS: i64 = 10;
/// At most this many timeline points.
const MAX_TIMELINE_POINTS: i64 = 1024;

/// Parameters of `/pyroscope/render` and `/api/v1/pprof`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RenderParams {
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    format: Option<String>,
    #[serde(rename = "max-nodes")]
    max_nodes_dash: Option<i64>,
    #[serde(rename = "maxNodes")]
    max_nodes_camel: Option<i64>,
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
        let now = now_millis() * 1_000_000;
        let from = parse_time_nanos(self.from.as_deref().unwrap_or("now-1h"), now)?;
        let until = parse_time_nanos(self.until.as_deref().unwrap_or("now"), now)?;
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

impl Querier {
    /// `/pyroscope/render?query=&from=&until=&format=json&max-nodes=`.
    pub(crate) async fn render(
        &self,
        tenant: &TenantId,
        params: RenderParams,
    ) -> Result<Value, QuerierError> {
        if let Some(format) = params.format.as_deref().filter(|f| *f != "json") {
            return Err(QuerierError::BadRequest(format!(
                "unsupported format {format:?}: use json"
            )));
        }
        let (profile_type, selector, from, until) = params.resolve()?;
        let parsed = ProfileType::parse(&profile_type).expect("parse_query validated it");
        let max_nodes = self.max_nodes(params.max_nodes_dash.or(params.max_nodes_camel));
        // `resolve` checked the range: `until - from` does not overflow, so neither does any
        // of this, and the timeline has at most MAX_TIMELINE_POINTS + 2 points.
        self.check_range(from, until)?;
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
        let (mut tree, series) = self
            .fold_profiles(
                tenant,
                &profile_type,
                &selector,
                from,
                until,
                (
                    FrameTree::default(),
                    SeriesBuilder::new(&[], start * 1000, step * 1000),
                ),
                |(tree, series), dataset| {
                    tree.add_selected(dataset);
                    series.add(dataset);
                },
            )
            .await?;
        let (flamegraph, series) = self
            .pool
            .run("flame graph", move || {
                (
                    tree.flamegraph(max_nodes),
                    series.finish(Aggregation::Sum, 0),
                )
            })
            .await?;

        let mut samples = vec![0i64; points as usize];
        for point in series.iter().flat_map(|s| &s.points) {
            let index = (point.timestamp / 1000 - start) / step;
            if let Some(slot) = samples.get_mut(index as usize) {
                *slot += point.value as i64;
            }
        }
        let (units, sample_rate) = units(&parsed);
        let levels: Vec<&Vec<i64>> = flamegraph.levels.iter().map(|l| &l.values).collect();
        Ok(json!({
            "version": 1,
            "flamebearer": {
                "names": flamegraph.names,
                "levels": levels,
                "numTicks": flamegraph.total,
                "maxSelf": flamegraph.max_self,
            },
            "metadata": {
                "format": "single",
                "spyName": "",
                "sampleRate": sample_rate,
                "units": units,
                "name": profile_type,
            },
            "timeline": {
                "startTime": start,
                "samples": samples,
                "durationDelta": step,
                "watermarks": null,
            },
            "groups": null,
            "heatmap": null,
        }))
    }

    /// `/api/v1/pprof?query=&from=&until=`: gzipped pprof.
    pub(crate) async fn pprof_export(
        &self,
        tenant: &TenantId,
        params: RenderParams,
    ) -> Result<Vec<u8>, QuerierError> {
        let (profile_type, selector, from, until) = params.resolve()?;
        let profile = self
            .merged_pprof(tenant, &profile_type, &selector, from, until)
            .await?;
        self.check_response_bytes(profile.encoded_len())?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(&profile.encode_to_vec())
            .and_then(|_| encoder.finish())
            .map_err(|e| QuerierError::BadRequest(format!("cannot compress the profile: {e}")))
    }
}
