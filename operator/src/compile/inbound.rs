//! Workload policies: PeerAuthentication, AuthorizationPolicy,
//! RequestAuthentication, RateLimitPolicy and Telemetry.
//!
//! Policies of the root namespace apply to every namespace. PeerAuthentication
//! and Telemetry resolve precedence here (workload, then namespace, then
//! mesh); the proxy picks the first entry whose selector its labels satisfy.

use std::collections::{BTreeMap, BTreeSet};

use plexus_config as cfg;
use plexus_crds::authorization_policy::AuthorizationAction;
use plexus_crds::common::{PolicyTargetReference, WorkloadSelector};
use plexus_crds::peer_authentication::{MtlsMode, MutualTls};
use plexus_crds::rate_limit_policy::TokenBucket;
use plexus_crds::telemetry::{StandardMetric, WorkloadMode};

use super::check::{Check, unimplemented};
use super::routes;
use super::{Key, Kind, State, by_age};

/// A policy with the resource it came from.
struct Entry<T> {
    key: Key,
    /// The workloads it selects; `None` for the whole namespace.
    selector: Option<cfg::Selector>,
    value: T,
}

/// A PeerAuthentication before inheritance: `None` modes inherit.
struct Mtls {
    mode: Option<cfg::MtlsMode>,
    ports: BTreeMap<u16, Option<cfg::MtlsMode>>,
}

/// A Telemetry's settings; unset parts inherit.
#[derive(Clone, Default)]
struct TelemetryParts {
    access_log: Option<cfg::AccessLog>,
    tracing: Option<cfg::TracingPolicy>,
    metrics: Option<cfg::MetricsPolicy>,
}

#[derive(Default)]
struct Policies {
    mtls: Vec<Entry<Mtls>>,
    authorization: Vec<Entry<cfg::AuthorizationPolicy>>,
    authentication: Vec<Entry<cfg::JwtPolicy>>,
    rate_limits: Vec<Entry<cfg::RateLimit>>,
    telemetry: Vec<Entry<TelemetryParts>>,
}

/// The policies of every namespace.
pub struct Inbound {
    namespaces: BTreeMap<String, Policies>,
    root: String,
}

impl Inbound {
    /// The configuration's inbound part for a namespace.
    pub fn for_namespace(&self, namespace: &str, state: &mut State<'_>) -> cfg::Inbound {
        let empty = Policies::default();
        let own = self.namespaces.get(namespace).unwrap_or(&empty);
        let root = self.namespaces.get(&self.root).unwrap_or(&empty);
        let is_root = namespace == self.root;
        let mut inbound = cfg::Inbound::default();

        // mTLS: the mesh default, the root namespace's, the namespace's, then
        // workload policies of the namespace (oldest first).
        let mesh_mode = match state.input.mesh.mtls.mode {
            MtlsMode::Strict => cfg::MtlsMode::Strict,
            MtlsMode::Disable => cfg::MtlsMode::Disable,
            _ => cfg::MtlsMode::Permissive,
        };
        let mut fallback = cfg::MtlsRule {
            name: "Mesh/default".into(),
            selector: BTreeMap::new(),
            mode: mesh_mode,
            ports: BTreeMap::new(),
        };
        let mut used = Vec::new();
        for level in [root, own] {
            if let Some(e) = level.mtls.iter().find(|e| e.selector.is_none()) {
                fallback = cfg::MtlsRule {
                    name: e.key.origin(),
                    selector: BTreeMap::new(),
                    mode: e.value.mode.unwrap_or(fallback.mode),
                    ports: BTreeMap::new(),
                };
                used.push(e.key.clone());
            }
            if is_root {
                break;
            }
        }
        for e in own.mtls.iter().filter(|e| e.selector.is_some()) {
            let mode = e.value.mode.unwrap_or(fallback.mode);
            inbound.mtls.push(cfg::MtlsRule {
                name: e.key.origin(),
                selector: e.selector.clone().unwrap_or_default(),
                mode,
                ports: e
                    .value
                    .ports
                    .iter()
                    .map(|(p, m)| (*p, m.unwrap_or(mode)))
                    .collect(),
            });
            used.push(e.key.clone());
        }
        inbound.mtls.push(fallback);

        // Every matching authorization, authentication and rate limit applies.
        let levels: &[&Policies] = if is_root { &[own] } else { &[root, own] };
        for level in levels {
            for e in &level.authorization {
                inbound.authorization.push(e.value.clone());
                used.push(e.key.clone());
            }
            for e in &level.authentication {
                inbound.authentication.push(e.value.clone());
                used.push(e.key.clone());
            }
            for e in &level.rate_limits {
                inbound.rate_limits.push(e.value.clone());
                used.push(e.key.clone());
            }
        }

        // Telemetry: workload settings over the namespace's over the root's.
        let mut base = TelemetryParts::default();
        let mut base_names = Vec::new();
        // Namespace-wide Telemetries of one level combine, field by field
        // (metrics from one, tracing from another); the oldest sets a field.
        for level in levels {
            let mut combined = TelemetryParts::default();
            let mut names = Vec::new();
            for e in level.telemetry.iter().filter(|e| e.selector.is_none()) {
                combined = merge(&combined, &e.value);
                names.push(e.key.origin());
                used.push(e.key.clone());
            }
            base = merge(&combined, &base);
            base_names.splice(0..0, names);
        }
        for e in own.telemetry.iter().filter(|e| e.selector.is_some()) {
            let parts = merge(&e.value, &base);
            let mut names = vec![e.key.origin()];
            names.extend(base_names.iter().cloned());
            inbound.telemetry.push(telemetry_rule(
                names,
                e.selector.clone().unwrap_or_default(),
                parts,
            ));
            used.push(e.key.clone());
        }
        if !base_names.is_empty() {
            inbound
                .telemetry
                .push(telemetry_rule(base_names, BTreeMap::new(), base));
        }
        for key in used {
            state.programmed(&key, namespace);
        }
        inbound
    }
}

