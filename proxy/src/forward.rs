//! Redirected TCP connections. Outbound: to a meshed endpoint of the
//! destination service over mTLS, checking the endpoint's SPIFFE identity;
//! to anything else as it was addressed. Inbound: mTLS from peer proxies is
//! terminated (the peer's identity recorded), plaintext is accepted or
//! refused by the workload's mTLS mode; either way the stream goes to the
//! app on localhost.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use plexus_config::{MtlsMode, Protocol, ProxyConfig, selects};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::http::{Detected, Prefixed, Upstreams};
use crate::metrics::{Direction, DirectionLabels, Metrics, PeerLabels, RefusedLabels};
use crate::routes::{Destination, Table};
use crate::state::ProxyState;
use crate::tls::{ALPN_H2, ALPN_TCP, server_name, spiffe_id};

/// How long connecting to a destination may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an inbound connection may stay silent before it is taken for
/// plaintext (a protocol where the server speaks first).
pub const DETECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a redirected connection was going.
pub trait OriginalDst: Send + Sync + 'static {
    fn original_dst(&self, stream: &TcpStream) -> std::io::Result<SocketAddr>;
}

/// What netfilter recorded (`SO_ORIGINAL_DST`).
pub struct Netfilter;

impl OriginalDst for Netfilter {
    fn original_dst(&self, stream: &TcpStream) -> std::io::Result<SocketAddr> {
        crate::original_dst::original_dst(stream)
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

/// What the forwarding needs: the state, the pod's labels (mTLS rules
/// select workloads by them) and how destinations are recovered.
pub struct Forwarder {
    pub state: Arc<ProxyState>,
    pub labels: BTreeMap<String, String>,
    pub original: Box<dyn OriginalDst>,
    /// HTTP connections to endpoints and to the app.
    pub upstreams: Upstreams,
}

impl Forwarder {
    pub fn new(
        state: Arc<ProxyState>,
        labels: BTreeMap<String, String>,
        original: Box<dyn OriginalDst>,
    ) -> Self {
        Self {
            state,
            labels,
            original,
            upstreams: Upstreams::default(),
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }
}

/// Reads from a TLS peer through a buffer: rustls asks for a few KiB at a
/// time, and many small reads cost more than one copy.
pub(crate) fn buffered(stream: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(32 * 1024, stream)
}

/// How an outbound connection is carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// To a meshed endpoint over mTLS, which must prove `identity`.
    Mesh { addr: SocketAddr, identity: String },
    /// As addressed, in plaintext (unmeshed or unknown destinations).
    Plain(SocketAddr),
    /// Not at all: an unknown destination under the Mesh's REGISTRY_ONLY
    /// outbound policy.
    Refuse,
}

/// The plan for a TCP connection to `original`: a service address picks
/// one of its endpoints (by the cluster's balancer; `random` draws below its
/// argument), a pod address is that endpoint; a meshed endpoint is reached
/// over mTLS, an unmeshed one as addressed. Anything else passes through,
/// or is refused under the REGISTRY_ONLY outbound policy.
pub fn plan(table: &Table, original: SocketAddr, random: impl FnMut(usize) -> usize) -> Plan {
    let target = match table.destination(original) {
        Destination::Service { service, port } => {
            match table
                .service_cluster(service, port)
                .and_then(|c| c.pick(random, None))
            {
                Some(target) => target.clone(),
                None => return Plan::Plain(original),
            }
        }
        Destination::Pod(target) => target,
        Destination::Passthrough => return Plan::Plain(original),
        Destination::Refuse => return Plan::Refuse,
    };
    match &target.identity {
        Some(identity) => Plan::Mesh {
            addr: target.addr,
            identity: identity.clone(),
        },
        None => Plan::Plain(original),
    }
}

/// The workload's mTLS mode on `port`: the first rule selecting its labels
/// (the last one selects every workload); PERMISSIVE without a configuration.
pub fn inbound_mode(
    config: Option<&ProxyConfig>,
    labels: &BTreeMap<String, String>,
    port: u16,
) -> MtlsMode {
    config
        .and_then(|c| {
            c.inbound
                .mtls
                .iter()
                .find(|rule| selects(&rule.selector, labels))
        })
        .map(|rule| rule.ports.get(&port).copied().unwrap_or(rule.mode))
        .unwrap_or(MtlsMode::Permissive)
}

/// Accepts on `listener` until `stop` turns true; each connection is
/// handled on its own task.
pub async fn serve(
    listener: TcpListener,
    direction: Direction,
    forwarder: Arc<Forwarder>,
    mut stop: watch::Receiver<bool>,
) {
    let own = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, direction = direction.as_str(), "accepting");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let forwarder = forwarder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let metrics = forwarder.metrics();
            let labels = DirectionLabels::from(direction);
            metrics.tcp_opened.get_or_create(&labels).inc();
            metrics.tcp_active.inc();
            let result = match direction {
                Direction::Outbound => outbound(&forwarder, stream, own, stop.clone()).await,
                Direction::Inbound => inbound(&forwarder, stream, own, stop.clone()).await,
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, direction = direction.as_str(), "connection failed");
            }
            metrics.tcp_active.dec();
            metrics.tcp_closed.get_or_create(&labels).inc();
        });
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Where a redirected connection goes, before any service lookup; None for
/// a connection made to the proxy's own port, which would loop.
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

