//! Picking a free TCP port on 127.0.0.1 for a new server.
//!
//! Ports are drawn below the kernel's ephemeral range when possible: a port in that range
//! can be taken by any outgoing connection while the server is down during
//! [`Cluster::restart`](super::Cluster::restart), which must come back on the same port.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};

/// Lowest port we draw from.
const LOW: u16 = 20_000;

/// A port on 127.0.0.1 that nothing listens on right now (it may be taken before the server
/// binds it: the caller retries the start with another port then).
pub(crate) fn pick_free_port() -> std::io::Result<u16> {
    let high = ephemeral_low().unwrap_or(32_768);
    if high > LOW + 100 {
        for _ in 0..64 {
            let port = LOW + (random() % u64::from(high - LOW)) as u16;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    // Let the kernel choose (in the ephemeral range).
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The first port of the ephemeral range, from /proc/sys/net/ipv4/ip_local_port_range.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A random number: std's hasher keys are random per process, and differ per call.
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_bindable_and_vary() {
        let ports: std::collections::HashSet<u16> =
            (0..8).map(|_| pick_free_port().unwrap()).collect();
        assert!(ports.len() > 1, "{ports:?}");
        for port in ports {
            assert!(port >= 1024);
        }
    }
}
