//! The proxy configuration: what the operator compiles from the mesh's
//! resources and what every sidecar reads. This crate is the only definition;
//! the operator serializes it and the proxy deserializes it.
//!
//! One configuration is written per namespace with injected workloads, in the
//! ConfigMap [`CONFIGMAP_NAME`] under the `binaryData` key [`CONFIG_KEY`], as
//! gzip-compressed JSON ([`ProxyConfig::to_gzip`], [`ProxyConfig::from_gzip`]):
//! every namespace's configuration lists the whole mesh's destinations, and
//! compressed it stays far below the 1 MiB ConfigMap limit. It holds:
//! - `services`: every destination a proxy of that namespace may call, with
//!   its routes, traffic policy and endpoints (subsets already resolved);
//! - `inbound`: the policies of the namespace's workloads, each with the
//!   workload selector the proxy evaluates against its own pod's labels;
//! - `gateways`: Gateways of the namespace with the routes bound to them.
//!
//! Durations are milliseconds, ports are numbers, hosts are fully qualified.
//! The format is versioned by [`SCHEMA`]; a proxy refuses a schema it does not
//! know and keeps its last good configuration.

use std::collections::BTreeMap;

use std::sync::Arc;

pub mod redirect;

use serde::{Deserialize, Serialize};

/// The schema of this configuration; bumped on incompatible changes.
pub const SCHEMA: &str = "plexus.dev/proxy-config/v1";
/// The ConfigMap holding a namespace's proxy configuration.
pub const CONFIGMAP_NAME: &str = "plexus-proxy-config";
/// The ConfigMap `binaryData` key of the configuration (gzip-compressed JSON).
pub const CONFIG_KEY: &str = "config.json.gz";
/// The largest decompressed configuration a proxy accepts.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// The ConfigMap annotation carrying the configuration's revision.
pub const REVISION_ANNOTATION: &str = "plexus.dev/config-revision";

/// A namespace's proxy configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The namespace whose proxies read this configuration.
    pub namespace: String,
    /// The mesh's SPIFFE trust domain.
    pub trust_domain: String,
    /// What to do with traffic to destinations not in `services`.
    pub outbound_policy: OutboundPolicy,
    /// Destinations, sorted by their first host. Shared (not copied) between
    /// the namespaces' configurations when they see the same destinations.
    #[serde(default, skip_serializing_if = "no_services")]
    pub services: Arc<Vec<Service>>,
    /// Policies of this namespace's workloads.
    #[serde(default)]
    pub inbound: Inbound,
    /// Gateways of this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<Gateway>,
}

/// Errors reading a configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// Not gzip, or larger than [`MAX_CONFIG_BYTES`] decompressed.
    Compression(String),
    /// Not JSON of this shape.
    Malformed(serde_json::Error),
    /// A schema this proxy does not understand.
    Schema(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Compression(e) => write!(f, "proxy configuration is not readable gzip: {e}"),
            Self::Malformed(e) => write!(f, "malformed proxy configuration: {e}"),
            Self::Schema(s) => write!(f, "proxy configuration schema {s:?} is not {SCHEMA:?}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ProxyConfig {
    /// Reads a configuration, refusing unknown schemas.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes).map_err(ConfigError::Malformed)?;
        if config.schema != SCHEMA {
            return Err(ConfigError::Schema(config.schema));
        }
        Ok(config)
    }

    /// The configuration as written in its ConfigMap: compact JSON, gzip
    /// compressed. Deterministic: equal configurations give equal bytes.
    pub fn to_gzip(&self) -> Vec<u8> {
        compress(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a configuration from its ConfigMap's bytes.
    pub fn from_gzip(bytes: &[u8]) -> Result<Self, ConfigError> {
        use std::io::Read;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| ConfigError::Compression(e.to_string()))?;
        if json.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Compression(format!(
                "larger than {MAX_CONFIG_BYTES} bytes decompressed"
            )));
        }
        Self::from_json(&json)
    }

    /// The SPIFFE identity of a ServiceAccount.
    pub fn spiffe_id(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "spiffe://{}/ns/{namespace}/sa/{service_account}",
            self.trust_domain
        )
    }
}

/// The Mesh's outbound traffic policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundPolicy {
    /// Unknown destinations are passed through as TCP.
    #[default]
    AllowAny,
    /// Unknown destinations are refused.
    RegistryOnly,
}

