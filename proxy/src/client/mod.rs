//! The proxy's HTTP clients. To meshed endpoints (and to any endpoint when
//! the app speaks HTTP/2): HTTP/2, over mTLS to a peer proxy, one
//! multiplexed connection per endpoint (`http2`); the app's protocol rides
//! in a header and the server proxy speaks it to the app. To unmeshed
//! endpoints and to the app: HTTP/1.1, pooled. Every connection is dialled
//! by `transport`.

pub mod http2;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::detect::Detected;
use crate::http::{Body, Failure, ORIG_PROTO, incoming};
use crate::origination::Origination;
use crate::state::ProxyState;
use crate::telemetry::Direction;
use crate::tls::ALPN_H2;
use crate::transport::{self, DialOptions, Dialer};

pub use http2::{Connection, Lifetime, Shared};

/// How connections to a cluster's endpoints are made and how long they
/// serve (DestinationRule `connectionPool`); requests under different
/// options do not share connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options {
    pub dial: DialOptions,
    pub lifetime: Lifetime,
}

impl Options {
    pub fn of(pool: Option<&plexus_config::ConnectionPool>) -> Self {
        let Some(pool) = pool else {
            return Self::default();
        };
        let ms = |ms: Option<u64>| ms.map(Duration::from_millis);
        Self {
            dial: DialOptions {
                connect_timeout: ms(pool.connect_timeout_ms),
                keepalive: pool.tcp_keepalive.as_ref().map(|k| {
                    (
                        Duration::from_millis(k.time_ms),
                        Duration::from_millis(k.interval_ms),
                        k.probes,
                    )
                }),
            },
            lifetime: Lifetime {
                max_requests: pool.max_requests_per_connection,
                max_duration: ms(pool.max_connection_duration_ms),
                idle_timeout: ms(pool.idle_timeout_ms),
            },
        }
    }
}

/// An HTTP/2 connection slot per endpoint address, expected identity,
/// originated TLS and options.
type Slots = Mutex<HashMap<(SocketAddr, Option<String>, Option<u64>, Options), Arc<Shared>>>;

/// HTTP/1.1 pools by options and originated TLS (its key).
type Http1Pools = Mutex<HashMap<(Options, Option<u64>), Client<Dialer, Body>>>;

/// Upstream connections: HTTP/2 to endpoints, HTTP/1.1 pools to unmeshed
/// endpoints (outbound) and to the app (inbound).
pub struct Clients {
    state: Arc<ProxyState>,
    h2: Slots,
    /// By options and originated TLS: each its own pool.
    outbound_http1: Http1Pools,
    inbound_http1: Client<Dialer, Body>,
}

fn pool(
    state: &Arc<ProxyState>,
    direction: Direction,
    options: Options,
    origination: Option<&Arc<Origination>>,
) -> Client<Dialer, Body> {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(
            options
                .lifetime
                .idle_timeout
                .unwrap_or(Duration::from_secs(90)),
        )
        .build(Dialer {
            metrics: state.metrics.clone(),
            direction,
            options: options.dial,
            origination: origination.cloned(),
        })
}

impl Clients {
    pub fn new(state: Arc<ProxyState>) -> Self {
        Self {
            outbound_http1: Mutex::default(),
            inbound_http1: pool(&state, Direction::Inbound, Options::default(), None),
            h2: Mutex::default(),
            state,
        }
    }

    /// Sends a request to an endpoint at `addr` (which must prove
    /// `identity` when set, or to which the proxy speaks TLS as
    /// `origination` says): HTTP/2 to meshed endpoints (and to any endpoint
    /// when the app speaks HTTP/2), HTTP/1.1 to the others.
    pub async fn send(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
        origination: Option<&Arc<Origination>>,
        app: Detected,
        mut request: Request<Body>,
        options: Options,
    ) -> Result<Response<Body>, Failure> {
        let originated = origination.map(|o| o.key);
        if identity.is_none() && app != Detected::Http2 {
            let client = self
                .outbound_http1
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((options, originated))
                .or_insert_with(|| pool(&self.state, Direction::Outbound, options, origination))
                .clone();
            return http1(&client, addr, request).await;
        }
        if app == Detected::Http1 {
            request
                .headers_mut()
                .insert(ORIG_PROTO, HeaderValue::from_static("HTTP/1.1"));
        }
        let slot = {
            let mut slots = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            slots
                .entry((addr, identity.map(str::to_owned), originated, options))
                .or_default()
                .clone()
        };
        let connection = slot
            .get_or_connect(|| self.connect_h2(addr, identity, origination, options))
            .await?;
        *request.version_mut() = http::Version::HTTP_2;
        request.headers_mut().remove(HOST);
        connection.send(request).await
    }

