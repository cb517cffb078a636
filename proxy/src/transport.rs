//! The one place the proxy dials TCP, speaks mTLS to a peer proxy and
//! accepts mTLS from one, with every timeout of those steps; and the relay
//! of opaque streams. Every upstream connection (to peer proxies, unmeshed
//! endpoints and the app) is made here, so that the connect timeout, the
//! handshake timeout and the connection metrics hold for all of them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::origination::Origination;
use crate::telemetry::metrics::{DirectionLabels, PeerLabels, RefusedLabels};
use crate::telemetry::{Direction, Metrics};
use crate::tls::{Tls, server_name, spiffe_id};

/// How long connecting to a destination may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS stream to or from a peer proxy, read through a buffer: rustls asks
/// for a few KiB at a time, and many small reads cost more than one copy.
pub type ClientTls = client::TlsStream<BufReader<TcpStream>>;
pub type ServerTls = server::TlsStream<BufReader<TcpStream>>;

fn buffered(stream: TcpStream) -> BufReader<TcpStream> {
    BufReader::with_capacity(32 * 1024, stream)
}

fn timed_out(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what)
}

/// How a connection is dialled: DestinationRule `connectionPool.tcp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DialOptions {
    /// Instead of [`CONNECT_TIMEOUT`].
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive: idle time before the first probe, time between
    /// probes, probes unanswered before the connection is dropped.
    pub keepalive: Option<(Duration, Duration, u32)>,
}

/// A TCP connection to `addr` within [`CONNECT_TIMEOUT`], without Nagle's
/// delay; a failure counts in `tcp_connect_errors`.
pub async fn dial(
    metrics: &Metrics,
    direction: Direction,
    addr: SocketAddr,
) -> std::io::Result<TcpStream> {
    dial_with(metrics, direction, addr, DialOptions::default()).await
}

/// [`dial`] with `options`.
pub async fn dial_with(
    metrics: &Metrics,
    direction: Direction,
    addr: SocketAddr,
    options: DialOptions,
) -> std::io::Result<TcpStream> {
    let limit = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
    let result = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(format!("connecting to {addr} within {limit:?}"))),
    };
    let stream = result.inspect_err(|_| {
        metrics
            .tcp_connect_errors
            .get_or_create(&DirectionLabels::from(direction))
            .inc();
    })?;
    stream.set_nodelay(true)?;
    if let Some((idle, interval, probes)) = options.keepalive {
        keepalive(&stream, idle, interval, probes)?;
    }
    Ok(stream)
}

/// Turns TCP keepalive on for `stream`.
fn keepalive(
    stream: &TcpStream,
    idle: Duration,
    interval: Duration,
    probes: u32,
) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let seconds = |d: Duration| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
    setsockopt(stream, sockopt::KeepAlive, &true)?;
    setsockopt(stream, sockopt::TcpKeepIdle, &seconds(idle))?;
    setsockopt(stream, sockopt::TcpKeepInterval, &seconds(interval))?;
    setsockopt(stream, sockopt::TcpKeepCount, &probes)?;
    Ok(())
}

/// mTLS over `tcp` to a peer proxy that must prove `identity`, offering
/// `alpn`, within [`HANDSHAKE_TIMEOUT`]. A failed handshake counts in
/// `tcp_refused{reason="handshake"}`, a good one in `tcp_mtls`.
pub async fn connect_mtls(
    metrics: &Metrics,
    tls: &Tls,
    tcp: TcpStream,
    identity: &str,
    alpn: &'static [u8],
) -> std::io::Result<ClientTls> {
    let config = tls
        .client_config(identity, alpn)
        .map_err(std::io::Error::other)?;
    let addr = tcp.peer_addr().ok();
    let handshake = TlsConnector::from(config).connect(server_name(), buffered(tcp));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => {
            mtls_opened(metrics, Direction::Outbound, identity);
            Ok(stream)
        }
        outcome => {
            refused(metrics, Direction::Outbound, "handshake");
            let why = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "timed out".into(),
            };
            let to = addr.map(|a| a.to_string()).unwrap_or_default();
            Err(std::io::Error::other(format!(
                "mTLS to {to} ({identity}): {why}"
            )))
        }
    }
}

