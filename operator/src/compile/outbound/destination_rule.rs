//! DestinationRules: subsets of a destination's endpoints (by label) and
//! its traffic policy. The oldest rule of a host sets its policy; subsets of
//! every rule merge, the oldest definition of a name winning.

use std::collections::{BTreeMap, BTreeSet};

use plexus_config as cfg;
use plexus_crds::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRuleSpec,
    LoadBalancerSettings, OutlierDetection, SimpleLb, TrafficPolicy,
};

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age, selects};
use super::Dests;

/// A rule's policy and its subsets (name, labels, policy).
struct Rule {
    policy: Option<cfg::TrafficPolicy>,
    subsets: Vec<(String, BTreeMap<String, String>, Option<cfg::TrafficPolicy>)>,
}

/// Judges every DestinationRule (oldest first) and applies those accepted
/// to the destinations their host names.
pub(super) fn compile(state: &mut State<'_>, dests: &mut Dests) {
    for dr in by_age(&state.input.destination_rules) {
        let key = Key::of(Kind::DestinationRule, dr);
        let spec = &dr.spec;
        let mut check = Check::default();
        let host = state.qualify(&spec.host, &key.namespace);
        let targets = dests.lookup(&host);
        if targets.is_empty() {
            check.missing(
                "spec.host",
                format!("no Service or ServiceEntry is named {host}"),
            );
        }
        let rule = convert(spec, &mut check);
        for &t in &targets {
            let dest = &dests.all[t];
            if dest.service.policy.is_some() && rule.policy.is_some() {
                check.notes.push(format!(
                    "the traffic policy of an older DestinationRule for {} is in force",
                    dest.service.hosts[0]
                ));
            }
            for (name, _, _) in &rule.subsets {
                if dest.service.subsets.iter().any(|s| &s.name == name) {
                    check.notes.push(format!(
                        "subset {name} of an older DestinationRule is in force"
                    ));
                }
            }
        }
        if !state.judge(&key, dr.metadata.generation, check.finish(key.kind, spec)) {
            continue;
        }
        for t in targets {
            let dest = &mut dests.all[t];
            if dest.service.policy.is_none() {
                dest.service.policy = rule.policy.clone();
            }
            for (name, labels, policy) in &rule.subsets {
                if dest.service.subsets.iter().any(|s| &s.name == name) {
                    continue;
                }
                dest.service.subsets.push(cfg::Subset {
                    name: name.clone(),
                    policy: policy.clone(),
                });
                for (endpoint, endpoint_labels) in
                    dest.service.endpoints.iter_mut().zip(&dest.labels)
                {
                    if selects(labels, endpoint_labels) {
                        endpoint.subsets.push(name.clone());
                    }
                }
            }
            dest.contributors.push(key.clone());
        }
    }
}

/// Notes on each accepted DestinationRule whose `credentialName` (SIMPLE,
/// MUTUAL) names no Secret with a CA certificate in a namespace it is
/// programmed into: the proxies there refuse to originate TLS with it
/// (`compile::credentials_for` hands them only the client namespace's).
pub(in crate::compile) fn note_missing_credentials(state: &mut State<'_>) {
    // A rule exported everywhere may lack its Secret in many namespaces.
    const NAMED: usize = 5;
    for dr in &state.input.destination_rules {
        let key = Key::of(Kind::DestinationRule, dr);
        let Some(verdict) = state.verdicts.get_mut(&key) else {
            continue;
        };
        let Ok(accepted) = &mut verdict.acceptance else {
            continue;
        };
        for (path, name) in credential_names(&dr.spec) {
            let lacking: Vec<&str> = verdict
                .programmed
                .iter()
                .filter(|ns| {
                    !state
                        .input
                        .credentials
                        .contains_key(&((*ns).clone(), name.to_owned()))
                })
                .map(String::as_str)
                .collect();
            if lacking.is_empty() {
                continue;
            }
            let noun = if lacking.len() == 1 {
                "namespace"
            } else {
                "namespaces"
            };
            let mut namespaces = lacking[..lacking.len().min(NAMED)].join(", ");
            if lacking.len() > NAMED {
                namespaces.push_str(&format!(" and {} more", lacking.len() - NAMED));
            }
            accepted.notes.push(format!(
                "{path}: no Secret {name:?} with a CA certificate (ca.crt or cacert) in \
                 {noun} {namespaces}, where it applies: the proxies there refuse to \
                 originate TLS"
            ));
        }
    }
}