    /// A new HTTP/2 connection to `addr`, over mTLS when `identity` is set,
    /// over originated TLS when `origination` is.
    async fn connect_h2(
        &self,
        addr: SocketAddr,
        identity: Option<&str>,
        origination: Option<&Arc<Origination>>,
        options: Options,
    ) -> Result<Connection, Failure> {
        let metrics = &self.state.metrics;
        let connect = |e: std::io::Error| Failure::Connect(format!("{addr}: {e}"));
        let tcp = transport::dial_with(metrics, Direction::Outbound, addr, options.dial)
            .await
            .map_err(connect)?;
        if let Some(origination) = origination {
            let stream = transport::originate_tls(metrics, origination, tcp, &[ALPN_H2])
                .await
                .map_err(connect)?;
            return Connection::handshake_with(stream, addr, options.lifetime).await;
        }
        match identity {
            Some(identity) => {
                let tls = self
                    .state
                    .tls()
                    .ok_or_else(|| Failure::Connect("no certificate yet".into()))?;
                let stream = transport::connect_mtls(metrics, &tls, tcp, identity, ALPN_H2)
                    .await
                    .map_err(connect)?;
                Connection::handshake_with(stream, addr, options.lifetime).await
            }
            None => Connection::handshake_with(tcp, addr, options.lifetime).await,
        }
    }

    /// HTTP/1.1 to the app at `app`.
    pub async fn app_http1(
        &self,
        app: SocketAddr,
        request: Request<Body>,
    ) -> Result<Response<Body>, Failure> {
        http1(&self.inbound_http1, app, request).await
    }

    /// HTTP/2 to the app at `app`, on the connection `shared` holds (one
    /// per peer connection), made when there is none.
    pub async fn app_http2(
        &self,
        shared: &Shared,
        app: SocketAddr,
        request: Request<Body>,
    ) -> Result<Response<Body>, Failure> {
        let connection = shared
            .get_or_connect(|| async {
                let tcp = transport::dial(&self.state.metrics, Direction::Inbound, app)
                    .await
                    .map_err(|e| Failure::Connect(e.to_string()))?;
                Connection::handshake(tcp, app).await
            })
            .await?;
        connection.send(request).await
    }
}

/// HTTP/1.1 to `addr` through `client`'s pool, keeping the request's
/// authority as its Host. An idempotent request without a body is sent
/// once more when the connection it went out on closed before any answer:
/// a kept-alive connection the server was closing just then (it is going
/// away, or idled it out) took it unread, and RFC 9112 lets a client try
/// again.
async fn http1(
    client: &Client<Dialer, Body>,
    addr: SocketAddr,
    request: Request<Body>,
) -> Result<Response<Body>, Failure> {
    let again = retryable_copy(&request);
    match send_http1(client, addr, request).await {
        Err(Sent::ClosedUnanswered(_)) if let Some(again) = again => {
            tracing::debug!(%addr, "the connection closed before an answer: sent again");
            send_http1(client, addr, again).await.map_err(Sent::failure)
        }
        outcome => outcome.map_err(Sent::failure),
    }
}

/// A copy of an idempotent request without a body.
fn retryable_copy(request: &Request<Body>) -> Option<Request<Body>> {
    use http::Method;
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    if !idempotent || hyper::body::Body::size_hint(request.body()).exact() != Some(0) {
        return None;
    }
    let mut copy = Request::new(crate::http::full(bytes::Bytes::new()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// Why an HTTP/1.1 request failed.
enum Sent {
    Failed(Failure),
    /// The connection closed before any byte of an answer.
    ClosedUnanswered(String),
}

impl Sent {
    fn failure(self) -> Failure {
        match self {
            Self::Failed(failure) => failure,
            Self::ClosedUnanswered(why) => Failure::Reset(why),
        }
    }
}

async fn send_http1(
    client: &Client<Dialer, Body>,
    addr: SocketAddr,
    mut request: Request<Body>,
) -> Result<Response<Body>, Sent> {
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
        .map_err(|e| Sent::Failed(Failure::Connect(e.to_string())))?;
    *request.version_mut() = http::Version::HTTP_11;
    match client.request(request).await {
        Ok(response) => Ok(response.map(incoming)),
        Err(error) => {
            use std::error::Error;
            let source = error.source();
            let closed = source
                .and_then(|s| s.downcast_ref::<hyper::Error>())
                .is_some_and(hyper::Error::is_incomplete_message);
            Err(if error.is_connect() {
                Sent::Failed(Failure::Connect(
                    source.map(|s| s.to_string()).unwrap_or_default(),
                ))
            } else if closed {
                Sent::ClosedUnanswered(error.to_string())
            } else {
                Sent::Failed(Failure::Reset(error.to_string()))
            })
        }
    }
}
