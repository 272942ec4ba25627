//! Pyroscope's `POST /ingest`: pprof (raw or multipart, with `prev_profile` and
//! `sample_type_config`), JFR (with the agent's context labels), folded stacks and lines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use kiln_api::{RequestError, read_body};
use kiln_model::{
    DecodeBudget, DecodeLimits, LABEL_NAME, LABEL_SERVICE_NAME, Labels, NormalizeLimits,
    NormalizeOptions, NormalizedProfile, formats, normalize, parse_app_name, parse_time_nanos,
};
use kiln_proto::io::pyroscope::labels::pb::LabelsSnapshot;
use prost::Message;
use serde::Deserialize;

use crate::push::now_nanos;
use crate::{Distributor, DistributorError};

/// Query parameters of /ingest, as Pyroscope's clients send them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IngestParams {
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
    spy_name: Option<String>,
    sample_rate: Option<String>,
    units: Option<String>,
    aggregation_type: Option<String>,
    format: Option<String>,
}

pub(crate) async fn handle(
    State(distributor): State<Arc<Distributor>>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match ingest(&distributor, params, &headers, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            let tenant = distributor.tenant_label(&headers);
            distributor.metrics.rejected("ingest", &tenant, e.reason());
            tracing::debug!(error = %e, "ingest rejected");
            (e.http_status(), e.to_string()).into_response()
        }
    }
}

async fn ingest(
    distributor: &Distributor,
    params: IngestParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), DistributorError> {
    let tenant = distributor
        .config
        .auth
        .authorize(headers, kiln_api::Right::Write)?;
    let name = params
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| RequestError::BadRequest("missing query parameter name".to_string()))?;
    let (app_name, mut labels) = parse_app_name(name)?;
    if let Some(spy) = params.spy_name.as_deref().filter(|s| !s.is_empty()) {
        labels.set("pyroscope_spy".to_string(), spy.to_string());
    }
    let now = now_nanos();
    let from = params
        .from
        .as_deref()
        .map(|t| parse_time_nanos(t, now))
        .transpose()?;
    let until = params
        .until
        .as_deref()
        .map(|t| parse_time_nanos(t, now))
        .transpose()?;
    // A missing or unparsable sampleRate means 100 Hz, as in Pyroscope.
    let sample_rate = params
        .sample_rate
        .as_deref()
        .and_then(|r| r.trim().parse::<i64>().ok());
    // units and aggregationType are accepted and, as in Pyroscope, not used: pprof and JFR
    // carry their own types, and the legacy name's suffix sets the type of folded input.
    let _ = (&params.units, &params.aggregation_type);

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).ok();
    let format = params.format.clone().unwrap_or_else(|| {
        if boundary.is_some() {
            "pprof"
        } else {
            "folded"
        }
        .to_string()
    });
    if !matches!(
        format.as_str(),
        "pprof" | "folded" | "groups" | "collapsed" | "lines" | "jfr"
    ) {
        return Err(DistributorError::UnsupportedFormat(format!(
            "{format}: use pprof, jfr, folded or lines"
        )));
    }
    let tenant_limits = distributor.config.limits.limits(tenant.as_str());
    let body = read_body(body, tenant_limits.max_body_bytes).await?;
    let form = match boundary {
        Some(boundary) => Some(read_form(body.clone(), boundary).await?),
        None => None,
    };
    let request = Upload {
        app_name,
        labels,
        from,
        until,
        now,
        sample_rate,
        decode: crate::limits::decode_limits(&tenant_limits),
        normalize: crate::limits::normalize_limits(&tenant_limits),
    };
    let bytes = body.len() as u64;
    distributor.admit(&tenant, &tenant_limits, bytes, 1)?;
    let profiles = tokio::task::spawn_blocking(move || match format.as_str() {
        "pprof" => request.pprof(body, form),
        "jfr" => request.jfr(body, form),
        "lines" => request.collapsed(body, true),
        _ => request.collapsed(body, false),
    })
    .await
    .map_err(|e| RequestError::BadRequest(format!("decoding panicked: {e}")))?
    .map_err(|e| distributor.refused(&tenant, e, 1))?;
    distributor.store("ingest", tenant, profiles, bytes).await
}

/// What an /ingest request says besides its body.
pub(crate) struct Upload {
    pub(crate) app_name: String,
    pub(crate) labels: Labels,
    pub(crate) from: Option<i64>,
    pub(crate) until: Option<i64>,
    pub(crate) now: i64,
    pub(crate) sample_rate: Option<i64>,
    /// Limits of decoding: the payloads of the request share one [`DecodeBudget`].
    pub(crate) decode: DecodeLimits,
    /// Label and series limits of normalization.
    pub(crate) normalize: NormalizeLimits,
}

