//! OTLP profiles: gRPC `ProfilesService/Export` and OTLP/HTTP `POST /v1development/profiles`.

pub(crate) mod json;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, StatusCode, header};
use kiln_api::RequestError;
use kiln_model::TenantId;
use kiln_model::formats::otlp;
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use kiln_proto::opentelemetry::proto::collector::profiles::v1development::{
    ExportProfilesPartialSuccess, ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};
use prost::Message;

use crate::push::now_nanos;
use crate::{Distributor, DistributorError};

pub(crate) const REQUEST_TYPE: &str =
    "opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceRequest";
const RESPONSE_TYPE: &str =
    "opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceResponse";
/// The gRPC method path.
pub const EXPORT_PATH: &str =
    "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";
/// The OTLP/HTTP path.
pub const HTTP_PATH: &str = "/v1development/profiles";
/// At most this much of the rejection reasons goes into a partial success message.
const MAX_ERROR_MESSAGE: usize = 4096;

impl Distributor {
    /// Converts ([`otlp::convert_request`]) and stores an OTLP export. Profiles that cannot be
    /// used are listed in the partial success; when none can be used the request fails as a
    /// whole (400 / INVALID_ARGUMENT).
    pub async fn export_otlp(
        &self,
        tenant: TenantId,
        request: ExportProfilesServiceRequest,
    ) -> Result<ExportProfilesServiceResponse, DistributorError> {
        let bytes = request.encoded_len() as u64;
        let count: u64 = request
            .resource_profiles
            .iter()
            .flat_map(|r| &r.scope_profiles)
            .map(|s| s.profiles.len() as u64)
            .sum();
        let limits = self.config.limits.limits(tenant.as_str());
        self.admit(&tenant, &limits, bytes, count)?;
        let convert = crate::limits::convert_limits(&limits);
        let now = now_nanos();
        let converted = tokio::task::spawn_blocking(move || {
            otlp::convert_request_within(request, now, &convert)
        })
        .await
        .map_err(|e| RequestError::BadRequest(format!("conversion panicked: {e}")))?
        .map_err(|e| self.refused(&tenant, kiln_model::ModelError::Limit(e).into(), count))?;
        let message = rejection_message(&converted.rejected);
        if converted.total > 0 && converted.rejected.len() == converted.total {
            return Err(
                RequestError::BadRequest(format!("every profile was rejected: {message}")).into(),
            );
        }
        self.store("otlp", tenant, converted.profiles, bytes)
            .await?;
        let partial_success =
            (!converted.rejected.is_empty()).then_some(ExportProfilesPartialSuccess {
                rejected_profiles: converted.rejected.len() as i64,
                error_message: message,
            });
        Ok(ExportProfilesServiceResponse { partial_success })
    }

    /// The gRPC service, for the OTLP gRPC listener and the HTTP listener.
    fn otlp_grpc(self: &Arc<Self>) -> ProfilesServiceServer<OtlpGrpc> {
        ProfilesServiceServer::new(OtlpGrpc {
            distributor: Arc::clone(self),
        })
        .max_decoding_message_size(self.config.max_decompressed_bytes)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
    }

    /// OTLP routes: gRPC Export and OTLP/HTTP, for the main HTTP listener and the OTLP ones.
    pub fn otlp_router(self: &Arc<Self>) -> Router {
        let grpc = self.otlp_grpc();
        Router::new()
            .route(HTTP_PATH, post(http_export))
            .route(
                EXPORT_PATH,
                post(move |request: Request| {
                    let grpc = grpc.clone();
                    async move {
                        kiln_api::grpc_or(request, grpc, |_| async {
                            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "use application/grpc\n")
                                .into_response()
                        })
                        .await
                    }
                }),
            )
            .with_state(Arc::clone(self))
            .route_layer(kiln_api::require(
                Arc::clone(&self.config.auth),
                kiln_api::Right::Write,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                crate::metrics::time_pushes,
            ))
    }
}

/// The reasons of the rejected profiles, `; `-separated, for the partial success or the 400.
/// Every [`otlp::OtlpError`] is the sender's fault: the transport's status is decided by how
/// many profiles were rejected, not by which error.
fn rejection_message(rejected: &[otlp::Rejected]) -> String {
    let mut message = String::new();
    for rejected in rejected {
        if message.len() < MAX_ERROR_MESSAGE {
            if !message.is_empty() {
                message.push_str("; ");
            }
            let _ = write!(message, "{rejected}");
        }
    }
    message
}

/// How an OTLP/HTTP body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    match content_type.split(';').next()?.trim() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

async fn http_export(State(distributor): State<Arc<Distributor>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(encoding) = encoding(&parts.headers) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type: use application/x-protobuf or application/json\n",
        )
            .into_response();
    };
    let result = async {
        let tenant = distributor
            .config
            .auth
            .authorize(&parts.headers, kiln_api::Right::Write)?;
        let limits = distributor.config.limits.limits(tenant.as_str());
        let body = kiln_api::read_body(body, limits.max_body_bytes).await?;
        let body =
            kiln_api::decode_content_encoding(&parts.headers, body, limits.max_decompressed_bytes)?;
        let request = match encoding {
            Encoding::Protobuf => ExportProfilesServiceRequest::decode(body)
                .map_err(|e| RequestError::BadRequest(format!("malformed OTLP protobuf: {e}")))?,
            Encoding::Json => {
                let mut value: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| RequestError::BadRequest(format!("malformed OTLP/JSON: {e}")))?;
                json::hex_ids_to_base64(&mut value);
                let text = serde_json::to_vec(&value).expect("a JSON value serializes");
                kiln_proto::json::from_json(REQUEST_TYPE, &text)
                    .map_err(|e| RequestError::BadRequest(format!("malformed OTLP/JSON: {e}")))?
            }
        };
        distributor.export_otlp(tenant, request).await
    }
    .await;
    match result {
        Ok(response) => {
            let (content_type, body) = match encoding {
                Encoding::Protobuf => ("application/x-protobuf", response.encode_to_vec()),
                Encoding::Json => (
                    "application/json",
                    kiln_proto::json::to_json(RESPONSE_TYPE, &response).unwrap_or_default(),
                ),
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(e) => {
            let tenant = distributor.tenant_label(&parts.headers);
            distributor
                .metrics
                .rejected("otlp_http", &tenant, e.reason());
            let status = e.http_status();
            let code = kiln_api::grpc_code(status) as i32;
            let rpc_status = kiln_proto::google::rpc::Status {
                code,
                message: e.to_string(),
            };
            let mut response = match encoding {
                Encoding::Protobuf => (
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    rpc_status.encode_to_vec(),
                )
                    .into_response(),
                Encoding::Json => (
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::json!({"code": code, "message": rpc_status.message}).to_string(),
                )
                    .into_response(),
            };
            *response.status_mut() = status;
            response
        }
    }
}

/// The gRPC implementation of `ProfilesService`.
#[derive(Debug)]
pub(crate) struct OtlpGrpc {
    distributor: Arc<Distributor>,
}

#[tonic::async_trait]
impl ProfilesService for OtlpGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let result = async {
            let tenant = self
                .distributor
                .config
                .auth
                .authorize(&headers, kiln_api::Right::Write)?;
            self.distributor
                .export_otlp(tenant, request.into_inner())
                .await
        }
        .await;
        match result {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(e) => {
                let tenant = self.distributor.tenant_label(&headers);
                self.distributor
                    .metrics
                    .rejected("otlp_grpc", &tenant, e.reason());
                Err(e.into())
            }
        }
    }
}