fn io_error(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

async fn connect(
    forwarder: &Forwarder,
    direction: Direction,
    addr: SocketAddr,
) -> std::io::Result<TcpStream> {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
    let result = match connected {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting to {addr}"),
        )),
    };
    if result.is_err() {
        forwarder
            .metrics()
            .tcp_connect_errors
            .get_or_create(&DirectionLabels::from(direction))
            .inc();
    }
    let stream = result?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Copies both ways until both sides are done, counting bytes.
async fn relay<A, B>(
    forwarder: &Forwarder,
    direction: Direction,
    mut client: A,
    mut server: B,
) -> std::io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let labels = DirectionLabels::from(direction);
    let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    if let Ok((sent, received)) = result {
        let metrics = forwarder.metrics();
        metrics.tcp_sent_bytes.get_or_create(&labels).inc_by(sent);
        metrics
            .tcp_received_bytes
            .get_or_create(&labels)
            .inc_by(received);
    }
    result.map(|_| ())
}

async fn outbound(
    forwarder: &Arc<Forwarder>,
    mut client: TcpStream,
    own: Option<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let original = forwarder.original.original_dst(&client)?;
    let original = target(Direction::Outbound, original, own)
        .ok_or_else(|| io_error(format!("{original} is the proxy itself")))?;
    client.set_nodelay(true)?;
    let table = forwarder.state.table();
    // Known destinations whose port is not declared TCP: HTTP is detected.
    let detect = table
        .as_ref()
        .is_some_and(|table| match table.destination(original) {
            Destination::Service { service, port } => {
                !matches!(table.protocol(service, port), Protocol::Tcp | Protocol::Tls)
            }
            Destination::Pod(_) => true,
            Destination::Passthrough | Destination::Refuse => false,
        });
    let (protocol, opening) = if detect {
        crate::http::detect(&mut client, DETECT_TIMEOUT).await?
    } else {
        (Detected::Opaque, Vec::new())
    };
    let client = Prefixed::new(opening, client);
    if protocol != Detected::Opaque {
        return crate::http::serve_outbound(forwarder.clone(), client, protocol, original, stop)
            .await;
    }
    let plan = match table {
        Some(table) => plan(&table, original, |n| fastrand::usize(..n)),
        None => Plan::Plain(original),
    };
    match plan {
        Plan::Refuse => {
            refused(forwarder, Direction::Outbound, "registry-only");
            Err(io_error(format!(
                "{original} is not a known destination and the outbound policy is REGISTRY_ONLY"
            )))
        }
        Plan::Plain(addr) => {
            let server = connect(forwarder, Direction::Outbound, addr).await?;
            relay(forwarder, Direction::Outbound, client, server).await
        }
        Plan::Mesh { addr, identity } => {
            let tls = forwarder.state.tls().ok_or_else(|| {
                io_error("no certificate yet: cannot reach a meshed endpoint".into())
            })?;
            let config = tls
                .client_config(&identity, ALPN_TCP)
                .map_err(|e| io_error(e.to_string()))?;
            let server = connect(forwarder, Direction::Outbound, addr).await?;
            let handshake = TlsConnector::from(config).connect(server_name(), server);
            let server = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(server)) => server,
                outcome => {
                    refused(forwarder, Direction::Outbound, "handshake");
                    let why = match outcome {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".into(),
                    };
                    return Err(io_error(format!("mTLS to {addr} ({identity}): {why}")));
                }
            };
            mtls_opened(forwarder, Direction::Outbound, &identity);
            relay(forwarder, Direction::Outbound, client, server).await
        }
    }
}

