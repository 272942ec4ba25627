//! gRPC channels to other nodes of the cluster: one lazily connected channel per address,
//! shared by every client that talks to it, over mutual TLS when the cluster has a CA.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long dialing a peer may take before a call fails and the caller tries another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// While a call is open, the peer is pinged (HTTP/2 PING) this often, and a peer that does not
/// answer within [`KEEP_ALIVE_TIMEOUT`] is taken for dead: its calls fail and the caller tries
/// another, instead of waiting on a machine that vanished without closing its connections.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The cluster's mutual TLS as a client sees it: the CA that signs every member, and this
/// member's own certificate.
#[derive(Clone, Debug)]
pub struct ClusterTls {
    config: ClientTlsConfig,
}

impl ClusterTls {
    /// Reads the PEM files of the cluster CA and of this member's certificate and key.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .identity(Identity::from_pem(read(cert)?, read(key)?));
        Ok(Self { config })
    }
}

/// Opens one lazily connected channel per peer address and reuses it for every call.
#[derive(Clone, Debug, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    local_ip: Option<IpAddr>,
    tls: Option<ClusterTls>,
}

impl ChannelPool {
    /// A pool whose connections leave from `local_ip` when given: a metastore node's Raft
    /// traffic then comes from its own address, which is what lets a test proxy cut one node
    /// off. With `tls`, every connection is mutual TLS against the cluster CA.
    pub fn new(local_ip: Option<IpAddr>, tls: Option<ClusterTls>) -> Self {
        Self {
            channels: Arc::default(),
            local_ip,
            tls,
        }
    }

    /// A pool over the cluster's TLS (or plaintext), leaving from any address.
    pub fn with_tls(tls: Option<ClusterTls>) -> Self {
        Self::new(None, tls)
    }

    /// The channel to `addr` (host:port), connected on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .tcp_nodelay(true)
            .local_address(self.local_ip);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.config.clone())?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}