/// A destination: a Kubernetes Service or a ServiceEntry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Namespace of the Service or ServiceEntry.
    pub namespace: String,
    /// Name of the Service or ServiceEntry.
    pub name: String,
    /// Host names, fully qualified first.
    pub hosts: Vec<String>,
    /// Virtual IPs (the ClusterIP, or a ServiceEntry's addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Ports the destination serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// How endpoints are found.
    #[serde(default)]
    pub resolution: Resolution,
    /// Outside the mesh: no sidecar, no mTLS to it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
    /// HTTP routes in order; the first match wins. Always ends with a route
    /// without matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// TCP routes in order; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// Traffic policy for all endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TrafficPolicy>,
    /// Subsets (DestinationRule) with their own policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Ready endpoints, sorted by address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// Per-route policies from a ServiceProfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// How a destination's endpoints are found.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// The endpoints listed in the configuration.
    #[default]
    Endpoints,
    /// The host name, resolved by DNS when connecting.
    Dns,
    /// The original destination address.
    Passthrough,
}

/// A port of a destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// The port clients connect to.
    pub port: u16,
    /// Its name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The protocol, from `appProtocol`, the port name's prefix or the
    /// ServiceEntry; `detect` lets the proxy sniff it.
    pub protocol: Protocol,
    /// The endpoints' port when it is a number; named target ports are
    /// resolved per endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
}

/// Application protocol of a port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Sniffed by the proxy within a bounded time.
    #[default]
    Detect,
    /// HTTP/1.1.
    Http,
    /// HTTP/2 (or gRPC).
    Http2,
    /// Opaque TCP.
    Tcp,
    /// TLS the application originates: forwarded as TCP.
    Tls,
}

/// A ready endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Pod IP.
    pub ip: String,
    /// The pod's ServiceAccount in the destination's namespace, whose SPIFFE
    /// identity the peer must present; none for endpoints outside the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sa: Option<String>,
    /// Whether a sidecar runs there (speak mTLS to it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub meshed: bool,
    /// Names of the subsets this endpoint belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<String>,
    /// Service port to endpoint port, for named target ports only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, u16>,
}

/// A DestinationRule subset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// Its name.
    pub name: String,
    /// Its traffic policy, merged over the destination's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TrafficPolicy>,
}

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
    /// Conditions: `5xx`, `gateway-error`, `reset`, `connect-failure`,
    /// `refused-stream`, `retriable-status-codes` or a status code.
    pub retry_on: Vec<String>,
    /// Base interval between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
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

/// A TCP route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// Its origin.
    pub name: Origin,
    /// Destination port it applies to; all ports when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Weighted backends.
    pub backends: Vec<Backend>,
}

/// Load balancing, connection pool, outlier detection and TLS towards a
/// destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Endpoint selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Limits on connections and requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Ejection of failing endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS towards the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// Overrides for single ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortPolicy>,
}

/// A port's override of the traffic policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortPolicy {
    /// The destination port.
    pub port: u16,
    /// Endpoint selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

/// Endpoint selection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancer {
    /// Least requests by the power of two choices (the default).
    LeastRequest,
    /// Round robin.
    RoundRobin,
    /// Uniformly random.
    Random,
    /// The original destination address.
    Passthrough,
    /// Consistent hashing on a request attribute.
    ConsistentHash(HashKey),
}

/// What consistent hashing hashes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum HashKey {
    /// A header's value.
    Header(String),
    /// A cookie (name, path, ttl in ms; generated when absent and ttl set).
    Cookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// Lifetime of a generated cookie.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// The client's IP.
    SourceIp,
    /// A query parameter.
    QueryParameter(String),
}

/// Connection pool limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPool {
    /// Connections per endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Connect timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Requests waiting for a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// Concurrent requests to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Requests per connection before it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// Concurrent retries to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Idle connections are closed after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Connection lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration_ms: Option<u64>,
}

/// Outlier detection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// 5xx responses in a row that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    /// 502/503/504 in a row that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Connect failures and resets in a row that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_failures: Option<u32>,
    /// Analysis interval.
    pub interval_ms: u64,
    /// Ejection time, multiplied by the number of ejections.
    pub base_ejection_ms: u64,
    /// Share of endpoints that may be ejected.
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints nothing is ejected.
    pub min_health_percent: u32,
}

/// TLS towards a destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    /// `DISABLE`, `MESH` (the mesh's mTLS), `SIMPLE` or `MUTUAL`.
    pub mode: String,
    /// SNI to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Names the server certificate must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// A Secret with the client certificate and CA (SIMPLE, MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Skip verification of the server certificate.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_skip_verify: bool,
}

