//! Flags of authentication, TLS, the cluster port and the servers' own limits.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::units::{parse_bytes, parse_duration};

/// Who may call what, over which transport, and how much a connection may hold.
#[derive(Clone, Debug, Args)]
pub struct SecurityArgs {
    /// YAML file of credentials (`tokens: [{token_sha256, tenant, rights}]`); with it, every
    /// request but /ready and /metrics needs a credential, whose tenant is the request's tenant.
    /// Re-read every --runtime-config.reload-period.
    #[arg(long = "auth.tokens-file", env = "KILN_AUTH_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// PEM certificate chain for TLS on the HTTP, gRPC and OTLP listeners (with
    /// --server.tls-key-file); re-read when the files change.
    #[arg(long = "server.tls-cert-file", env = "KILN_SERVER_TLS_CERT_FILE")]
    pub server_tls_cert_file: Option<PathBuf>,

    /// PEM private key of --server.tls-cert-file.
    #[arg(long = "server.tls-key-file", env = "KILN_SERVER_TLS_KEY_FILE")]
    pub server_tls_key_file: Option<PathBuf>,

    /// PEM certificate of the cluster's CA: cluster members present certificates it signed, on
    /// the gRPC port, both ways (mutual TLS).
    #[arg(long = "cluster.tls-ca-file", env = "KILN_CLUSTER_TLS_CA_FILE")]
    pub cluster_tls_ca_file: Option<PathBuf>,

    /// PEM certificate chain of this member, signed by the cluster CA.
    #[arg(long = "cluster.tls-cert-file", env = "KILN_CLUSTER_TLS_CERT_FILE")]
    pub cluster_tls_cert_file: Option<PathBuf>,

    /// PEM private key of --cluster.tls-cert-file.
    #[arg(long = "cluster.tls-key-file", env = "KILN_CLUSTER_TLS_KEY_FILE")]
    pub cluster_tls_key_file: Option<PathBuf>,

    /// Lets a cluster role start without the cluster TLS files: its gRPC port then serves
    /// anyone who can reach it (logged at every start).
    #[arg(long = "cluster.insecure", env = "KILN_CLUSTER_INSECURE",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false")]
    pub cluster_insecure: bool,

    /// Time a new connection has to deliver its first complete request header (and a TLS
    /// handshake); HTTP/1 connections also get it for every later header.
    #[arg(long = "server.header-read-timeout", env = "KILN_SERVER_HEADER_READ_TIMEOUT",
          default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time a request body may take to arrive.
    #[arg(long = "server.body-read-timeout", env = "KILN_SERVER_BODY_READ_TIMEOUT",
          default_value = "60s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// A connection with no request in flight for this long is closed.
    #[arg(long = "server.idle-timeout", env = "KILN_SERVER_IDLE_TIMEOUT",
          default_value = "2m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Open connections per listener; connections beyond it are closed at once.
    #[arg(
        long = "server.max-connections",
        env = "KILN_SERVER_MAX_CONNECTIONS",
        default_value = "4096"
    )]
    pub max_connections: usize,

    /// Request body bytes being received or processed at once, per process; a request that
    /// would go over it waits briefly, then gets 503.
    #[arg(long = "server.max-inflight-bytes", env = "KILN_SERVER_MAX_INFLIGHT_BYTES",
          default_value = "1GiB", value_parser = parse_bytes)]
    pub max_inflight_bytes: usize,
}

impl SecurityArgs {
    /// True when the cluster's mutual TLS files are all given.
    pub fn cluster_tls(&self) -> bool {
        self.cluster_tls_ca_file.is_some()
            && self.cluster_tls_cert_file.is_some()
            && self.cluster_tls_key_file.is_some()
    }
}
