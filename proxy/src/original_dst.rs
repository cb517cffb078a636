//! Where a redirected connection was going: what netfilter's NAT recorded
//! before it redirected the connection to the proxy (`SO_ORIGINAL_DST`,
//! `IP6T_SO_ORIGINAL_DST`), or a fixed address without the redirection;
//! and the loop guard that keeps the proxy from dialling itself.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpStream;

use crate::telemetry::Direction;

/// The original destination of `stream`, or an error if it was not redirected.
pub fn original_dst(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    if local.is_ipv4() {
        let addr = getsockopt(stream, sockopt::OriginalDst).map_err(std::io::Error::from)?;
        let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
        Ok(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(addr.sin_port),
        )))
    } else {
        let addr = getsockopt(stream, sockopt::Ip6tOriginalDst).map_err(std::io::Error::from)?;
        let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
        Ok(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(addr.sin6_port),
            0,
            0,
        )))
    }
}

/// Where a redirected connection was going.
pub trait OriginalDst: Send + Sync + 'static {
    fn original_dst(&self, stream: &TcpStream) -> std::io::Result<SocketAddr>;
}

/// What netfilter recorded (`SO_ORIGINAL_DST`).
pub struct Netfilter;

impl OriginalDst for Netfilter {
    fn original_dst(&self, stream: &TcpStream) -> std::io::Result<SocketAddr> {
        original_dst(stream)
    }
}

/// Without the redirection (a benchmark, a workload outside Kubernetes):
/// every connection accepted on a listener port was going to one fixed
/// address; connections to other ports ask netfilter.
pub struct Static(pub BTreeMap<u16, SocketAddr>);

impl OriginalDst for Static {
    fn original_dst(&self, stream: &TcpStream) -> std::io::Result<SocketAddr> {
        match self.0.get(&stream.local_addr()?.port()) {
            Some(addr) => Ok(*addr),
            None => Netfilter.original_dst(stream),
        }
    }
}

/// Where a redirected connection goes, before any service lookup: outbound
/// as addressed, inbound to the app on localhost; None for a connection made
/// to the proxy's own port (`own`), which would loop.
pub fn target(
    direction: Direction,
    original: SocketAddr,
    own: Option<SocketAddr>,
) -> Option<SocketAddr> {
    let own_port = own.map(|o| o.port());
    match direction {
        Direction::Outbound => (Some(original.port()) != own_port
            || !original.ip().is_loopback() && !original.ip().is_unspecified())
        .then_some(original),
        Direction::Inbound => (Some(original.port()) != own_port)
            .then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, original.port()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let own = Some(SocketAddr::from(([0, 0, 0, 0], 4140)));
        let to = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert_eq!(
            target(Direction::Outbound, to("198.19.0.10:80"), own),
            Some(to("198.19.0.10:80"))
        );
        assert_eq!(target(Direction::Outbound, to("127.0.0.1:4140"), own), None);
        let inbound = Some(SocketAddr::from(([0, 0, 0, 0], 4143)));
        assert_eq!(
            target(Direction::Inbound, to("198.18.0.7:8080"), inbound),
            Some(to("127.0.0.1:8080"))
        );
        assert_eq!(
            target(Direction::Inbound, to("198.18.0.7:4143"), inbound),
            None
        );
    }
}
