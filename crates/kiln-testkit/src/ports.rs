//! Free loopback ports, for a server that takes its port on the command line (a kiln server
//! binds `127.0.0.1:0` and reports its port instead).

use std::net::TcpListener;

/// A loopback port free now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct loopback ports free now (each held until all are picked).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}
