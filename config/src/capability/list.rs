//! The list: every field of the mesh API the proxy acts on, with the test
//! that shows it. The tests build the resources, compile them with the
//! operator's compiler, run real proxies on loopback with the result and
//! observe what the proxies do (`proxy/tests/`); `capability_tests_exist`
//! fails when a test named here does not.
//!
//! Not here, so reported as not in force: VirtualService delegation,
//! fault gRPC statuses, L4 matches' `gateways` and TCP/TLS routes to
//! subsets (no test shows them yet); DestinationRule
//! connection pools' TCP idle timeouts and protocol upgrades, the
//! `caCertificates`/`clientCertificate`/`privateKey` file paths (the proxy
//! is given no files: `credentialName` instead), locality, ring sizes,
//! PASSTHROUGH;
//! ServiceProfile dstOverrides; the Mesh's mtls.mode DISABLE (the
//! loopback proxies cannot show it: their endpoint ports are not the apps'
//! ports; a PeerAuthentication's port-level DISABLE is shown on the
//! cluster, by a capture of the wire);
//! RateLimitPolicy route matches on `sourceLabels` (a server proxy does
//! not know its caller's labels); Telemetry and Gateway (no gateway proxy
//! yet).

use super::{Capability, Kind, Values};
use crate::RetryOn;

const fn on(path: &'static str, values: Values, test: &'static str) -> Capability {
    Capability { path, values, test }
}

const ANY: Values = Values::Any;

/// `retryOn` items the proxy acts on: status codes and every condition
/// (`routing.rs` shows the first five, `resilience.rs` the others).
fn retry_on(item: &str) -> bool {
    item.parse::<RetryOn>().is_ok()
}

/// Bound to the mesh's sidecars; there is no gateway proxy yet.
fn mesh_gateway(gateway: &str) -> bool {
    gateway == "mesh"
}

const MATCHES: &str = "proxy/tests/routing.rs::header_and_path_matches_pick_routes";
const SPLITS: &str = "proxy/tests/routing.rs::splits_follow_the_weights";
const RETRIES: &str = "proxy/tests/routing.rs::retries_follow_retry_on";
const FAULTS: &str = "proxy/tests/routing.rs::faults_delay_and_abort";
const REDIRECTS: &str = "proxy/tests/routing.rs::redirects_and_direct_responses";
const REWRITES: &str = "proxy/tests/routing.rs::rewrites_change_path_and_authority";
const HEADERS: &str = "proxy/tests/routing.rs::header_rules_change_requests_and_responses";
const ROUND_ROBIN: &str = "proxy/tests/balance.rs::round_robin_takes_turns";
const SPREAD: &str = "proxy/tests/balance.rs::random_and_least_request_balancing";
const HASH: &str = "proxy/tests/balance.rs::consistent_hash_keeps_a_key_on_one_endpoint";
const RETRY_ON: &str = "proxy/tests/resilience.rs::every_retry_on_condition_retries";
const OUTLIER_LOCAL: &str = "proxy/tests/resilience.rs::local_origin_failures_count_apart";
const MIRRORS: &str = "proxy/tests/traffic.rs::mirrors_copy_requests_without_the_caller_waiting";
const CORS: &str = "proxy/tests/traffic.rs::cors_answers_preflights_and_marks_answers";
const L4_ROUTES: &str = "proxy/tests/traffic.rs::tcp_and_tls_routes_pick_backends";
const MTLS: &str = "proxy/tests/inbound.rs::peer_authentication_modes_decide_plaintext";
const ORIGINATE: &str = "proxy/tests/origination.rs::simple_tls_origination_verifies_the_server";
/// On the cluster: the proxy reads the client certificate's Secret through
/// the API, as its ServiceAccount (`proxy/tests/origination.rs::
/// mutual_tls_origination_presents_the_client_certificate` shows the
/// handshake, rotation and rejection on loopback).
const ORIGINATE_MUTUAL: &str =
    "e2e/tests/mesh/origination.rs::mutual_origination_presents_the_client_certificate";

