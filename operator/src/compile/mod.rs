//! Compiles the mesh's resources into proxy configurations: a pure function
//! from a snapshot of objects ([`Input`]) to one [`ProxyConfig`] per injected
//! namespace and a verdict on every resource ([`Output`]).
//!
//! Kubernetes objects are converted into the small input types once, at the
//! edge (`crate::mesh_config`); nothing here talks to the API server.

mod check;
mod fields;
mod inbound;
mod outbound;
mod routes;

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use plexus_config::ProxyConfig;
use plexus_crds::authorization_policy::AuthorizationPolicy;
use plexus_crds::destination_rule::DestinationRule;
use plexus_crds::gateway::Gateway;
use plexus_crds::mesh::MeshSpec;
use plexus_crds::peer_authentication::PeerAuthentication;
use plexus_crds::rate_limit_policy::RateLimitPolicy;
use plexus_crds::request_authentication::RequestAuthentication;
use plexus_crds::service_entry::ServiceEntry;
use plexus_crds::service_profile::ServiceProfile;
use plexus_crds::telemetry::Telemetry;
use plexus_crds::traffic_split::TrafficSplit;
use plexus_crds::virtual_service::VirtualService;

pub use check::Rejection;

/// Everything the compiler reads.
#[derive(Clone, Debug, Default)]
pub struct Input {
    /// The Mesh's spec (defaults when there is no Mesh).
    pub mesh: MeshSpec,
    /// The mesh's root namespace: policies there apply to every namespace.
    pub root_namespace: String,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// Every namespace of the cluster, to resolve `name.namespace` hosts.
    pub namespaces: BTreeSet<String>,
    /// Namespaces whose proxies get a configuration, with their number of
    /// injected pods.
    pub injected: BTreeMap<String, usize>,
    /// Kubernetes Services.
    pub services: Vec<ServiceInput>,
    /// Ready endpoints of the Services.
    pub endpoints: Vec<EndpointInput>,
    /// VirtualServices.
    pub virtual_services: Vec<VirtualService>,
    /// DestinationRules.
    pub destination_rules: Vec<DestinationRule>,
    /// Gateways.
    pub gateways: Vec<Gateway>,
    /// ServiceEntries.
    pub service_entries: Vec<ServiceEntry>,
    /// TrafficSplits.
    pub traffic_splits: Vec<TrafficSplit>,
    /// ServiceProfiles.
    pub service_profiles: Vec<ServiceProfile>,
    /// PeerAuthentications.
    pub peer_authentications: Vec<PeerAuthentication>,
    /// AuthorizationPolicies.
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// RequestAuthentications.
    pub request_authentications: Vec<RequestAuthentication>,
    /// RateLimitPolicies.
    pub rate_limit_policies: Vec<RateLimitPolicy>,
    /// Telemetries.
    pub telemetries: Vec<Telemetry>,
}

/// A Kubernetes Service, as the compiler needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInput {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// ClusterIP, unless headless.
    pub cluster_ip: Option<String>,
    /// Ports.
    pub ports: Vec<ServicePortInput>,
    /// Pod selector (none: endpoints are managed by hand).
    pub selector: Option<BTreeMap<String, String>>,
}

/// A Service port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePortInput {
    /// Name.
    pub name: Option<String>,
    /// Port.
    pub port: u16,
    /// Target port when numeric.
    pub target_port: Option<u16>,
    /// Target port when named (resolved per endpoint).
    pub target_port_name: Option<String>,
    /// `appProtocol`.
    pub app_protocol: Option<String>,
}

/// A ready endpoint of a Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointInput {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The pod's IP.
    pub ip: String,
    /// The pod's ServiceAccount.
    pub service_account: Option<String>,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the pod runs a Plexus sidecar.
    pub meshed: bool,
    /// Service port to pod port, for named target ports.
    pub ports: BTreeMap<u16, u16>,
}

