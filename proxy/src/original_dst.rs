//! The destination a redirected connection was meant for: what netfilter's
//! NAT recorded before it redirected the connection to the proxy
//! (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpStream;

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