impl Upload {
    /// Series labels with the service name, validated.
    fn labels(&self, service_name: &str, name: Option<&str>) -> Result<Labels, DistributorError> {
        let mut labels = self.labels.clone();
        if labels.get(LABEL_SERVICE_NAME).is_none() {
            labels.set(LABEL_SERVICE_NAME.to_string(), service_name.to_string());
        } else if labels.get("app_name").is_none() {
            labels.set("app_name".to_string(), service_name.to_string());
        }
        if let Some(name) = name {
            labels.set(LABEL_NAME.to_string(), name.to_string());
        }
        labels.validate()?;
        Ok(labels)
    }

    fn options(&self, name_hint: Option<String>) -> NormalizeOptions {
        NormalizeOptions {
            name_hint,
            time_nanos: self.from,
            now_nanos: self.now,
            profile_id: None,
            limits: self.normalize,
        }
    }

    /// pprof, raw or in a multipart form with `prev_profile` and `sample_type_config`.
    pub(crate) fn pprof(
        self,
        body: Bytes,
        form: Option<Form>,
    ) -> Result<Vec<NormalizedProfile>, DistributorError> {
        let mut budget = DecodeBudget::new(self.decode);
        let (mut profile, config, previous) = match form {
            None => (budget.decode_pprof(body)?, BTreeMap::new(), None),
            Some(mut form) => {
                let profile = form.take("profile").ok_or_else(|| {
                    RequestError::BadRequest("multipart body has no 'profile' field".to_string())
                })?;
                let config = match form.take("sample_type_config") {
                    Some(json) => formats::parse_sample_type_config(&json)?,
                    None => BTreeMap::new(),
                };
                let previous = form.take("prev_profile").filter(|p| !p.is_empty());
                (budget.decode_pprof(profile)?, config, previous)
            }
        };
        if let Some(previous) = previous {
            let previous = budget.decode_pprof(previous)?;
            formats::subtract_previous(&mut profile, &previous, &config)?;
        }
        // The client's display name (mutex_count, block_duration, ...) tells mutex from block.
        let hint = profile
            .sample_type
            .first()
            .and_then(|t| profile.string_table.get(t.r#type as usize))
            .and_then(|t| config.get(t))
            .and_then(|c| c.display_name.clone());
        let labels = self.labels(&self.app_name, None)?;
        Ok(vec![normalize(profile, &labels, self.options(hint))?])
    }

    /// Folded stacks, or `lines` (one stack per line).
    pub(crate) fn collapsed(
        self,
        body: Bytes,
        lines: bool,
    ) -> Result<Vec<NormalizedProfile>, DistributorError> {
        let body = DecodeBudget::new(self.decode).decompress(body)?;
        let legacy = formats::legacy_type(&self.app_name, self.sample_rate)?;
        let time = self.from.unwrap_or(self.now);
        let profile = if lines {
            formats::parse_lines(&body, &legacy, time)?
        } else {
            formats::parse_folded(&body, &legacy, time)?
        };
        let labels = self.labels(&legacy.service_name, Some(legacy.name))?;
        Ok(vec![normalize(profile, &labels, self.options(None))?])
    }

    /// A JFR recording: the multipart field `jfr` (with `labels`), or the raw body.
    pub(crate) fn jfr(
        self,
        body: Bytes,
        form: Option<Form>,
    ) -> Result<Vec<NormalizedProfile>, DistributorError> {
        let (recording, snapshot) = match form {
            None => (body, None),
            Some(mut form) => {
                let recording = form.take("jfr").ok_or_else(|| {
                    RequestError::BadRequest("multipart body has no 'jfr' field".to_string())
                })?;
                (recording, form.take("labels"))
            }
        };
        let mut budget = DecodeBudget::new(self.decode);
        let recording = budget.decompress(recording)?;
        let snapshot = match snapshot {
            Some(bytes) => Some(LabelsSnapshot::decode(budget.decompress(bytes)?).map_err(
                |e| RequestError::BadRequest(format!("malformed JFR labels field: {e}")),
            )?),
            None => None,
        };
        let time = self.from.unwrap_or(self.now);
        let duration = self.until.map(|u| (u - time).max(0)).unwrap_or(0);
        let profiles = formats::parse_jfr(
            &recording,
            snapshot.as_ref(),
            self.sample_rate,
            time,
            duration,
        )?;
        let mut out = Vec::with_capacity(profiles.len());
        for profile in profiles {
            let labels = self.labels(&self.app_name, Some(profile.name))?;
            out.push(normalize(profile.profile, &labels, self.options(None))?);
        }
        Ok(out)
    }
}

/// The fields of a multipart form.
pub(crate) struct Form {
    fields: HashMap<String, Bytes>,
}

impl Form {
    fn take(&mut self, name: &str) -> Option<Bytes> {
        self.fields.remove(name)
    }
}

pub(crate) async fn read_form(body: Bytes, boundary: String) -> Result<Form, DistributorError> {
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| RequestError::BadRequest(format!("malformed multipart body: {e}"));
    let mut fields = HashMap::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        let data = field.bytes().await.map_err(bad)?;
        fields.insert(name, data);
    }
    Ok(Form { fields })
}