const VIRTUAL_SERVICE: &[Capability] = &[
    on("hosts", ANY, SPLITS),
    on("gateways[]", Values::Only(mesh_gateway), MATCHES),
    on(
        "exportTo",
        ANY,
        "proxy/tests/routing.rs::export_to_limits_who_sees_routes",
    ),
    on("http[].name", ANY, MATCHES),
    on("http[].match[].uri.*", ANY, MATCHES),
    on("http[].match[].scheme.*", ANY, MATCHES),
    on("http[].match[].method.*", ANY, MATCHES),
    on("http[].match[].authority.*", ANY, MATCHES),
    on("http[].match[].headers.*.*", ANY, MATCHES),
    on("http[].match[].withoutHeaders.*.*", ANY, MATCHES),
    on("http[].match[].queryParams.*.*", ANY, MATCHES),
    on("http[].match[].port", ANY, MATCHES),
    on("http[].match[].sourceLabels.*", ANY, MATCHES),
    on("http[].match[].sourceNamespace", ANY, MATCHES),
    on("http[].match[].ignoreUriCase", ANY, MATCHES),
    on("http[].route[].destination.host", ANY, SPLITS),
    on("http[].route[].destination.subset", ANY, SPLITS),
    on("http[].route[].destination.port.number", ANY, SPLITS),
    on("http[].route[].weight", ANY, SPLITS),
    on("http[].route[].headers.request.**", ANY, HEADERS),
    on("http[].route[].headers.response.**", ANY, HEADERS),
    on("http[].headers.request.**", ANY, HEADERS),
    on("http[].headers.response.**", ANY, HEADERS),
    on("http[].redirect.uri", ANY, REDIRECTS),
    on("http[].redirect.authority", ANY, REDIRECTS),
    on("http[].redirect.port", ANY, REDIRECTS),
    on("http[].redirect.scheme", ANY, REDIRECTS),
    on("http[].redirect.redirectCode", ANY, REDIRECTS),
    on("http[].directResponse.status", ANY, REDIRECTS),
    on("http[].directResponse.body.string", ANY, REDIRECTS),
    on("http[].rewrite.uri", ANY, REWRITES),
    on("http[].rewrite.authority", ANY, REWRITES),
    on("http[].rewrite.uriRegexRewrite.match", ANY, REWRITES),
    on("http[].rewrite.uriRegexRewrite.rewrite", ANY, REWRITES),
    on(
        "http[].timeout",
        ANY,
        "proxy/tests/routing.rs::timeouts_answer_504",
    ),
    on("http[].retries.attempts", ANY, RETRIES),
    on("http[].retries.retryOn", Values::Items(retry_on), RETRIES),
    on("http[].retries.retryOn", Values::Items(retry_on), RETRY_ON),
    on(
        "http[].retries.perTryTimeout",
        ANY,
        "proxy/tests/routing.rs::per_try_timeouts_end_attempts",
    ),
    on("http[].retries.backoff", ANY, RETRIES),
    on("http[].fault.delay.fixedDelay", ANY, FAULTS),
    on("http[].fault.delay.percentage.value", ANY, FAULTS),
    on("http[].fault.delay.percent", ANY, FAULTS),
    on("http[].fault.abort.httpStatus", ANY, FAULTS),
    on("http[].fault.abort.percentage.value", ANY, FAULTS),
    on("http[].mirror.host", ANY, MIRRORS),
    on("http[].mirror.subset", ANY, MIRRORS),
    on("http[].mirror.port.number", ANY, MIRRORS),
    on("http[].mirrorPercentage.value", ANY, MIRRORS),
    on("http[].mirrorPercent", ANY, MIRRORS),
    on("http[].mirrors[].destination.host", ANY, MIRRORS),
    on("http[].mirrors[].destination.subset", ANY, MIRRORS),
    on("http[].mirrors[].destination.port.number", ANY, MIRRORS),
    on("http[].mirrors[].percentage.value", ANY, MIRRORS),
    on("http[].corsPolicy.allowOrigins[].*", ANY, CORS),
    on("http[].corsPolicy.allowOrigin[]", ANY, CORS),
    on("http[].corsPolicy.allowMethods[]", ANY, CORS),
    on("http[].corsPolicy.allowHeaders[]", ANY, CORS),
    on("http[].corsPolicy.exposeHeaders[]", ANY, CORS),
    on("http[].corsPolicy.maxAge", ANY, CORS),
    on("http[].corsPolicy.allowCredentials", ANY, CORS),
    on("http[].corsPolicy.unmatchedPreflights", ANY, CORS),
    on("tcp[].match[].port", ANY, L4_ROUTES),
    on("tcp[].match[].destinationSubnets[]", ANY, L4_ROUTES),
    on("tcp[].match[].sourceLabels.*", ANY, L4_ROUTES),
    on("tcp[].match[].sourceNamespace", ANY, L4_ROUTES),
    on("tcp[].route[].destination.host", ANY, L4_ROUTES),
    on("tcp[].route[].destination.port.number", ANY, L4_ROUTES),
    on("tcp[].route[].weight", ANY, L4_ROUTES),
    on("tls[].match[].sniHosts[]", ANY, L4_ROUTES),
    on("tls[].match[].port", ANY, L4_ROUTES),
    on("tls[].match[].destinationSubnets[]", ANY, L4_ROUTES),
    on("tls[].match[].sourceLabels.*", ANY, L4_ROUTES),
    on("tls[].match[].sourceNamespace", ANY, L4_ROUTES),
    on("tls[].route[].destination.host", ANY, L4_ROUTES),
    on("tls[].route[].destination.port.number", ANY, L4_ROUTES),
    on("tls[].route[].weight", ANY, L4_ROUTES),
];

