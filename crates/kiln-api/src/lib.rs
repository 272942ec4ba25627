//! Request plumbing shared by every role that serves Kiln's APIs: the unary Connect protocol
//! (proto and JSON bodies, gzip, JSON errors), serving Connect and gRPC on one path, tenant
//! resolution from `X-Scope-OrgID`, and the errors all of these produce.

mod auth;
mod connect;
mod error;
mod inflight;
mod serve;
pub mod tls;

pub use auth::{
    Auth, AuthFuture, Right, TENANT_HEADER, Tokens, presented_token, refusal, refusal_message,
    require,
};
pub use connect::{
    Codec, connect_code, decode_content_encoding, error_response, grpc_or, read_body,
    set_body_read_timeout,
};
pub use error::{RequestError, grpc_code};
pub use inflight::InFlightBytes;
pub use serve::{ServeOptions, serve};
