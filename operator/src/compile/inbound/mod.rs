//! Workload policies: PeerAuthentication, AuthorizationPolicy,
//! RequestAuthentication, RateLimitPolicy and Telemetry, each converted in
//! a file of its own.
//!
//! Policies of the root namespace apply to every namespace. PeerAuthentication
//! and Telemetry resolve precedence here (workload, then namespace, then
//! mesh); the proxy picks the first entry whose selector its labels satisfy.

mod authorization_policy;
mod peer_authentication;
mod rate_limit_policy;
mod request_authentication;
mod telemetry;

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::common::{PolicyTargetReference, WorkloadSelector};
use plexus_crds::peer_authentication::MtlsMode;

use super::check::Check;
use super::{Key, State};

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

        inbound.authorization_defaults = cfg::AuthorizationDefaults {
            deny_unless_allowed: state.input.mesh.authorization.default_action
                == plexus_crds::mesh::DefaultAuthorization::Deny,
            trusted_proxies: state.input.mesh.authorization.num_trusted_proxies,
        };

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

/// The fields of a policy that say which workloads it selects.
trait Targets {
    /// `selector`, `targetRef` and `targetRefs`.
    fn targets(
        &self,
    ) -> (
        &Option<WorkloadSelector>,
        &Option<PolicyTargetReference>,
        &[PolicyTargetReference],
    );
}

macro_rules! targets {
    ($($spec:ty => $refs:tt),+ $(,)?) => {$(
        impl Targets for $spec {
            fn targets(
                &self,
            ) -> (
                &Option<WorkloadSelector>,
                &Option<PolicyTargetReference>,
                &[PolicyTargetReference],
            ) {
                (&self.selector, &self.target_ref, targets!(@refs self $refs))
            }
        }
    )+};
    (@refs $self:ident none) => { &[] };
    (@refs $self:ident some) => { &$self.target_refs };
}

targets! {
    plexus_crds::peer_authentication::PeerAuthenticationSpec => none,
    plexus_crds::authorization_policy::AuthorizationPolicySpec => some,
    plexus_crds::request_authentication::RequestAuthenticationSpec => some,
    plexus_crds::telemetry::TelemetrySpec => some,
}

/// Which workloads a policy selects: its selector, or the selector of the
/// Service its target references name. `None`: the whole namespace.
fn target(
    check: &mut Check,
    state: &State<'_>,
    namespace: &str,
    spec: &impl Targets,
) -> Option<cfg::Selector> {
    let (selector, target_ref, target_refs) = spec.targets();
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

/// Compiles the policies, judging the inbound kinds.
pub fn compile(state: &mut State<'_>) -> Inbound {
    let mut namespaces: BTreeMap<String, Policies> = BTreeMap::new();
    peer_authentication::compile(state, &mut namespaces);
    authorization_policy::compile(state, &mut namespaces);
    request_authentication::compile(state, &mut namespaces);
    rate_limit_policy::compile(state, &mut namespaces);
    telemetry::compile(state, &mut namespaces);
    Inbound {
        namespaces,
        root: state.input.root_namespace.clone(),
    }
}