/// Per-route policies of a ServiceProfile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Its origin.
    pub name: Origin,
    /// Routes in order; the first match gives the request its route name,
    /// retryability, timeout and failure classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ProfileRoute>,
    /// Retries allowed as a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// A ServiceProfile route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRoute {
    /// Route name (for metrics).
    pub name: String,
    /// Which requests.
    pub condition: RequestCondition,
    /// Failed requests may be retried.
    #[serde(default, skip_serializing_if = "is_false")]
    pub retryable: bool,
    /// Request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Status ranges counted as failures (default: 5xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_statuses: Vec<(u16, u16)>,
}

/// A ServiceProfile request condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RequestCondition {
    /// All hold.
    All(Vec<RequestCondition>),
    /// Any holds.
    Any(Vec<RequestCondition>),
    /// Does not hold.
    Not(Box<RequestCondition>),
    /// The path matches the whole regex.
    PathRegex(String),
    /// The method is this one.
    Method(String),
}

impl Default for RequestCondition {
    fn default() -> Self {
        Self::All(Vec::new())
    }
}

/// A retry budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries per request.
    pub ratio: f64,
    /// Retries always allowed per second.
    pub min_per_second: u32,
    /// Window.
    pub ttl_ms: u64,
}

/// Policies of a namespace's workloads. Each entry's `selector` is evaluated
/// by the proxy against its pod's labels; no selector means every workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    /// mTLS modes by precedence: the first entry whose selector matches
    /// applies. The last entry has no selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mtls: Vec<MtlsRule>,
    /// Every matching policy applies: CUSTOM, then DENY, then ALLOW (with at
    /// least one matching ALLOW policy, a request must match one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<AuthorizationPolicy>,
    /// JWT validation; every matching entry applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authentication: Vec<JwtPolicy>,
    /// Local rate limits; every matching entry applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Telemetry by precedence: the first entry whose selector matches applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telemetry: Vec<TelemetryRule>,
}

/// Labels a workload must carry; empty means every workload.
pub type Selector = BTreeMap<String, String>;

/// Whether a workload's labels satisfy a selector.
pub fn selects(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Effective mTLS of the workloads a selector picks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MtlsRule {
    /// Its origin (`PeerAuthentication/<ns>/<name>` or `Mesh/default`).
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// The mode.
    pub mode: MtlsMode,
    /// Modes of single ports (the workload's container ports).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, MtlsMode>,
}

/// Inbound mTLS.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// mTLS only.
    Strict,
    /// mTLS or plaintext.
    #[default]
    Permissive,
    /// Plaintext; TLS is passed through.
    Disable,
}

/// An AuthorizationPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// `ALLOW`, `DENY` or `AUDIT`.
    pub action: String,
    /// A request matches the policy when it matches any rule. An ALLOW policy
    /// without rules allows nothing; a rule without fields matches everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
}

/// A rule: any `from`, any `to` and every `when` must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRule {
    /// Sources: fields are ANDed, values ORed; `not*` values exclude.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<BTreeMap<String, Vec<String>>>,
    /// Operations, as for sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<BTreeMap<String, Vec<String>>>,
    /// Conditions on request attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<AuthorizationCondition>,
}

/// A condition on a request attribute (`request.headers[x]`,
/// `source.principal`, ...).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationCondition {
    /// The attribute.
    pub key: String,
    /// Values of which one must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values none of which may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// A RequestAuthentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtPolicy {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// Accepted issuers.
    pub rules: Vec<JwtRule>,
}

/// One accepted issuer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// The `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the keys are fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Inline keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Headers carrying the token: (name, prefix). Default: Authorization, `Bearer `.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<(String, String)>,
    /// Query parameters carrying the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Keep the token on the forwarded request.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forward_original_token: bool,
    /// Header receiving the verified payload (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Claims copied into headers: (header, claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<(String, String)>,
}

/// A local rate limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// The bucket for requests no route below matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<TokenBucket>,
    /// One bucket per caller identity.
    #[serde(default, skip_serializing_if = "is_false")]
    pub per_source_identity: bool,
    /// Buckets for matching requests; the first match counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RateLimitRoute>,
    /// Status of a limited request.
    pub status: u16,
    /// Headers added to limited responses.
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub limited_response_headers: HeaderOps,
    /// Share of requests the limit applies to.
    pub enabled_percent: f64,
    /// Share of limited requests actually refused (the rest are counted).
    pub enforced_percent: f64,
}

/// A rate-limited route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRoute {
    /// Name (for metrics).
    pub name: String,
    /// Any of these matches.
    pub matches: Vec<HttpMatch>,
    /// Its bucket.
    pub bucket: TokenBucket,
    /// One bucket per caller identity.
    #[serde(default, skip_serializing_if = "is_false")]
    pub per_source_identity: bool,
}

/// A token bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenBucket {
    /// Capacity.
    pub max_tokens: u32,
    /// Tokens added per fill.
    pub tokens_per_fill: u32,
    /// Fill period.
    pub fill_interval_ms: u64,
}

