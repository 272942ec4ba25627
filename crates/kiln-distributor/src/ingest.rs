//! Pyroscope's `POST /ingest`: pprof as a raw body or in a multipart form.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use kiln_model::{
    DecodeLimits, LABEL_SERVICE_NAME, NormalizeOptions, decode_pprof, normalize, parse_app_name,
    parse_time_nanos,
};
use serde::Deserialize;

use crate::push::now_nanos;
use crate::{Distributor, DistributorError};
use kiln_api::{RequestError, read_body};

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
            distributor.metrics.rejected("ingest", e.reason());
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
    let tenant = distributor.tenants.resolve(headers)?;
    let name = params
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| RequestError::BadRequest("missing query parameter name".to_string()))?;
    let (app_name, mut labels) = parse_app_name(name)?;
    if labels.get(LABEL_SERVICE_NAME).is_none() {
        labels.set(LABEL_SERVICE_NAME.to_string(), app_name);
    }
    if let Some(spy) = params.spy_name.as_deref().filter(|s| !s.is_empty()) {
        labels.set("pyroscope_spy".to_string(), spy.to_string());
    }
    labels.validate()?;
    // Accepted for compatibility; they describe folded input and pprof carries its own.
    let _ = (
        &params.sample_rate,
        &params.units,
        &params.aggregation_type,
        &params.until,
    );
    let now = now_nanos();
    let time_nanos = params
        .from
        .as_deref()
        .map(|from| parse_time_nanos(from, now))
        .transpose()?;

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let multipart_boundary = multer::parse_boundary(content_type).ok();
    let format = params
        .format
        .as_deref()
        .unwrap_or(if multipart_boundary.is_some() {
            "pprof"
        } else {
            "folded"
        });
    if format != "pprof" {
        return Err(DistributorError::UnsupportedFormat(format!(
            "{format}: this server accepts format=pprof (raw or multipart field 'profile')"
        )));
    }

    let body = read_body(body, distributor.config.max_body_bytes).await?;
    let profile = match multipart_boundary {
        Some(boundary) => profile_from_multipart(body, boundary).await?,
        None => body,
    };
    let limits = DecodeLimits {
        max_decompressed_bytes: distributor.config.max_decompressed_bytes,
    };
    let bytes = profile.len() as u64;
    let normalized = tokio::task::spawn_blocking(move || {
        let pprof = decode_pprof(profile, limits)?;
        let options = NormalizeOptions {
            time_nanos,
            now_nanos: now,
            ..NormalizeOptions::default()
        };
        Ok::<_, DistributorError>(normalize(pprof, &labels, options)?)
    })
    .await
    .map_err(|e| RequestError::BadRequest(format!("decoding panicked: {e}")))??;
    distributor
        .store("ingest", tenant, vec![normalized], bytes)
        .await
}

/// Takes the `profile` field out of a multipart form.
async fn profile_from_multipart(body: Bytes, boundary: String) -> Result<Bytes, DistributorError> {
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut profile = None;
    let bad = |e: multer::Error| RequestError::BadRequest(format!("malformed multipart body: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("profile") => profile = Some(field.bytes().await.map_err(bad)?),
            Some("prev_profile") => {
                return Err(DistributorError::UnsupportedFormat(
                    "prev_profile: cumulative profiles are not supported yet; send delta profiles"
                        .to_string(),
                ));
            }
            // sample_type_config and unknown fields are ignored.
            _ => {}
        }
    }
    Ok(profile.ok_or_else(|| {
        RequestError::BadRequest("multipart body has no 'profile' field".to_string())
    })?)
}
