//! gRPC channels to other nodes of the cluster: one lazily connected channel per address,
//! shared by every client that talks to it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

/// How long dialing a peer may take before a call fails and the caller tries another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens one lazily connected channel per peer address and reuses it for every call.
#[derive(Clone, Debug, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    local_ip: Option<IpAddr>,
}

impl ChannelPool {
    /// A pool whose connections leave from `local_ip` when given: a metastore node's Raft
    /// traffic then comes from its own address, which is what lets a test proxy cut one node
    /// off.
    pub fn new(local_ip: Option<IpAddr>) -> Self {
        Self {
            channels: Arc::default(),
            local_ip,
        }
    }

    /// The channel to `addr` (host:port), connected on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .local_address(self.local_ip)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}
