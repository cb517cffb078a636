//! HTTP pieces every stage shares: the body type (`body`), why an attempt
//! got no response ([`Failure`]), the responses the proxy makes itself, and
//! the header rules of a hop.

pub mod body;

use http::header::{HOST, HeaderName, HeaderValue, TE};
use http::{Request, Response, StatusCode};

pub use body::{Body, BoxError, full, incoming};

/// Set on responses the proxy makes itself, saying why.
pub const PROXY_ERROR: &str = "plexus-proxy-error";
/// Why a connection failed, beside [`PROXY_ERROR`]'s `connect-failure`.
pub const PROXY_ERROR_DETAIL: &str = "plexus-proxy-error-detail";
/// Carries the app's protocol from the client proxy to the server proxy.
pub const ORIG_PROTO: &str = "plexus-orig-proto";

/// A response the proxy makes itself.
pub fn local(status: StatusCode, why: &'static str) -> Response<Body> {
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
    /// The HTTP/2 stream was refused before any processing (REFUSED_STREAM,
    /// or beyond the last stream a graceful GOAWAY took).
    RefusedStream,
    /// The connection or stream broke before a response.
    Reset(String),
    /// The per-try timeout passed.
    Timeout,
}

impl Failure {
    /// The response the caller gets for it.
    pub fn response(&self) -> Response<Body> {
        match self {
            Self::Connect(why) => {
                let mut response = local(StatusCode::SERVICE_UNAVAILABLE, "connect-failure");
                // What failed, for whoever debugs it (as Linkerd's
                // l5d-proxy-error carries it); a text no header can hold
                // is left out.
                if let Ok(value) = HeaderValue::try_from(why.as_str()) {
                    response.headers_mut().insert(PROXY_ERROR_DETAIL, value);
                }
                response
            }
            Self::RefusedStream => local(StatusCode::SERVICE_UNAVAILABLE, "refused-stream"),
            Self::Reset(_) => local(StatusCode::SERVICE_UNAVAILABLE, "reset"),
            Self::Timeout => local(StatusCode::GATEWAY_TIMEOUT, "per-try-timeout"),
        }
    }

    pub fn from_h2(error: h2::Error) -> Self {
        // A graceful GOAWAY fails only the streams it did not take.
        let beyond_go_away =
            error.is_go_away() && error.is_remote() && error.reason() == Some(h2::Reason::NO_ERROR);
        if error.reason() == Some(h2::Reason::REFUSED_STREAM) || beyond_go_away {
            Self::RefusedStream
        } else {
            Self::Reset(error.to_string())
        }
    }
}

/// The request's authority: the URI's (HTTP/2, absolute form) or Host.
pub fn authority<B>(request: &Request<B>) -> String {
    authority_of(request.uri(), request.headers())
}

/// [`authority`] of a request's head.
pub fn authority_of(uri: &http::Uri, headers: &http::HeaderMap) -> String {
    uri.authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Removes the headers that belong to one connection.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
