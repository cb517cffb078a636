//! An inbound connection, redirected to the proxy on its way to the app:
//! what it opens with (a peer proxy's mTLS, the app's own TLS, plaintext),
//! the port's mTLS mode, and what authorization decides. mTLS from a peer
//! proxy is terminated (the peer's identity recorded); the stream, or each
//! HTTP request carried over it (`http`), goes to the app on localhost.

pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use plexus_config::MtlsMode;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::ctx::Ctx;
use crate::detect::{Opening, opening, peek_opening};
use crate::original_dst::target;
use crate::policy::{self, Decision};
use crate::telemetry::Direction;
use crate::tls::ALPN_H2;
use crate::transport;

fn io_error(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

/// Serves one inbound connection until it closes.
pub async fn connection(
    ctx: &Arc<Ctx>,
    client: TcpStream,
    own: Option<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let original = ctx.original.original_dst(&client)?;
    let app = target(Direction::Inbound, original, own)
        .ok_or_else(|| io_error(format!("{original} is the proxy itself")))?;
    client.set_nodelay(true)?;
    let config = ctx.state.config();
    let mode = policy::mtls_mode(config.as_deref(), &ctx.labels, original.port());
    // Peer proxies are terminated in every mode; the app's own TLS passes
    // through unless the mode is STRICT; plaintext only under STRICT is refused.
    let opened = opening(&peek_opening(&client).await?);
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
    // An opaque stream is authorized once, when it opens; HTTP requests
    // each as they come (`http`).
    let authorized = || deny_stream(ctx, &policy::authorize(config.as_deref(), &ctx.labels));
    if !terminate {
        authorized()?;
        let server = transport::dial(ctx.metrics(), Direction::Inbound, app).await?;
        return transport::relay(ctx.metrics(), Direction::Inbound, client, server).await;
    }
    let Some(tls) = ctx.state.tls() else {
        transport::refused(ctx.metrics(), Direction::Inbound, "no-certificate");
        return Err(io_error("mTLS before this proxy has a certificate".into()));
    };
    let (client, peer) = transport::accept_mtls(ctx.metrics(), &tls, client).await?;
    tracing::debug!(%peer, port = original.port(), "mTLS connection");
    if client.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
        return http::serve(ctx.clone(), client, peer, app.port(), stop).await;
    }
    authorized()?;
    let server = transport::dial(ctx.metrics(), Direction::Inbound, app).await?;
    transport::relay(ctx.metrics(), Direction::Inbound, client, server).await
}

/// Refuses an opaque stream that authorization denies: it is closed before
/// any byte reaches the app.
fn deny_stream(ctx: &Ctx, decision: &Decision) -> std::io::Result<()> {
    let Decision::Deny { policy, reason } = decision else {
        return Ok(());
    };
    ctx.metrics().denied(policy, reason);
    transport::refused(ctx.metrics(), Direction::Inbound, "denied");
    Err(io_error(format!("denied by {policy} ({reason})")))
}
