//! Bodies: the one body type every stage passes along, and reading a small
//! request body whole (so that it can be sent again, and leaves with its
//! headers in one write).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Request bodies of a known size up to this are read whole (and can be
/// retried); larger ones, or of unknown size, are streamed and not retried.
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
