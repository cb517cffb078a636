//! Compiles the mesh's resources into proxy configurations: a pure function
//! from a snapshot of objects ([`Input`]) to one [`ProxyConfig`] per injected
//! namespace and a verdict on every resource ([`Output`]).
//!
//! Each kind has its own conversion (`outbound/<kind>.rs`,
//! `inbound/<kind>.rs`): spec in, configuration parts and problems out. What
//! a verdict says is in force comes from the proxy's capability list
//! ([`plexus_config::capability`]), never from a list here (`verdict`).
//!
//! Kubernetes objects are converted into the small input types once, at the
//! edge (`crate::snapshot`); nothing here talks to the API server.

mod check;
mod inbound;
mod outbound;
mod routes;
mod verdict;

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use plexus_config::ProxyConfig;
use plexus_crds::mesh::MeshSpec;

pub use check::Rejection;
pub use verdict::{ConditionParts, KEYS_UNAVAILABLE, NOT_ENFORCED};

macro_rules! define_kinds {
    ($($kind:ident => $field:ident: $ty:ty),+ $(,)?) => {
        /// The kinds the compiler gives a verdict on.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $(
                #[doc = stringify!($kind)]
                $kind,
            )+
        }

        impl Kind {
            /// Every kind, in the table's order.
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),+];

            /// The kind's name, as in `kind:`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$kind => stringify!($kind),)+
                }
            }
        }

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
            /// What was fetched from each `jwksUri` of the RequestAuthentications.
            pub jwks: BTreeMap<String, FetchedJwks>,
            /// The CA certificates (PEM) of Secrets that hold one, by
            /// namespace and name: what a DestinationRule's
            /// `credentialName` may name.
            pub credentials: BTreeMap<(String, String), String>,
            $(
                #[doc = concat!("Every ", stringify!($kind), ".")]
                pub $field: Vec<$ty>,
            )+
        }

        impl Input {
            /// Adds a mesh resource given as JSON; `Ok(false)` when its kind
            /// is not one of the mesh's.
            pub fn add_resource(&mut self, object: serde_json::Value) -> Result<bool, String> {
                let kind = object["kind"].as_str().unwrap_or_default().to_owned();
                match kind.as_str() {
                    $(
                        stringify!($kind) => {
                            let typed: $ty = serde_json::from_value(object)
                                .map_err(|e| format!("{kind}: {e}"))?;
                            self.$field.push(typed);
                            Ok(true)
                        }
                    )+
                    _ => Ok(false),
                }
            }

            /// How many resources of each kind there are.
            pub fn counts(&self) -> Vec<(Kind, usize)> {
                vec![$((Kind::$kind, self.$field.len())),+]
            }
        }
    };
}

crate::for_each_kind!(define_kinds);

/// What the operator last fetched from a `jwksUri`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchedJwks {
    /// The last key set fetched that holds a usable key, if any.
    pub keys: Option<String>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
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
    /// Its kind.
    pub kind: Kind,
    /// The generation judged.
    pub generation: Option<i64>,
    /// Accepted, or why not.
    pub acceptance: Result<Accepted, Rejection>,
    /// The namespaces whose configuration it is part of.
    pub programmed: BTreeSet<String>,
}

/// An accepted resource, and what of it is in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// What it sets that the proxy does not enforce (the capability list's
    /// report: `spec.a[0].b`, or `spec.a=VALUE`).
    pub unenforced: Vec<String>,
    /// Whether anything it sets is enforced.
    pub enforced_any: bool,
    /// What the proxies do instead of what is not enforced, when that is
    /// worth saying (an authorization policy fails closed).
    pub meanwhile: Option<String>,
    /// Remarks worth showing (shadowed or unresolved parts).
    pub notes: Vec<String>,
    /// Why it is not in force although enforced (keys not fetched yet):
    /// `Programmed=False` says so.
    pub unavailable: Option<String>,
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
    let mut outbound = outbound::compile(&mut state);
    let inbound = inbound::compile(&mut state);
    let mut inbounds: BTreeMap<String, plexus_config::Inbound> = input
        .injected
        .keys()
        .map(|namespace| {
            (
                namespace.clone(),
                inbound.for_namespace(namespace, &mut state),
            )
        })
        .collect();
    // Client proxies speak plaintext where a PeerAuthentication says DISABLE.
    outbound.mark_plaintext(
        &inbounds
            .iter()
            .map(|(namespace, inbound)| (namespace.clone(), inbound.mtls.clone()))
            .collect(),
    );
    let mut configs = BTreeMap::new();
    for namespace in input.injected.keys() {
        let services = outbound.services_for(namespace, &mut state);
        let credentials = credentials_for(&services, namespace, &input.credentials);
        let config = ProxyConfig {
            schema: plexus_config::SCHEMA.into(),
            namespace: namespace.clone(),
            trust_domain: input.mesh.trust_domain.clone(),
            outbound_policy: match input.mesh.outbound_traffic_policy.mode.as_str() {
                "REGISTRY_ONLY" => plexus_config::OutboundPolicy::RegistryOnly,
                _ => plexus_config::OutboundPolicy::AllowAny,
            },
            services,
            inbound: inbounds.remove(namespace).unwrap_or_default(),
            gateways: outbound.gateways_for(namespace),
            credentials,
        };
        configs.insert(namespace.clone(), config);
    }
    outbound::note_missing_credentials(&mut state);
    Output {
        configs,
        verdicts: state.verdicts,
    }
}

/// The `credentialName` Secrets the destinations of `namespace` name, as
/// found in that namespace (the client's: a Secret elsewhere is never
/// handed to its proxies). A name without a Secret is left out, and the
/// proxy refuses to originate TLS with it.
fn credentials_for(
    services: &[plexus_config::Service],
    namespace: &str,
    secrets: &BTreeMap<(String, String), String>,
) -> BTreeMap<String, plexus_config::Credential> {
    services
        .iter()
        .flat_map(plexus_config::Service::client_tls)
        .filter_map(|tls| tls.credential_name.as_ref())
        .filter_map(|name| {
            let ca = secrets.get(&(namespace.to_owned(), name.clone()))?;
            Some((
                name.clone(),
                plexus_config::Credential {
                    ca_certificates: ca.clone(),
                },
            ))
        })
        .collect()
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
                kind: key.kind,
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
        if host.contains('*') {
            return host.to_owned();
        }
        let parts: Vec<&str> = host.split('.').collect();
        match parts.as_slice() {
            [name] => self.service_host(namespace, name),
            [name, ns] if self.input.namespaces.contains(*ns) => self.service_host(ns, name),
            [name, ns, "svc"] => self.service_host(ns, name),
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