/// Load balancers the proxy runs (LEAST_CONN is Istio's old name of
/// LEAST_REQUEST; UNSPECIFIED is the default, LEAST_REQUEST; PEAK_EWMA is
/// Plexus's own).
const SIMPLE_LB: &[&str] = &[
    "UNSPECIFIED",
    "LEAST_REQUEST",
    "LEAST_CONN",
    "ROUND_ROBIN",
    "RANDOM",
    "PEAK_EWMA",
];

const WARMUP: &str = "proxy/tests/balance.rs::a_joining_endpoint_warms_up";
const POOL: &str = "proxy/tests/resilience.rs::connection_pools_refuse_what_overflows";
const LIFETIMES: &str = "proxy/tests/resilience.rs::connections_live_as_the_pool_says";
const OUTLIER: &str = "proxy/tests/resilience.rs::outlier_detection_ejects_and_readmits";

/// The rule's own fields, then the traffic policy's at each `$level` (the
/// rule's, a port's, a subset's or a subset's port's), with the test that
/// shows its simple load balancers.
macro_rules! destination_rule {
    ($($level:literal => $simple:expr),* $(,)?) => {
        &[
            on("host", ANY, SPLITS),
            on("subsets[].name", ANY, SPLITS),
            on("subsets[].labels.*", ANY, SPLITS),
            on("trafficPolicy.portLevelSettings[].port.number", ANY, ROUND_ROBIN),
            on("subsets[].trafficPolicy.portLevelSettings[].port.number", ANY, ROUND_ROBIN),
            // No port has a retry budget of its own in the API.
            on("trafficPolicy.retryBudget.percent", ANY, POOL),
            on("trafficPolicy.retryBudget.minRetryConcurrency", ANY, POOL),
            on("subsets[].trafficPolicy.retryBudget.percent", ANY, POOL),
            on("subsets[].trafficPolicy.retryBudget.minRetryConcurrency", ANY, POOL),
            $(
                on(concat!($level, "loadBalancer.simple"), Values::OneOf(SIMPLE_LB), $simple),
                on(concat!($level, "loadBalancer.warmupDurationSecs"), ANY, WARMUP),
                on(concat!($level, "loadBalancer.consistentHash.httpHeaderName"), ANY, HASH),
                on(concat!($level, "loadBalancer.consistentHash.httpCookie.name"), ANY, HASH),
                on(concat!($level, "loadBalancer.consistentHash.httpCookie.path"), ANY, HASH),
                on(concat!($level, "loadBalancer.consistentHash.httpCookie.ttl"), ANY, HASH),
                on(concat!($level, "loadBalancer.consistentHash.useSourceIp"), ANY, HASH),
                on(concat!($level, "loadBalancer.consistentHash.httpQueryParameterName"), ANY, HASH),
                on(concat!($level, "connectionPool.tcp.maxConnections"), ANY, POOL),
                on(concat!($level, "connectionPool.http.http1MaxPendingRequests"), ANY, POOL),
                on(concat!($level, "connectionPool.http.http2MaxRequests"), ANY, POOL),
                on(concat!($level, "connectionPool.http.maxRetries"), ANY, POOL),
                on(concat!($level, "connectionPool.http.maxRequestsPerConnection"), ANY, LIFETIMES),
                on(concat!($level, "connectionPool.http.idleTimeout"), ANY, LIFETIMES),
                on(concat!($level, "connectionPool.tcp.maxConnectionDuration"), ANY, LIFETIMES),
                on(concat!($level, "connectionPool.tcp.connectTimeout"), ANY, LIFETIMES),
                on(concat!($level, "connectionPool.tcp.tcpKeepalive.time"), ANY, LIFETIMES),
                on(concat!($level, "connectionPool.tcp.tcpKeepalive.interval"), ANY, LIFETIMES),
                on(concat!($level, "connectionPool.tcp.tcpKeepalive.probes"), ANY, LIFETIMES),
                on(concat!($level, "outlierDetection.consecutive5xxErrors"), ANY, OUTLIER),
                on(concat!($level, "outlierDetection.consecutiveGatewayErrors"), ANY, OUTLIER),
                on(concat!($level, "outlierDetection.consecutiveErrors"), ANY, OUTLIER),
                on(concat!($level, "outlierDetection.consecutiveLocalOriginFailures"), ANY, OUTLIER_LOCAL),
                on(concat!($level, "outlierDetection.splitExternalLocalOriginErrors"), ANY, OUTLIER_LOCAL),
                on(concat!($level, "outlierDetection.interval"), ANY, OUTLIER),
                on(concat!($level, "outlierDetection.baseEjectionTime"), ANY, OUTLIER),
                on(concat!($level, "outlierDetection.maxEjectionPercent"), ANY, OUTLIER),
                on(concat!($level, "outlierDetection.minHealthPercent"), ANY, OUTLIER),
                on(concat!($level, "tls.mode"), Values::OneOf(&["DISABLE", "ISTIO_MUTUAL"]), PLAINTEXT),
                on(concat!($level, "tls.mode"), Values::OneOf(&["SIMPLE"]), ORIGINATE),
                on(concat!($level, "tls.mode"), Values::OneOf(&["MUTUAL"]), ORIGINATE_MUTUAL),
                on(concat!($level, "tls.sni"), ANY, ORIGINATE),
                on(concat!($level, "tls.subjectAltNames"), ANY, ORIGINATE),
                on(concat!($level, "tls.credentialName"), ANY, ORIGINATE),
                on(concat!($level, "tls.insecureSkipVerify"), ANY, ORIGINATE),
            )*
        ]
    };
}

