//! HTTP through the proxy. Outbound, a connection to a known service that
//! opens with HTTP/1.x or the HTTP/2 preface is served as HTTP: each request
//! takes the first route it matches, a backend by the split's weights and an
//! endpoint by the cluster's load balancer, with the route's timeout,
//! retries, faults and header changes. Requests to meshed endpoints travel
//! as HTTP/2 over mTLS (ALPN [`ALPN_H2`]), one multiplexed connection per
//! endpoint; the app's protocol rides along in a header and the server proxy
//! speaks it to the app on localhost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue, TE};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use plexus_config::{HeaderOps, Retry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::forward::{CONNECT_TIMEOUT, Forwarder, HANDSHAKE_TIMEOUT};
use crate::h2_client;
use crate::metrics::{Direction, RequestLabels, RouteLabels};
use crate::routes::{Destination, RequestInfo, Route, Source, Target};
use crate::tls::{ALPN_H2, server_name};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Carries the app's protocol from the client proxy to the server proxy.
const ORIG_PROTO: &str = "plexus-orig-proto";
/// Set on responses the proxy makes itself, saying why.
pub const PROXY_ERROR: &str = "plexus-proxy-error";
/// Request bodies of a known size up to this are read whole (and can be
/// retried); larger ones, or of unknown size, are streamed and not retried.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;
/// The first interval between retries, when the route sets none.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// The longest interval between retries.
const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// How much of a request line detection reads at most.
const MAX_DETECT_BYTES: usize = 8192;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    Opaque,
}

/// Decides from the first bytes, if they suffice: None means "read more".
pub fn detect_bytes(bytes: &[u8]) -> Option<Detected> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Detected::Http2);
    }
    // A request line: METHOD SP target SP HTTP/1.x CRLF.
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if bytes.len() > method && (method == 0 || bytes[method] != b' ') {
        return Some(Detected::Opaque);
    }
    match bytes.windows(2).position(|w| w == b"\r\n") {
        Some(end)
            if bytes[..end].ends_with(b" HTTP/1.1") || bytes[..end].ends_with(b" HTTP/1.0") =>
        {
            Some(Detected::Http1)
        }
        Some(_) => Some(Detected::Opaque),
        None if bytes.len() >= MAX_DETECT_BYTES => Some(Detected::Opaque),
        None => None,
    }
}

