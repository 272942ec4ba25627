//! The compaction service: compactors' polls, retention and the compaction status.

use kiln_contract::metastore::wire;
use kiln_proto::kiln::metastore::v1 as pb;
use kiln_proto::kiln::metastore::v1::compaction_service_server::CompactionService;
use tonic::{Request, Response, Status};

use super::MetastoreGrpc;

#[tonic::async_trait]
impl CompactionService for MetastoreGrpc {
    async fn poll_compaction(
        &self,
        request: Request<pb::PollCompactionRequest>,
    ) -> Result<Response<pb::PollCompactionResponse>, Status> {
        let poll = wire::poll_from_pb(request.into_inner())?;
        let assignment = self.node.poll_compaction(poll).await?;
        Ok(Response::new(wire::assignment_to_pb(&assignment)))
    }

    async fn apply_retention(
        &self,
        request: Request<pb::ApplyRetentionRequest>,
    ) -> Result<Response<pb::ApplyRetentionResponse>, Status> {
        let cutoffs = wire::cutoffs_from_pb(request.into_inner());
        let removed = self.node.apply_retention(cutoffs).await?;
        Ok(Response::new(wire::removals_to_pb(&removed)))
    }

    async fn compaction_status(
        &self,
        _request: Request<pb::CompactionStatusRequest>,
    ) -> Result<Response<pb::CompactionStatusResponse>, Status> {
        let status = self.node.compaction_status().await?;
        Ok(Response::new(wire::status_to_pb(&status)))
    }
}