/// The `credentialName`s of a rule's SIMPLE and MUTUAL settings, with their
/// fields' paths.
fn credential_names(spec: &DestinationRuleSpec) -> Vec<(String, &str)> {
    let policies = spec
        .traffic_policy
        .iter()
        .map(|p| ("spec.trafficPolicy".to_owned(), p))
        .chain(spec.subsets.iter().enumerate().filter_map(|(i, s)| {
            let p = s.traffic_policy.as_ref()?;
            Some((format!("spec.subsets[{i}].trafficPolicy"), p))
        }));
    let mut names = Vec::new();
    for (path, policy) in policies {
        let ports = policy
            .port_level_settings
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((format!("{path}.portLevelSettings[{i}]"), p.tls.as_ref()?)));
        for (path, tls) in policy.tls.iter().map(|t| (path.clone(), t)).chain(ports) {
            if let (Some(ClientTlsMode::Simple | ClientTlsMode::Mutual), Some(name)) =
                (&tls.mode, &tls.credential_name)
            {
                names.push((format!("{path}.tls.credentialName"), name.as_str()));
            }
        }
    }
    names
}

/// A rule's policy and subsets, checked.
fn convert(spec: &DestinationRuleSpec, check: &mut Check) -> Rule {
    let policy = spec
        .traffic_policy
        .as_ref()
        .map(|p| traffic_policy(check, "spec.trafficPolicy", p));
    let mut subsets = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, s) in spec.subsets.iter().enumerate() {
        if !seen.insert(s.name.as_str()) {
            check.invalid(
                format!("spec.subsets[{i}].name"),
                format!("subset {} is defined twice", s.name),
            );
        }
        let policy = s
            .traffic_policy
            .as_ref()
            .map(|p| traffic_policy(check, &format!("spec.subsets[{i}].trafficPolicy"), p));
        subsets.push((s.name.clone(), s.labels.clone(), policy));
    }
    Rule { policy, subsets }
}

fn traffic_policy(check: &mut Check, path: &str, p: &TrafficPolicy) -> cfg::TrafficPolicy {
    cfg::TrafficPolicy {
        load_balancer: p
            .load_balancer
            .as_ref()
            .and_then(|lb| load_balancer(check, &format!("{path}.loadBalancer"), lb)),
        warmup_ms: warmup(check, path, p.load_balancer.as_ref()),
        connection_pool: p
            .connection_pool
            .as_ref()
            .map(|c| connection_pool(check, &format!("{path}.connectionPool"), c)),
        outlier_detection: p
            .outlier_detection
            .as_ref()
            .map(|o| outlier(check, &format!("{path}.outlierDetection"), o)),
        tls: p
            .tls
            .as_ref()
            .map(|t| client_tls(check, &format!("{path}.tls"), t)),
        retry_budget: p.retry_budget.as_ref().map(|b| {
            let percent = b.percent.unwrap_or(20.0);
            if !(0.0..=100.0).contains(&percent) {
                check.invalid(
                    format!("{path}.retryBudget.percent"),
                    format!("{percent} is not a percentage between 0 and 100"),
                );
            }
            cfg::ConcurrencyBudget {
                percent: percent.clamp(0.0, 100.0),
                min_concurrency: b.min_retry_concurrency.unwrap_or(3),
            }
        }),
        ports: p
            .port_level_settings
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let path = format!("{path}.portLevelSettings[{i}]");
                let port = match &s.port {
                    Some(p) => check.port(format!("{path}.port.number"), p.number),
                    None => {
                        check.invalid(format!("{path}.port"), "a port is required");
                        0
                    }
                };
                cfg::PortPolicy {
                    port,
                    load_balancer: s
                        .load_balancer
                        .as_ref()
                        .and_then(|lb| load_balancer(check, &format!("{path}.loadBalancer"), lb)),
                    warmup_ms: warmup(check, &path, s.load_balancer.as_ref()),
                    connection_pool: s
                        .connection_pool
                        .as_ref()
                        .map(|c| connection_pool(check, &format!("{path}.connectionPool"), c)),
                    outlier_detection: s
                        .outlier_detection
                        .as_ref()
                        .map(|o| outlier(check, &format!("{path}.outlierDetection"), o)),
                    tls: s
                        .tls
                        .as_ref()
                        .map(|t| client_tls(check, &format!("{path}.tls"), t)),
                }
            })
            .collect(),
    }
}

fn warmup(check: &mut Check, path: &str, lb: Option<&LoadBalancerSettings>) -> Option<u64> {
    let d = lb?.warmup_duration_secs.as_ref()?;
    check.duration(format!("{path}.loadBalancer.warmupDurationSecs"), d)
}

