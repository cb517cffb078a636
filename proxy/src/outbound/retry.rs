//! When an attempt is tried again (a route's `retryOn`, read off the one
//! verdict `classify` gives each attempt), and how long to wait first.

use std::time::Duration;

use plexus_config::{Retry, RetryCondition, RetryOn};

use crate::classify::Class;

/// The first interval between retries, when the route sets none.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// The longest interval between retries.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// Whether `retry_on` covers an attempt of class `class`.
pub fn retryable(retry_on: &[RetryOn], class: Class) -> bool {
    use RetryCondition::*;
    retry_on.iter().any(|on| match on {
        RetryOn::Status(code) => class.status() == Some(*code),
        RetryOn::Condition(condition) => match condition {
            ServerError => class.no_response() || class.status().is_some_and(|s| s >= 500),
            GatewayError => {
                class.no_response() || class.status().is_some_and(|s| (502..=504).contains(&s))
            }
            Reset => matches!(class, Class::Reset | Class::Timeout),
            // Also when the server proxy could not reach its app.
            ConnectFailure => matches!(class, Class::ConnectFailure | Class::AppUnreachable { .. }),
            RefusedStream => class == Class::RefusedStream,
            // The codes are the `Status` items beside it. The other
            // conditions are not acted on (the capability list says so).
            RetriableStatusCodes | ResetBeforeRequest | EnvoyRateLimited | Retriable4xx
            | RetriableHeaders | Cancelled | DeadlineExceeded | Internal | ResourceExhausted
            | Unavailable => false,
        },
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

    #[test]
    fn retry_conditions() {
        let status = |status| Class::Response { status };
        assert!(retryable(&on("5xx"), status(503)));
        assert!(!retryable(&on("5xx"), status(404)));
        assert!(retryable(&on("gateway-error"), status(504)));
        assert!(!retryable(&on("gateway-error"), status(500)));
        assert!(retryable(&on("reset"), Class::Reset));
        assert!(!retryable(&on("reset"), Class::ConnectFailure));
        assert!(retryable(&on("connect-failure"), Class::ConnectFailure));
        assert!(retryable(
            &on("connect-failure"),
            Class::AppUnreachable { status: 503 }
        ));
        assert!(!retryable(&on("connect-failure"), status(503)));
        assert!(retryable(&on("refused-stream"), Class::RefusedStream));
        assert!(retryable(&on("retriable-status-codes,409"), status(409)));
        assert!(!retryable(&on("409"), status(503)));
        assert!(!retryable(&on("retriable-4xx"), status(409)));
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