/// Reads what the client sends first, until its protocol is known or
/// `timeout` passes (a protocol where the server speaks first). The bytes
/// read are returned, to be replayed.
pub async fn detect(
    stream: &mut TcpStream,
    timeout: Duration,
) -> std::io::Result<(Detected, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(read) => read?,
            Err(_) => return Ok((Detected::Opaque, buffer)),
        };
        if n == 0 {
            return Ok((Detected::Opaque, buffer));
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(detected) = detect_bytes(&buffer) {
            return Ok((detected, buffer));
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn incoming(body: Incoming) -> Body {
    body.map_err(BoxError::from).boxed_unsync()
}

/// A request body, read whole or to be streamed.
enum ReadBody {
    Whole(Bytes),
    Stream(Incoming),
}

/// Reads a body whole when its size is known and at most
/// [`MAX_RETRY_BODY`]; larger ones, or of unknown size, are streamed.
async fn read_small(body: Incoming) -> Result<ReadBody, hyper::Error> {
    match body.size_hint().upper() {
        Some(n) if n <= MAX_RETRY_BODY => Ok(ReadBody::Whole(body.collect().await?.to_bytes())),
        _ => Ok(ReadBody::Stream(body)),
    }
}

/// A response the proxy makes itself.
fn local(status: StatusCode, why: &'static str) -> Response<Body> {
    let mut response = Response::new(full(format!("{why}\n")));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(PROXY_ERROR, HeaderValue::from_static(why));
    response
}

/// Why an attempt got no response.
#[derive(Debug)]
pub enum Failure {
    /// The endpoint (or its proxy) could not be reached.
    Connect(String),
    /// The HTTP/2 stream was refused before any processing.
    RefusedStream,
    /// The connection or stream broke before a response.
    Reset(String),
    /// The per-try timeout passed.
    Timeout,
}

impl Failure {
    fn response(&self) -> Response<Body> {
        match self {
            Self::Connect(_) => local(StatusCode::SERVICE_UNAVAILABLE, "connect-failure"),
            Self::RefusedStream => local(StatusCode::SERVICE_UNAVAILABLE, "refused-stream"),
            Self::Reset(_) => local(StatusCode::SERVICE_UNAVAILABLE, "reset"),
            Self::Timeout => local(StatusCode::GATEWAY_TIMEOUT, "per-try-timeout"),
        }
    }

    pub(crate) fn from_h2(error: h2::Error) -> Self {
        if error.reason() == Some(h2::Reason::REFUSED_STREAM) {
            Self::RefusedStream
        } else {
            Self::Reset(error.to_string())
        }
    }
}

/// Whether a route's `retryOn` conditions cover an attempt's outcome.
/// The outcome is the response's status and whether the server proxy said
/// it could not connect to the app, or why there was no response.
pub fn retryable(retry_on: &[String], outcome: Result<(StatusCode, bool), &Failure>) -> bool {
    retry_on.iter().any(|condition| {
        match (condition.as_str(), outcome) {
            ("5xx", Ok((status, _))) => status.is_server_error(),
            ("5xx", Err(_)) => true,
            ("gateway-error", Ok((status, _))) => matches!(status.as_u16(), 502..=504),
            ("gateway-error", Err(_)) => true,
            ("reset", Err(Failure::Reset(_) | Failure::Timeout)) => true,
            // Reported by the server proxy when the app refused the connection.
            ("connect-failure", Ok((_, connect_failed))) => connect_failed,
            ("connect-failure", Err(Failure::Connect(_))) => true,
            ("refused-stream", Err(Failure::RefusedStream)) => true,
            (code, Ok((status, _))) => code.parse::<u16>().is_ok_and(|c| c == status.as_u16()),
            _ => false,
        }
    })
}

/// The interval before retry `n` (1-based): exponential from the base,
/// capped, with full jitter.
fn backoff(retry: &Retry, n: u32) -> Duration {
    let base = retry
        .backoff_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_BACKOFF);
    let ceiling = base
        .saturating_mul(1 << n.saturating_sub(1).min(10))
        .min(MAX_BACKOFF.max(base));
    ceiling.mul_f64(fastrand::f64())
}

/// Removes the headers that belong to one connection.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // `te: trailers` (the client takes trailers; gRPC needs it) is the one
    // TE value HTTP/2 allows, and it goes on to the app.
    let trailers = headers.get_all(TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
    ] {
        headers.remove(name);
    }
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

fn apply_header_ops(headers: &mut http::HeaderMap, ops: &HeaderOps) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (name, value) in &ops.set {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
    for (name, value) in &ops.add {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
}

/// Upstream connections: HTTP/2 to endpoints (over mTLS to meshed ones),
/// one multiplexed connection each; pooled HTTP/1.1 to unmeshed endpoints
/// and to the app.
pub struct Upstreams {
    h2: Mutex<HashMap<(SocketAddr, Option<String>), Slot>>,
    http1: Client<HttpConnector, Body>,
}

type Slot = Arc<h2_client::Shared>;

impl Default for Upstreams {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            h2: Mutex::default(),
            http1,
        }
    }
}

impl Upstreams {
    /// An open HTTP/2 connection to `addr`, over mTLS to the peer proving
    /// `identity` when set, connecting when there is none.
    async fn h2(
        &self,
        forwarder: &Forwarder,
        addr: SocketAddr,
        identity: Option<&str>,
    ) -> Result<h2_client::Connection, Failure> {
        let slot = {
            let mut slots = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry((addr, identity.map(str::to_owned)))
                .or_default()
                .clone()
        };
        slot.get_or_connect(|| Self::connect_h2(forwarder, addr, identity))
            .await
    }

