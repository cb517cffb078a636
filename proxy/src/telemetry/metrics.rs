//! The proxy's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::egress::EgressMetrics;
use super::policy::PolicyMetrics;
use super::resilience::ResilienceMetrics;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// inbound or outbound.
    pub direction: &'static str,
}

impl From<Direction> for DirectionLabels {
    fn from(direction: Direction) -> Self {
        Self {
            direction: direction.as_str(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub direction: &'static str,
    /// plaintext (under STRICT), handshake (failed mTLS), no-certificate.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub direction: &'static str,
    /// The SPIFFE ID the other side proved.
    pub peer_identity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub dst_service: String,
    pub route: String,
    /// success or failure, by the ServiceProfile route's response classes
    /// (5xx when it has none).
    pub classification: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    pub route: String,
    /// The mirror's cluster, `<namespace>/<name>:<port>[/<subset>]`.
    pub cluster: String,
    /// answered, failed, body-too-large, no-endpoints or too-many.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// config or identity.
    pub source: &'static str,
    /// loaded or rejected.
    pub result: &'static str,
}

/// One HTTP request's labels. Identities are SPIFFE IDs ("" where the side
/// has none: an unmeshed destination).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub direction: &'static str,
    pub src_identity: String,
    pub dst_identity: String,
    /// The route taken (outbound): `<kind>/<namespace>/<name>[/<route>]`,
    /// "default" without one; "" inbound.
    pub route: String,
    /// The destination service, `<namespace>/<name>` ("" inbound).
    pub dst_service: String,
    /// The response's status code.
    pub status: u16,
}

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

pub type Histograms = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the response's headers.
    pub request_latency: Histograms,
    /// Requests sent again, by route.
    pub retries: Family<RouteLabels, Counter>,
    /// Outbound answers on ServiceProfile routes, success or failure.
    pub classified: Family<ClassLabels, Counter>,
    /// Copies of requests sent to mirrors, by outcome.
    pub mirrored: Family<MirrorLabels, Counter>,
    pub tcp_opened: Family<DirectionLabels, Counter>,
    pub tcp_closed: Family<DirectionLabels, Counter>,
    pub tcp_connect_errors: Family<DirectionLabels, Counter>,
    /// Bytes from the connection's client towards its server.
    pub tcp_sent_bytes: Family<DirectionLabels, Counter>,
    /// Bytes from the server back to the client.
    pub tcp_received_bytes: Family<DirectionLabels, Counter>,
    pub tcp_active: Gauge,
    pub tcp_refused: Family<RefusedLabels, Counter>,
    pub tcp_mtls: Family<PeerLabels, Counter>,
    /// What the inbound policies did.
    pub policy: PolicyMetrics,
    /// Ejections, overflows, retries not made.
    pub resilience: ResilienceMetrics,
    /// Refusals under REGISTRY_ONLY, DNS lookups.
    pub egress: EgressMetrics,
    pub reloads: Family<ReloadLabels, Counter>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("plexus_proxy");
        let metrics = Self {
            requests: Family::default(),
            request_latency: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            classified: Family::default(),
            mirrored: Family::default(),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
            tcp_connect_errors: Family::default(),
            tcp_sent_bytes: Family::default(),
            tcp_received_bytes: Family::default(),
            tcp_active: Gauge::default(),
            tcp_refused: Family::default(),
            tcp_mtls: Family::default(),
            policy: PolicyMetrics::default(),
            resilience: ResilienceMetrics::default(),
            egress: EgressMetrics::default(),
            reloads: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "HTTP requests answered, by direction, identities, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "request_latency_seconds",
            "Time from a request to its response's headers",
            metrics.request_latency.clone(),
        );
        registry.register(
            "retries",
            "HTTP requests sent again by a route's retry policy",
            metrics.retries.clone(),
        );
        registry.register(
            "response_classes",
            "Outbound answers on ServiceProfile routes, success or failure by the route's response classes",
            metrics.classified.clone(),
        );
        registry.register(
            "mirrored",
            "Requests copied to a route's mirror, by route, mirror cluster and outcome",
            metrics.mirrored.clone(),
        );
        registry.register(
            "tcp_open",
            "TCP connections accepted",
            metrics.tcp_opened.clone(),
        );
        registry.register(
            "tcp_close",
            "TCP connections ended",
            metrics.tcp_closed.clone(),
        );
        registry.register(
            "tcp_connect_errors",
            "Connections whose destination could not be reached",
            metrics.tcp_connect_errors.clone(),
        );
        registry.register(
            "tcp_sent_bytes",
            "Bytes forwarded from clients to servers",
            metrics.tcp_sent_bytes.clone(),
        );
        registry.register(
            "tcp_received_bytes",
            "Bytes forwarded from servers back to clients",
            metrics.tcp_received_bytes.clone(),
        );
        registry.register(
            "tcp_active",
            "TCP connections open now",
            metrics.tcp_active.clone(),
        );
        registry.register(
            "tcp_refused",
            "Connections refused: plaintext under STRICT mTLS, failed handshakes",
            metrics.tcp_refused.clone(),
        );
        registry.register(
            "tcp_mtls",
            "Connections carried over mTLS, by the peer's SPIFFE identity",
            metrics.tcp_mtls.clone(),
        );
        metrics.policy.register(&mut registry);
        metrics.resilience.register(&mut registry);
        metrics.egress.register(&mut registry);
        registry.register(
            "reloads",
            "Configuration and certificate updates read, by result",
            metrics.reloads.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn reload(&self, source: &'static str, result: &'static str) {
        self.reloads
            .get_or_create(&ReloadLabels { source, result })
            .inc();
    }

    /// Counts an answered request and its latency.
    pub fn request(&self, labels: RequestLabels, elapsed: std::time::Duration) {
        self.request_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts an outbound answer as a success or a failure.
    pub fn classified(&self, dst_service: &str, route: &str, failure: bool) {
        self.classified
            .get_or_create(&ClassLabels {
                dst_service: dst_service.to_owned(),
                route: route.to_owned(),
                classification: if failure { "failure" } else { "success" },
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "encoding metrics");
        }
        out
    }
}
