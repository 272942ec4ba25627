//! The gRPC client of a querier in another process (`kiln.querier.v1.QueryPartService`).

use std::time::Duration;

use async_trait::async_trait;
use kiln_proto::kiln::querier::v1::query_part_service_client::QueryPartServiceClient;
use kiln_proto::kiln::querier::v1::{ExecutePartRequest, ExecutePartResponse};
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::{PartError, QueryParts};
use crate::ChannelPool;

/// A querier in another process.
#[derive(Debug, Clone)]
pub struct QueryPartClient {
    addr: String,
    client: QueryPartServiceClient<Channel>,
    timeout: Duration,
}

impl QueryPartClient {
    /// A client of the querier at `addr` (host:port of its cluster address), dialing through
    /// `pool`; connects lazily. `timeout` bounds one part; `max_message_bytes` bounds a result.
    pub fn new(
        pool: &ChannelPool,
        addr: &str,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<Self, PartError> {
        let channel = pool
            .channel(addr)
            .map_err(|e| PartError::Unavailable(format!("bad querier address {addr:?}: {e}")))?;
        Ok(Self {
            addr: addr.to_string(),
            client: QueryPartServiceClient::new(channel)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            timeout,
        })
    }

    /// The querier's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

#[async_trait]
impl QueryParts for QueryPartClient {
    async fn execute(&self, request: ExecutePartRequest) -> Result<ExecutePartResponse, PartError> {
        let mut request = Request::new(request);
        if !self.timeout.is_zero() {
            request.set_timeout(self.timeout);
        }
        match self.client.clone().execute(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                let reason = format!("querier {}: {}", self.addr, status.message());
                Err(match status.code() {
                    Code::ResourceExhausted => PartError::OverBudget(status.message().to_string()),
                    Code::InvalidArgument => PartError::Invalid(reason),
                    _ => PartError::Unavailable(reason),
                })
            }
        }
    }
}
