//! Request plumbing shared by every role that serves Kiln's APIs: the unary Connect protocol
//! (proto and JSON bodies, gzip, JSON errors), serving Connect and gRPC on one path, tenant
//! resolution from `X-Scope-OrgID`, and the errors all of these produce.

mod connect;
mod error;
mod tenant;

pub use connect::{
    Codec, connect_code, decode_content_encoding, error_response, grpc_or, read_body,
};
pub use error::{RequestError, grpc_code};
pub use tenant::{TENANT_HEADER, TenantResolver};