/// Telemetry of the workloads a selector picks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryRule {
    /// Its origins, most specific first.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// Access logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingPolicy>,
    /// Metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsPolicy>,
}

/// Access logging.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// Logging on or off.
    pub enabled: bool,
    /// Providers named by the Telemetry; the proxy logs to stdout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Which side logs: `CLIENT_AND_SERVER`, `CLIENT` or `SERVER`.
    pub mode: String,
}

/// Tracing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracingPolicy {
    /// Share of requests sampled, in percent.
    pub sampling_percent: f64,
    /// Providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Spans are not reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_span_reporting: bool,
    /// Literal tags added to spans.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub literal_tags: BTreeMap<String, String>,
}

/// Metrics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsPolicy {
    /// Providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Standard metrics turned off (`REQUEST_COUNT`, ...; `ALL_METRICS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
    /// Reporting interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval_ms: Option<u64>,
}

/// A Gateway and the routes bound to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Its origin.
    pub name: Origin,
    /// Gateway workloads it configures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// Listeners.
    pub servers: Vec<GatewayServer>,
    /// Virtual hosts: host patterns and their routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_hosts: Vec<VirtualHost>,
}

/// A Gateway listener.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServer {
    /// Port.
    pub port: u16,
    /// `HTTP`, `HTTPS`, `HTTP2`, `GRPC`, `TCP` or `TLS`.
    pub protocol: String,
    /// Hosts served.
    pub hosts: Vec<String>,
    /// TLS mode, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_mode: Option<String>,
    /// Secret with the serving certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Redirect plain HTTP to HTTPS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub https_redirect: bool,
}

/// Host patterns and their routes, on a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// Host patterns.
    pub hosts: Vec<String>,
    /// Routes in order.
    pub http: Vec<HttpRoute>,
}

/// Compresses a configuration's JSON as [`ProxyConfig::to_gzip`] does.
pub fn compress(json: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Fast compression: JSON this repetitive still shrinks about 20 times.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(json);
    encoder.finish().unwrap_or_default()
}

fn no_services(services: &Arc<Vec<Service>>) -> bool {
    services.is_empty()
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// An app's probe that the webhook rewrote to the proxy's admin port
/// (`/app-health/<container>/<kind>`), as it passes them to the proxy in the
/// environment variable [`APP_PROBES_ENV`] (a JSON map by admin path): an
/// HTTP GET on localhost, or a TCP connect when `tcp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppProbe {
    pub port: u16,
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
}

/// The environment variable carrying the app's rewritten probes.
pub const APP_PROBES_ENV: &str = "PLEXUS_APP_PROBES";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unknown_schemas_and_garbage() {
        let mut config = ProxyConfig {
            schema: SCHEMA.into(),
            namespace: "demo".into(),
            trust_domain: "cluster.local".into(),
            ..Default::default()
        };
        let json = serde_json::to_vec(&config).expect("serializes");
        assert_eq!(ProxyConfig::from_json(&json).expect("reads"), config);
        config.schema = "plexus.dev/proxy-config/v9".into();
        let json = serde_json::to_vec(&config).expect("serializes");
        assert!(matches!(
            ProxyConfig::from_json(&json),
            Err(ConfigError::Schema(_))
        ));
        assert!(matches!(
            ProxyConfig::from_json(b"{not json"),
            Err(ConfigError::Malformed(_))
        ));
    }

    #[test]
    fn gzip_round_trips_and_refuses_corruption() {
        let config = ProxyConfig {
            schema: SCHEMA.into(),
            namespace: "demo".into(),
            trust_domain: "cluster.local".into(),
            ..Default::default()
        };
        let bytes = config.to_gzip();
        assert_eq!(bytes, config.to_gzip(), "deterministic");
        assert_eq!(ProxyConfig::from_gzip(&bytes).expect("reads"), config);
        let mut corrupt = bytes.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        assert!(ProxyConfig::from_gzip(&corrupt).is_err());
        assert!(matches!(
            ProxyConfig::from_gzip(b"plain text"),
            Err(ConfigError::Compression(_))
        ));
    }

    #[test]
    fn selectors_need_every_label() {
        let labels = BTreeMap::from([("app".into(), "a".into()), ("v".into(), "1".into())]);
        assert!(selects(&Selector::new(), &labels));
        assert!(selects(
            &Selector::from([("app".into(), "a".into())]),
            &labels
        ));
        assert!(!selects(
            &Selector::from([("app".into(), "a".into()), ("v".into(), "2".into())]),
            &labels
        ));
    }
}