fn merge(over: &TelemetryParts, under: &TelemetryParts) -> TelemetryParts {
    TelemetryParts {
        access_log: over.access_log.clone().or_else(|| under.access_log.clone()),
        tracing: over.tracing.clone().or_else(|| under.tracing.clone()),
        metrics: over.metrics.clone().or_else(|| under.metrics.clone()),
    }
}

fn telemetry_rule(
    names: Vec<String>,
    selector: cfg::Selector,
    parts: TelemetryParts,
) -> cfg::TelemetryRule {
    cfg::TelemetryRule {
        name: names.join(","),
        selector,
        access_log: parts.access_log,
        tracing: parts.tracing,
        metrics: parts.metrics,
    }
}

const PEER_AUTHENTICATION_FIELDS: &[&str] = &[
    "selector.**",
    "targetRef.**",
    "mtls.mode",
    "portLevelMtls.*.mode",
];
const AUTHORIZATION_FIELDS: &[&str] = &[
    "selector.**",
    "targetRef.**",
    "targetRefs[].**",
    "action",
    "rules[].from[].source.**",
    "rules[].to[].operation.**",
    "rules[].when[].**",
];
const AUTHENTICATION_FIELDS: &[&str] = &[
    "selector.**",
    "targetRef.**",
    "targetRefs[].**",
    "jwtRules[].issuer",
    "jwtRules[].audiences",
    "jwtRules[].jwksUri",
    "jwtRules[].jwks",
    "jwtRules[].fromHeaders[].**",
    "jwtRules[].fromParams",
    "jwtRules[].fromCookies",
    "jwtRules[].forwardOriginalToken",
    "jwtRules[].outputPayloadToHeader",
    "jwtRules[].outputClaimToHeaders[].**",
];
const TELEMETRY_FIELDS: &[&str] = &[
    "selector.**",
    "targetRef.**",
    "targetRefs[].**",
    "tracing[].match.mode",
    "tracing[].providers[].name",
    "tracing[].randomSamplingPercentage",
    "tracing[].disableSpanReporting",
    "tracing[].customTags.*.literal.value",
    "accessLogging[].match.mode",
    "accessLogging[].providers[].name",
    "accessLogging[].disabled",
    "metrics[].providers[].name",
    "metrics[].overrides[].match.metric",
    "metrics[].overrides[].disabled",
    "metrics[].reportingInterval",
];

