//! `push.v1.PusherService/Push` over Connect (proto and JSON) and gRPC.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use kiln_api::{Codec, RequestError};
use kiln_config::Limits;
use kiln_model::{
    DecodeBudget, LABEL_SERVICE_NAME, Labels, NormalizeOptions, NormalizedProfile, TenantId,
    normalize, validate_label_name, validate_label_value,
};
use kiln_proto::push::v1::pusher_service_server::{PusherService, PusherServiceServer};
use kiln_proto::push::v1::{PushRequest, PushResponse};

use crate::{Distributor, DistributorError};

const REQUEST_TYPE: &str = "push.v1.PushRequest";
const RESPONSE_TYPE: &str = "push.v1.PushResponse";

/// The service name of series that carry none, as Pyroscope names it.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// The gRPC half of the endpoint, called for `application/grpc` requests.
pub(crate) type GrpcPusher = PusherServiceServer<GrpcHandler>;

pub(crate) fn grpc_service(distributor: Arc<Distributor>) -> GrpcPusher {
    let limit = distributor.config.max_body_bytes;
    PusherServiceServer::new(GrpcHandler { distributor })
        .max_decoding_message_size(limit)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
}

/// Serves the path: gRPC requests go to tonic, everything else is Connect.
pub(crate) async fn handle(
    State(distributor): State<Arc<Distributor>>,
    request: Request,
    grpc: GrpcPusher,
) -> Response {
    kiln_api::grpc_or(request, grpc, |request| async move {
        let tenant = distributor.tenant_label(request.headers());
        match handle_connect(&distributor, request).await {
            Ok(response) => response,
            Err(e) => {
                distributor.metrics.rejected("push", &tenant, e.reason());
                tracing::debug!(error = %e, "push rejected");
                let status = e.http_status();
                kiln_api::error_response(status, kiln_api::connect_code(status), &e.to_string())
            }
        }
    })
    .await
}

async fn handle_connect(
    distributor: &Arc<Distributor>,
    request: Request,
) -> Result<Response, DistributorError> {
    let (parts, body) = request.into_parts();
    let codec = Codec::require(&parts.headers)?;
    let tenant = distributor
        .config
        .auth
        .authorize(&parts.headers, kiln_api::Right::Write)?;
    let limits = distributor.config.limits.limits(tenant.as_str());
    let body = kiln_api::read_body(body, limits.max_body_bytes).await?;
    let body =
        kiln_api::decode_content_encoding(&parts.headers, body, limits.max_decompressed_bytes)?;
    let request: PushRequest = codec.decode(REQUEST_TYPE, &body)?;
    distributor.push(tenant, request).await?;
    Ok(codec
        .respond(RESPONSE_TYPE, &PushResponse {})
        .into_response())
}

impl Distributor {
    /// Decodes, validates and stores every profile of a push request; all or nothing.
    ///
    /// The rate limit is taken from the bytes received, and every profile is decoded within one
    /// [`DecodeBudget`] and normalized within the label and series limits, so that each limit
    /// refuses the request before the work it bounds.
    pub async fn push(
        &self,
        tenant: TenantId,
        request: PushRequest,
    ) -> Result<(), DistributorError> {
        let limits = self.config.limits.limits(tenant.as_str());
        let bytes: u64 = request
            .series
            .iter()
            .flat_map(|s| &s.samples)
            .map(|s| s.raw_profile.len() as u64)
            .sum();
        let count: u64 = request.series.iter().map(|s| s.samples.len() as u64).sum();
        self.admit(&tenant, &limits, bytes, count)?;
        let decode = crate::limits::decode_limits(&limits);
        let normalize_limits = crate::limits::normalize_limits(&limits);
        let now = now_nanos();
        let profiles = tokio::task::spawn_blocking(move || {
            let mut budget = DecodeBudget::new(decode);
            let mut profiles = Vec::new();
            for series in request.series {
                let labels = series_labels(&series.labels)?;
                for sample in series.samples {
                    let pprof = budget.decode_pprof(sample.raw_profile)?;
                    let options = NormalizeOptions {
                        now_nanos: now,
                        profile_id: (!sample.id.is_empty()).then_some(sample.id),
                        limits: normalize_limits,
                        ..NormalizeOptions::default()
                    };
                    profiles.push(normalize(pprof, &labels, options)?);
                }
            }
            Ok::<_, DistributorError>(profiles)
        })
        .await
        .map_err(|e| RequestError::BadRequest(format!("decoding panicked: {e}")))?
        .map_err(|e| self.refused(&tenant, e, count))?;
        self.store("push", tenant, profiles, bytes).await
    }

