//! A TCP proxy in front of each metastore node that can cut nodes off from each other.
//!
//! Each node advertises its proxy's address (127.0.1.N) and dials its peers from that same
//! address, so a proxy knows which node a connection comes from: cutting node N drops and refuses
//! every connection from N and every connection from another node to N. The test's own clients
//! connect from 127.0.0.1 and always pass.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The proxy of one node.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    state: Arc<ProxyState>,
}

#[derive(Debug, Default)]
struct ProxyState {
    target: Mutex<Option<String>>,
    blocked: Mutex<HashSet<IpAddr>>,
    connections: Mutex<Vec<(IpAddr, AbortHandle)>>,
}

impl Proxy {
    /// Listens on `ip` with a free port; forwards nowhere until [`Proxy::set_target`].
    pub(crate) async fn bind(ip: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        let accepting = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((inbound, peer)) = listener.accept().await {
                let state = Arc::clone(&accepting);
                if state.blocked.lock().unwrap().contains(&peer.ip()) {
                    continue;
                }
                let Some(target) = state.target.lock().unwrap().clone() else {
                    continue;
                };
                let task = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                let mut connections = accepting.connections.lock().unwrap();
                connections.retain(|(_, handle)| !handle.is_finished());
                connections.push((peer.ip(), task.abort_handle()));
            }
        });
        Self { addr, state }
    }

    /// Where connections go: the node's real gRPC listener.
    pub(crate) fn set_target(&self, target: &str) {
        *self.state.target.lock().unwrap() = Some(target.to_string());
    }

    /// Drops the connections from `ip` and refuses new ones.
    pub(crate) fn block(&self, ip: IpAddr) {
        self.state.blocked.lock().unwrap().insert(ip);
        for (from, handle) in self.state.connections.lock().unwrap().iter() {
            if *from == ip {
                handle.abort();
            }
        }
    }

    /// Lets everyone through again.
    pub(crate) fn heal(&self) {
        self.state.blocked.lock().unwrap().clear();
    }
}
