//! One module per role: each starts its role from the parsed config and hands back what the
//! server composes (HTTP routes, gRPC services, listeners, handles to stop it by).

pub(crate) mod compactor;
pub(crate) mod distributor;
pub(crate) mod heartbeat;
pub(crate) mod ingester;
pub(crate) mod metastore;
pub(crate) mod querier;
pub(crate) mod storage;
