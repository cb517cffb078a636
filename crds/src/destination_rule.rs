//! `DestinationRule`: policies for traffic to a service after routing (Istio's shape).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, PortSelector, ResourceStatus, WorkloadLabels, string_enum};

/// Policies for traffic to a service once routing has chosen it: load
/// balancing, connection pools, outlier detection, TLS, named subsets of its
/// endpoints and a retry budget. Field for field the shape of Istio's
/// DestinationRule.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "DestinationRule",
    namespaced,
    status = "ResourceStatus",
    shortname = "dr",
    category = "plexus",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Accepted")].status"#
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Programmed")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The service the rule applies to: a Kubernetes Service (short or fully
    /// qualified name) or a ServiceEntry host.
    pub host: String,
    /// Policies for all traffic to the host, unless a subset overrides them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of the host's endpoints, selected by pod labels, that
    /// routes can address (`destination.subset`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Namespaces this rule is visible to: `.` for its own, `*` for all (the
    /// default), or namespace names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Restricts the rule to the client workloads carrying these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadLabels>,
}

/// Traffic policies for a host, a port or a subset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// How endpoints are chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Limits on connections and requests to the host (circuit breaking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing endpoints from the load-balancing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS used by the client proxy towards the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Overrides for individual ports of the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnels TCP traffic to the host through an HTTP CONNECT proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// Sends a PROXY protocol header to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Caps retries to the host at a share of its active requests, so that
    /// retries cannot multiply load on a struggling service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

string_enum! {
    /// A simple load-balancing algorithm.
    SimpleLb {
        /// The proxy's default: LEAST_REQUEST.
        Unspecified = "UNSPECIFIED",
        /// Deprecated alias of LEAST_REQUEST.
        LeastConn = "LEAST_CONN",
        /// A random endpoint.
        Random = "RANDOM",
        /// The original destination address, without load balancing.
        Passthrough = "PASSTHROUGH",
        /// Each endpoint in turn.
        RoundRobin = "ROUND_ROBIN",
        /// The less loaded of two random endpoints (power of two choices).
        LeastRequest = "LEAST_REQUEST",
        /// Plexus: the endpoint with the lower latency estimate times
        /// requests in flight, of two random ones (Linkerd's peak EWMA).
        PeakEwma = "PEAK_EWMA",
    }
}

/// How endpoints are chosen; `simple` or `consistentHash`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// A simple algorithm: UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH,
    /// ROUND_ROBIN or LEAST_REQUEST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    /// Session affinity: requests with the same key go to the same endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality-aware load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLbSetting>,
    /// Time over which a new endpoint's share of traffic ramps up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
}

/// Consistent hashing; exactly one hash key is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    /// Hash on the value of this request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// Hash on this cookie, created by the proxy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the caller's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    /// Hash on the value of this query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    /// Ring-hash algorithm settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// Maglev algorithm settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated: use `ringHash.minimumRingSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// The cookie used for cookie-based affinity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpCookie {
    /// Name of the cookie.
    pub name: String,
    /// Path of the cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Lifetime of the cookie the proxy creates; a session cookie when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Extra attributes of the generated cookie.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<CookieAttribute>,
}

/// One cookie attribute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CookieAttribute {
    /// Attribute name, such as `SameSite`.
    pub name: String,
    /// Attribute value, such as `Strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Ring-hash settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    /// Minimum number of virtual nodes on the ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
}

/// Maglev settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MagLev {
    /// Size of the lookup table; a prime number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

/// Locality-aware load balancing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalityLbSetting {
    /// Shares of traffic each origin locality sends to each destination locality.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<LocalityDistribute>,
    /// Where traffic goes when a locality's endpoints are unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Labels, in order of priority, that endpoints should share with the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// Turns locality load balancing on or off; on when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Traffic distribution from one locality.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalityDistribute {
    /// Origin locality, `region/zone/subzone`, wildcards allowed.
    pub from: String,
    /// Destination localities and their weights, adding up to 100.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u32>,
}