    /// A new HTTP/2 connection to `addr`, over mTLS when `identity` is set.
    async fn connect_h2(
        forwarder: &Forwarder,
        addr: SocketAddr,
        identity: Option<&str>,
    ) -> Result<h2_client::Connection, Failure> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Failure::Connect(format!("connecting to {addr}: timed out")))?
            .map_err(|e| Failure::Connect(format!("connecting to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match identity {
            Some(identity) => {
                let tls = forwarder
                    .state
                    .tls()
                    .ok_or_else(|| Failure::Connect("no certificate yet".into()))?;
                let config = tls
                    .client_config(identity, ALPN_H2)
                    .map_err(|e| Failure::Connect(e.to_string()))?;
                let handshake = TlsConnector::from(config)
                    .connect(server_name(), crate::forward::buffered(tcp));
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => stream,
                    outcome => {
                        crate::forward::refused(forwarder, Direction::Outbound, "handshake");
                        let why = match outcome {
                            Ok(Err(error)) => error.to_string(),
                            _ => "timed out".into(),
                        };
                        return Err(Failure::Connect(format!(
                            "mTLS to {addr} ({identity}): {why}"
                        )));
                    }
                };
                crate::forward::mtls_opened(forwarder, Direction::Outbound, identity);
                h2_client::Connection::handshake(stream, addr).await
            }
            None => h2_client::Connection::handshake(tcp, addr).await,
        }
    }

    /// Sends a request to a target: HTTP/2 to meshed endpoints (and to any
    /// endpoint when the app speaks HTTP/2), HTTP/1.1 to the others.
    async fn send(
        &self,
        forwarder: &Forwarder,
        target: &Target,
        app: Detected,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, Failure> {
        if target.identity.is_some() || app == Detected::Http2 {
            if app == Detected::Http1 {
                request
                    .headers_mut()
                    .insert(ORIG_PROTO, HeaderValue::from_static("HTTP/1.1"));
            }
            let connection = self
                .h2(forwarder, target.addr, target.identity.as_deref())
                .await?;
            *request.version_mut() = http::Version::HTTP_2;
            request.headers_mut().remove(HOST);
            connection.send(request).await
        } else {
            self.http1(target.addr, request).await
        }
    }

    /// HTTP/1.1 to `addr`, keeping the request's authority as its Host.
    async fn http1(
        &self,
        addr: SocketAddr,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, Failure> {
        if let Some(authority) = request.uri().authority().cloned()
            && let Ok(value) = HeaderValue::try_from(authority.as_str())
        {
            request.headers_mut().entry(HOST).or_insert(value);
        }
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        *request.uri_mut() = Uri::try_from(format!("http://{addr}{path}"))
            .map_err(|e| Failure::Connect(e.to_string()))?;
        *request.version_mut() = http::Version::HTTP_11;
        match self.http1.request(request).await {
            Ok(response) => Ok(response.map(incoming)),
            Err(error) => {
                use std::error::Error;
                Err(if error.is_connect() {
                    Failure::Connect(error.source().map(|s| s.to_string()).unwrap_or_default())
                } else {
                    Failure::Reset(error.to_string())
                })
            }
        }
    }
}

/// Serves an outbound connection the app opened to `original` as HTTP,
/// until it closes or `stop` (graceful shutdown) fires.
pub async fn serve_outbound(
    forwarder: Arc<Forwarder>,
    stream: Prefixed<TcpStream>,
    protocol: Detected,
    original: SocketAddr,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let service = hyper::service::service_fn(move |request| {
        let forwarder = forwarder.clone();
        async move {
            Ok::<_, Infallible>(outbound_request(&forwarder, request, protocol, original).await)
        }
    });
    serve_connection(TokioIo::new(stream), protocol, service, stop).await
}

/// Serves one connection with `service`, HTTP/1.1 or HTTP/2.
async fn serve_connection<I, S>(
    io: TokioIo<I>,
    protocol: Detected,
    service: S,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let result = if protocol == Detected::Http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .max_concurrent_streams(1000);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = stopped(&mut stop) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    } else {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = stopped(&mut stop) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    };
    result.map_err(std::io::Error::other)
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The request's authority: the URI's (HTTP/2, absolute form) or Host.
fn authority(request: &Request<Incoming>) -> String {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Labels of one outbound request.
struct Labels {
    route: String,
    dst_service: String,
    dst_identity: String,
}

async fn outbound_request(
    forwarder: &Forwarder,
    request: Request<Incoming>,
    app: Detected,
    original: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let mut labels = Labels {
        route: "default".into(),
        dst_service: String::new(),
        dst_identity: String::new(),
    };
    let response = route_outbound(forwarder, request, app, original, &mut labels).await;
    let src_identity = forwarder.state.own_identity();
    forwarder.state.metrics.request(
        RequestLabels {
            direction: Direction::Outbound.as_str(),
            src_identity,
            dst_identity: labels.dst_identity,
            route: labels.route,
            dst_service: labels.dst_service,
            status: response.status().as_u16(),
        },
        started.elapsed(),
    );
    response
}

async fn route_outbound(
    forwarder: &Forwarder,
    request: Request<Incoming>,
    app: Detected,
    original: SocketAddr,
    labels: &mut Labels,
) -> Response<Body> {
    let Some(table) = forwarder.state.table() else {
        return local(StatusCode::SERVICE_UNAVAILABLE, "no-configuration");
    };
    let host = authority(&request);
    let (parts, body) = request.into_parts();
    let (service, port) = match table.destination(original) {
        Destination::Service { service, port } => (service, port),
        Destination::Pod(target) => {
            // A pod addressed directly: no routes, that endpoint.
            labels.dst_identity = target.identity.clone().unwrap_or_default();
            let request = outgoing(&parts, &host, incoming(body));
            return match forwarder
                .upstreams
                .send(forwarder, &target, app, request)
                .await
            {
                Ok(response) => response,
                Err(failure) => failure.response(),
            };
        }
        Destination::Passthrough | Destination::Refuse => {
            // The configuration changed under an open connection.
            return local(StatusCode::SERVICE_UNAVAILABLE, "unknown-destination");
        }
    };
    let Some(spec) = table.service(service) else {
        return local(StatusCode::SERVICE_UNAVAILABLE, "unknown-destination");
    };
    labels.dst_service = format!("{}/{}", spec.namespace, spec.name);
    let info = RequestInfo {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        authority: &host,
        scheme: parts.uri.scheme_str().unwrap_or("http"),
        port,
        headers: &parts.headers,
    };
    let source = Source {
        labels: &forwarder.labels,
        namespace: &table.config.namespace,
    };
    let route = table.route(service, &info, &source);
    if let Some(route) = route {
        labels.route = route.spec.name.clone();
    }
    // Without routes, the service's own endpoints.
    let default_backend;
    let backend = match route {
        Some(route) => {
            if let Some(response) = short_circuit(route, &parts, &host).await {
                return response;
            }
            let total = route.total_weight();
            match route.backend(if total == 0 {
                0
            } else {
                fastrand::u32(..total)
            }) {
                Some(backend) => backend,
                None => return local(StatusCode::SERVICE_UNAVAILABLE, "no-backend"),
            }
        }
        None => {
            default_backend = plexus_config::Backend {
                host: spec.hosts.first().cloned().unwrap_or_default(),
                weight: 100,
                ..Default::default()
            };
            &default_backend
        }
    };
    let Some(cluster) = table.cluster(backend, port) else {
        return local(StatusCode::SERVICE_UNAVAILABLE, "unknown-backend");
    };
    let mut parts = parts;
    let mut host = host;
    if let Some(route) = route {
        rewrite(route, &mut parts, &mut host);
        apply_header_ops(&mut parts.headers, &route.spec.headers.request);
    }
    apply_header_ops(&mut parts.headers, &backend.headers.request);

    let retry = route
        .and_then(|r| r.spec.retries.as_ref())
        .filter(|r| r.attempts > 0);
    // Bodies of known, small size are read whole first: they can be sent
    // again on retries, and go out with the request's headers (one write,
    // END_STREAM on the last frame) instead of trickling after them.
    // Others are streamed, once.
    let (replay, mut streamed) = match read_small(body).await {
        Ok(ReadBody::Whole(bytes)) => (Some(bytes), None),
        Ok(ReadBody::Stream(body)) => (None, Some(incoming(body))),
        Err(_) => return local(StatusCode::BAD_REQUEST, "request-body"),
    };
    let attempts = match (&replay, retry) {
        (Some(_), Some(retry)) => 1 + retry.attempts,
        _ => 1,
    };
    let per_try = retry
        .and_then(|r| r.per_try_timeout_ms)
        .map(Duration::from_millis);
    let timeout = route
        .and_then(|r| r.spec.timeout_ms)
        .map(Duration::from_millis);
    let route_name = labels.route.clone();

    let attempts_loop = async {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(target) = cluster.pick(|n| fastrand::usize(..n), None).cloned() else {
                return local(StatusCode::SERVICE_UNAVAILABLE, "no-endpoints");
            };
            labels.dst_identity = target.identity.clone().unwrap_or_default();
            let body = match (&replay, streamed.take()) {
                (Some(bytes), _) => full(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => return local(StatusCode::SERVICE_UNAVAILABLE, "request-body"),
            };
            let request = outgoing(&parts, &host, body);
            target
                .in_flight
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let send = forwarder.upstreams.send(forwarder, &target, app, request);
            let outcome = match per_try {
                Some(limit) => match tokio::time::timeout(limit, send).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure::Timeout),
                },
                None => send.await,
            };
            target
                .in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let retry_on = retry.map(|r| r.retry_on.as_slice()).unwrap_or_default();
            let summary = outcome.as_ref().map(|r| {
                let connect_failed = r
                    .headers()
                    .get(PROXY_ERROR)
                    .is_some_and(|v| v == "connect-failure");
                (r.status(), connect_failed)
            });
            let again = attempt < attempts && retryable(retry_on, summary);
            if !again {
                return match outcome {
                    Ok(response) => response,
                    Err(failure) => {
                        tracing::debug!(?failure, cluster = %cluster.name, "request failed");
                        failure.response()
                    }
                };
            }
            forwarder
                .state
                .metrics
                .retries
                .get_or_create(&RouteLabels {
                    route: route_name.clone(),
                })
                .inc();
            if let Some(retry) = retry {
                tokio::time::sleep(backoff(retry, attempt)).await;
            }
        }
    };
    let mut response = match timeout {
        Some(limit) => match tokio::time::timeout(limit, attempts_loop).await {
            Ok(response) => response,
            Err(_) => local(StatusCode::GATEWAY_TIMEOUT, "timeout"),
        },
        None => attempts_loop.await,
    };
    strip_hop_by_hop(response.headers_mut());
    if let Some(route) = route {
        apply_header_ops(response.headers_mut(), &route.spec.headers.response);
    }
    apply_header_ops(response.headers_mut(), &backend.headers.response);
    response
}

