//! `POST /api/v1/sql`: a JSON body `{"query": "..."}`; the answer is a JSON array of row
//! objects, or an Arrow IPC stream when the client accepts
//! `application/vnd.apache.arrow.stream`. `GET /api/v1/leaks`: the memory-leak report.

use std::sync::Arc;

use axum::Router;
use axum::extract::Query as QueryParams;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_api::{Auth, Right};

use crate::{LeakQuery, SqlAnswer, SqlEngine, SqlError};

/// Largest SQL request body: a query is text, not data.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The media type of an Arrow IPC stream.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The body of a SQL request.
#[derive(Debug, serde::Deserialize)]
struct SqlRequest {
    query: String,
}

/// The SQL routes, each call authorized (`read`) and run through the querier's gate:
/// `/api/v1/sql`, `/api/v1/leaks`, and Arrow Flight SQL (gRPC on the same listener).
pub fn router(engine: Arc<SqlEngine>, auth: Arc<Auth>) -> Router {
    let flight = crate::FlightSql::new(Arc::clone(&engine), Arc::clone(&auth)).into_server();
    Router::new()
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/leaks", get(leaks))
        .route(
            "/arrow.flight.protocol.FlightService/{method}",
            post(move |request: Request| {
                let flight = flight.clone();
                async move {
                    kiln_api::grpc_or(request, flight, |_| async {
                        (
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "Arrow Flight SQL speaks gRPC: send Content-Type application/grpc\n",
                        )
                            .into_response()
                    })
                    .await
                }
            }),
        )
        .with_state((engine, auth))
}

async fn sql(
    State((engine, auth)): State<(Arc<SqlEngine>, Arc<Auth>)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let arrow = accepts_arrow(&parts.headers);
    let result = async {
        let tenant = auth
            .authorize(&parts.headers, Right::Read)
            .map_err(|e| (e.http_status(), e.to_string()))?;
        let body = kiln_api::read_body(body, MAX_REQUEST_BYTES)
            .await
            .map_err(|e| (e.http_status(), e.to_string()))?;
        let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("invalid request body: expected {{\"query\": \"...\"}}: {e}"),
            )
        })?;
        let querier = engine.querier().clone();
        // The gate refuses or times out with a querier error; the query's own outcome passes
        // through it as its value.
        let answer = querier
            .admit(&tenant, async {
                Ok(engine.query(&tenant, &request.query).await)
            })
            .await
            .map_err(|e| (e.http_status(), e.to_string()))?
            .map_err(|e: SqlError| (e.http_status(), e.to_string()))?;
        let body = if arrow {
            arrow_stream(&answer)
        } else {
            json_rows(&answer)
        }
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
        querier
            .check_response_bytes(body.len())
            .map_err(|e| (e.http_status(), e.to_string()))?;
        Ok::<_, (StatusCode, String)>(body)
    }
    .await;
    match result {
        Ok(body) => {
            let content_type = if arrow {
                ARROW_STREAM
            } else {
                "application/json"
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err((status, message)) => (status, format!("{message}\n")).into_response(),
    }
}

fn accepts_arrow(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(ARROW_STREAM)))
}

fn json_rows(answer: &SqlAnswer) -> Result<Vec<u8>, String> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in &answer.batches {
        writer
            .write(batch)
            .map_err(|e| format!("cannot encode the rows as JSON: {e}"))?;
    }
    writer
        .finish()
        .map_err(|e| format!("cannot encode the rows as JSON: {e}"))?;
    let mut body = writer.into_inner();
    // An empty result is an empty array, not an empty body.
    if body.is_empty() {
        body.extend_from_slice(b"[]");
    }
    Ok(body)
}

fn arrow_stream(answer: &SqlAnswer) -> Result<Vec<u8>, String> {
    let encode = |e: arrow::error::ArrowError| format!("cannot encode the rows as Arrow IPC: {e}");
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &answer.schema).map_err(encode)?;
    for batch in &answer.batches {
        writer.write(batch).map_err(encode)?;
    }
    writer.finish().map_err(encode)?;
    writer.into_inner().map_err(encode)
}

/// Parameters of `GET /api/v1/leaks`.
#[derive(Debug, serde::Deserialize)]
struct LeakParams {
    /// `<in-use memory profile type>{<matchers>}`.
    query: Option<String>,
    from: Option<String>,
    until: Option<String>,
    /// Least R² of a function's line (default 0.8).
    min_fit: Option<f64>,
    /// Least growth over the range as a share of the start (default 0.1).
    min_growth: Option<f64>,
}

async fn leaks(
    State((engine, auth)): State<(Arc<SqlEngine>, Arc<Auth>)>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<LeakParams>,
) -> Response {
    let result = async {
        let tenant = auth
            .authorize(&headers, Right::Read)
            .map_err(|e| (e.http_status(), e.to_string()))?;
        let bad = |e: kiln_querier::QuerierError| (e.http_status(), e.to_string());
        let query = params.query.as_deref().ok_or((
            StatusCode::BAD_REQUEST,
            "missing query parameter query: an in-use memory profile type and selector, e.g. memory:inuse_space:bytes:space:bytes{service_name=\"checkout\"}".to_string(),
        ))?;
        let (profile_type, selector) = kiln_querier::parse_query(query).map_err(bad)?;
        let (from, until) =
            kiln_querier::resolve_range(params.from.as_deref(), params.until.as_deref())
                .map_err(bad)?;
        let unit_share = |name: &str, value: Option<f64>, default: f64| match value {
            None => Ok(default),
            Some(v) if (0.0..=1e6).contains(&v) => Ok(v),
            Some(v) => Err((
                StatusCode::BAD_REQUEST,
                format!("invalid {name} {v}: expected a number from 0"),
            )),
        };
        let query = LeakQuery {
            profile_type,
            selector,
            start_nanos: from,
            end_nanos: until,
            min_fit: unit_share("min_fit", params.min_fit, 0.8)?.min(1.0),
            min_growth: unit_share("min_growth", params.min_growth, 0.1)?,
        };
        let querier = engine.querier().clone();
        let report = querier
            .admit(&tenant, async { Ok(engine.leaks(&tenant, &query).await) })
            .await
            .map_err(bad)?
            .map_err(|e: SqlError| (e.http_status(), e.to_string()))?;
        serde_json::to_vec(&report)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the report: {e}")))
    }
    .await;
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err((status, message)) => (status, format!("{message}\n")).into_response(),
    }
}
