//! The ingester's gRPC service (`kiln.ingester.v1.IngesterService`); its client is in
//! `kiln-contract`.

use std::sync::Arc;

use kiln_contract::ingester::{Ingester, profile_from_pb};
use kiln_model::TenantId;
use kiln_proto::kiln::ingester::v1 as pb;
use kiln_proto::kiln::ingester::v1::ingester_service_server::{
    IngesterService, IngesterServiceServer,
};
use tonic::{Request, Response, Status};

/// Serves pushes from distributors into a local [`Ingester`].
#[derive(Debug, Clone)]
pub struct IngesterGrpc {
    ingester: Arc<dyn Ingester>,
}

impl IngesterGrpc {
    /// The service, accepting pushes of at most `max_message_bytes` (what the configured request
    /// limits let a distributor send: a push is at most a decompressed body's worth of
    /// profiles).
    pub fn server(
        ingester: Arc<dyn Ingester>,
        max_message_bytes: usize,
    ) -> IngesterServiceServer<Self> {
        IngesterServiceServer::new(Self { ingester })
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

#[tonic::async_trait]
impl IngesterService for IngesterGrpc {
    async fn push(
        &self,
        request: Request<pb::PushRequest>,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let request = request.into_inner();
        let tenant = TenantId::new(&request.tenant)
            .map_err(|e| Status::invalid_argument(format!("tenant {:?}: {e}", request.tenant)))?;
        let profiles = request
            .profiles
            .into_iter()
            .map(profile_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        self.ingester.push(tenant, profiles).await?;
        Ok(Response::new(pb::PushResponse {}))
    }
}