/// TLS over `tcp` to a server outside the mesh, as `origination` says,
/// offering `alpn`, within [`HANDSHAKE_TIMEOUT`]. A failed handshake (or
/// settings that cannot be acted on) counts in
/// `tcp_refused{reason="origination"}`.
pub async fn originate_tls(
    metrics: &Metrics,
    origination: &Origination,
    tcp: TcpStream,
    alpn: &[&[u8]],
) -> std::io::Result<ClientTls> {
    let addr = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let failed = |why: String| {
        refused(metrics, Direction::Outbound, "origination");
        std::io::Error::other(format!(
            "TLS to {addr} ({:?}): {why}",
            origination.server_name
        ))
    };
    let config = origination.client_config(alpn).map_err(failed)?;
    let handshake =
        TlsConnector::from(config).connect(origination.server_name.clone(), buffered(tcp));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(failed(error.to_string())),
        Err(_) => Err(failed("timed out".into())),
    }
}

/// Accepts mTLS from a peer proxy within [`HANDSHAKE_TIMEOUT`], requiring
/// a client certificate from the mesh's roots: the stream and the peer's
/// SPIFFE ID ("unknown" for a certificate without one).
pub async fn accept_mtls(
    metrics: &Metrics,
    tls: &Tls,
    tcp: TcpStream,
) -> std::io::Result<(ServerTls, String)> {
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsAcceptor::from(tls.server_config()).accept(buffered(tcp)),
    )
    .await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        outcome => {
            refused(metrics, Direction::Inbound, "handshake");
            let why = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "timed out".into(),
            };
            return Err(std::io::Error::other(format!("mTLS handshake: {why}")));
        }
    };
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(spiffe_id)
        .unwrap_or_else(|| "unknown".into());
    mtls_opened(metrics, Direction::Inbound, &peer);
    Ok((stream, peer))
}

/// Copies both ways until both sides are done, counting the bytes.
pub async fn relay<A, B>(
    metrics: &Metrics,
    direction: Direction,
    mut client: A,
    mut server: B,
) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let labels = DirectionLabels::from(direction);
    let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    if let Ok((sent, received)) = result {
        metrics.tcp_sent_bytes.get_or_create(&labels).inc_by(sent);
        metrics
            .tcp_received_bytes
            .get_or_create(&labels)
            .inc_by(received);
    }
    result.map(|_| ())
}

/// Counts a connection refused for `reason` (plaintext under STRICT,
/// handshake, no-certificate, registry-only, denied).
pub fn refused(metrics: &Metrics, direction: Direction, reason: &'static str) {
    metrics
        .tcp_refused
        .get_or_create(&RefusedLabels {
            direction: direction.as_str(),
            reason,
        })
        .inc();
}

fn mtls_opened(metrics: &Metrics, direction: Direction, peer: &str) {
    metrics
        .tcp_mtls
        .get_or_create(&PeerLabels {
            direction: direction.as_str(),
            peer_identity: peer.to_owned(),
        })
        .inc();
}

/// A connection of hyper-util's pooled HTTP/1.1 client: plaintext, or TLS
/// the proxy originates.
pub enum Upstream {
    Plain(TcpStream),
    Tls(Box<ClientTls>),
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for Upstream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// ALPN of originated HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// [`dial`] as a connector of hyper-util's pooled HTTP/1.1 client, for URIs
/// `http://<address>:<port>/…`; then TLS when `origination` is set.
#[derive(Clone)]
pub struct Dialer {
    pub metrics: Arc<Metrics>,
    pub direction: Direction,
    pub options: DialOptions,
    pub origination: Option<Arc<Origination>>,
}

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<Upstream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("{uri} has no address")))?;
            let tcp = dial_with(&dialer.metrics, dialer.direction, addr, dialer.options).await?;
            let upstream = match &dialer.origination {
                Some(origination) => Upstream::Tls(Box::new(
                    originate_tls(&dialer.metrics, origination, tcp, &[ALPN_HTTP1]).await?,
                )),
                None => Upstream::Plain(tcp),
            };
            Ok(TokioIo::new(upstream))
        })
    }
}