    /// Takes `bytes` from the tenant's ingestion rate before anything is decoded; a refusal
    /// counts the request's `profiles` as discarded.
    pub(crate) fn admit(
        &self,
        tenant: &TenantId,
        limits: &Limits,
        bytes: u64,
        profiles: u64,
    ) -> Result<(), DistributorError> {
        self.config
            .limits
            .admit(tenant.as_str(), limits, bytes)
            .map_err(|e| self.refused(tenant, e.into(), profiles))
    }

    /// `error` as the tenant's limit error where it is one, counting the request's `profiles`
    /// as discarded for that reason.
    pub(crate) fn refused(
        &self,
        tenant: &TenantId,
        error: DistributorError,
        profiles: u64,
    ) -> DistributorError {
        let error = error.for_tenant(tenant.as_str());
        if let DistributorError::Limit(limit) = &error {
            self.metrics
                .discarded(tenant.as_str(), limit.reason(), profiles);
        }
        error
    }

    /// Hands normalized profiles to the ingester and counts them, after the limits that need
    /// them normalized: time, samples per type, labels (again) and active series.
    #[tracing::instrument(name = "distributor.store", skip_all,
                          fields(protocol, tenant = %tenant, profiles = profiles.len()))]
    pub(crate) async fn store(
        &self,
        protocol: &str,
        tenant: TenantId,
        profiles: Vec<NormalizedProfile>,
        bytes: u64,
    ) -> Result<(), DistributorError> {
        let mut profiles = profiles;
        let limits = self.config.limits.limits(tenant.as_str());
        let checked = crate::limits::apply(tenant.as_str(), &limits, &mut profiles, now_nanos())
            .and_then(|truncations| {
                self.active_series.admit(
                    tenant.as_str(),
                    limits.max_series_per_tenant,
                    &profiles,
                    std::time::Instant::now(),
                )?;
                Ok(truncations)
            });
        self.metrics
            .set_tracked("rate_limit", self.config.limits.tracked_tenants());
        self.metrics
            .set_tracked("active_series", self.active_series.tracked_tenants());
        let truncations = match checked {
            Ok(truncations) => truncations,
            Err(e) => {
                self.metrics
                    .discarded(tenant.as_str(), e.reason(), profiles.len() as u64);
                return Err(e.into());
            }
        };
        self.metrics
            .truncated(tenant.as_str(), "stack_depth", truncations.deep_stacks);
        self.metrics
            .truncated(tenant.as_str(), "symbol_length", truncations.long_symbols);
        let count = profiles.len() as u64;
        self.ingester.push(tenant, profiles).await?;
        self.metrics.accepted(protocol, count, bytes);
        Ok(())
    }
}

pub(crate) fn series_labels(
    pairs: &[kiln_proto::types::v1::LabelPair],
) -> Result<Labels, DistributorError> {
    let mut labels = Labels::default();
    for pair in pairs {
        validate_label_name(&pair.name)?;
        validate_label_value(&pair.name, &pair.value)?;
        if labels.get(&pair.name).is_some() {
            return Err(kiln_model::ModelError::DuplicateLabel(pair.name.clone()).into());
        }
        labels.set(pair.name.clone(), pair.value.clone());
    }
    if labels.get(LABEL_SERVICE_NAME).is_none() {
        labels.set(LABEL_SERVICE_NAME.to_string(), UNKNOWN_SERVICE.to_string());
    }
    Ok(labels)
}

pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The gRPC implementation of `PusherService`.
#[derive(Debug)]
pub(crate) struct GrpcHandler {
    distributor: Arc<Distributor>,
}

#[tonic::async_trait]
impl PusherService for GrpcHandler {
    async fn push(
        &self,
        request: tonic::Request<PushRequest>,
    ) -> Result<tonic::Response<PushResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let result = async {
            let tenant = self
                .distributor
                .config
                .auth
                .authorize(&headers, kiln_api::Right::Write)?;
            self.distributor.push(tenant, request.into_inner()).await
        }
        .await;
        match result {
            Ok(()) => Ok(tonic::Response::new(PushResponse {})),
            Err(e) => {
                let tenant = self.distributor.tenant_label(&headers);
                self.distributor
                    .metrics
                    .rejected("push_grpc", &tenant, e.reason());
                Err(e.into())
            }
        }
    }
}
