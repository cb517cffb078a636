//! The proxy's HTTP/2 client: to peer proxies over mTLS, to endpoints and
//! apps that speak HTTP/2. Built on the `h2` crate directly so that a small
//! request body is queued before its stream opens: HEADERS and DATA then
//! leave in one write. (hyper's client opens the stream first and sends the
//! body on a later turn: two TLS records, and two reads and wake-ups on the
//! other side.) One connection carries many requests; a task drives it and
//! pings it, and a connection that stops answering is closed.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{Method, Request, Response, header::CONTENT_LENGTH};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::http::{Body, BoxError, Failure};

/// How often a connection is pinged, and how long its pong may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first chunk of a request body up to this size is queued at once,
/// without waiting for flow-control capacity (h2 holds it until the stream
/// has some), so that it leaves with the headers.
const EAGER_CHUNK: usize = 64 * 1024;
/// Flow-control windows we grant the other side.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;

/// How long a connection serves (DestinationRule `connectionPool`):
/// `maxRequestsPerConnection`, `tcp.maxConnectionDuration`, and
/// `idleTimeout` (closed after that long without a request in flight).
/// A connection past its requests or its age takes no new ones (the next
/// request makes a new connection); its own finish on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lifetime {
    pub max_requests: Option<u32>,
    pub max_duration: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

/// An HTTP/2 client connection, shared by the requests sent on it.
#[derive(Clone)]
pub struct Connection {
    sender: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
    use_: Arc<Use>,
    lifetime: Lifetime,
}

/// What a connection has carried.
struct Use {
    born: Instant,
    /// Requests sent on it.
    sent: AtomicU32,
    /// Requests whose answers are not read yet.
    active: AtomicUsize,
    /// When it last had nothing in flight.
    idle_since: std::sync::Mutex<Instant>,
}

/// A request in flight on a connection, until its answer is read.
struct Active(Arc<Use>);

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }
}

impl Connection {
    /// The HTTP/2 handshake over `io` (to `addr`, for messages); the
    /// connection is then driven by a task of its own.
    pub async fn handshake<I>(io: I, addr: SocketAddr) -> Result<Self, Failure>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::handshake_with(io, addr, Lifetime::default()).await
    }

    /// [`Connection::handshake`], serving for `lifetime`.
    pub async fn handshake_with<I>(
        io: I,
        addr: SocketAddr,
        lifetime: Lifetime,
    ) -> Result<Self, Failure>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| Failure::Connect(format!("HTTP/2 to {addr}: {e}")))?;
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        let use_ = Arc::new(Use {
            born: Instant::now(),
            sent: AtomicU32::new(0),
            active: AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(Instant::now()),
        });
        let watched = use_.clone();
        tokio::spawn(async move {
            let pings = connection.ping_pong();
            tokio::select! {
                () = idle_out(&watched, lifetime.idle_timeout) => {
                    tracing::debug!(%addr, "HTTP/2 connection closed: idle");
                }
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %addr, "HTTP/2 connection ended");
                    }
                }
                () = keepalive(pings) => {
                    tracing::debug!(%addr, "HTTP/2 connection closed: no answer to a ping within {KEEPALIVE_TIMEOUT:?}");
                }
            }
            ended.store(true, Ordering::Relaxed);
        });
        Ok(Self {
            sender,
            closed,
            use_,
            lifetime,
        })
    }

    /// Whether it takes new requests: open, within its requests and age.
    pub fn usable(&self) -> bool {
        let within = |limit: Option<u32>, n: u32| limit.is_none_or(|l| n < l);
        !self.is_closed()
            && within(
                self.lifetime.max_requests,
                self.use_.sent.load(Ordering::Acquire),
            )
            && self
                .lifetime
                .max_duration
                .is_none_or(|d| self.use_.born.elapsed() < d)
    }

    /// Why a request failed; after the peer's GOAWAY the connection takes
    /// no new streams, so the next request makes a new one.
    fn failed(&self, error: h2::Error) -> Failure {
        if error.is_go_away() && error.is_remote() {
            self.closed.store(true, Ordering::Relaxed);
        }
        Failure::from_h2(error)
    }

    /// The connection ended: requests need a new one.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Sends `request` (its URI absolute) and waits for the response's head.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Body>, Failure> {
        self.use_.sent.fetch_add(1, Ordering::AcqRel);
        self.use_.active.fetch_add(1, Ordering::AcqRel);
        let active = Active(self.use_.clone());
        let mut sender = self
            .sender
            .clone()
            .ready()
            .await
            .map_err(|e| self.failed(e))?;
        let (mut parts, body) = request.into_parts();
        if let Some(size) = body.size_hint().exact()
            && (size > 0 || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH))
        {
            parts
                .headers
                .entry(CONTENT_LENGTH)
                .or_insert_with(|| size.into());
        }
        let end_of_stream = body.is_end_stream();
        let (response, stream) = sender
            .send_request(Request::from_parts(parts, ()), end_of_stream)
            .map_err(|e| self.failed(e))?;
        // Dropped with the response's body (or with this future, when the
        // caller gives up): a body still being sent is then reset.
        let cancel = if end_of_stream {
            None
        } else {
            let (cancel, cancelled) = oneshot::channel();
            let mut pipe = Box::pin(pipe(body, stream, cancelled));
            // A small body is sent now, before the connection's task writes
            // the headers; a longer one goes on in a task of its own.
            if futures::poll!(pipe.as_mut()).is_pending() {
                tokio::spawn(pipe);
            }
            Some(cancel)
        };
        let response = response.await.map_err(|e| self.failed(e))?;
        let remaining = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(response.map(|recv| {
            RecvBody {
                recv,
                data_done: false,
                remaining,
                _cancel: cancel,
                _active: active,
            }
            .boxed_unsync()
        }))
    }
}

