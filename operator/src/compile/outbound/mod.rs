//! Destinations and their routes: Services (`service`), ServiceEntries,
//! DestinationRules, Gateways, VirtualServices, TrafficSplits and
//! ServiceProfiles, each in a file of its own, compiled in that order (a
//! DestinationRule's subsets exist before a VirtualService names them).

mod destination_rule;
mod gateway;
mod service;
mod service_entry;
mod service_profile;
mod traffic_split;
mod virtual_service;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use plexus_config as cfg;
use plexus_crds::virtual_service::Destination;

use super::check::Check;
use super::routes::Destinations;
use super::{Key, State};

pub(super) use destination_rule::note_missing_credentials;

/// A destination while it is being compiled.
struct Dest {
    /// The ServiceEntry defining it, if it is not a Service.
    entry: Option<Key>,
    service: cfg::Service,
    /// Endpoint labels, parallel to `service.endpoints`, for subsets.
    labels: Vec<BTreeMap<String, String>>,
    routes: Vec<RouteSet>,
    /// DestinationRules and ServiceProfiles applied to it.
    contributors: Vec<Key>,
}

/// The destinations so far, by host.
#[derive(Default)]
struct Dests {
    all: Vec<Dest>,
    index: HashMap<String, usize>,
}

impl Dests {
    fn push(&mut self, dest: Dest) {
        for host in &dest.service.hosts {
            self.index.insert(host.clone(), self.all.len());
        }
        self.all.push(dest);
    }

    /// The destinations a host names: exact, or every host a `*.suffix` matches.
    fn lookup(&self, host: &str) -> Vec<usize> {
        if let Some(suffix) = host.strip_prefix('*') {
            return self
                .all
                .iter()
                .enumerate()
                .filter(|(_, d)| d.service.hosts.iter().any(|h| h.ends_with(suffix)))
                .map(|(i, _)| i)
                .collect();
        }
        self.index.get(host).copied().into_iter().collect()
    }
}

/// Which namespaces see a VirtualService.
#[derive(Clone)]
enum Visibility {
    All,
    Only(BTreeSet<String>),
}

impl Visibility {
    fn of(export_to: &[String], namespace: &str) -> Self {
        if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
            return Self::All;
        }
        Self::Only(
            export_to
                .iter()
                .map(|e| {
                    if e == "." {
                        namespace.to_owned()
                    } else {
                        e.clone()
                    }
                })
                .collect(),
        )
    }

    fn includes(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(namespace),
        }
    }
}

/// Routes one resource contributes to a destination.
struct RouteSet {
    key: Key,
    visibility: Visibility,
    http: Vec<cfg::HttpRoute>,
    tls: Vec<cfg::TcpRoute>,
    tcp: Vec<cfg::TcpRoute>,
}

/// A Gateway and the virtual hosts bound to it.
struct GatewayOut {
    key: Key,
    gateway: cfg::Gateway,
    hosts: Vec<cfg::VirtualHost>,
}

/// The compiled destinations and gateways.
pub struct Outbound {
    dests: Vec<Dest>,
    gateways: Vec<GatewayOut>,
    /// Some routes are visible to some namespaces only.
    restricted: bool,
    /// The destinations every namespace sees, unless `restricted`.
    shared: std::cell::OnceCell<Arc<Vec<cfg::Service>>>,
}

impl Outbound {
    /// Marks the meshed endpoints of Services whose PeerAuthentication says
    /// DISABLE, by the mTLS rules of each endpoint's namespace (the first
    /// whose selector its labels satisfy).
    pub fn mark_plaintext(&mut self, rules: &BTreeMap<String, Vec<cfg::MtlsRule>>) {
        for dest in self.dests.iter_mut().filter(|d| d.entry.is_none()) {
            let Some(rules) = rules.get(&dest.service.namespace) else {
                continue;
            };
            let endpoints = dest.service.endpoints.iter_mut().zip(&dest.labels);
            for (endpoint, labels) in endpoints.filter(|(e, _)| e.meshed) {
                let Some(rule) = rules.iter().find(|r| cfg::selects(&r.selector, labels)) else {
                    continue;
                };
                endpoint.plaintext = cfg::Plaintext {
                    all: rule.mode == cfg::MtlsMode::Disable,
                    ports: rule
                        .ports
                        .iter()
                        .map(|(port, mode)| (*port, *mode == cfg::MtlsMode::Disable))
                        .collect(),
                };
            }
        }
    }