/// Direct responses, redirects and injected faults: answered (or delayed)
/// without an upstream.
async fn short_circuit(
    route: &Route,
    parts: &http::request::Parts,
    host: &str,
) -> Option<Response<Body>> {
    let spec = &route.spec;
    if let Some(direct) = &spec.direct_response {
        let mut response = Response::new(full(direct.body.clone().unwrap_or_default()));
        *response.status_mut() = StatusCode::from_u16(direct.status).unwrap_or(StatusCode::OK);
        return Some(response);
    }
    if let Some(redirect) = &spec.redirect {
        let scheme = redirect.scheme.as_deref().unwrap_or("http");
        let mut authority = redirect
            .authority
            .clone()
            .unwrap_or_else(|| host.to_owned());
        if let Some(port) = redirect.port {
            let name = authority
                .rsplit_once(':')
                .map(|(h, _)| h.to_owned())
                .unwrap_or(authority);
            authority = format!("{name}:{port}");
        }
        let path = redirect.uri.clone().unwrap_or_else(|| {
            parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default()
        });
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() =
            StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        if let Ok(location) = HeaderValue::try_from(format!("{scheme}://{authority}{path}")) {
            response
                .headers_mut()
                .insert(http::header::LOCATION, location);
        }
        return Some(response);
    }
    if let Some(fault) = &spec.fault {
        if let Some(delay) = &fault.delay
            && fastrand::f64() * 100.0 < delay.percent
        {
            tokio::time::sleep(Duration::from_millis(delay.delay_ms)).await;
        }
        if let Some(abort) = &fault.abort
            && fastrand::f64() * 100.0 < abort.percent
        {
            let mut response = Response::new(full("fault filter abort\n"));
            *response.status_mut() =
                StatusCode::from_u16(abort.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Some(response);
        }
    }
    None
}

/// A route's rewrite of the path and authority.
fn rewrite(route: &Route, parts: &mut http::request::Parts, host: &mut String) {
    let Some(rewrite) = &route.spec.rewrite else {
        return;
    };
    if let Some(authority) = &rewrite.authority {
        host.clone_from(authority);
    }
    let path = parts.uri.path().to_owned();
    let new_path = if let Some((_, replacement)) = &rewrite.uri_regex {
        match &route.rewrite_regex {
            Some(regex) => regex.replace_all(&path, replacement.as_str()).into_owned(),
            None => path,
        }
    } else if let Some(uri) = &rewrite.uri {
        // The matched prefix is replaced; for other matches, the whole path.
        let prefix = route_prefix(route, &path);
        match prefix {
            Some(prefix) => format!("{uri}{}", &path[prefix.len()..]),
            None => uri.clone(),
        }
    } else {
        return;
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    if let Ok(uri) = Uri::try_from(format!("{new_path}{query}")) {
        parts.uri = uri;
    }
}

fn route_prefix<'a>(route: &'a Route, path: &str) -> Option<&'a str> {
    route.spec.matches.iter().find_map(|m| match &m.uri {
        Some(plexus_config::StringMatch::Prefix(prefix)) if path.starts_with(prefix.as_str()) => {
            Some(prefix.as_str())
        }
        _ => None,
    })
}

