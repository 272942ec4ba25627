//! The querier's routes: `querier.v1.QuerierService` over Connect and gRPC on one path per
//! method, and Pyroscope's HTTP endpoints.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query as QueryParams, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_api::Codec;
use kiln_model::TenantId;
use kiln_proto::google::v1::Profile;
use kiln_proto::querier::v1::querier_service_server::{QuerierService, QuerierServiceServer};
use kiln_proto::querier::v1::*;
use kiln_proto::types::v1::{
    GetProfileStatsRequest, GetProfileStatsResponse, LabelNamesRequest, LabelNamesResponse,
    LabelValuesRequest, LabelValuesResponse,
};
use prost::Message;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};

use kiln_proto::settings::v1::recording_rules_service_server::RecordingRulesServiceServer;
use kiln_proto::settings::v1::settings_service_server::SettingsServiceServer;
use kiln_proto::settings::v1::{
    GetSettingsRequest, GetSettingsResponse, ListRecordingRulesRequest, ListRecordingRulesResponse,
    SetSettingsRequest, SetSettingsResponse,
};

use crate::labels_http::LabelParams;
use crate::render::{RenderDiffParams, RenderParams};
use crate::settings::Settings;
use crate::{Querier, QuerierError};

/// Largest query request body; queries are small.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Whether a call passes the query gate (concurrency slot and deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Queries: they take a slot of `--querier.max-concurrent` and have a deadline.
    Query,
    /// Answers that read nothing (the settings Profiles Drilldown asks for when it starts):
    /// never refused for lack of a slot.
    Bypass,
}

/// Serves one unary Connect call: decode `Req`, run `call`, encode the response.
async fn connect_call<Req, Resp, F, Fut>(
    querier: Arc<Querier>,
    request: Request,
    request_type: &'static str,
    response_type: &'static str,
    gate: Gate,
    call: F,
) -> Response
where
    Req: Message + Default,
    Resp: Message,
    F: FnOnce(Arc<Querier>, TenantId, Req) -> Fut,
    Fut: Future<Output = Result<Resp, QuerierError>>,
{
    let result = async {
        let (parts, body) = request.into_parts();
        let codec = Codec::require(&parts.headers)?;
        let tenant = querier
            .config
            .auth
            .authorize(&parts.headers, kiln_api::Right::Read)?;
        let body = kiln_api::read_body(body, MAX_REQUEST_BYTES).await?;
        let body = kiln_api::decode_content_encoding(&parts.headers, body, MAX_REQUEST_BYTES)?;
        let message: Req = codec.decode(request_type, &body)?;
        let answer = call(Arc::clone(&querier), tenant.clone(), message);
        let response = match gate {
            Gate::Query => querier.admit(&tenant, answer).await?,
            Gate::Bypass => answer.await?,
        };
        querier.check_response_bytes(response.encoded_len())?;
        Ok::<_, QuerierError>(codec.respond(response_type, &response))
    }
    .await;
    result.unwrap_or_else(|e| connect_error(&e))
}

/// A Connect error response; 429 tells when to come back.
fn connect_error(e: &QuerierError) -> Response {
    with_retry_after(
        e,
        kiln_api::error_response(e.http_status(), e.connect_code(), &e.to_string()),
    )
}