/// The kinds the compiler gives a verdict on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// VirtualService.
    VirtualService,
    /// DestinationRule.
    DestinationRule,
    /// Gateway.
    Gateway,
    /// ServiceEntry.
    ServiceEntry,
    /// TrafficSplit.
    TrafficSplit,
    /// ServiceProfile.
    ServiceProfile,
    /// PeerAuthentication.
    PeerAuthentication,
    /// AuthorizationPolicy.
    AuthorizationPolicy,
    /// RequestAuthentication.
    RequestAuthentication,
    /// RateLimitPolicy.
    RateLimitPolicy,
    /// Telemetry.
    Telemetry,
}

impl Kind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VirtualService => "VirtualService",
            Self::DestinationRule => "DestinationRule",
            Self::Gateway => "Gateway",
            Self::ServiceEntry => "ServiceEntry",
            Self::TrafficSplit => "TrafficSplit",
            Self::ServiceProfile => "ServiceProfile",
            Self::PeerAuthentication => "PeerAuthentication",
            Self::AuthorizationPolicy => "AuthorizationPolicy",
            Self::RequestAuthentication => "RequestAuthentication",
            Self::RateLimitPolicy => "RateLimitPolicy",
            Self::Telemetry => "Telemetry",
        }
    }
}

/// Identifies a resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl Key {
    fn of(kind: Kind, object: &impl ResourceExt) -> Self {
        Self {
            kind,
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }

    /// `Kind/namespace/name`, the origin recorded in the configuration.
    pub fn origin(&self) -> String {
        format!("{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// What the compiler concluded about one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The generation judged.
    pub generation: Option<i64>,
    /// Accepted, or why not.
    pub acceptance: Result<Accepted, Rejection>,
    /// The namespaces whose configuration it is part of.
    pub programmed: BTreeSet<String>,
}

/// An accepted resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Fields Plexus does not implement yet (ignored by proxies).
    pub unimplemented: Vec<String>,
    /// Remarks worth showing (shadowed or unresolved parts).
    pub notes: Vec<String>,
}

/// The compiler's result.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// One configuration per injected namespace.
    pub configs: BTreeMap<String, ProxyConfig>,
    /// A verdict on every resource.
    pub verdicts: BTreeMap<Key, Verdict>,
}

/// Compiles a snapshot. Pure: equal inputs give equal outputs.
pub fn compile(input: &Input) -> Output {
    let mut state = State {
        input,
        verdicts: BTreeMap::new(),
    };
    let outbound = outbound::compile(&mut state);
    let inbound = inbound::compile(&mut state);
    let mut configs = BTreeMap::new();
    for namespace in input.injected.keys() {
        let config = ProxyConfig {
            schema: plexus_config::SCHEMA.into(),
            namespace: namespace.clone(),
            trust_domain: input.mesh.trust_domain.clone(),
            outbound_policy: match input.mesh.outbound_traffic_policy.mode.as_str() {
                "REGISTRY_ONLY" => plexus_config::OutboundPolicy::RegistryOnly,
                _ => plexus_config::OutboundPolicy::AllowAny,
            },
            services: outbound.services_for(namespace, &mut state),
            inbound: inbound.for_namespace(namespace, &mut state),
            gateways: outbound.gateways_for(namespace, &mut state),
        };
        configs.insert(namespace.clone(), config);
    }
    Output {
        configs,
        verdicts: state.verdicts,
    }
}

/// Compilation state: the input and the verdicts so far.
struct State<'a> {
    input: &'a Input,
    verdicts: BTreeMap<Key, Verdict>,
}