/// The request to send upstream: absolute URI with the authority the app
/// addressed, hop-by-hop headers removed.
fn outgoing(parts: &http::request::Parts, host: &str, body: Body) -> Request<Body> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = Uri::try_from(format!("http://{host}{path}"))
        .or_else(|_| Uri::try_from(path))
        .unwrap_or_default();
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers.clone();
    strip_hop_by_hop(request.headers_mut());
    if let Ok(value) = HeaderValue::try_from(host) {
        request.headers_mut().insert(HOST, value);
    }
    request
}

/// Serves HTTP/2 from a peer proxy (already through mTLS, as `peer`) to the
/// app on localhost `port`.
pub async fn serve_inbound<I>(
    forwarder: Arc<Forwarder>,
    stream: I,
    peer: String,
    port: u16,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer: Arc<str> = peer.into();
    let app_h2: Arc<h2_client::Shared> = Arc::default();
    let service = hyper::service::service_fn(move |request| {
        let forwarder = forwarder.clone();
        let peer = peer.clone();
        let app_h2 = app_h2.clone();
        async move {
            let started = Instant::now();
            let response = inbound_request(&forwarder, request, port, &app_h2).await;
            let dst_identity = forwarder.state.own_identity();
            forwarder.state.metrics.request(
                RequestLabels {
                    direction: Direction::Inbound.as_str(),
                    src_identity: peer.to_string(),
                    dst_identity,
                    route: String::new(),
                    dst_service: String::new(),
                    status: response.status().as_u16(),
                },
                started.elapsed(),
            );
            Ok::<_, Infallible>(response)
        }
    });
    serve_connection(TokioIo::new(stream), Detected::Http2, service, stop).await
}