fn load_balancer(
    check: &mut Check,
    path: &str,
    lb: &LoadBalancerSettings,
) -> Option<cfg::LoadBalancer> {
    if let Some(hash) = &lb.consistent_hash {
        let mut keys = Vec::new();
        if let Some(h) = &hash.http_header_name {
            keys.push(cfg::HashKey::Header(h.to_ascii_lowercase()));
        }
        if let Some(c) = &hash.http_cookie {
            keys.push(cfg::HashKey::Cookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl_ms: c.ttl.as_ref().and_then(|t| {
                    check.duration(format!("{path}.consistentHash.httpCookie.ttl"), t)
                }),
            });
        }
        if hash.use_source_ip == Some(true) {
            keys.push(cfg::HashKey::SourceIp);
        }
        if let Some(q) = &hash.http_query_parameter_name {
            keys.push(cfg::HashKey::QueryParameter(q.clone()));
        }
        if keys.len() != 1 || lb.simple.is_some() {
            check.invalid(
                path,
                "set exactly one of simple and consistentHash, and one hash key",
            );
        }
        return keys
            .into_iter()
            .next()
            .map(cfg::LoadBalancer::ConsistentHash);
    }
    match lb.simple.as_ref()? {
        SimpleLb::Unspecified => None,
        SimpleLb::LeastConn | SimpleLb::LeastRequest => Some(cfg::LoadBalancer::LeastRequest),
        SimpleLb::RoundRobin => Some(cfg::LoadBalancer::RoundRobin),
        SimpleLb::Random => Some(cfg::LoadBalancer::Random),
        SimpleLb::Passthrough => Some(cfg::LoadBalancer::Passthrough),
        SimpleLb::PeakEwma => Some(cfg::LoadBalancer::PeakEwma),
        other => {
            check.known(
                format!("{path}.simple"),
                other.as_str(),
                false,
                SimpleLb::VALUES,
            );
            None
        }
    }
}

fn positive(check: &mut Check, path: String, value: Option<i32>) -> Option<u32> {
    let value = value?;
    match u32::try_from(value) {
        Ok(v) => Some(v),
        Err(_) => {
            check.invalid(path, format!("{value} is negative"));
            None
        }
    }
}

fn connection_pool(
    check: &mut Check,
    path: &str,
    c: &ConnectionPoolSettings,
) -> cfg::ConnectionPool {
    let tcp = c.tcp.as_ref();
    let http = c.http.as_ref();
    cfg::ConnectionPool {
        max_connections: positive(
            check,
            format!("{path}.tcp.maxConnections"),
            tcp.and_then(|t| t.max_connections),
        ),
        connect_timeout_ms: tcp
            .and_then(|t| t.connect_timeout.as_ref())
            .and_then(|d| check.duration(format!("{path}.tcp.connectTimeout"), d)),
        max_connection_duration_ms: tcp
            .and_then(|t| t.max_connection_duration.as_ref())
            .and_then(|d| check.duration(format!("{path}.tcp.maxConnectionDuration"), d)),
        max_pending_requests: positive(
            check,
            format!("{path}.http.http1MaxPendingRequests"),
            http.and_then(|h| h.http1_max_pending_requests),
        ),
        max_requests: positive(
            check,
            format!("{path}.http.http2MaxRequests"),
            http.and_then(|h| h.http2_max_requests),
        ),
        max_requests_per_connection: positive(
            check,
            format!("{path}.http.maxRequestsPerConnection"),
            http.and_then(|h| h.max_requests_per_connection),
        ),
        max_retries: positive(
            check,
            format!("{path}.http.maxRetries"),
            http.and_then(|h| h.max_retries),
        ),
        idle_timeout_ms: http
            .and_then(|h| h.idle_timeout.as_ref())
            .and_then(|d| check.duration(format!("{path}.http.idleTimeout"), d)),
        tcp_keepalive: tcp.and_then(|t| t.tcp_keepalive.as_ref()).map(|k| {
            let path = format!("{path}.tcp.tcpKeepalive");
            cfg::TcpKeepalive {
                time_ms: k
                    .time
                    .as_ref()
                    .and_then(|d| check.duration(format!("{path}.time"), d))
                    .unwrap_or(7_200_000),
                interval_ms: k
                    .interval
                    .as_ref()
                    .and_then(|d| check.duration(format!("{path}.interval"), d))
                    .unwrap_or(75_000),
                probes: k.probes.unwrap_or(9),
            }
        }),
    }
}