/// Attributes an AuthorizationPolicy condition may test.
const CONDITION_KEYS: &[&str] = &[
    "request.headers[",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

/// Which workloads a policy selects: its selector, or the selector of the
/// Service its target references name. `None`: the whole namespace.
fn target(
    check: &mut Check,
    state: &State<'_>,
    namespace: &str,
    selector: &Option<WorkloadSelector>,
    target_ref: &Option<PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) -> Option<cfg::Selector> {
    let refs: Vec<(String, &PolicyTargetReference)> = target_ref
        .iter()
        .map(|r| ("spec.targetRef".to_owned(), r))
        .chain(
            target_refs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("spec.targetRefs[{i}]"), r)),
        )
        .collect();
    if selector.is_some() && !refs.is_empty() {
        check.invalid(
            "spec.selector",
            "set either selector or targetRef(s), not both",
        );
    }
    if let Some(s) = selector {
        return Some(s.match_labels.clone());
    }
    let mut merged: Option<cfg::Selector> = None;
    for (path, r) in &refs {
        if r.kind != "Service" || !matches!(r.group.as_deref(), None | Some("") | Some("core")) {
            check.unsupported(
                format!("{path}.kind"),
                format!("only Services can be targeted, not {}", r.kind),
            );
            continue;
        }
        let ns = r.namespace.as_deref().unwrap_or(namespace);
        match state
            .input
            .services
            .iter()
            .find(|s| s.namespace == ns && s.name == r.name)
        {
            Some(svc) => match &svc.selector {
                Some(sel) if !sel.is_empty() => {
                    if merged.as_ref().is_some_and(|m| m != sel) {
                        check.unsupported(
                            path,
                            "several targeted Services must share one pod selector",
                        );
                    }
                    merged = Some(sel.clone());
                }
                _ => check.invalid(
                    format!("{path}.name"),
                    format!("Service {ns}/{} selects no pods", r.name),
                ),
            },
            None => check.missing(
                format!("{path}.name"),
                format!("no Service {ns}/{}", r.name),
            ),
        }
    }
    merged
}

fn mtls_mode(check: &mut Check, path: &str, m: &Option<MutualTls>) -> Option<cfg::MtlsMode> {
    match m.as_ref()?.mode.as_ref()? {
        MtlsMode::Unset => None,
        MtlsMode::Strict => Some(cfg::MtlsMode::Strict),
        MtlsMode::Permissive => Some(cfg::MtlsMode::Permissive),
        MtlsMode::Disable => Some(cfg::MtlsMode::Disable),
        other => {
            check.known(path, other.as_str(), false, MtlsMode::VALUES);
            None
        }
    }
}

fn bucket(check: &mut Check, path: &str, b: &TokenBucket) -> cfg::TokenBucket {
    if b.max_tokens == 0 {
        check.invalid(format!("{path}.maxTokens"), "must be at least 1");
    }
    let fill = check
        .duration(format!("{path}.fillInterval"), &b.fill_interval)
        .unwrap_or(1000);
    if fill == 0 {
        check.invalid(format!("{path}.fillInterval"), "must be longer than 0");
    }
    cfg::TokenBucket {
        max_tokens: b.max_tokens,
        tokens_per_fill: b.tokens_per_fill.unwrap_or(b.max_tokens),
        fill_interval_ms: fill,
    }
}

fn workload_mode(check: &mut Check, path: &str, mode: Option<&WorkloadMode>) -> String {
    match mode {
        None => "CLIENT_AND_SERVER".into(),
        Some(m) => {
            check.known(path, m.as_str(), m.is_known(), WorkloadMode::VALUES);
            m.as_str().to_owned()
        }
    }
}

fn is_cidr(value: &str) -> bool {
    let (address, prefix) = value.split_once('/').unwrap_or((value, ""));
    match address.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= max)
        }
        Err(_) => false,
    }
}