pub(crate) fn refused(forwarder: &Forwarder, direction: Direction, reason: &'static str) {
    forwarder
        .metrics()
        .tcp_refused
        .get_or_create(&RefusedLabels {
            direction: direction.as_str(),
            reason,
        })
        .inc();
}

pub(crate) fn mtls_opened(forwarder: &Forwarder, direction: Direction, peer: &str) {
    forwarder
        .metrics()
        .tcp_mtls
        .get_or_create(&PeerLabels {
            direction: direction.as_str(),
            peer_identity: peer.to_owned(),
        })
        .inc();
}

/// What an inbound connection opens with.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A TLS ClientHello offering the mesh's ALPN: a peer proxy.
    MeshTls,
    /// Another TLS ClientHello: the app's own TLS.
    OtherTls,
    /// Anything else, or silence for [`DETECT_TIMEOUT`].
    Plaintext,
}

/// Classifies the bytes a connection opened with.
pub fn classify(opening: &[u8]) -> Opening {
    match opening.first() {
        Some(0x16)
            if [ALPN_TCP, ALPN_H2]
                .iter()
                .any(|alpn| opening.windows(alpn.len()).any(|w| w == *alpn)) =>
        {
            Opening::MeshTls
        }
        Some(0x16) => Opening::OtherTls,
        _ => Opening::Plaintext,
    }
}

