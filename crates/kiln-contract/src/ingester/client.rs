//! The gRPC client of an ingester in another process (`kiln.ingester.v1.IngesterService`).

use std::time::Duration;

use async_trait::async_trait;
use kiln_model::{NormalizedProfile, TenantId};
use kiln_proto::kiln::ingester::v1 as pb;
use kiln_proto::kiln::ingester::v1::ingester_service_client::IngesterServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::{IngestError, Ingester, profile_to_pb};
use crate::ChannelPool;
use crate::trace_context::TraceInterceptor;

/// An ingester in another process.
#[derive(Debug, Clone)]
pub struct IngesterClient {
    addr: String,
    client: IngesterServiceClient<InterceptedService<Channel, TraceInterceptor>>,
    timeout: Duration,
}

impl IngesterClient {
    /// A client of the ingester at `addr` (host:port of its --grpc-addr), dialing through
    /// `pool`; connects lazily. `timeout` bounds one push, flush interval and registration
    /// included.
    pub fn new(pool: &ChannelPool, addr: &str, timeout: Duration) -> Result<Self, IngestError> {
        let channel = pool
            .channel(addr)
            .map_err(|e| IngestError::Unavailable(format!("bad ingester address {addr:?}: {e}")))?;
        Ok(Self {
            addr: addr.to_string(),
            client: IngesterServiceClient::with_interceptor(channel, TraceInterceptor)
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
        self.push_profiles(&tenant, &profiles).await
    }
}

impl IngesterClient {
    /// [`Ingester::push`] without taking the profiles: they are encoded from the borrow, so a
    /// caller that tries the next ingester after a failure keeps them without a copy.
    pub async fn push_profiles(
        &self,
        tenant: &TenantId,
        profiles: &[NormalizedProfile],
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