/// Adds `Retry-After: 1` to the answer of an overloaded querier.
fn with_retry_after(e: &QuerierError, mut response: Response) -> Response {
    if matches!(e, QuerierError::Overloaded { .. }) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// Routes one unary method of `querier.v1.QuerierService` (`$method`, through the query gate)
/// or of another service (`$service`, `$method`, with its `Gate`): gRPC to `$grpc`, Connect to
/// `$call`.
macro_rules! unary_route {
    ($router:expr, $grpc:expr, $method:literal, $req:literal, $resp:literal, $call:expr) => {
        unary_route!(
            $router,
            $grpc,
            "querier.v1.QuerierService",
            $method,
            $req,
            $resp,
            Gate::Query,
            $call
        )
    };
    ($router:expr, $grpc:expr, $service:literal, $method:literal, $req:literal, $resp:literal, $gate:expr, $call:expr) => {{
        let grpc = $grpc.clone();
        $router.route(
            concat!("/", $service, "/", $method),
            post(
                move |State(querier): State<Arc<Querier>>, request: Request| {
                    let grpc = grpc.clone();
                    async move {
                        kiln_api::grpc_or(request, grpc, |request| {
                            connect_call(querier, request, $req, $resp, $gate, $call)
                        })
                        .await
                    }
                },
            ),
        )
    }};
}

impl Querier {
    /// All query routes.
    pub fn router(self: &Arc<Self>) -> Router {
        let grpc = QuerierServiceServer::new(GrpcHandler {
            querier: Arc::clone(self),
        })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let router: Router<Arc<Querier>> = Router::new()
            .route("/pyroscope/render", get(render))
            .route("/pyroscope/render-diff", get(render_diff))
            .route("/pyroscope/labels", get(labels))
            .route("/pyroscope/label-values", get(label_values))
            .route("/api/v1/pprof", get(pprof));
        let router = unary_route!(
            router,
            grpc,
            "ProfileTypes",
            "querier.v1.ProfileTypesRequest",
            "querier.v1.ProfileTypesResponse",
            |q: Arc<Querier>, t, r| async move { q.profile_types(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "LabelNames",
            "types.v1.LabelNamesRequest",
            "types.v1.LabelNamesResponse",
            |q: Arc<Querier>, t, r| async move { q.label_names(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "LabelValues",
            "types.v1.LabelValuesRequest",
            "types.v1.LabelValuesResponse",
            |q: Arc<Querier>, t, r| async move { q.label_values(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "Series",
            "querier.v1.SeriesRequest",
            "querier.v1.SeriesResponse",
            |q: Arc<Querier>, t, r| async move { q.series(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "SelectMergeStacktraces",
            "querier.v1.SelectMergeStacktracesRequest",
            "querier.v1.SelectMergeStacktracesResponse",
            |q: Arc<Querier>, t, r| async move { q.select_merge_stacktraces(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "SelectMergeSpanProfile",
            "querier.v1.SelectMergeSpanProfileRequest",
            "querier.v1.SelectMergeSpanProfileResponse",
            |q: Arc<Querier>, t, r| async move { q.select_merge_span_profile(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "SelectMergeProfile",
            "querier.v1.SelectMergeProfileRequest",
            "google.v1.Profile",
            |q: Arc<Querier>, t, r| async move { q.select_merge_profile(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "SelectSeries",
            "querier.v1.SelectSeriesRequest",
            "querier.v1.SelectSeriesResponse",
            |q: Arc<Querier>, t, r| async move { q.select_series(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "GetProfileStats",
            "types.v1.GetProfileStatsRequest",
            "types.v1.GetProfileStatsResponse",
            |q: Arc<Querier>, t, _r: GetProfileStatsRequest| async move { q.profile_stats(&t).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "Diff",
            "querier.v1.DiffRequest",
            "querier.v1.DiffResponse",
            |q: Arc<Querier>, t, r| async move { q.diff(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "AnalyzeQuery",
            "querier.v1.AnalyzeQueryRequest",
            "querier.v1.AnalyzeQueryResponse",
            |q: Arc<Querier>, t, r| async move { q.analyze_query(&t, r).await }
        );
        let router = unary_route!(
            router,
            grpc,
            "SelectHeatmap",
            "querier.v1.SelectHeatmapRequest",
            "querier.v1.SelectHeatmapResponse",
            |_q: Arc<Querier>, _t, _r: SelectHeatmapRequest| async move {
                Err::<SelectHeatmapResponse, _>(QuerierError::Unimplemented("SelectHeatmap"))
            }
        );
        let settings_grpc = SettingsServiceServer::new(Settings)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let router = unary_route!(
            router,
            settings_grpc,
            "settings.v1.SettingsService",
            "Get",
            "settings.v1.GetSettingsRequest",
            "settings.v1.GetSettingsResponse",
            Gate::Bypass,
            |_q: Arc<Querier>, _t, _r: GetSettingsRequest| async move {
                Ok(GetSettingsResponse::default())
            }
        );
        let router = unary_route!(
            router,
            settings_grpc,
            "settings.v1.SettingsService",
            "Set",
            "settings.v1.SetSettingsRequest",
            "settings.v1.SetSettingsResponse",
            Gate::Bypass,
            |_q: Arc<Querier>, _t, _r: SetSettingsRequest| async move {
                Err::<SetSettingsResponse, _>(QuerierError::Unimplemented(
                    "settings.v1.SettingsService/Set",
                ))
            }
        );
        let rules_grpc = RecordingRulesServiceServer::new(Settings)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let router = unary_route!(
            router,
            rules_grpc,
            "settings.v1.RecordingRulesService",
            "ListRecordingRules",
            "settings.v1.ListRecordingRulesRequest",
            "settings.v1.ListRecordingRulesResponse",
            Gate::Bypass,
            |_q: Arc<Querier>, _t, _r: ListRecordingRulesRequest| async move {
                Ok(ListRecordingRulesResponse::default())
            }
        );
        router
            .with_state(Arc::clone(self))
            // Connect and the HTTP endpoints answer gzip to clients that accept it (tonic
            // compresses gRPC itself; tower-http leaves `application/grpc` alone).
            .layer(
                CompressionLayer::new().gzip(true).compress_when(
                    // `/api/v1/pprof` answers gzipped pprof already.
                    DefaultPredicate::new()
                        .and(NotForContentType::const_new("application/octet-stream")),
                ),
            )
            .route_layer(kiln_api::require(
                Arc::clone(&self.config.auth),
                kiln_api::Right::Read,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                crate::metrics::time_requests,
            ))
    }
}

fn error_text(e: QuerierError) -> Response {
    with_retry_after(&e, (e.http_status(), format!("{e}\n")).into_response())
}

/// Answers a JSON endpoint of Pyroscope's HTTP API: authorize, run through the gate, encode,
/// bound the response.
async fn json_endpoint<T, Fut>(
    querier: Arc<Querier>,
    headers: HeaderMap,
    call: impl FnOnce(Arc<Querier>, TenantId) -> Fut,
) -> Response
where
    T: serde::Serialize,
    Fut: Future<Output = Result<T, QuerierError>>,
{
    let result = async {
        let tenant = querier
            .config
            .auth
            .authorize(&headers, kiln_api::Right::Read)?;
        let answer = querier
            .admit(&tenant, call(Arc::clone(&querier), tenant.clone()))
            .await?;
        let body = serde_json::to_vec(&answer)
            .map_err(|e| QuerierError::Internal(format!("cannot encode the response: {e}")))?;
        querier.check_response_bytes(body.len())?;
        Ok::<_, QuerierError>(body)
    }
    .await;
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error_text(e),
    }
}

async fn render(
    State(querier): State<Arc<Querier>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<RenderParams>,
) -> Response {
    if params.format.as_deref() != Some("dot") {
        return json_endpoint(querier, headers, |q, t| async move {
            q.render(&t, params).await
        })
        .await;
    }
    let result = async {
        let tenant = querier
            .config
            .auth
            .authorize(&headers, kiln_api::Right::Read)?;
        let text = querier
            .admit(&tenant, querier.render_dot(&tenant, params))
            .await?;
        querier.check_response_bytes(text.len())?;
        Ok::<_, QuerierError>(text)
    }
    .await;
    match result {
        Ok(text) => ([(header::CONTENT_TYPE, "text/vnd.graphviz")], text).into_response(),
        Err(e) => error_text(e),
    }
}

async fn render_diff(
    State(querier): State<Arc<Querier>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<RenderDiffParams>,
) -> Response {
    json_endpoint(querier, headers, |q, t| async move {
        q.render_diff(&t, params).await
    })
    .await
}

async fn labels(
    State(querier): State<Arc<Querier>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<LabelParams>,
) -> Response {
    json_endpoint(querier, headers, |q, t| async move {
        q.legacy_label_names(&t, params).await
    })
    .await
}

async fn label_values(
    State(querier): State<Arc<Querier>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<LabelParams>,
) -> Response {
    json_endpoint(querier, headers, |q, t| async move {
        q.legacy_label_values(&t, params).await
    })
    .await
}

async fn pprof(
    State(querier): State<Arc<Querier>>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<RenderParams>,
) -> Response {
    let result = async {
        let tenant = querier
            .config
            .auth
            .authorize(&headers, kiln_api::Right::Read)?;
        querier
            .admit(&tenant, querier.pprof_export(&tenant, params))
            .await
    }
    .await;
    match result {
        Ok(body) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile.pb.gz\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => error_text(e),
    }
}

/// The gRPC implementation of `QuerierService`.
#[derive(Debug)]
pub(crate) struct GrpcHandler {
    querier: Arc<Querier>,
}

impl GrpcHandler {
    async fn run<Req, Resp: Message, F, Fut>(
        &self,
        request: tonic::Request<Req>,
        call: F,
    ) -> Result<tonic::Response<Resp>, tonic::Status>
    where
        F: FnOnce(Arc<Querier>, TenantId, Req) -> Fut,
        Fut: Future<Output = Result<Resp, QuerierError>>,
    {
        let headers = request.metadata().clone().into_headers();
        let tenant = self
            .querier
            .config
            .auth
            .authorize(&headers, kiln_api::Right::Read)
            .map_err(QuerierError::from)?;
        let response = self
            .querier
            .admit(
                &tenant,
                call(
                    Arc::clone(&self.querier),
                    tenant.clone(),
                    request.into_inner(),
                ),
            )
            .await?;
        self.querier.check_response_bytes(response.encoded_len())?;
        Ok(tonic::Response::new(response))
    }
}

#[tonic::async_trait]
impl QuerierService for GrpcHandler {
    async fn profile_types(
        &self,
        r: tonic::Request<ProfileTypesRequest>,
    ) -> Result<tonic::Response<ProfileTypesResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move { q.profile_types(&t, r).await })
            .await
    }
    async fn label_values(
        &self,
        r: tonic::Request<LabelValuesRequest>,
    ) -> Result<tonic::Response<LabelValuesResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move { q.label_values(&t, r).await })
            .await
    }
    async fn label_names(
        &self,
        r: tonic::Request<LabelNamesRequest>,
    ) -> Result<tonic::Response<LabelNamesResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move { q.label_names(&t, r).await })
            .await
    }
    async fn series(
        &self,
        r: tonic::Request<SeriesRequest>,
    ) -> Result<tonic::Response<SeriesResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move { q.series(&t, r).await })
            .await
    }
    async fn select_merge_stacktraces(
        &self,
        r: tonic::Request<SelectMergeStacktracesRequest>,
    ) -> Result<tonic::Response<SelectMergeStacktracesResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move {
            q.select_merge_stacktraces(&t, r).await
        })
        .await
    }
    async fn select_merge_span_profile(
        &self,
        r: tonic::Request<SelectMergeSpanProfileRequest>,
    ) -> Result<tonic::Response<SelectMergeSpanProfileResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move {
            q.select_merge_span_profile(&t, r).await
        })
        .await
    }
    async fn select_merge_profile(
        &self,
        r: tonic::Request<SelectMergeProfileRequest>,
    ) -> Result<tonic::Response<Profile>, tonic::Status> {
        self.run(
            r,
            |q, t, r| async move { q.select_merge_profile(&t, r).await },
        )
        .await
    }
    async fn select_series(
        &self,
        r: tonic::Request<SelectSeriesRequest>,
    ) -> Result<tonic::Response<SelectSeriesResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move { q.select_series(&t, r).await })
            .await
    }
    async fn select_heatmap(
        &self,
        _: tonic::Request<SelectHeatmapRequest>,
    ) -> Result<tonic::Response<SelectHeatmapResponse>, tonic::Status> {
        Err(QuerierError::Unimplemented("SelectHeatmap").into())
    }
    async fn diff(
        &self,
        r: tonic::Request<DiffRequest>,
    ) -> Result<tonic::Response<DiffResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move { q.diff(&t, r).await })
            .await
    }
    async fn get_profile_stats(
        &self,
        r: tonic::Request<GetProfileStatsRequest>,
    ) -> Result<tonic::Response<GetProfileStatsResponse>, tonic::Status> {
        self.run(r, |q, t, _r| async move { q.profile_stats(&t).await })
            .await
    }
    async fn analyze_query(
        &self,
        r: tonic::Request<AnalyzeQueryRequest>,
    ) -> Result<tonic::Response<AnalyzeQueryResponse>, tonic::Status> {
        self.run(r, |q, t, r| async move { q.analyze_query(&t, r).await })
            .await
    }
}