impl State<'_> {
    /// Records the verdict of a resource's validation.
    fn judge(
        &mut self,
        key: &Key,
        generation: Option<i64>,
        acceptance: Result<Accepted, Rejection>,
    ) -> bool {
        let accepted = acceptance.is_ok();
        self.verdicts.insert(
            key.clone(),
            Verdict {
                generation,
                acceptance,
                programmed: BTreeSet::new(),
            },
        );
        accepted
    }

    /// Records that an accepted resource is part of a namespace's configuration.
    fn programmed(&mut self, key: &Key, namespace: &str) {
        if let Some(verdict) = self.verdicts.get_mut(key)
            && !verdict.programmed.contains(namespace)
        {
            verdict.programmed.insert(namespace.to_owned());
        }
    }

    /// The fully qualified name of a Service.
    fn service_host(&self, namespace: &str, name: &str) -> String {
        format!("{name}.{namespace}.svc.{}", self.input.cluster_domain)
    }

    /// Resolves a host as written in a resource of `namespace`: short names
    /// are relative to the namespace, `name.namespace` and `name.namespace.svc`
    /// are completed.
    fn qualify(&self, host: &str, namespace: &str) -> String {
        let domain = &self.input.cluster_domain;
        if host.contains('*') {
            return host.to_owned();
        }
        let parts: Vec<&str> = host.split('.').collect();
        match parts.as_slice() {
            [name] => self.service_host(namespace, name),
            [name, ns] if self.input.namespaces.contains(*ns) => self.service_host(ns, name),
            [name, ns, "svc"] => self.service_host(ns, name),
            _ if host.ends_with(&format!(".svc.{domain}")) || host.contains('.') => host.to_owned(),
            _ => host.to_owned(),
        }
    }
}

/// Resources in the order conflicts are resolved: oldest first, then by
/// namespace and name (as Istio does).
fn by_age<K: ResourceExt>(objects: &[K]) -> Vec<&K> {
    let mut sorted: Vec<&K> = objects.iter().collect();
    sorted.sort_by_cached_key(|o| {
        let meta = o.meta();
        (
            meta.creation_timestamp.as_ref().map(|t| t.0),
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        )
    });
    sorted
}

/// Whether a workload selector's labels are a subset of a pod's.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    plexus_config::selects(selector, labels)
}

#[cfg(test)]
mod tests;

/// A condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConditionParts {
    /// True or false.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For humans; names fields.
    pub message: String,
}

impl Verdict {
    /// The `Accepted` condition.
    pub fn accepted(&self) -> ConditionParts {
        match &self.acceptance {
            Err(rejection) => ConditionParts {
                status: false,
                reason: rejection.reason.into(),
                message: rejection.message.clone(),
            },
            Ok(accepted) => {
                let mut message = if accepted.unimplemented.is_empty() {
                    "Valid; every field is implemented.".to_owned()
                } else {
                    format!(
                        "Valid; not implemented yet, so ignored by proxies: {}.",
                        accepted.unimplemented.join(", ")
                    )
                };
                for note in &accepted.notes {
                    message.push_str(&format!(" Note: {note}."));
                }
                ConditionParts {
                    status: true,
                    reason: if accepted.unimplemented.is_empty() {
                        "Accepted".into()
                    } else {
                        "UnimplementedFields".into()
                    },
                    message,
                }
            }
        }
    }

    /// The `Programmed` condition, given the proxies per namespace.
    pub fn programmed(&self, proxies: &BTreeMap<String, usize>) -> ConditionParts {
        if self.acceptance.is_err() {
            return ConditionParts {
                status: false,
                reason: "NotAccepted".into(),
                message: "Not part of any proxy configuration: see Accepted.".into(),
            };
        }
        if self.programmed.is_empty() {
            return ConditionParts {
                status: false,
                reason: "NoProxies".into(),
                message: "No proxy configuration includes it: no namespace it applies to has injection enabled, or a resource in force takes precedence.".into(),
            };
        }
        let count: usize = self
            .programmed
            .iter()
            .filter_map(|ns| proxies.get(ns))
            .sum();
        let namespaces: Vec<&str> = self.programmed.iter().map(String::as_str).collect();
        ConditionParts {
            status: true,
            reason: "Programmed".into(),
            message: format!(
                "In the configuration of {} ConfigMap(s) ({}), read by {count} proxies.",
                namespaces.len(),
                namespaces.join(", ")
            ),
        }
    }
}
