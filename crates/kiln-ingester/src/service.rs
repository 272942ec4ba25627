//! The ingester's gRPC service (`kiln.ingester.v1.IngesterService`) and its client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kiln_model::{NormalizedProfile, TenantId};
use kiln_proto::kiln::ingester::v1 as pb;
use kiln_proto::kiln::ingester::v1::ingester_service_client::IngesterServiceClient;
use kiln_proto::kiln::ingester::v1::ingester_service_server::{
    IngesterService, IngesterServiceServer,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::wire::{profile_from_pb, profile_to_pb};
use crate::{IngestError, Ingester};

/// Serves pushes from distributors into a local [`Ingester`].
#[derive(Debug, Clone)]
pub struct IngesterGrpc {
    ingester: Arc<dyn Ingester>,
}

impl IngesterGrpc {
    /// The service as tonic routes (no message size cap: the distributor enforces the limits).
    pub fn server(ingester: Arc<dyn Ingester>) -> IngesterServiceServer<Self> {
        IngesterServiceServer::new(Self { ingester })
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
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
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        self.ingester.push(tenant, profiles).await?;
        Ok(Response::new(pb::PushResponse {}))
    }
}

/// An ingester in another process.
#[derive(Debug, Clone)]
pub struct IngesterClient {
    addr: String,
    client: IngesterServiceClient<Channel>,
    timeout: Duration,
}

impl IngesterClient {
    /// A client of the ingester at `addr` (host:port of its --grpc-addr); connects lazily.
    /// `timeout` bounds one push, flush interval and registration included.
    pub fn new(addr: &str, timeout: Duration) -> Result<Self, IngestError> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| IngestError::Unavailable(format!("bad ingester address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            addr: addr.to_string(),
            client: IngesterServiceClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            timeout,
        })
    }

    /// The ingester's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

#[async_trait]
impl Ingester for IngesterClient {
    async fn push(
        &self,
        tenant: TenantId,
        profiles: Vec<NormalizedProfile>,
    ) -> Result<(), IngestError> {
        let mut request = Request::new(pb::PushRequest {
            tenant: tenant.as_str().to_string(),
            profiles: profiles.iter().map(profile_to_pb).collect(),
        });
        request.set_timeout(self.timeout);
        match self.client.clone().push(request).await {
            Ok(_) => Ok(()),
            Err(status) => {
                let reason = format!("{}: {}", self.addr, status.message());
                Err(match status.code() {
                    Code::ResourceExhausted => IngestError::Saturated(reason),
                    Code::InvalidArgument => IngestError::Invalid(reason),
                    _ => IngestError::Unavailable(reason),
                })
            }
        }
    }
}