const DESTINATION_RULE: &[Capability] = destination_rule![
    "trafficPolicy." => SPREAD,
    "trafficPolicy.portLevelSettings[]." => ROUND_ROBIN,
    "subsets[].trafficPolicy." => ROUND_ROBIN,
    "subsets[].trafficPolicy.portLevelSettings[]." => ROUND_ROBIN,
];

const SERVICE_ENTRY_TEST: &str = "proxy/tests/routing.rs::service_entries_route_to_their_endpoints";

const ENTRIES_DNS_TEST: &str =
    "proxy/tests/entries.rs::hosts_only_entries_resolve_by_dns_and_refuse_the_rest";
const ENTRIES_TCP_TEST: &str =
    "proxy/tests/entries.rs::tcp_and_tls_entries_match_by_resolved_address_and_server_name";

const ENTRIES_INTERNAL_TEST: &str =
    "proxy/tests/entries.rs::mesh_internal_entries_speak_mtls_to_their_account";

const SERVICE_ENTRY: &[Capability] = &[
    on("hosts", ANY, SERVICE_ENTRY_TEST),
    on("addresses", ANY, SERVICE_ENTRY_TEST),
    on("ports[].number", ANY, SERVICE_ENTRY_TEST),
    on("ports[].name", ANY, SERVICE_ENTRY_TEST),
    on("ports[].protocol", ANY, SERVICE_ENTRY_TEST),
    on("ports[].targetPort", ANY, SERVICE_ENTRY_TEST),
    on("resolution", Values::OneOf(&["STATIC"]), SERVICE_ENTRY_TEST),
    // Names the proxy resolves itself, hosts-only entries by Host.
    on(
        "resolution",
        Values::OneOf(&["DNS", "DNS_ROUND_ROBIN"]),
        ENTRIES_DNS_TEST,
    ),
    // As addressed; hosts-only TCP by the address the host resolves to,
    // TLS by server name.
    on("resolution", Values::OneOf(&["NONE"]), ENTRIES_TCP_TEST),
    // Outside the mesh: plaintext to the endpoints as they are addressed.
    on(
        "location",
        Values::OneOf(&["MESH_EXTERNAL"]),
        SERVICE_ENTRY_TEST,
    ),
    // Meshed endpoints: mTLS, proving their ServiceAccount.
    on(
        "location",
        Values::OneOf(&["MESH_INTERNAL"]),
        ENTRIES_INTERNAL_TEST,
    ),
    on("endpoints[].serviceAccount", ANY, ENTRIES_INTERNAL_TEST),
    on("endpoints[].address", ANY, SERVICE_ENTRY_TEST),
    on("endpoints[].ports.*", ANY, SERVICE_ENTRY_TEST),
    // What DestinationRule subsets select.
    on("endpoints[].labels.*", ANY, SERVICE_ENTRY_TEST),
];

