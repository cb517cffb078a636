//! An inbound connection, redirected to the proxy on its way to the app:
//! what it opens with (a peer proxy's mTLS, the app's own TLS, plaintext),
//! the port's mTLS mode, and then HTTP (`http`: each request through the
//! policy pipeline) or an opaque stream, authorized once as it opens.
//!
//! mTLS from a peer proxy is terminated (the peer's identity recorded).
//! Plaintext (PERMISSIVE) is read as HTTP when this pod has policies that
//! act on requests, so that they hold for callers outside the mesh too;
//! otherwise it passes as it came.

pub mod connection;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use plexus_config::MtlsMode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::ctx::Ctx;
use crate::detect::{DETECT_TIMEOUT, Detected, Opening, Prefixed, detect, opening, peek_opening};
use crate::original_dst::target;
use crate::policy::Peer;

use crate::telemetry::Direction;
use crate::tls::ALPN_H2;
use crate::transport;
pub use connection::Connection;

fn io_error(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

/// Serves one inbound connection until it closes.
pub async fn connection(
    ctx: &Arc<Ctx>,
    mut client: TcpStream,
    own: Option<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let original = ctx.original.original_dst(&client)?;
    let app = target(Direction::Inbound, original, own)
        .ok_or_else(|| io_error(format!("{original} is the proxy itself")))?;
    client.set_nodelay(true)?;
    let mut conn = Connection {
        peer_id: None,
        peer: None,
        source: client.peer_addr()?,
        destination: original,
        sni: None,
    };
    let snapshot = ctx.state.snapshot();
    let mode = snapshot.as_ref().map_or(MtlsMode::Permissive, |s| {
        s.inbound.mtls_mode(original.port())
    });
    // Peer proxies are terminated in every mode; the app's own TLS passes
    // through unless the mode is STRICT; plaintext only under STRICT is refused.
    let peeked = peek_opening(&client).await?;
    let opened = opening(&peeked);
    let terminate = match (mode, &opened) {
        (_, Opening::MeshTls) => true,
        (MtlsMode::Strict, Opening::OtherTls) => true, // fails: no mesh certificate
        (MtlsMode::Strict, Opening::Plaintext) => {
            transport::refused(ctx.metrics(), Direction::Inbound, "plaintext");
            return Err(io_error(format!(
                "plaintext to port {} refused: mTLS is STRICT",
                original.port()
            )));
        }
        _ => false,
    };
    if !terminate {
        let needs_http = snapshot.as_ref().is_some_and(|s| s.inbound.needs_http());
        if opened == Opening::Plaintext && needs_http && !peeked.is_empty() {
            let (detected, bytes) = detect(&mut client, Some(DETECT_TIMEOUT)).await?;
            let client = Prefixed::new(bytes, client);
            if detected != Detected::Opaque {
                return http::serve(ctx.clone(), client, conn, detected, app.port(), stop).await;
            }
            return opaque(ctx, client, &conn, app).await;
        }
        return opaque(ctx, client, &conn, app).await;
    }
    drop(snapshot);
    let Some(tls) = ctx.state.tls() else {
        transport::refused(ctx.metrics(), Direction::Inbound, "no-certificate");
        return Err(io_error("mTLS before this proxy has a certificate".into()));
    };
    let (client, peer) = transport::accept_mtls(ctx.metrics(), &tls, client).await?;
    tracing::debug!(%peer, port = original.port(), "mTLS connection");
    conn.peer = Peer::from_spiffe(&peer);
    conn.peer_id = Some(peer.into());
    conn.sni = client.get_ref().1.server_name().map(str::to_owned);
    if client.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
        return http::serve(ctx.clone(), client, conn, Detected::Http2, app.port(), stop).await;
    }
    opaque(ctx, client, &conn, app).await
}

/// An opaque stream: authorized under the configuration in force as it
/// opens, then relayed to the app. A denied one is closed before any byte
/// reaches the app.
async fn opaque<S>(ctx: &Ctx, client: S, conn: &Connection, app: SocketAddr) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(snapshot) = ctx.state.snapshot() {
        let verdict = snapshot.inbound.authz.decide(&conn.attributes());
        let request = || format!("tcp {}", conn.destination.port());
        for (policy, rule) in &verdict.audited {
            ctx.metrics()
                .policy
                .audited(policy, *rule, conn.peer_label(), &request);
        }
        if let Some(denial) = &verdict.denial {
            ctx.metrics()
                .policy
                .denied(denial, "tcp", conn.peer_label(), &request);
            transport::refused(ctx.metrics(), Direction::Inbound, "denied");
            return Err(io_error(format!("denied by {}", denial.policy)));
        }
    }
    let server = transport::dial(ctx.metrics(), Direction::Inbound, app).await?;
    transport::relay(ctx.metrics(), Direction::Inbound, client, server).await
}
