//! Routes: HTTP routes with their matches, backends, retries, faults,
//! rewrites and header rules (VirtualService, TrafficSplit), and TCP routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::is_false;
/// Where an HTTP route comes from, for metrics and status.
pub type Origin = String;

/// An HTTP route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// The route's name (for metrics), `<kind>/<namespace>/<name>[/<route>]`.
    pub name: Origin,
    /// Any of these matches selects the route; none matches everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatch>,
    /// Weighted backends; weights sum to 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// A redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// A fixed response instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    /// Rewrites before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Whole-request timeout (with retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retry>,
    /// Fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Shadow traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// Header changes for every backend.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub headers: HeaderRules,
    /// Cross-origin resource sharing, answered by the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

/// A CORS policy (VirtualService `corsPolicy`, Envoy's CORS filter): the
/// proxy answers preflights from allowed origins and adds the CORS headers
/// to the answers of their requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Origins allowed; `*` exactly allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// Access-Control-Allow-Methods of preflight answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Access-Control-Allow-Headers of preflight answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Access-Control-Expose-Headers of answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Access-Control-Max-Age of preflight answers, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
    /// Access-Control-Allow-Credentials: true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_credentials: bool,
    /// Preflights from origins not allowed are answered (without CORS
    /// headers) rather than forwarded to the app.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_unmatched_preflights: bool,
}

/// Conditions on a request; all must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    /// Path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// Scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// Method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Host header / :authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Headers that must match (names lowercase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Headers that must not match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Query parameters that must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Labels the calling workload must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Namespace of the calling workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// Compare the path case-insensitively.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_uri_case: bool,
}

/// A string condition. Regexes use RE2 syntax (the `regex` crate) and must
/// match the whole value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches the whole value.
    Regex(String),
    /// Present, whatever its value (headers only).
    Present(bool),
}

/// A weighted backend of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Fully qualified host of a destination in `services`. Its endpoints
    /// (or subset) are used directly: its own routes do not apply again.
    pub host: String,
    /// Destination port; the request's port when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Subset of the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Share of requests, in percent.
    pub weight: u32,
    /// Header changes for this backend.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub headers: HeaderRules,
}

/// A redirect response.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// Replacement path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replacement authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Replacement port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Replacement scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Status code (301 unless set).
    pub status: u16,
}

/// A fixed response.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectResponse {
    /// Status code.
    pub status: u16,
    /// Body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Rewrites applied before forwarding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    /// Replaces the matched prefix (or the whole path for other matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replaces the authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Regex replacement of the path: (pattern, replacement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex: Option<(String, String)>,
}

/// Retries of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Timeout of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
    /// When an attempt is retried (any of these).
    pub retry_on: Vec<RetryOn>,
    /// Base interval between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
}

crate::one_of! {
    /// A named retry condition, as Istio's `retryOn` (Envoy's `retry_on`)
    /// writes them. Which ones the proxy acts on is the capability list's
    /// business ([`crate::capability`]).
    RetryCondition {
        /// Any 5xx response, or no response at all.
        ServerError = "5xx",
        /// 502, 503 or 504, or no response.
        GatewayError = "gateway-error",
        /// The connection or stream broke, or timed out, before a response.
        Reset = "reset",
        /// Like `reset`, but only before any byte of the request was sent.
        ResetBeforeRequest = "reset-before-request",
        /// The endpoint (or the app behind its proxy) could not be reached.
        ConnectFailure = "connect-failure",
        /// The endpoint rate-limited the request (`x-envoy-ratelimited`).
        EnvoyRateLimited = "envoy-ratelimited",
        /// 409.
        Retriable4xx = "retriable-4xx",
        /// The HTTP/2 stream was refused (REFUSED_STREAM).
        RefusedStream = "refused-stream",
        /// The status codes listed beside it.
        RetriableStatusCodes = "retriable-status-codes",
        /// Responses carrying the route's retriable headers.
        RetriableHeaders = "retriable-headers",
        /// gRPC status CANCELLED.
        Cancelled = "cancelled",
        /// gRPC status DEADLINE_EXCEEDED.
        DeadlineExceeded = "deadline-exceeded",
        /// gRPC status INTERNAL.
        Internal = "internal",
        /// gRPC status RESOURCE_EXHAUSTED.
        ResourceExhausted = "resource-exhausted",
        /// gRPC status UNAVAILABLE.
        Unavailable = "unavailable",
    }
}

/// One `retryOn` item: a named condition or a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RetryOn {
    /// A named condition.
    Condition(RetryCondition),
    /// A response with this status.
    Status(u16),
}

impl std::str::FromStr for RetryOn {
    type Err = crate::UnknownValue;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.parse::<u16>() {
            Ok(code) if (100..600).contains(&code) => Ok(Self::Status(code)),
            _ => value
                .parse()
                .map(Self::Condition)
                .map_err(|e: crate::UnknownValue| crate::UnknownValue {
                    besides: "an HTTP status code or ",
                    ..e
                }),
        }
    }
}

impl std::fmt::Display for RetryOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Condition(c) => f.write_str(c.as_str()),
            Self::Status(code) => write!(f, "{code}"),
        }
    }
}

impl TryFrom<String> for RetryOn {
    type Error = crate::UnknownValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<RetryOn> for String {
    fn from(value: RetryOn) -> Self {
        value.to_string()
    }
}

/// Fault injection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Delay some requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Fail some requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// A fixed delay.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    /// The delay.
    pub delay_ms: u64,
    /// Share of requests delayed, in percent.
    pub percent: f64,
}

/// An injected error.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// The status returned.
    pub status: u16,
    /// Share of requests aborted, in percent.
    pub percent: f64,
}

/// Shadow traffic to another destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// Fully qualified host.
    pub host: String,
    /// Destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Share of requests mirrored, in percent.
    pub percent: f64,
}

/// Header changes of requests and responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRules {
    /// On the request.
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub request: HeaderOps,
    /// On the response.
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub response: HeaderOps,
}

impl HeaderRules {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// Header changes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOps {
    /// Replace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOps {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A route for opaque TCP or TLS connections (VirtualService `tcp` and
/// `tls`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// Its origin.
    pub name: Origin,
    /// Any of these selects the route; none selects every connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4Match>,
    /// Weighted backends.
    pub backends: Vec<Backend>,
}

/// Conditions on a connection; all must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct L4Match {
    /// Destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The destination address is in one of these blocks (CIDRs or
    /// addresses, checked by the operator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// Labels the calling workload must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Namespace of the calling workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// TLS routes: the ClientHello's server name is one of these (`*.` a
    /// wildcard for any name under the domain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
}