const TRAFFIC_SPLIT_TEST: &str = "proxy/tests/routing.rs::traffic_splits_split_between_services";

const TRAFFIC_SPLIT: &[Capability] = &[
    on("service", ANY, TRAFFIC_SPLIT_TEST),
    on("backends[].service", ANY, TRAFFIC_SPLIT_TEST),
    on("backends[].weight", ANY, TRAFFIC_SPLIT_TEST),
];

const PROFILE: &str =
    "proxy/tests/resilience.rs::service_profile_routes_retry_time_out_and_classify";

const SERVICE_PROFILE: &[Capability] = &[
    on(
        "opaquePorts",
        ANY,
        "proxy/tests/routing.rs::opaque_ports_are_not_read_as_http",
    ),
    on("routes[].name", ANY, PROFILE),
    on("routes[].condition.**", ANY, PROFILE),
    on("routes[].isRetryable", ANY, PROFILE),
    on("routes[].timeout", ANY, PROFILE),
    on("routes[].responseClasses[].condition.**", ANY, PROFILE),
    on("routes[].responseClasses[].isFailure", ANY, PROFILE),
    on("retryBudget.retryRatio", ANY, PROFILE),
    on("retryBudget.minRetriesPerSecond", ANY, PROFILE),
    on("retryBudget.ttl", ANY, PROFILE),
];

/// mTLS modes the Mesh's default sets on the server proxies.
const MTLS_MODES: &[&str] = &["UNSET", "STRICT", "PERMISSIVE"];

/// A PeerAuthentication's DISABLE: client proxies speak plaintext to the
/// workload (the server proxy still takes mTLS from a client that insists).
const PLAINTEXT: &str =
    "proxy/tests/traffic.rs::plaintext_where_peer_authentication_or_destination_rule_disables";

/// A port-level DISABLE, on the cluster (endpoint ports are the apps').
const PORT_PLAINTEXT: &str =
    "e2e/tests/mesh/capture.rs::disable_is_cleartext_and_istio_mutual_is_tls";

const PEER_AUTHENTICATION: &[Capability] = &[
    on("selector.matchLabels.*", ANY, MTLS),
    on("targetRef.**", ANY, MTLS),
    on("mtls.mode", Values::OneOf(MTLS_MODES), MTLS),
    on("mtls.mode", Values::OneOf(&["DISABLE"]), PLAINTEXT),
    on("portLevelMtls.*.mode", Values::OneOf(MTLS_MODES), MTLS),
    on(
        "portLevelMtls.*.mode",
        Values::OneOf(&["DISABLE"]),
        PORT_PLAINTEXT,
    ),
];

const AP_ACTIONS: &str = "proxy/tests/authz.rs::deny_allow_audit_and_their_targets";
const AP_SOURCES: &str = "proxy/tests/authz.rs::sources_are_identities_namespaces_and_addresses";
const AP_OPERATIONS: &str =
    "proxy/tests/authz.rs::operations_are_hosts_ports_methods_and_normalized_paths";
