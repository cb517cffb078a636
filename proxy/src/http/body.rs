//! Bodies: the one body type every stage passes along; reading a small
//! request body whole (so that it can be sent again, and leaves with its
//! headers in one write) and keeping a streamed one as it is sent (so that
//! it can be sent again when it ends within the limit); holding a guard
//! while a response is read; reading a response to its trailers.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Request bodies of a known size up to this are read whole; streamed
/// ones are kept up to this as they are sent. Either can be retried.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

/// A body of these bytes.
pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body as it arrives.
pub fn incoming(body: Incoming) -> Body {
    body.map_err(BoxError::from).boxed_unsync()
}

/// A request body, read whole or to be streamed.
pub enum ReadBody {
    Whole(Bytes),
    Stream(Incoming),
}

/// Reads a body whole when its size is known and at most
/// [`MAX_RETRY_BODY`]; larger ones, or of unknown size, are streamed.
pub async fn read_small(body: Incoming) -> Result<ReadBody, hyper::Error> {
    match body.size_hint().upper() {
        Some(n) if n <= MAX_RETRY_BODY => Ok(ReadBody::Whole(body.collect().await?.to_bytes())),
        _ => Ok(ReadBody::Stream(body)),
    }
}

/// A streamed request body, kept as it is sent (up to [`MAX_RETRY_BODY`])
/// so that another attempt can send it again: from the start, then on from
/// where the earlier attempts left the source. Once more than the limit
/// has been read, nothing is kept and no further attempt can be made.
#[derive(Clone)]
pub struct Replayable(Arc<Mutex<Kept>>);

struct Kept {
    /// What is still to be read; None once it ended.
    source: Option<Incoming>,
    /// The data frames read so far, while within the limit.
    frames: Vec<Bytes>,
    /// Data frames read so far.
    pulled: usize,
    len: u64,
    trailers: Option<http::HeaderMap>,
    /// More than the limit was read: `frames` is no longer kept.
    overflowed: bool,
}

impl Replayable {
    pub fn new(body: Incoming) -> Self {
        Self(Arc::new(Mutex::new(Kept {
            source: Some(body),
            frames: Vec::new(),
            pulled: 0,
            len: 0,
            trailers: None,
            overflowed: false,
        })))
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another attempt can send the body whole.
    pub fn replayable(&self) -> bool {
        !self.kept().overflowed
    }

    /// The body whole, once it has ended within the limit: what a copy of
    /// the request sends; None while it is still being read or when it was
    /// too large to keep.
    pub fn ended(&self) -> Option<Body> {
        let kept = self.kept();
        (kept.source.is_none() && !kept.overflowed).then(|| self.attempt())
    }

    /// The body for one more attempt.
    pub fn attempt(&self) -> Body {
        Replay {
            kept: self.0.clone(),
            next: 0,
            trailers_sent: false,
        }
        .boxed_unsync()
    }
}

/// One attempt's view of a [`Replayable`] body.
struct Replay {
    kept: Arc<Mutex<Kept>>,
    /// The index of the next data frame this attempt sends.
    next: usize,
    trailers_sent: bool,
}

impl hyper::body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut kept = this.kept.lock().unwrap_or_else(|p| p.into_inner());
        let kept = &mut *kept;
        if this.next < kept.pulled {
            if kept.overflowed {
                return Poll::Ready(Some(Err("the request body is no longer kept".into())));
            }
            let data = kept.frames[this.next].clone();
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(source) = kept.source.as_mut() else {
            let trailers = kept.trailers.clone().filter(|_| !this.trailers_sent);
            this.trailers_sent = true;
            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                kept.source = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    kept.pulled += 1;
                    this.next += 1;
                    kept.len += data.len() as u64;
                    if kept.len > MAX_RETRY_BODY {
                        kept.overflowed = true;
                        kept.frames = Vec::new();
                    } else {
                        kept.frames.push(data.clone());
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().ok();
                    kept.trailers.clone_from(&trailers);
                    kept.source = None;
                    this.trailers_sent = true;
                    Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))))
                }
            },
        }
    }
}

/// A body that holds `guard` until it ends or is dropped: what a response
/// keeps counted (a circuit breaker's request) while it is being read.
pub fn holding<G: Send + Unpin + 'static>(body: Body, guard: G) -> Body {
    Holding {
        body,
        guard: Some(guard),
    }
    .boxed_unsync()
}

struct Holding<G> {
    body: Body,
    guard: Option<G>,
}

impl<G: Unpin> hyper::body::Body for Holding<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Reads a response body whole, if it ends within [`MAX_RETRY_BODY`], to
/// look at its trailers: its data and trailers then, or what was read with
/// the rest still to come.
pub async fn read_to_trailers(mut body: Body) -> Result<Buffered, BoxError> {
    let mut data = Vec::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(chunk) => {
                len += chunk.len() as u64;
                data.push(chunk);
                if len > MAX_RETRY_BODY {
                    return Ok(Buffered::Partial(prefixed(data, body)));
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok(Buffered::Whole {
                        data,
                        trailers: Some(trailers),
                    });
                }
            }
        }
    }
    Ok(Buffered::Whole {
        data,
        trailers: None,
    })
}

/// A response body read by [`read_to_trailers`].
pub enum Buffered {
    Whole {
        data: Vec<Bytes>,
        trailers: Option<http::HeaderMap>,
    },
    /// Longer than the limit: what was read, then the rest.
    Partial(Body),
}

impl Buffered {
    /// The trailers, when it ended with some.
    pub fn trailers(&self) -> Option<&http::HeaderMap> {
        match self {
            Self::Whole { trailers, .. } => trailers.as_ref(),
            Self::Partial(_) => None,
        }
    }

    /// The body again.
    pub fn into_body(self) -> Body {
        match self {
            Self::Whole { data, trailers } => {
                let frames = data
                    .into_iter()
                    .map(Frame::data)
                    .chain(trailers.map(Frame::trailers))
                    .map(Ok::<_, BoxError>);
                StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
            }
            Self::Partial(body) => body,
        }
    }
}

/// `data`, then the rest of `body`.
fn prefixed(data: Vec<Bytes>, body: Body) -> Body {
    let head = futures::stream::iter(data.into_iter().map(|d| Ok(Frame::data(d))));
    let rest = BodyStream::new(body);
    StreamBody::new(head.chain(rest)).boxed_unsync()
}