/// Compiles the policies, judging the inbound kinds.
pub fn compile(state: &mut State<'_>) -> Inbound {
    let input = state.input;
    let mut namespaces: BTreeMap<String, Policies> = BTreeMap::new();

    for pa in by_age(&input.peer_authentications) {
        let key = Key::of(Kind::PeerAuthentication, pa);
        let mut check = Check::default();
        let selector = target(
            &mut check,
            state,
            &key.namespace,
            &pa.spec.selector,
            &pa.spec.target_ref,
            &[],
        );
        let mode = mtls_mode(&mut check, "spec.mtls.mode", &pa.spec.mtls);
        let mut ports = BTreeMap::new();
        for (port, m) in &pa.spec.port_level_mtls {
            let path = format!("spec.portLevelMtls.{port}");
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {
                    ports.insert(
                        p,
                        mtls_mode(&mut check, &format!("{path}.mode"), &Some(m.clone())),
                    );
                }
                _ => check.invalid(&path, format!("{port:?} is not a port number")),
            }
        }
        if !ports.is_empty() && selector.is_none() {
            check.invalid(
                "spec.portLevelMtls",
                "port-level mTLS needs a selector or targetRef",
            );
        }
        let fields = unimplemented(&pa.spec, PEER_AUTHENTICATION_FIELDS);
        if state.judge(&key, pa.metadata.generation, check.finish(fields)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .mtls
                .push(Entry {
                    key,
                    selector,
                    value: Mtls { mode, ports },
                });
        }
    }

    for ap in by_age(&input.authorization_policies) {
        let key = Key::of(Kind::AuthorizationPolicy, ap);
        let spec = &ap.spec;
        let mut check = Check::default();
        let selector = target(
            &mut check,
            state,
            &key.namespace,
            &spec.selector,
            &spec.target_ref,
            &spec.target_refs,
        );
        let action = spec.action.clone().unwrap_or(AuthorizationAction::Allow);
        match &action {
            AuthorizationAction::Custom => check.unsupported(
                "spec.action",
                "CUSTOM (external authorization) is not implemented; the policy is not enforced",
            ),
            other => check.known(
                "spec.action",
                other.as_str(),
                other.is_known(),
                AuthorizationAction::VALUES,
            ),
        }
        let mut rules = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            let path = format!("spec.rules[{i}]");
            let fields = |value: serde_json::Value| -> BTreeMap<String, Vec<String>> {
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| {
                        let values: Vec<String> = v
                            .as_array()?
                            .iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect();
                        (!values.is_empty()).then(|| (k.clone(), values))
                    })
                    .collect()
            };
            let mut from = Vec::new();
            for (j, f) in rule.from.iter().enumerate() {
                let s = &f.source;
                for (field, blocks) in [
                    ("ipBlocks", &s.ip_blocks),
                    ("notIpBlocks", &s.not_ip_blocks),
                    ("remoteIpBlocks", &s.remote_ip_blocks),
                    ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
                ] {
                    for (k, b) in blocks.iter().enumerate() {
                        if !is_cidr(b) {
                            check.invalid(
                                format!("{path}.from[{j}].source.{field}[{k}]"),
                                format!("{b:?} is not an IP address or CIDR"),
                            );
                        }
                    }
                }
                from.push(fields(serde_json::to_value(s).unwrap_or_default()));
            }
            let mut to = Vec::new();
            for (j, t) in rule.to.iter().enumerate() {
                let o = &t.operation;
                for (field, ports) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
                    for (k, p) in ports.iter().enumerate() {
                        if p.parse::<u16>().map_or(true, |p| p == 0) {
                            check.invalid(
                                format!("{path}.to[{j}].operation.{field}[{k}]"),
                                format!("{p:?} is not a port number"),
                            );
                        }
                    }
                }
                to.push(fields(serde_json::to_value(o).unwrap_or_default()));
            }
            let mut when = Vec::new();
            for (j, c) in rule.when.iter().enumerate() {
                if !CONDITION_KEYS.iter().any(|k| {
                    c.key == *k
                        || (k.ends_with('[') && c.key.starts_with(k) && c.key.ends_with(']'))
                }) {
                    check.invalid(
                        format!("{path}.when[{j}].key"),
                        format!("unknown attribute {:?}", c.key),
                    );
                }
                when.push(cfg::AuthorizationCondition {
                    key: c.key.clone(),
                    values: c.values.clone(),
                    not_values: c.not_values.clone(),
                });
            }
            rules.push(cfg::AuthorizationRule { from, to, when });
        }
        let fields = unimplemented(spec, AUTHORIZATION_FIELDS);
        if state.judge(&key, ap.metadata.generation, check.finish(fields)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .authorization
                .push(Entry {
                    value: cfg::AuthorizationPolicy {
                        name: key.origin(),
                        selector: selector.clone().unwrap_or_default(),
                        action: action.as_str().to_owned(),
                        rules,
                    },
                    key,
                    selector,
                });
        }
    }

    for ra in by_age(&input.request_authentications) {
        let key = Key::of(Kind::RequestAuthentication, ra);
        let spec = &ra.spec;
        let mut check = Check::default();
        let selector = target(
            &mut check,
            state,
            &key.namespace,
            &spec.selector,
            &spec.target_ref,
            &spec.target_refs,
        );
        let mut rules = Vec::new();
        for (i, r) in spec.jwt_rules.iter().enumerate() {
            let path = format!("spec.jwtRules[{i}]");
            if r.issuer.is_empty() {
                check.invalid(format!("{path}.issuer"), "an issuer is required");
            }
            if let Some(jwks) = &r.jwks
                && serde_json::from_str::<serde_json::Value>(jwks).is_err()
            {
                check.invalid(format!("{path}.jwks"), "is not a JSON Web Key Set");
            }
            if let Some(uri) = &r.jwks_uri
                && !(uri.starts_with("https://") || uri.starts_with("http://"))
            {
                check.invalid(
                    format!("{path}.jwksUri"),
                    format!("{uri:?} is not an http(s) URL"),
                );
            }
            rules.push(cfg::JwtRule {
                issuer: r.issuer.clone(),
                audiences: r.audiences.clone(),
                jwks_uri: r.jwks_uri.clone(),
                jwks: r.jwks.clone(),
                from_headers: r
                    .from_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.prefix.clone().unwrap_or_default()))
                    .collect(),
                from_params: r.from_params.clone(),
                from_cookies: r.from_cookies.clone(),
                forward_original_token: r.forward_original_token.unwrap_or(false),
                output_payload_to_header: r.output_payload_to_header.clone(),
                output_claim_to_headers: r
                    .output_claim_to_headers
                    .iter()
                    .map(|c| (c.header.clone(), c.claim.clone()))
                    .collect(),
            });
        }
        let fields = unimplemented(spec, AUTHENTICATION_FIELDS);
        if state.judge(&key, ra.metadata.generation, check.finish(fields)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .authentication
                .push(Entry {
                    value: cfg::JwtPolicy {
                        name: key.origin(),
                        selector: selector.clone().unwrap_or_default(),
                        rules,
                    },
                    key,
                    selector,
                });
        }
    }

    for rl in by_age(&input.rate_limit_policies) {
        let key = Key::of(Kind::RateLimitPolicy, rl);
        let spec = &rl.spec;
        let mut check = Check::default();
        let selector = spec.selector.as_ref().map(|s| s.match_labels.clone());
        let default_bucket = spec
            .token_bucket
            .as_ref()
            .map(|b| bucket(&mut check, "spec.tokenBucket", b));
        if default_bucket.is_none() && spec.routes.is_empty() {
            check.invalid("spec.tokenBucket", "set a tokenBucket or routes");
        }
        let mut route_limits = Vec::new();
        for (i, r) in spec.routes.iter().enumerate() {
            let path = format!("spec.routes[{i}]");
            route_limits.push(cfg::RateLimitRoute {
                name: r.name.clone().unwrap_or_else(|| format!("route-{i}")),
                matches: r
                    .matches
                    .iter()
                    .enumerate()
                    .map(|(j, m)| routes::http_match(&mut check, &format!("{path}.match[{j}]"), m))
                    .collect(),
                bucket: bucket(&mut check, &format!("{path}.tokenBucket"), &r.token_bucket),
                per_source_identity: r.per_source_identity.unwrap_or(false),
            });
        }
        let status = spec.status_code.unwrap_or(429);
        if !(400..600).contains(&status) {
            check.invalid(
                "spec.statusCode",
                format!("{status} is not a 4xx or 5xx status"),
            );
        }
        let enabled_percent =
            check.percent("spec.enabledPercent", spec.enabled_percent.unwrap_or(100.0));
        let enforced_percent = check.percent(
            "spec.enforcedPercent",
            spec.enforced_percent.unwrap_or(100.0),
        );
        let mut implemented = vec![
            "selector.**",
            "tokenBucket.**",
            "perSourceIdentity",
            "routes[].name",
            "routes[].tokenBucket.**",
            "routes[].perSourceIdentity",
            "statusCode",
            "limitedResponseHeaders.**",
            "enabledPercent",
            "enforcedPercent",
        ];
        let match_fields: Vec<String> = routes::HTTP_ROUTE_FIELDS
            .iter()
            .filter(|f| f.starts_with("match[]"))
            .map(|f| format!("routes[].{f}"))
            .collect();
        implemented.extend(match_fields.iter().map(String::as_str));
        let fields = unimplemented(spec, &implemented);
        if state.judge(&key, rl.metadata.generation, check.finish(fields)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .rate_limits
                .push(Entry {
                    value: cfg::RateLimit {
                        name: key.origin(),
                        selector: selector.clone().unwrap_or_default(),
                        bucket: default_bucket,
                        per_source_identity: spec.per_source_identity.unwrap_or(false),
                        routes: route_limits,
                        status: u16::try_from(status).unwrap_or(429),
                        limited_response_headers: routes::header_ops(
                            &spec.limited_response_headers,
                        ),
                        enabled_percent,
                        enforced_percent,
                    },
                    key,
                    selector,
                });
        }
    }

    for t in by_age(&input.telemetries) {
        let key = Key::of(Kind::Telemetry, t);
        let spec = &t.spec;
        let mut check = Check::default();
        let selector = target(
            &mut check,
            state,
            &key.namespace,
            &spec.selector,
            &spec.target_ref,
            &spec.target_refs,
        );
        let mut parts = TelemetryParts::default();
        if spec.access_logging.len() > 1 || spec.tracing.len() > 1 || spec.metrics.len() > 1 {
            check
                .notes
                .push("only the first entry of accessLogging, tracing and metrics is used".into());
        }
        if let Some(a) = spec.access_logging.first() {
            parts.access_log = Some(cfg::AccessLog {
                enabled: !a.disabled.unwrap_or(false),
                providers: a.providers.iter().map(|p| p.name.clone()).collect(),
                mode: workload_mode(
                    &mut check,
                    "spec.accessLogging[0].match.mode",
                    a.traffic.as_ref().and_then(|t| t.mode.as_ref()),
                ),
            });
        }
        if let Some(tr) = spec.tracing.first() {
            parts.tracing = Some(cfg::TracingPolicy {
                sampling_percent: check.percent(
                    "spec.tracing[0].randomSamplingPercentage",
                    tr.random_sampling_percentage.unwrap_or(1.0),
                ),
                providers: tr.providers.iter().map(|p| p.name.clone()).collect(),
                disable_span_reporting: tr.disable_span_reporting.unwrap_or(false),
                literal_tags: tr
                    .custom_tags
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.literal.as_ref()?.value.clone())))
                    .collect(),
            });
            if tr.traffic.as_ref().and_then(|t| t.mode.as_ref()).is_some() {
                workload_mode(
                    &mut check,
                    "spec.tracing[0].match.mode",
                    tr.traffic.as_ref().and_then(|t| t.mode.as_ref()),
                );
            }
        }
        if let Some(m) = spec.metrics.first() {
            let mut disabled = BTreeSet::new();
            for (i, o) in m.overrides.iter().enumerate() {
                let metric = o
                    .selector
                    .as_ref()
                    .and_then(|s| s.metric.clone())
                    .unwrap_or(StandardMetric::AllMetrics);
                check.known(
                    format!("spec.metrics[0].overrides[{i}].match.metric"),
                    metric.as_str(),
                    metric.is_known(),
                    StandardMetric::VALUES,
                );
                if o.disabled.unwrap_or(false) {
                    disabled.insert(metric.as_str().to_owned());
                }
            }
            parts.metrics = Some(cfg::MetricsPolicy {
                providers: m.providers.iter().map(|p| p.name.clone()).collect(),
                disabled: disabled.into_iter().collect(),
                reporting_interval_ms: m
                    .reporting_interval
                    .as_ref()
                    .and_then(|d| check.duration("spec.metrics[0].reportingInterval", d)),
            });
        }
        let fields = unimplemented(spec, TELEMETRY_FIELDS);
        if state.judge(&key, t.metadata.generation, check.finish(fields)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .telemetry
                .push(Entry {
                    key,
                    selector,
                    value: parts,
                });
        }
    }

    Inbound {
        namespaces,
        root: input.root_namespace.clone(),
    }
}