const AP_CONDITIONS: &str = "proxy/tests/authz.rs::conditions_test_request_attributes";
const JWT: &str = "proxy/tests/jwt.rs::tokens_are_verified_where_rules_say";
const JWT_PRINCIPALS: &str = "proxy/tests/jwt.rs::policies_require_request_principals";
const JWKS_URI: &str = "proxy/tests/jwt.rs::keys_are_fetched_from_jwks_uris";
const RATE_LIMITS: &str = "proxy/tests/ratelimit.rs::buckets_limit_per_route_and_per_identity";
const DRY_RUN: &str = "proxy/tests/ratelimit.rs::dry_runs_count_without_refusing";

const AUTHORIZATION_POLICY: &[Capability] = &[
    on("selector.matchLabels.*", ANY, AP_ACTIONS),
    on("targetRef.**", ANY, AP_ACTIONS),
    on("targetRefs[].**", ANY, AP_ACTIONS),
    on(
        "action",
        Values::OneOf(&["ALLOW", "DENY", "AUDIT"]),
        AP_ACTIONS,
    ),
    on("rules[].from[].source.principals", ANY, AP_SOURCES),
    on("rules[].from[].source.notPrincipals", ANY, AP_SOURCES),
    on("rules[].from[].source.namespaces", ANY, AP_SOURCES),
    on("rules[].from[].source.notNamespaces", ANY, AP_SOURCES),
    on("rules[].from[].source.serviceAccounts", ANY, AP_SOURCES),
    on("rules[].from[].source.notServiceAccounts", ANY, AP_SOURCES),
    on("rules[].from[].source.ipBlocks", ANY, AP_SOURCES),
    on("rules[].from[].source.notIpBlocks", ANY, AP_SOURCES),
    on("rules[].from[].source.remoteIpBlocks", ANY, AP_SOURCES),
    on("rules[].from[].source.notRemoteIpBlocks", ANY, AP_SOURCES),
    on(
        "rules[].from[].source.requestPrincipals",
        ANY,
        JWT_PRINCIPALS,
    ),
    on(
        "rules[].from[].source.notRequestPrincipals",
        ANY,
        JWT_PRINCIPALS,
    ),
    on("rules[].to[].operation.hosts", ANY, AP_OPERATIONS),
    on("rules[].to[].operation.notHosts", ANY, AP_OPERATIONS),
    on("rules[].to[].operation.ports", ANY, AP_OPERATIONS),
    on("rules[].to[].operation.notPorts", ANY, AP_OPERATIONS),
    on("rules[].to[].operation.methods", ANY, AP_OPERATIONS),
    on("rules[].to[].operation.notMethods", ANY, AP_OPERATIONS),
    on("rules[].to[].operation.paths", ANY, AP_OPERATIONS),
    on("rules[].to[].operation.notPaths", ANY, AP_OPERATIONS),
    on("rules[].when[].key", ANY, AP_CONDITIONS),
    on("rules[].when[].values", ANY, AP_CONDITIONS),
    on("rules[].when[].notValues", ANY, AP_CONDITIONS),
];

const REQUEST_AUTHENTICATION: &[Capability] = &[
    on("selector.matchLabels.*", ANY, JWT),
    on("targetRef.**", ANY, JWT),
    on("targetRefs[].**", ANY, JWT),
    on("jwtRules[].issuer", ANY, JWT),
    on("jwtRules[].audiences", ANY, JWT),
    on("jwtRules[].jwks", ANY, JWT),
    on("jwtRules[].jwksUri", ANY, JWKS_URI),
    on("jwtRules[].timeout", ANY, JWKS_URI),
    on("jwtRules[].fromHeaders[].name", ANY, JWT),
    on("jwtRules[].fromHeaders[].prefix", ANY, JWT),
    on("jwtRules[].fromParams", ANY, JWT),
    on("jwtRules[].fromCookies", ANY, JWT),
    on("jwtRules[].forwardOriginalToken", ANY, JWT),
    on("jwtRules[].outputPayloadToHeader", ANY, JWT),
    on("jwtRules[].outputClaimToHeaders[].header", ANY, JWT),
    on("jwtRules[].outputClaimToHeaders[].claim", ANY, JWT),
];

