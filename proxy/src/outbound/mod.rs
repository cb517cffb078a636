//! An outbound connection the app opened, redirected to the proxy: where it
//! was going, whether it speaks HTTP (detected from its first bytes for
//! known destinations whose port is not declared TCP or TLS), and then the
//! HTTP pipeline (`http`) or opaque TCP (`tcp`).

pub mod attempts;
pub mod http;
pub mod mirror;
pub mod retry;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;

use plexus_config::Protocol;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::ctx::Ctx;
use crate::detect::{DETECT_TIMEOUT, Detected, Prefixed, detect, peek_opening, server_name};
use crate::original_dst::target;
use crate::routing::Destination;
use crate::telemetry::Direction;

/// Serves one outbound connection until it closes.
pub async fn connection(
    ctx: &Arc<Ctx>,
    mut client: TcpStream,
    own: Option<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let original = ctx.original.original_dst(&client)?;
    let original = target(Direction::Outbound, original, own)
        .ok_or_else(|| std::io::Error::other(format!("{original} is the proxy itself")))?;
    client.set_nodelay(true)?;
    let source = client.peer_addr()?.ip();
    // Known destinations whose port is not declared TCP: HTTP is detected,
    // within DETECT_TIMEOUT (a server-first protocol says nothing). On a
    // port declared HTTP the first bytes are waited for as long as they
    // take: a client may open a connection well before its first request.
    let snapshot = ctx.state.snapshot();
    let destination = snapshot
        .as_ref()
        .map(|s| (s, s.table.destination(original)));
    // A service with TLS routes, or an address known only by name: its
    // ClientHello (peeked, within DETECT_TIMEOUT) names the server.
    let sni = match &destination {
        Some((snapshot, Destination::Service { service, port }))
            if snapshot.table.routes_tls(*service, *port) =>
        {
            server_name(&peek_opening(&client).await?)
        }
        Some((_, Destination::Named { .. })) => server_name(&peek_opening(&client).await?),
        _ => None,
    };
    let detection = destination.and_then(|(snapshot, destination)| match destination {
        Destination::Service { service, port } => match snapshot.table.protocol(service, port) {
            Protocol::Tcp | Protocol::Tls => None,
            Protocol::Http | Protocol::Http2 => Some(None),
            Protocol::Detect => Some(Some(DETECT_TIMEOUT)),
        },
        Destination::Pod(_) => Some(Some(DETECT_TIMEOUT)),
        // No ClientHello: HTTP names its host.
        Destination::Named { .. } if sni.is_none() => Some(Some(DETECT_TIMEOUT)),
        Destination::Named { .. } => None,
        Destination::Passthrough | Destination::Refuse => None,
    });
    let (protocol, opening) = match detection {
        Some(timeout) => detect(&mut client, timeout).await?,
        None => (Detected::Opaque, Vec::new()),
    };
    let client = Prefixed::new(opening, client);
    if protocol == Detected::Opaque {
        return tcp::forward(ctx, client, original, sni.as_deref()).await;
    }
    http::serve(ctx.clone(), client, protocol, original, source, stop).await
}