/// The connection shared by the requests to one place: made by the first
/// request that needs it, and again by the first after it closed.
#[derive(Default)]
pub struct Shared(tokio::sync::Mutex<Option<Connection>>);

impl Shared {
    /// The live connection, or a new one from `connect` (requests arriving
    /// meanwhile wait for it rather than open their own).
    pub async fn get_or_connect<Fut>(
        &self,
        connect: impl FnOnce() -> Fut,
    ) -> Result<Connection, Failure>
    where
        Fut: Future<Output = Result<Connection, Failure>>,
    {
        let mut slot = self.0.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.usable()) {
            return Ok(connection.clone());
        }
        let connection = connect().await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// Returns once the connection has had nothing in flight for `idle`
/// (never without one).
async fn idle_out(use_: &Use, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        let since = *use_.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        let quiet = use_.active.load(Ordering::Acquire) == 0;
        if quiet && since.elapsed() >= idle {
            return;
        }
        let next = if quiet {
            idle.saturating_sub(since.elapsed())
        } else {
            idle
        };
        tokio::time::sleep(next.max(Duration::from_millis(10))).await;
    }
}

/// Pings every [`KEEPALIVE_INTERVAL`]; returns when a pong does not come
/// back in time. Polled beside the connection, in its task.
async fn keepalive(pings: Option<PingPong>) {
    let Some(mut pings) = pings else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        match tokio::time::timeout(KEEPALIVE_TIMEOUT, pings.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            // The connection failed: it ends on its own.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

/// Sends `body` on `stream`, respecting flow control, until it ends or the
/// request is `cancelled`; then resets the stream if it did not finish.
async fn pipe(mut body: Body, mut stream: SendStream<Bytes>, cancelled: oneshot::Receiver<()>) {
    let failed = tokio::select! {
        sent = send_body(&mut body, &mut stream) => sent.err(),
        _ = cancelled => Some("the request was cancelled".into()),
    };
    if let Some(error) = failed {
        tracing::debug!(%error, "request body not sent whole");
        stream.send_reset(Reason::CANCEL);
    }
}

async fn send_body(body: &mut Body, stream: &mut SendStream<Bytes>) -> Result<(), BoxError> {
    let mut first = true;
    while let Some(frame) = body.frame().await {
        let mut data = match frame?.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    stream.send_trailers(trailers)?;
                    return Ok(());
                }
                continue;
            }
        };
        let last = body.is_end_stream();
        if data.is_empty() || (first && data.len() <= EAGER_CHUNK) {
            first = false;
            stream.send_data(data, last)?;
            if last {
                return Ok(());
            }
            continue;
        }
        first = false;
        while !data.is_empty() {
            stream.reserve_capacity(data.len());
            let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx))
                .await
                .ok_or("the stream closed")??;
            let chunk = data.split_to(granted.min(data.len()));
            stream.send_data(chunk, last && data.is_empty())?;
        }
        if last {
            return Ok(());
        }
    }
    // The body ended without saying so beforehand.
    stream.send_data(Bytes::new(), true)?;
    Ok(())
}

/// A response's body as it arrives; received data is handed back to flow
/// control as it is passed on.
struct RecvBody {
    recv: RecvStream,
    data_done: bool,
    /// What is left of its Content-Length, when it has one.
    remaining: Option<u64>,
    _cancel: Option<oneshot::Sender<()>>,
    _active: Active,
}

impl hyper::body::Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(remaining) = &mut this.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining.map(SizeHint::with_exact).unwrap_or_default()
    }
}
