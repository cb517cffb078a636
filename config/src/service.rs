//! Destinations: Services and ServiceEntries, their ports, endpoints,
//! subsets and traffic policies (DestinationRule), and ServiceProfiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::route::Origin;
use crate::{HttpRoute, TcpRoute, is_false};
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
    /// TLS routes (by SNI) in order; the first match wins, before `tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TcpRoute>,
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
    /// The endpoints' names (a ServiceEntry's hosts when it lists no
    /// endpoints), resolved by the proxy; every address they resolve to is
    /// an endpoint (Envoy's strict DNS).
    Dns,
    /// As `Dns`, but only the first address each name resolves to is an
    /// endpoint (Envoy's logical DNS).
    DnsRoundRobin,
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
    /// Pod IP; under `Dns` resolution, a name or an address.
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
    /// Where its PeerAuthentication says DISABLE: client proxies speak
    /// plaintext to it there.
    #[serde(default, skip_serializing_if = "Plaintext::is_none")]
    pub plaintext: Plaintext,
}

/// The ports of a meshed endpoint that accept plaintext only (its
/// PeerAuthentication's DISABLE).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Plaintext {
    /// Every port, unless `ports` says otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    /// Endpoint ports whose mode differs from `all`: true for plaintext.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, bool>,
}

impl Service {
    /// Every `tls` setting of the service's policies: the whole service's,
    /// its subsets', and their ports'.
    pub fn client_tls(&self) -> impl Iterator<Item = &ClientTls> {
        self.policy
            .iter()
            .chain(self.subsets.iter().filter_map(|s| s.policy.as_ref()))
            .flat_map(|p| {
                p.tls
                    .iter()
                    .chain(p.ports.iter().filter_map(|port| port.tls.as_ref()))
            })
    }
}

impl Plaintext {
    pub fn is_none(&self) -> bool {
        !self.all && self.ports.values().all(|p| !p)
    }

    /// Whether the endpoint port `port` takes plaintext only.
    pub fn on(&self, port: u16) -> bool {
        self.ports.get(&port).copied().unwrap_or(self.all)
    }
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
/// Load balancing, connection pool, outlier detection and TLS towards a
/// destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Endpoint selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Slow start: a new endpoint's share ramps up over this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_ms: Option<u64>,
    /// Limits on connections and requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Ejection of failing endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS towards the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// Retries in flight as a share of requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<ConcurrencyBudget>,
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
    /// Slow start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_ms: Option<u64>,
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
    /// Power of two choices by peak-EWMA latency times requests in flight.
    PeakEwma,
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

/// A retry budget by concurrency (DestinationRule `retryBudget`, Envoy's):
/// retries in flight at most `percent` of the requests in flight, or
/// `min_concurrency`, whichever is more.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencyBudget {
    pub percent: f64,
    pub min_concurrency: u32,
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
    /// TCP keepalive on the connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
}

/// TCP keepalive; unset fields are Linux's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepalive {
    /// Idle time before the first probe (7200 s).
    pub time_ms: u64,
    /// Time between probes (75 s).
    pub interval_ms: u64,
    /// Probes unanswered before the connection is dropped (9).
    pub probes: u32,
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
    /// Connect failures, resets and timeouts in a row that eject an
    /// endpoint (counted only when `split_local_origin_errors` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_failures: Option<u32>,
    /// Failures of the proxy's own (no response: connect failure, reset,
    /// timeout) count apart from the endpoint's 5xx answers; otherwise
    /// they count as 503s (504 for timeouts), as Envoy maps them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub split_local_origin_errors: bool,
    /// Analysis interval.
    pub interval_ms: u64,
    /// Ejection time, multiplied by the number of ejections.
    pub base_ejection_ms: u64,
    /// Share of endpoints that may be ejected.
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints nothing is ejected.
    pub min_health_percent: u32,
}

crate::one_of! {
    /// TLS towards a destination (DestinationRule `tls.mode`).
    #[derive(Default)]
    ClientTlsMode {
        /// Plaintext.
        Disable = "DISABLE",
        /// The mesh's mTLS with SPIFFE identities (Istio's ISTIO_MUTUAL).
        #[default]
        Mesh = "MESH",
        /// TLS to a server outside the mesh.
        Simple = "SIMPLE",
        /// TLS with a client certificate, to a server outside the mesh.
        Mutual = "MUTUAL",
    }
}

/// TLS towards a destination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    /// How the connection is protected.
    pub mode: ClientTlsMode,
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
