//! When an attempt is tried again (a route's `retryOn`, read off the one
//! verdict `classify` gives each attempt and the answer's headers and
//! trailers), and how long to wait first.

use std::time::Duration;

use http::HeaderMap;
use plexus_config::{Retry, RetryCondition, RetryOn};

use crate::classify::Class;

/// The first interval between retries, when the route sets none.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// The longest interval between retries.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// Envoy's request headers that add to a retry policy: more status codes
/// (`retriable-status-codes`) and header names (`retriable-headers`).
pub const RETRIABLE_STATUS_CODES: &str = "x-envoy-retriable-status-codes";
pub const RETRIABLE_HEADER_NAMES: &str = "x-envoy-retriable-header-names";

/// What an attempt gave, as the conditions read it.
#[derive(Clone, Copy)]
pub struct Answer<'a> {
    pub class: Class,
    /// The response's headers, when there was one.
    pub headers: Option<&'a HeaderMap>,
    /// Its trailers, when they were read.
    pub trailers: Option<&'a HeaderMap>,
    /// The request's headers.
    pub request: &'a HeaderMap,
}

impl Answer<'_> {
    /// The gRPC status, from the headers (a trailers-only answer) or the
    /// trailers.
    pub fn grpc_status(&self) -> Option<u32> {
        [self.headers, self.trailers]
            .into_iter()
            .flatten()
            .find_map(|h| h.get("grpc-status")?.to_str().ok()?.parse().ok())
    }

    /// The comma-separated items of a request header.
    fn listed<'h>(&'h self, name: &str) -> impl Iterator<Item = &'h str> {
        self.request
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// Whether `retry_on` covers an attempt's answer.
pub fn retryable(retry_on: &[RetryOn], answer: Answer<'_>) -> bool {
    use RetryCondition::*;
    let class = answer.class;
    let status = class.status();
    let grpc = |code: u32| answer.grpc_status() == Some(code);
    retry_on.iter().any(|on| match on {
        RetryOn::Status(code) => status == Some(*code),
        RetryOn::Condition(condition) => match condition {
            ServerError => class.no_response() || status.is_some_and(|s| s >= 500),
            GatewayError => class.no_response() || status.is_some_and(|s| (502..=504).contains(&s)),
            Reset => matches!(class, Class::Reset | Class::Timeout),
            // Nothing of the request reached the endpoint.
            ResetBeforeRequest => matches!(class, Class::ConnectFailure | Class::RefusedStream),
            // Also when the server proxy could not reach its app.
            ConnectFailure => matches!(class, Class::ConnectFailure | Class::AppUnreachable { .. }),
            RefusedStream => class == Class::RefusedStream,
            EnvoyRateLimited => answer
                .headers
                .is_some_and(|h| h.contains_key("x-envoy-ratelimited")),
            Retriable4xx => status == Some(409),
            // The codes are the `Status` items beside it, and those the
            // request lists.
            RetriableStatusCodes => status.is_some_and(|s| {
                answer
                    .listed(RETRIABLE_STATUS_CODES)
                    .any(|c| c.parse() == Ok(s))
            }),
            RetriableHeaders => answer.headers.is_some_and(|h| {
                answer
                    .listed(RETRIABLE_HEADER_NAMES)
                    .any(|name| h.contains_key(name.to_ascii_lowercase().as_str()))
            }),
            Cancelled => grpc(1),
            DeadlineExceeded => grpc(4),
            ResourceExhausted => grpc(8),
            Internal => grpc(13),
            Unavailable => grpc(14),
        },
    })
}

/// Whether any of `retry_on` reads a gRPC status (which may come in the
/// trailers: the answer is then read to them before deciding).
pub fn reads_grpc_status(retry_on: &[RetryOn]) -> bool {
    use RetryCondition::*;
    retry_on.iter().any(|on| {
        matches!(
            on,
            RetryOn::Condition(
                Cancelled | DeadlineExceeded | Internal | ResourceExhausted | Unavailable
            )
        )
    })
}