    /// The destinations as seen from a namespace, marking what is programmed.
    /// Namespaces that see the same routes share one list.
    pub fn services_for(&self, namespace: &str, state: &mut State<'_>) -> Arc<Vec<cfg::Service>> {
        for dest in &self.dests {
            for set in dest
                .routes
                .iter()
                .filter(|s| s.visibility.includes(namespace))
            {
                state.programmed(&set.key, namespace);
            }
            for key in dest.contributors.iter().chain(&dest.entry) {
                state.programmed(key, namespace);
            }
        }
        if self.restricted {
            return Arc::new(self.build(namespace));
        }
        self.shared
            .get_or_init(|| Arc::new(self.build(namespace)))
            .clone()
    }

    fn build(&self, namespace: &str) -> Vec<cfg::Service> {
        self.dests
            .iter()
            .map(|dest| {
                let mut service = dest.service.clone();
                for set in dest
                    .routes
                    .iter()
                    .filter(|s| s.visibility.includes(namespace))
                {
                    service.http.extend(set.http.iter().cloned());
                    service.tls.extend(set.tls.iter().cloned());
                    service.tcp.extend(set.tcp.iter().cloned());
                }
                service
            })
            .collect()
    }

    /// The namespace's Gateways with their routes. No gateway proxy reads
    /// them yet, so they do not count as programmed.
    pub fn gateways_for(&self, namespace: &str) -> Vec<cfg::Gateway> {
        self.gateways
            .iter()
            .filter(|g| g.key.namespace == namespace)
            .map(|out| {
                let mut gateway = out.gateway.clone();
                gateway.virtual_hosts.extend(out.hosts.iter().cloned());
                gateway
            })
            .collect()
    }
}

/// The protocol of a port from `appProtocol` or its name's prefix (Istio's
/// convention: `http-web`, `grpc`, `tcp-db`).
fn protocol(app_protocol: Option<&str>, name: Option<&str>) -> cfg::Protocol {
    let hint = app_protocol.or_else(|| name.map(|n| n.split('-').next().unwrap_or(n)));
    match hint.map(str::to_ascii_lowercase).as_deref() {
        Some("http") => cfg::Protocol::Http,
        Some("http2" | "grpc" | "grpc-web" | "h2c" | "kubernetes.io/h2c") => cfg::Protocol::Http2,
        Some("tcp" | "mongo" | "mysql" | "redis") => cfg::Protocol::Tcp,
        Some("https" | "tls") => cfg::Protocol::Tls,
        _ => cfg::Protocol::Detect,
    }
}

/// Compiles destinations and gateways, judging the outbound kinds.
pub fn compile(state: &mut State<'_>) -> Outbound {
    let mut dests = Dests::default();
    service::compile(state, &mut dests);
    service_entry::compile(state, &mut dests);
    destination_rule::compile(state, &mut dests);
    let mut gateways = gateway::compile(state);
    virtual_service::compile(state, &mut dests, &mut gateways);
    traffic_split::compile(state, &mut dests);
    service_profile::compile(state, &mut dests);

    let mut dests = dests.all;
    dests.sort_by(|a, b| a.service.hosts.cmp(&b.service.hosts));
    let restricted = dests
        .iter()
        .flat_map(|d| &d.routes)
        .any(|r| matches!(r.visibility, Visibility::Only(_)));
    Outbound {
        dests,
        gateways,
        restricted,
        shared: std::cell::OnceCell::new(),
    }
}

/// Resolves the destinations a resource of `namespace` names.
struct Resolver<'a> {
    state: &'a State<'a>,
    dests: &'a Dests,
    namespace: &'a str,
}

impl Destinations for Resolver<'_> {
    fn resolve(&self, check: &mut Check, path: &str, d: &Destination) -> Option<String> {
        let host = self.state.qualify(&d.host, self.namespace);
        let Some(&i) = self.dests.index.get(&host) else {
            check.missing(
                format!("{path}.host"),
                format!("no Service or ServiceEntry is named {host}"),
            );
            return None;
        };
        let dest = &self.dests.all[i].service;
        if let Some(port) = &d.port
            && !dest.ports.is_empty()
            && !dest.ports.iter().any(|p| u32::from(p.port) == port.number)
        {
            check.missing(
                format!("{path}.port.number"),
                format!("{host} has no port {}", port.number),
            );
        }
        if let Some(subset) = &d.subset
            && !dest.subsets.iter().any(|s| &s.name == subset)
        {
            let defined: Vec<&str> = dest.subsets.iter().map(|s| s.name.as_str()).collect();
            check.missing(
                format!("{path}.subset"),
                format!(
                    "subset {subset:?} of {host} is not defined by any accepted DestinationRule (defined: {})",
                    if defined.is_empty() { "none".to_owned() } else { defined.join(", ") }
                ),
            );
        }
        Some(host)
    }
}
