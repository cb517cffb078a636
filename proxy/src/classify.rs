//! One verdict on each attempt's outcome. Retries and outlier detection
//! read it; metrics and access logs are to read the same verdict, so that
//! they never disagree about what failed.

use http::Response;

use crate::http::{Body, Failure, PROXY_ERROR};

/// What became of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A response from the endpoint (or from its app, through its proxy).
    Response { status: u16 },
    /// The endpoint's proxy answered that its app could not be reached
    /// (`plexus-proxy-error: connect-failure`).
    AppUnreachable { status: u16 },
    /// No response: the endpoint could not be reached.
    ConnectFailure,
    /// No response: the HTTP/2 stream was refused before any processing.
    RefusedStream,
    /// No response: the connection or stream broke.
    Reset,
    /// No response within the per-try timeout.
    Timeout,
}

impl Class {
    /// The verdict on an attempt's outcome.
    pub fn of(outcome: &Result<Response<Body>, Failure>) -> Self {
        match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let unreachable = response
                    .headers()
                    .get(PROXY_ERROR)
                    .is_some_and(|v| v == "connect-failure");
                if unreachable {
                    Self::AppUnreachable { status }
                } else {
                    Self::Response { status }
                }
            }
            Err(Failure::Connect(_)) => Self::ConnectFailure,
            Err(Failure::RefusedStream) => Self::RefusedStream,
            Err(Failure::Reset(_)) => Self::Reset,
            Err(Failure::Timeout) => Self::Timeout,
        }
    }

    /// The status of the response, when there is one.
    pub fn status(self) -> Option<u16> {
        match self {
            Self::Response { status } | Self::AppUnreachable { status } => Some(status),
            _ => None,
        }
    }

    /// Whether no response came at all.
    pub fn no_response(self) -> bool {
        self.status().is_none()
    }

    /// Whether nothing of the request reached the app: the endpoint (or
    /// the app behind its proxy) refused the connection, or the stream was
    /// refused (REFUSED_STREAM, or beyond a GOAWAY's last stream). Such a
    /// request can go elsewhere whatever its method.
    pub fn unprocessed(self) -> bool {
        matches!(
            self,
            Self::ConnectFailure | Self::RefusedStream | Self::AppUnreachable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::local;

    #[test]
    fn classifies_responses_and_failures() {
        let ok = Ok(local(http::StatusCode::OK, "fine"));
        // `local` marks the response as the proxy's own; a 200 is not an
        // unreachable app.
        assert_eq!(Class::of(&ok), Class::Response { status: 200 });
        let unreachable = Ok(Failure::Connect("refused".into()).response());
        assert_eq!(
            Class::of(&unreachable),
            Class::AppUnreachable { status: 503 }
        );
        assert_eq!(Class::of(&Err(Failure::Timeout)), Class::Timeout);
        assert!(Class::of(&Err(Failure::Reset("x".into()))).no_response());
        assert_eq!(Class::of(&Err(Failure::RefusedStream)).status(), None);
    }
}