/// Peeks (without consuming) at what the client sends first: for a TLS
/// record, until the whole record (the ClientHello) is there, within
/// [`DETECT_TIMEOUT`].
async fn peek_opening(stream: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + DETECT_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(result) => result?,
            Err(_) => return Ok(Vec::new()),
        };
        let record = (n >= 5 && buffer[0] == 0x16)
            .then(|| 5 + usize::from(u16::from_be_bytes([buffer[3], buffer[4]])));
        let complete = match record {
            Some(length) => n >= length.min(buffer.len()),
            None => n > 0,
        };
        if n == 0 || complete || tokio::time::Instant::now() >= deadline {
            buffer.truncate(n);
            return Ok(buffer);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn inbound(
    forwarder: &Arc<Forwarder>,
    client: TcpStream,
    own: Option<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let original = forwarder.original.original_dst(&client)?;
    let app = target(Direction::Inbound, original, own)
        .ok_or_else(|| io_error(format!("{original} is the proxy itself")))?;
    client.set_nodelay(true)?;
    let mode = inbound_mode(
        forwarder.state.config().as_deref(),
        &forwarder.labels,
        original.port(),
    );
    // Peer proxies are terminated in every mode; the app's own TLS passes
    // through unless the mode is STRICT; plaintext only under STRICT is refused.
    let opening = classify(&peek_opening(&client).await?);
    let terminate = match (mode, &opening) {
        (_, Opening::MeshTls) => true,
        (MtlsMode::Strict, Opening::OtherTls) => true, // fails: no mesh certificate
        (MtlsMode::Strict, Opening::Plaintext) => {
            refused(forwarder, Direction::Inbound, "plaintext");
            return Err(io_error(format!(
                "plaintext to port {} refused: mTLS is STRICT",
                original.port()
            )));
        }
        _ => false,
    };
    if !terminate {
        let server = connect(forwarder, Direction::Inbound, app).await?;
        return relay(forwarder, Direction::Inbound, client, server).await;
    }
    let Some(own_tls) = forwarder.state.tls() else {
        refused(forwarder, Direction::Inbound, "no-certificate");
        return Err(io_error("mTLS before this proxy has a certificate".into()));
    };
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsAcceptor::from(own_tls.server_config()).accept(buffered(client)),
    )
    .await;
    let client = match accepted {
        Ok(Ok(client)) => client,
        outcome => {
            refused(forwarder, Direction::Inbound, "handshake");
            let why = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "timed out".into(),
            };
            return Err(io_error(format!("mTLS handshake: {why}")));
        }
    };
    let peer = client
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(spiffe_id)
        .unwrap_or_else(|| "unknown".into());
    mtls_opened(forwarder, Direction::Inbound, &peer);
    tracing::debug!(%peer, port = original.port(), "mTLS connection");
    if client.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
        return crate::http::serve_inbound(forwarder.clone(), client, peer, app.port(), stop).await;
    }
    let server = connect(forwarder, Direction::Inbound, app).await?;
    relay(forwarder, Direction::Inbound, client, server).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_config::{Endpoint, Service, ServicePort};

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

    fn config() -> ProxyConfig {
        let endpoint = |ip: &str, sa: Option<&str>, meshed| Endpoint {
            ip: ip.into(),
            sa: sa.map(Into::into),
            meshed,
            ..Default::default()
        };
        ProxyConfig {
            trust_domain: "cluster.local".into(),
            services: Arc::new(vec![Service {
                namespace: "demo".into(),
                name: "web".into(),
                addresses: vec!["198.19.0.10".into()],
                ports: vec![ServicePort {
                    port: 80,
                    name: None,
                    protocol: Default::default(),
                    target_port: Some(8080),
                }],
                endpoints: vec![
                    endpoint("198.18.0.7", Some("web"), true),
                    endpoint("198.18.0.8", None, false),
                ],
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn openings() {
        assert_eq!(classify(b""), Opening::Plaintext);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Opening::Plaintext);
        assert_eq!(classify(b"\x16\x03\x01\x00\x05hello"), Opening::OtherTls);
        let mut hello = b"\x16\x03\x01\x00\x40....".to_vec();
        hello.extend_from_slice(ALPN_TCP);
        assert_eq!(classify(&hello), Opening::MeshTls);
    }

    #[test]
    fn plans() {
        let table = Table::new(Arc::new(config())).expect("compiles");
        let to = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert_eq!(
            plan(&table, to("198.19.0.10:80"), |_| 0),
            Plan::Mesh {
                addr: to("198.18.0.7:8080"),
                identity: "spiffe://cluster.local/ns/demo/sa/web".into()
            }
        );
        // The unmeshed endpoint: as addressed, in plaintext.
        assert_eq!(
            plan(&table, to("198.19.0.10:80"), |_| 1),
            Plan::Plain(to("198.19.0.10:80"))
        );
        // The meshed pod addressed directly.
        assert_eq!(
            plan(&table, to("198.18.0.7:8080"), |_| 0),
            Plan::Mesh {
                addr: to("198.18.0.7:8080"),
                identity: "spiffe://cluster.local/ns/demo/sa/web".into()
            }
        );
        // Another port of the service's address, or anything else.
        assert_eq!(
            plan(&table, to("198.19.0.10:81"), |_| 0),
            Plan::Plain(to("198.19.0.10:81"))
        );
        assert_eq!(
            plan(&table, to("192.0.2.1:443"), |_| 0),
            Plan::Plain(to("192.0.2.1:443"))
        );
        // Under REGISTRY_ONLY, only the unknown destination is refused.
        let strict = Table::new(Arc::new(ProxyConfig {
            outbound_policy: plexus_config::OutboundPolicy::RegistryOnly,
            ..config()
        }))
        .expect("compiles");
        assert_eq!(plan(&strict, to("192.0.2.1:443"), |_| 0), Plan::Refuse);
        assert_eq!(
            plan(&strict, to("198.18.0.8:8080"), |_| 0),
            Plan::Plain(to("198.18.0.8:8080"))
        );
        assert_eq!(
            plan(&strict, to("198.19.0.10:80"), |_| 1),
            Plan::Plain(to("198.19.0.10:80"))
        );
    }
}