fn outlier(check: &mut Check, path: &str, o: &OutlierDetection) -> cfg::OutlierDetection {
    let percent = |check: &mut Check, field: &str, value: Option<i32>, default: u32| match value {
        None => default,
        Some(v) if (0..=100).contains(&v) => u32::try_from(v).unwrap_or(default),
        Some(v) => {
            check.invalid(
                format!("{path}.{field}"),
                format!("{v} is not a percentage between 0 and 100"),
            );
            default
        }
    };
    cfg::OutlierDetection {
        // Envoy's default, which Istio keeps when the field is unset.
        consecutive_5xx: Some(o.consecutive_5xx_errors.unwrap_or(5)),
        consecutive_gateway_errors: o
            .consecutive_gateway_errors
            .or_else(|| o.consecutive_errors.and_then(|e| u32::try_from(e).ok())),
        consecutive_local_failures: o
            .consecutive_local_origin_failures
            .or(Some(5).filter(|_| o.split_external_local_origin_errors == Some(true))),
        split_local_origin_errors: o.split_external_local_origin_errors == Some(true),
        interval_ms: o
            .interval
            .as_ref()
            .and_then(|d| check.duration(format!("{path}.interval"), d))
            .unwrap_or(10_000),
        base_ejection_ms: o
            .base_ejection_time
            .as_ref()
            .and_then(|d| check.duration(format!("{path}.baseEjectionTime"), d))
            .unwrap_or(30_000),
        max_ejection_percent: percent(check, "maxEjectionPercent", o.max_ejection_percent, 10),
        min_health_percent: percent(check, "minHealthPercent", o.min_health_percent, 0),
    }
}

fn client_tls(check: &mut Check, path: &str, t: &ClientTlsSettings) -> cfg::ClientTls {
    let mode = match t.mode.as_ref().unwrap_or(&ClientTlsMode::IstioMutual) {
        ClientTlsMode::Disable => cfg::ClientTlsMode::Disable,
        ClientTlsMode::Simple => cfg::ClientTlsMode::Simple,
        ClientTlsMode::Mutual => cfg::ClientTlsMode::Mutual,
        ClientTlsMode::IstioMutual => cfg::ClientTlsMode::Mesh,
        other => {
            check.known(
                format!("{path}.mode"),
                other.as_str(),
                false,
                ClientTlsMode::VALUES,
            );
            cfg::ClientTlsMode::Mesh
        }
    };
    cfg::ClientTls {
        mode,
        sni: t.sni.clone(),
        subject_alt_names: t.subject_alt_names.clone(),
        credential_name: t.credential_name.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> DestinationRuleSpec {
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn policies_and_subsets() {
        let mut check = Check::default();
        let rule = convert(
            &spec(serde_json::json!({
                "host": "reviews",
                "trafficPolicy": {
                    "loadBalancer": {"consistentHash": {"httpCookie": {"name": "s", "ttl": "60s"}}},
                    "connectionPool": {"tcp": {"maxConnections": 1}},
                    "outlierDetection": {"consecutive5xxErrors": 3, "interval": "1s"}
                },
                "subsets": [{"name": "v1", "labels": {"version": "v1"},
                             "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}}]
            })),
            &mut check,
        );
        assert!(check.ok());
        let policy = rule.policy.expect("policy");
        assert_eq!(
            policy.load_balancer,
            Some(cfg::LoadBalancer::ConsistentHash(cfg::HashKey::Cookie {
                name: "s".into(),
                path: None,
                ttl_ms: Some(60_000)
            }))
        );
        assert_eq!(
            policy.connection_pool.and_then(|c| c.max_connections),
            Some(1)
        );
        assert_eq!(rule.subsets[0].0, "v1");
        assert_eq!(
            rule.subsets[0]
                .2
                .as_ref()
                .and_then(|p| p.load_balancer.clone()),
            Some(cfg::LoadBalancer::RoundRobin)
        );
    }

    #[test]
    fn credential_names_of_every_level_that_originates() {
        let tls =
            |mode: &str, name: &str| serde_json::json!({"mode": mode, "credentialName": name});
        let rule = spec(serde_json::json!({
            "host": "upstream",
            "trafficPolicy": {"tls": tls("SIMPLE", "a"),
                              "portLevelSettings": [{"port": {"number": 1}, "tls": tls("DISABLE", "b")},
                                                    {"port": {"number": 2}, "tls": tls("MUTUAL", "c")}]},
            "subsets": [{"name": "v1"},
                        {"name": "v2", "trafficPolicy": {"tls": tls("MUTUAL", "d")}}]
        }));
        assert_eq!(
            credential_names(&rule),
            [
                ("spec.trafficPolicy.tls.credentialName".to_owned(), "a"),
                (
                    "spec.trafficPolicy.portLevelSettings[1].tls.credentialName".to_owned(),
                    "c"
                ),
                (
                    "spec.subsets[1].trafficPolicy.tls.credentialName".to_owned(),
                    "d"
                ),
            ]
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut check = Check::default();
        convert(
            &spec(serde_json::json!({
                "host": "reviews",
                "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"},
                                  "outlierDetection": {"maxEjectionPercent": 120}},
                "subsets": [{"name": "v1"}, {"name": "v1"}]
            })),
            &mut check,
        );
        let message = check
            .finish(Kind::DestinationRule, &serde_json::json!({}))
            .expect_err("rejected")
            .message;
        for field in [
            "spec.trafficPolicy.loadBalancer.simple",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "spec.subsets[1].name",
        ] {
            assert!(message.contains(field), "{message}");
        }
    }
}
