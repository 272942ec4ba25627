//! How this process's listeners and clients are secured: credentials, TLS on the public
//! listeners, mutual TLS on the cluster port, and the servers' own limits.

use std::sync::Arc;

use anyhow::{Context, bail};
use kiln_api::tls::{self, CertFiles};
use kiln_api::{Auth, InFlightBytes, ServeOptions};
use kiln_config::{ServerArgs, Target};
use kiln_contract::ClusterTls;
use tokio_util::sync::CancellationToken;

/// What the listeners and cluster clients of this process use.
#[derive(Debug)]
pub(crate) struct Transport {
    /// Who may call what.
    pub(crate) auth: Arc<Auth>,
    /// The HTTP and OTLP listeners.
    pub(crate) public: ServeOptions,
    /// The gRPC (cluster) listener: mutual TLS in a cluster that has a CA.
    pub(crate) cluster: ServeOptions,
    /// For connections to other members; `None` for plaintext.
    pub(crate) cluster_tls: Option<ClusterTls>,
    /// Request body bytes in flight, for the whole process.
    pub(crate) inflight: InFlightBytes,
}

/// Sets up credentials and TLS from the flags; refuses a cluster role without cluster TLS
/// unless `--cluster.insecure` is given.
pub(crate) fn transport(args: &ServerArgs, stop: &CancellationToken) -> anyhow::Result<Transport> {
    let flags = &args.security;
    kiln_api::set_body_read_timeout(flags.body_read_timeout);
    raise_open_files_limit(flags.max_connections);
    let auth = match &flags.tokens_file {
        Some(path) => {
            let auth = Auth::from_file(path, args.runtime_config_reload_period, stop.clone())
                .map_err(anyhow::Error::msg)?;
            tracing::info!(file = %path.display(), "credentials required on every API call");
            auth
        }
        None => Auth::open(args.multitenancy_enabled),
    };
    let server_tls = match (&flags.server_tls_cert_file, &flags.server_tls_key_file) {
        (Some(cert), Some(key)) => {
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            Some(tls::acceptor(&files, None, stop.clone()).context("--server.tls-cert-file")?)
        }
        (None, None) => None,
        _ => bail!("TLS needs both --server.tls-cert-file and --server.tls-key-file"),
    };
    let base = ServeOptions {
        tls: server_tls,
        header_read_timeout: flags.header_read_timeout,
        idle_timeout: flags.idle_timeout,
        max_connections: flags.max_connections,
    };
    let all_in_one = args.runs(Target::All);
    let given = [
        &flags.cluster_tls_ca_file,
        &flags.cluster_tls_cert_file,
        &flags.cluster_tls_key_file,
    ]
    .iter()
    .filter(|f| f.is_some())
    .count();
    let (cluster, cluster_tls) = match (
        &flags.cluster_tls_ca_file,
        &flags.cluster_tls_cert_file,
        &flags.cluster_tls_key_file,
    ) {
        (Some(ca), Some(cert), Some(key)) => {
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let acceptor =
                tls::acceptor(&files, Some(ca), stop.clone()).context("--cluster.tls-cert-file")?;
            let client = ClusterTls::from_files(ca, cert, key).map_err(anyhow::Error::msg)?;
            let options = ServeOptions {
                tls: Some(acceptor),
                ..base.clone()
            };
            (options, Some(client))
        }
        _ if given > 0 => bail!(
            "cluster TLS needs all of --cluster.tls-ca-file, --cluster.tls-cert-file and --cluster.tls-key-file"
        ),
        _ if all_in_one && !flags.cluster_insecure => (base.clone(), None),
        _ if flags.cluster_insecure => {
            tracing::warn!(
                "--cluster.insecure: the cluster port (--grpc-addr) serves Raft, the metastore, \
                 ingesters and queriers to anyone who can reach it; give every member --cluster.tls-ca-file, \
                 --cluster.tls-cert-file and --cluster.tls-key-file instead"
            );
            (base.clone(), None)
        }
        _ => bail!(
            "--target {}: a cluster role needs mutual TLS on its cluster port: \
             --cluster.tls-ca-file, --cluster.tls-cert-file and --cluster.tls-key-file \
             (or --cluster.insecure on a network only cluster members can reach)",
            crate::roles::metastore::targets(&args.target)
        ),
    };
    Ok(Transport {
        auth,
        public: base,
        cluster,
        cluster_tls,
        inflight: InFlightBytes::new(flags.max_inflight_bytes),
    })
}

/// Lets the process hold `--server.max-connections` connections per listener: raises the soft
/// limit of open files to the hard limit (as Go's runtime does at start), and warns when even
/// that leaves too few descriptors.
fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        tracing::warn!(error = %e, "cannot raise the open files limit");
    }
    // Connections, plus files, segments and peers.
    let needed = (max_connections as u64).saturating_add(1024);
    if let Some(current) = getrlimit(Resource::Nofile).current
        && current < needed
    {
        tracing::warn!(
            limit = current,
            max_connections,
            "the open files limit is below --server.max-connections plus 1024: connections past \
             it are refused by the kernel; raise the limit (ulimit -n) or lower the flag"
        );
    }
}