/// A RateLimitPolicy route's matches, as a VirtualService's but for the
/// caller's labels, which a server proxy does not know.
const RATE_LIMIT_POLICY: &[Capability] = &[
    on("selector.matchLabels.*", ANY, RATE_LIMITS),
    on("tokenBucket.maxTokens", ANY, RATE_LIMITS),
    on("tokenBucket.tokensPerFill", ANY, RATE_LIMITS),
    on("tokenBucket.fillInterval", ANY, RATE_LIMITS),
    on("perSourceIdentity", ANY, RATE_LIMITS),
    on("routes[].name", ANY, RATE_LIMITS),
    on("routes[].match[].uri.*", ANY, RATE_LIMITS),
    on("routes[].match[].method.*", ANY, RATE_LIMITS),
    on("routes[].match[].headers.*.*", ANY, RATE_LIMITS),
    on("routes[].match[].withoutHeaders.*.*", ANY, RATE_LIMITS),
    on("routes[].match[].queryParams.*.*", ANY, RATE_LIMITS),
    on("routes[].match[].authority.*", ANY, RATE_LIMITS),
    on("routes[].match[].ignoreUriCase", ANY, RATE_LIMITS),
    on("routes[].match[].sourceNamespace", ANY, RATE_LIMITS),
    on("routes[].tokenBucket.maxTokens", ANY, RATE_LIMITS),
    on("routes[].tokenBucket.tokensPerFill", ANY, RATE_LIMITS),
    on("routes[].tokenBucket.fillInterval", ANY, RATE_LIMITS),
    on("routes[].perSourceIdentity", ANY, RATE_LIMITS),
    on("statusCode", ANY, RATE_LIMITS),
    on("limitedResponseHeaders.**", ANY, RATE_LIMITS),
    on("statPrefix", ANY, DRY_RUN),
    on("enabledPercent", ANY, DRY_RUN),
    on("enforcedPercent", ANY, DRY_RUN),
];

/// The Mesh's fields the proxy acts on (its certificate settings and proxy
/// defaults are the operator's and the webhook's business).
const MESH: &[Capability] = &[
    on(
        "trustDomain",
        ANY,
        "proxy/tests/inbound.rs::the_mesh_sets_the_default_mode_and_the_trust_domain",
    ),
    on(
        "mtls.mode",
        Values::OneOf(MTLS_MODES),
        "proxy/tests/inbound.rs::the_mesh_sets_the_default_mode_and_the_trust_domain",
    ),
    on(
        "outboundTrafficPolicy.mode",
        Values::OneOf(&["REGISTRY_ONLY"]),
        SERVICE_ENTRY_TEST,
    ),
    on(
        "outboundTrafficPolicy.mode",
        Values::OneOf(&["ALLOW_ANY"]),
        "proxy/tests/routing.rs::unknown_destinations_pass_through_under_allow_any",
    ),
    on(
        "authorization.defaultAction",
        Values::OneOf(&["ALLOW", "DENY"]),
        "proxy/tests/authz.rs::the_mesh_denies_what_no_policy_allows",
    ),
    on("authorization.numTrustedProxies", ANY, AP_SOURCES),
];

/// Every kind the operator gives a verdict on, and the Mesh.
pub const KINDS: &[Kind] = &[
    Kind {
        kind: "VirtualService",
        security: false,
        enforced: VIRTUAL_SERVICE,
    },
    Kind {
        kind: "DestinationRule",
        security: false,
        enforced: DESTINATION_RULE,
    },
    Kind {
        kind: "Gateway",
        security: false,
        enforced: &[],
    },
    Kind {
        kind: "ServiceEntry",
        security: false,
        enforced: SERVICE_ENTRY,
    },
    Kind {
        kind: "TrafficSplit",
        security: false,
        enforced: TRAFFIC_SPLIT,
    },
    Kind {
        kind: "ServiceProfile",
        security: false,
        enforced: SERVICE_PROFILE,
    },
    Kind {
        kind: "PeerAuthentication",
        security: true,
        enforced: PEER_AUTHENTICATION,
    },
    Kind {
        kind: "AuthorizationPolicy",
        security: true,
        enforced: AUTHORIZATION_POLICY,
    },
    Kind {
        kind: "RequestAuthentication",
        security: true,
        enforced: REQUEST_AUTHENTICATION,
    },
    Kind {
        kind: "RateLimitPolicy",
        security: true,
        enforced: RATE_LIMIT_POLICY,
    },
    Kind {
        kind: "Telemetry",
        security: false,
        enforced: &[],
    },
    Kind {
        kind: "Mesh",
        security: false,
        enforced: MESH,
    },
];