async fn inbound_request(
    forwarder: &Forwarder,
    request: Request<Incoming>,
    port: u16,
    app_h2: &h2_client::Shared,
) -> Response<Body> {
    let app = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (mut parts, body) = request.into_parts();
    let http1 = parts.headers.remove(ORIG_PROTO).is_some();
    // A small body leaves with the head, in one write to the app, even when
    // the peer's HEADERS and DATA frames came in two reads.
    let body = match read_small(body).await {
        Ok(ReadBody::Whole(bytes)) => full(bytes),
        Ok(ReadBody::Stream(body)) => incoming(body),
        Err(_) => return local(StatusCode::BAD_REQUEST, "request-body"),
    };
    let request = Request::from_parts(parts.clone(), body);
    let outcome = if http1 {
        parts.headers.clear();
        forwarder.upstreams.http1(app, request).await
    } else {
        // The app speaks HTTP/2: one connection per peer connection.
        let connection = app_h2
            .get_or_connect(|| async {
                let tcp = TcpStream::connect(app)
                    .await
                    .map_err(|e| Failure::Connect(e.to_string()))?;
                let _ = tcp.set_nodelay(true);
                h2_client::Connection::handshake(tcp, app).await
            })
            .await;
        match connection {
            Ok(connection) => connection.send(request).await,
            Err(failure) => Err(failure),
        }
    };
    match outcome {
        Ok(mut response) => {
            strip_hop_by_hop(response.headers_mut());
            response
        }
        Err(failure) => {
            tracing::debug!(?failure, port, "request to the app failed");
            failure.response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_protocols() {
        assert_eq!(
            detect_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Some(Detected::Http1)
        );
        assert_eq!(
            detect_bytes(b"POST /a?b HTTP/1.0\r\n"),
            Some(Detected::Http1)
        );
        assert_eq!(detect_bytes(b"GET / HT"), None);
        assert_eq!(
            detect_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Detected::Http2)
        );
        assert_eq!(detect_bytes(b"PRI * HTTP/2"), None);
        assert_eq!(detect_bytes(b"\x16\x03\x01"), Some(Detected::Opaque));
        assert_eq!(detect_bytes(b"SSH-2.0-OpenSSH\r\n"), Some(Detected::Opaque));
        assert_eq!(detect_bytes(b"get / HTTP/1.1\r\n"), Some(Detected::Opaque));
        assert_eq!(detect_bytes(b"GET / SMTP\r\n"), Some(Detected::Opaque));
    }

    #[test]
    fn retry_conditions() {
        let on = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        let status = |code| Ok((StatusCode::from_u16(code).expect("status"), false));
        let reset = Failure::Reset("x".into());
        let connect = Failure::Connect("x".into());
        assert!(retryable(&on("5xx"), status(503)));
        assert!(!retryable(&on("5xx"), status(404)));
        assert!(retryable(&on("gateway-error"), status(504)));
        assert!(!retryable(&on("gateway-error"), status(500)));
        assert!(retryable(&on("reset"), Err(&reset)));
        assert!(!retryable(&on("reset"), Err(&connect)));
        assert!(retryable(&on("connect-failure"), Err(&connect)));
        assert!(retryable(
            &on("connect-failure"),
            Ok((StatusCode::SERVICE_UNAVAILABLE, true))
        ));
        assert!(!retryable(&on("connect-failure"), status(503)));
        assert!(retryable(
            &on("refused-stream"),
            Err(&Failure::RefusedStream)
        ));
        assert!(retryable(&on("retriable-status-codes,409"), status(409)));
        assert!(!retryable(&on("409"), status(503)));
    }

    #[test]
    fn backoff_is_bounded() {
        let retry = Retry {
            attempts: 3,
            backoff_ms: Some(10),
            ..Default::default()
        };
        for n in 1..20 {
            assert!(backoff(&retry, n) <= MAX_BACKOFF);
        }
    }

    #[test]
    fn hop_by_hop_headers_go_but_te_trailers_stays() {
        let mut headers = http::HeaderMap::new();
        headers.insert("connection", "close, x-private".parse().expect("value"));
        headers.insert("x-private", "1".parse().expect("value"));
        headers.insert("keep-alive", "5".parse().expect("value"));
        headers.insert("end-user", "jason".parse().expect("value"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("end-user"));

        // `te: trailers` goes on, even when the client named TE in
        // Connection (as HTTP/1.1 asks); other TE values do not.
        let mut headers = http::HeaderMap::new();
        headers.insert("connection", "TE".parse().expect("value"));
        headers.insert(TE, "gzip, Trailers".parse().expect("value"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[TE], "trailers");
        let mut headers = http::HeaderMap::new();
        headers.insert(TE, "gzip".parse().expect("value"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
    }
}