/// The interval before retry `n` (1-based): exponential from the base,
/// capped, with full jitter (`jitter` in [0, 1)).
pub fn backoff(retry: &Retry, n: u32, jitter: f64) -> Duration {
    let base = retry
        .backoff_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_BACKOFF);
    let ceiling = base
        .saturating_mul(1 << n.saturating_sub(1).min(10))
        .min(MAX_BACKOFF.max(base));
    ceiling.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(s: &str) -> Vec<RetryOn> {
        s.split(',').map(|c| c.parse().expect("retryOn")).collect()
    }

    fn answer<'a>(class: Class, headers: &'a HeaderMap, request: &'a HeaderMap) -> Answer<'a> {
        Answer {
            class,
            headers: class.status().map(|_| headers),
            trailers: None,
            request,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn retry_conditions() {
        let none = HeaderMap::new();
        let is =
            |retry_on: &str, class: Class| retryable(&on(retry_on), answer(class, &none, &none));
        let status = |status| Class::Response { status };
        assert!(is("5xx", status(503)));
        assert!(!is("5xx", status(404)));
        assert!(is("gateway-error", status(504)));
        assert!(!is("gateway-error", status(500)));
        assert!(is("reset", Class::Reset));
        assert!(!is("reset", Class::ConnectFailure));
        assert!(is("connect-failure", Class::ConnectFailure));
        assert!(is("connect-failure", Class::AppUnreachable { status: 503 }));
        assert!(!is("connect-failure", status(503)));
        assert!(is("refused-stream", Class::RefusedStream));
        assert!(is("reset-before-request", Class::RefusedStream));
        assert!(is("reset-before-request", Class::ConnectFailure));
        assert!(!is("reset-before-request", Class::Reset));
        assert!(is("retriable-status-codes,409", status(409)));
        assert!(!is("409", status(503)));
        assert!(is("retriable-4xx", status(409)));
        assert!(!is("retriable-4xx", status(404)));
        assert!(!is("unavailable", status(200)));
    }

    #[test]
    fn conditions_reading_headers_and_trailers() {
        let none = HeaderMap::new();
        let ok = Class::Response { status: 200 };
        let limited = headers(&[("x-envoy-ratelimited", "true")]);
        assert!(retryable(
            &on("envoy-ratelimited"),
            answer(Class::Response { status: 429 }, &limited, &none)
        ));
        assert!(!retryable(
            &on("envoy-ratelimited"),
            answer(Class::Response { status: 429 }, &none, &none)
        ));
        let request = headers(&[("x-envoy-retriable-header-names", "X-Upstream-Retry, other")]);
        let marked = headers(&[("x-upstream-retry", "1")]);
        assert!(retryable(
            &on("retriable-headers"),
            answer(ok, &marked, &request)
        ));
        assert!(!retryable(
            &on("retriable-headers"),
            answer(ok, &marked, &none)
        ));
        let codes = headers(&[("x-envoy-retriable-status-codes", "418,425")]);
        assert!(retryable(
            &on("retriable-status-codes"),
            answer(Class::Response { status: 418 }, &none, &codes)
        ));
        assert!(!retryable(
            &on("retriable-status-codes"),
            answer(Class::Response { status: 418 }, &none, &none)
        ));
        // gRPC statuses, trailers-only or in the trailers.
        for (item, code) in [
            ("cancelled", "1"),
            ("deadline-exceeded", "4"),
            ("resource-exhausted", "8"),
            ("internal", "13"),
            ("unavailable", "14"),
        ] {
            let mut status = HeaderMap::new();
            status.insert("grpc-status", code.parse().expect("value"));
            assert!(retryable(&on(item), answer(ok, &status, &none)), "{item}");
            let in_trailers = Answer {
                class: ok,
                headers: Some(&none),
                trailers: Some(&status),
                request: &none,
            };
            assert!(retryable(&on(item), in_trailers), "{item} in trailers");
            assert!(!retryable(&on(item), answer(ok, &none, &none)), "{item}");
        }
        assert!(reads_grpc_status(&on("5xx,unavailable")));
        assert!(!reads_grpc_status(&on("5xx,reset")));
    }

    #[test]
    fn backoff_is_bounded() {
        let retry = Retry {
            attempts: 3,
            backoff_ms: Some(10),
            ..Default::default()
        };
        for n in 1..20 {
            assert!(backoff(&retry, n, 0.999) <= MAX_BACKOFF);
        }
        assert_eq!(backoff(&retry, 1, 0.5), Duration::from_millis(5));
    }
}
