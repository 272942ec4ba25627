//! The gRPC services of a metastore node on --grpc-addr: what cluster members call (the client
//! API, the compaction API, Raft) and what operators call (the admin API), as two sets of routes
//! so that a process can serve the admin API alone (all-in-one mode) and guard it apart.

mod compaction;

use std::sync::Arc;

use kiln_proto::kiln::metastore::v1 as pb;
use kiln_proto::kiln::metastore::v1::compaction_service_server::CompactionServiceServer;
use kiln_proto::kiln::metastore::v1::metastore_admin_service_server::{
    MetastoreAdminService, MetastoreAdminServiceServer,
};
use kiln_proto::kiln::metastore::v1::metastore_service_server::{
    MetastoreService, MetastoreServiceServer,
};
use kiln_proto::kiln::raft::v1::raft_service_server::RaftServiceServer;
use tonic::{Request, Response, Status};

use kiln_contract::metastore::wire;

use crate::network::RaftGrpc;
use crate::node::MetastoreNode;

/// The largest message a metastore service accepts or sends: index answers of hundreds of
/// thousands of blocks and Raft batches fit; a stranger's 4 GB message does not.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The client, compaction and admin services of one node.
#[derive(Clone, Debug)]
pub struct MetastoreGrpc {
    node: Arc<MetastoreNode>,
}

impl MetastoreGrpc {
    /// Serves `node`.
    pub fn new(node: Arc<MetastoreNode>) -> Self {
        Self { node }
    }

    /// The services cluster members call (client API, compaction API, Raft), messages bounded
    /// by [`MAX_MESSAGE_BYTES`].
    pub fn member_routes(node: Arc<MetastoreNode>) -> tonic::service::Routes {
        let raft = RaftServiceServer::new(RaftGrpc::new(node.raft().clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let grpc = Self::new(node);
        tonic::service::Routes::new(raft)
            .add_service(
                MetastoreServiceServer::new(grpc.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                CompactionServiceServer::new(grpc)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
    }

    /// The admin API (`kiln admin`), messages bounded by [`MAX_MESSAGE_BYTES`].
    pub fn admin_routes(node: Arc<MetastoreNode>) -> tonic::service::Routes {
        tonic::service::Routes::new(
            MetastoreAdminServiceServer::new(Self::new(node))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
    }

    /// Both, as one set of routes (tests and tools that talk to a node directly).
    pub fn routes(node: Arc<MetastoreNode>) -> tonic::service::Routes {
        let admin = MetastoreAdminServiceServer::new(Self::new(Arc::clone(&node)))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Self::member_routes(node).add_service(admin)
    }
}

#[tonic::async_trait]
impl MetastoreService for MetastoreGrpc {
    async fn add_blocks(
        &self,
        request: Request<pb::AddBlocksRequest>,
    ) -> Result<Response<pb::AddBlocksResponse>, Status> {
        let blocks = request
            .into_inner()
            .blocks
            .into_iter()
            .map(wire::block_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let added = self.node.add_blocks(blocks).await?;
        Ok(Response::new(pb::AddBlocksResponse { added }))
    }

    async fn query_blocks(
        &self,
        request: Request<pb::QueryBlocksRequest>,
    ) -> Result<Response<pb::QueryBlocksResponse>, Status> {
        let query = wire::query_from_pb(request.into_inner())?;
        let blocks = self.node.query_blocks(&query).await?;
        Ok(Response::new(pb::QueryBlocksResponse {
            blocks: blocks.iter().map(wire::block_to_pb).collect(),
        }))
    }

    async fn list_tenants(
        &self,
        _request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let tenants = self.node.tenants().await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(wire::tenant_to_pb).collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        if request.role.is_empty() || request.addr.is_empty() {
            return Err(Status::invalid_argument(
                "a heartbeat needs a role and an address",
            ));
        }
        let role = wire::role_from_pb(&request.role)?;
        self.node.heartbeat(role, &request.addr).await?;
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let role = request.into_inner().role;
        let role = match role.as_str() {
            "" => None,
            name => Some(wire::role_from_pb(name)?),
        };
        let members = self.node.members(role).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.into_iter().map(wire::member_to_pb).collect(),
        }))
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let read_index = self.node.read_index().await?;
        Ok(Response::new(pb::ReadIndexResponse { read_index }))
    }

    async fn list_blocks(
        &self,
        request: Request<pb::ListBlocksRequest>,
    ) -> Result<Response<pb::ListBlocksResponse>, Status> {
        let tenant = request.into_inner().tenant;
        let tenant = (!tenant.is_empty()).then_some(tenant.as_str());
        let blocks = self.node.list_blocks(tenant).await?;
        Ok(Response::new(pb::ListBlocksResponse {
            blocks: blocks.iter().map(wire::block_to_pb).collect(),
        }))
    }
}

#[tonic::async_trait]
impl MetastoreAdminService for MetastoreGrpc {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.node.status().await))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        let addr = request.into_inner().addr;
        if addr.is_empty() {
            return Err(Status::invalid_argument(
                "add node needs the node's address",
            ));
        }
        let node = self.node.add_node(&addr).await?;
        Ok(Response::new(pb::AddNodeResponse { node: Some(node) }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let addr = request.into_inner().addr;
        self.node.remove_node(&addr).await?;
        Ok(Response::new(pb::RemoveNodeResponse {}))
    }

    async fn list_blocks(
        &self,
        request: Request<pb::ListBlocksRequest>,
    ) -> Result<Response<pb::ListBlocksResponse>, Status> {
        MetastoreService::list_blocks(self, request).await
    }

    async fn remove_block(
        &self,
        request: Request<pb::RemoveBlockRequest>,
    ) -> Result<Response<pb::RemoveBlockResponse>, Status> {
        let removed = self.node.remove_block(&request.into_inner().id).await?;
        Ok(Response::new(pb::RemoveBlockResponse { removed }))
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        let blocks = self
            .node
            .delete_tenant(&request.into_inner().tenant)
            .await?;
        Ok(Response::new(pb::DeleteTenantResponse { blocks }))
    }

    async fn compaction_status(
        &self,
        request: Request<pb::CompactionStatusRequest>,
    ) -> Result<Response<pb::CompactionStatusResponse>, Status> {
        kiln_proto::kiln::metastore::v1::compaction_service_server::CompactionService::compaction_status(self, request).await
    }
}