/// Failover between regions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalityFailover {
    /// Region whose endpoints are unhealthy.
    pub from: String,
    /// Region that takes its traffic.
    pub to: String,
}

/// Limits on connections and requests (circuit breaking).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPoolSettings {
    /// Limits common to TCP and HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// Limits for HTTP/1.1 and HTTP/2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// TCP connection limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    /// Maximum connections to the host from one proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i32>,
    /// Connection timeout, such as `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// TCP keep-alive probes on connections to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Longest lifetime of a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// Idle time after which a connection is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// TCP keep-alive settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    /// Idle time before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// Time between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

string_enum! {
    /// Whether HTTP/1.1 connections to the host are upgraded to HTTP/2.
    H2UpgradePolicy {
        /// The mesh's default.
        Default = "DEFAULT",
        /// Keep HTTP/1.1.
        DoNotUpgrade = "DO_NOT_UPGRADE",
        /// Upgrade to HTTP/2.
        Upgrade = "UPGRADE",
    }
}

/// HTTP request limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Maximum requests queued while waiting for a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<i32>,
    /// Maximum active requests to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<i32>,
    /// Requests per connection before it is closed; 0 or unset means no limit,
    /// 1 disables keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i32>,
    /// Maximum outstanding retries to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// Idle time after which an upstream connection is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 upgrade: DEFAULT, DO_NOT_UPGRADE or UPGRADE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Use the protocol of the incoming request towards the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_client_protocol: Option<bool>,
    /// Maximum concurrent streams on one HTTP/2 connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<i32>,
}

/// Ejection of failing endpoints.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Count local failures (connect errors, timeouts) separately from
    /// responses of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// Consecutive local failures before ejection (with split errors on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive 502, 503 and 504 responses (and connection errors) before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx responses (and connection errors) before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Deprecated: consecutive 502, 503 and 504 responses before ejection; use
    /// `consecutiveGatewayErrors` or `consecutive5xxErrors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<i32>,
    /// Time between ejection sweeps; 10s when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection time, multiplied by the number of ejections; 30s when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Largest share of endpoints ejected at once; 10% when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i32>,
    /// Outlier detection pauses while fewer healthy endpoints than this share remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_health_percent: Option<i32>,
}

string_enum! {
    /// TLS towards a host.
    ClientTlsMode {
        /// No TLS from the proxy.
        Disable = "DISABLE",
        /// TLS, verifying the server.
        Simple = "SIMPLE",
        /// TLS with a client certificate given here.
        Mutual = "MUTUAL",
        /// The mesh's own mTLS with workload identities (Istio's name, kept for
        /// compatibility).
        IstioMutual = "ISTIO_MUTUAL",
    }
}

/// TLS settings of the client proxy towards a host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL (the mesh's mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClientTlsMode>,
    /// Path of the client certificate (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Path of the client's private key (MUTUAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Path of the CA certificates that verify the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Secret holding the client certificate, key and CA certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Names the server's certificate must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Server name sent in the TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Skip verification of the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Path of a certificate revocation list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

/// Policies for one port of the host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    /// The port these policies apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    /// How endpoints are chosen on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// HTTP CONNECT tunnelling.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSettings {
    /// `CONNECT` (HTTP/1.1) or `POST` (HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Host the tunnel leads to.
    pub target_host: String,
    /// Port the tunnel leads to.
    pub target_port: u32,
}

/// PROXY protocol header towards the host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyProtocol {
    /// PROXY protocol version: `V1` or `V2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A limit on concurrent retries relative to active requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Largest share of active requests that may be retries, from 0 to 100; 20 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Retries always allowed concurrently, whatever the share; 3 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
    /// Window over which requests count towards the budget; only active
    /// requests count when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<Duration>,
}

/// A named group of the host's endpoints.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// Name routes use in `destination.subset`.
    pub name: String,
    /// Labels an endpoint's pod must carry to belong to the subset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Policies for this subset; they override the rule's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}
