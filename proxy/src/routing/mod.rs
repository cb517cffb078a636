//! The routing table compiled from a configuration, once per version:
//! destinations indexed by address and host, routes with their matches and
//! regexes compiled (`route`, `matches`), and every destination's endpoint
//! sets ("clusters") by port and subset with their load balancer, as specs.
//! Everything here is pure and rebuilt with each version; what must outlive
//! a version (requests in flight, cursors) is `balance`'s.
//!
//! Per request, the outbound pipeline asks it which route a request takes,
//! what the route's filters and faults do (`filters`, `fault`), and which
//! cluster a backend names.

pub mod cors;
pub mod entries;
pub mod fault;
pub mod filters;
pub mod l4;
pub mod matches;
pub mod profile;
pub mod route;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use plexus_config::{
    Backend, ClientTlsMode, ConnectionPool, HashKey, LoadBalancer, OutboundPolicy,
    OutlierDetection, PortPolicy, Protocol, ProxyConfig, Service, TrafficPolicy,
};

use crate::client_certs::ClientCertificates;
use crate::origination::{Origination, Originations};

pub use entries::Resolved;
pub use matches::{RequestInfo, Source, TableError};
pub use route::Route;

/// An endpoint as the configuration describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    pub addr: SocketAddr,
    /// The SPIFFE ID it must prove: set when a sidecar runs there.
    pub identity: Option<String>,
    /// TLS the proxy speaks to it, outside the mesh (DestinationRule
    /// SIMPLE): set only without `identity`.
    pub origination: Option<Arc<Origination>>,
}

/// How a cluster picks among its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    LeastRequest,
    PeakEwma,
    RoundRobin,
    Random,
    Hash(HashKey),
}

/// The endpoints of a destination on one port, possibly one subset.
#[derive(Debug)]
pub struct ClusterSpec {
    /// `<namespace>/<name>:<port>[/<subset>]`: unique, and stable across
    /// configuration versions (the balance state is kept by it).
    pub name: String,
    pub endpoints: Vec<EndpointSpec>,
    /// Resolution NONE: no endpoints, connections go as addressed.
    pub passthrough: bool,
    pub balance: Balance,
    /// Slow start of new endpoints (`loadBalancer.warmupDurationSecs`).
    pub warmup: Option<std::time::Duration>,
    /// Limits on requests, connections and retries (DestinationRule
    /// `connectionPool`).
    pub pool: Option<ConnectionPool>,
    /// Ejection of failing endpoints (`outlierDetection`).
    pub outlier: Option<OutlierDetection>,
    /// Retries in flight by requests in flight (`retryBudget`).
    pub retry_concurrency: Option<plexus_config::ConcurrencyBudget>,
    /// The ServiceProfile's retry budget (Linkerd's default when the
    /// profile sets none); none without a profile.
    pub retry_budget: Option<plexus_config::RetryBudget>,
}

/// What the proxy does with an outbound connection to an address.
#[derive(Debug)]
pub enum Destination {
    /// A known service on one of its ports.
    Service { service: usize, port: u16 },
    /// A pod of a known service addressed directly.
    Pod(EndpointSpec),
    /// Unknown by address, on a port hosts-only ServiceEntries declare:
    /// known by the request's Host or the ClientHello's server name, if
    /// at all (`Table::named`).
    Named { port: u16 },
    /// Unknown: as addressed.
    Passthrough,
    /// Unknown, under the REGISTRY_ONLY outbound policy.
    Refuse,
}

/// The compiled configuration.
#[derive(Debug)]
pub struct Table {
    pub config: Arc<ProxyConfig>,
    by_addr: HashMap<(IpAddr, u16), usize>,
    by_host: HashMap<String, usize>,
    /// Hosts-only ServiceEntries, by port.
    named: entries::Named,
    /// The names this table's destinations need resolved.
    names: std::collections::BTreeSet<String>,
    /// Each meshed pod's identity (none when unmeshed) and its plaintext
    /// ports.
    by_pod: HashMap<IpAddr, (Option<String>, plexus_config::Plaintext)>,
    routes: Vec<Vec<Route>>,
    /// Each service's TLS and TCP routes.
    l4: Vec<(Vec<l4::L4Route>, Vec<l4::L4Route>)>,
    profiles: Vec<Option<profile::CompiledProfile>>,
    clusters: Vec<ClusterSpec>,
    cluster_index: HashMap<(usize, u16, Option<String>), usize>,
}

impl Table {
    pub fn new(config: Arc<ProxyConfig>) -> Result<Self, TableError> {
        Self::with_resolved(config, &Resolved::new())
    }

    /// The table of `config`, with the names the proxy resolved.
    pub fn with_resolved(
        config: Arc<ProxyConfig>,
        resolved: &Resolved,
    ) -> Result<Self, TableError> {
        Self::compile(config, resolved, &Arc::default())
    }

    /// The table of `config`, with the names the proxy resolved and the
    /// client certificates it holds for MUTUAL origination.
    pub fn compile(
        config: Arc<ProxyConfig>,
        resolved: &Resolved,
        certificates: &Arc<ClientCertificates>,
    ) -> Result<Self, TableError> {
        let mut table = Self {
            config: config.clone(),
            by_addr: HashMap::new(),
            by_host: HashMap::new(),
            named: entries::Named::default(),
            names: entries::names(config.services.iter()),
            by_pod: HashMap::new(),
            routes: Vec::with_capacity(config.services.len()),
            l4: Vec::with_capacity(config.services.len()),
            profiles: Vec::with_capacity(config.services.len()),
            clusters: Vec::new(),
            cluster_index: HashMap::new(),
        };
        let mut originations = Originations::new(certificates.clone());
        for (index, service) in config.services.iter().enumerate() {
            for address in &service.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    for port in &service.ports {
                        table.by_addr.entry((ip, port.port)).or_insert(index);
                    }
                }
            }
            for host in &service.hosts {
                table.by_host.entry(host.clone()).or_insert(index);
            }
            table.named.add(index, service);
            table.routes.push(
                service
                    .http
                    .iter()
                    .map(Route::compile)
                    .collect::<Result<_, _>>()?,
            );
            let l4 = |routes: &[plexus_config::TcpRoute]| {
                routes.iter().map(l4::L4Route::compile).collect::<Vec<_>>()
            };
            table.l4.push((l4(&service.tls), l4(&service.tcp)));
            table.profiles.push(
                service
                    .profile
                    .as_ref()
                    .map(profile::CompiledProfile::compile)
                    .transpose()?,
            );
            let subsets =
                std::iter::once(None).chain(service.subsets.iter().map(|s| Some(&s.name)));
            for subset in subsets {
                for port in &service.ports {
                    table
                        .cluster_index
                        .insert((index, port.port, subset.cloned()), table.clusters.len());
                    table.clusters.push(cluster(
                        &config,
                        service,
                        port.port,
                        subset,
                        resolved,
                        &mut originations,
                    ));
                }
            }
            for endpoint in &service.endpoints {
                if let Ok(ip) = endpoint.ip.parse::<IpAddr>() {
                    table.by_pod.entry(ip).or_insert_with(|| {
                        (
                            identity(&config, service, endpoint),
                            endpoint.plaintext.clone(),
                        )
                    });
                }
            }
        }
        // A hosts-only entry's hosts, as resolved, are its addresses for
        // the connections that dial them (after every declared address).
        for (index, service) in config.services.iter().enumerate() {
            if !service.addresses.is_empty() {
                continue;
            }
            for ip in service
                .hosts
                .iter()
                .filter_map(|h| resolved.get(h))
                .flatten()
            {
                for port in &service.ports {
                    table.by_addr.entry((*ip, port.port)).or_insert(index);
                }
            }
        }
        Ok(table)
    }

    /// The names the proxy must resolve for this table.
    pub fn names(&self) -> &std::collections::BTreeSet<String> {
        &self.names
    }

    /// The hosts-only ServiceEntry `name` (a Host or server name) stands
    /// for on `port`.
    pub fn named(&self, name: &str, port: u16) -> Option<usize> {
        self.named.find(name, port)
    }

    pub fn service(&self, index: usize) -> Option<&Service> {
        self.config.services.get(index)
    }

    /// Where a connection to `original` goes.
    pub fn destination(&self, original: SocketAddr) -> Destination {
        if let Some(&service) = self.by_addr.get(&(original.ip(), original.port())) {
            return Destination::Service {
                service,
                port: original.port(),
            };
        }
        if let Some((identity, plaintext)) = self.by_pod.get(&original.ip()) {
            return Destination::Pod(EndpointSpec {
                addr: original,
                identity: identity.clone().filter(|_| !plaintext.on(original.port())),
                origination: None,
            });
        }
        if self.named.on_port(original.port()) {
            return Destination::Named {
                port: original.port(),
            };
        }
        self.unknown()
    }

    /// Where a connection to an unknown destination goes.
    pub fn unknown(&self) -> Destination {
        match self.config.outbound_policy {
            OutboundPolicy::AllowAny => Destination::Passthrough,
            OutboundPolicy::RegistryOnly => Destination::Refuse,
        }
    }

    /// The protocol declared for a service port.
    pub fn protocol(&self, service: usize, port: u16) -> Protocol {
        self.service(service)
            .and_then(|s| s.ports.iter().find(|p| p.port == port))
            .map(|p| p.protocol)
            .unwrap_or_default()
    }

    /// The first of a service's routes the request takes; None when the
    /// service has no routes (all its traffic goes to its own endpoints).
    pub fn route(
        &self,
        service: usize,
        request: &RequestInfo<'_>,
        source: &Source<'_>,
    ) -> Option<&Route> {
        self.routes
            .get(service)?
            .iter()
            .find(|r| r.matches(request, source))
    }

    /// Whether a service has TLS routes for `port` (its connections' SNI
    /// is read there).
    pub fn routes_tls(&self, service: usize, port: u16) -> bool {
        self.l4
            .get(service)
            .is_some_and(|(tls, _)| tls.iter().any(|r| r.may_match_port(port)))
    }

    /// The route an opaque connection to a service takes: the first TLS
    /// route that matches (with an SNI), else the first TCP route.
    pub fn l4_route(
        &self,
        service: usize,
        connection: &l4::Connection<'_>,
        source: &Source<'_>,
    ) -> Option<&l4::L4Route> {
        let (tls, tcp) = self.l4.get(service)?;
        let tls = connection
            .sni
            .and_then(|_| tls.iter().find(|r| r.matches(connection, source)));
        tls.or_else(|| tcp.iter().find(|r| r.matches(connection, source)))
    }

    /// The ServiceProfile route a request to a service takes, if any.
    pub fn profile_route(
        &self,
        service: usize,
        method: &str,
        path: &str,
    ) -> Option<&profile::ProfileRouteMatch> {
        self.profiles.get(service)?.as_ref()?.route(method, path)
    }

    /// The routes of a service (tests).
    pub fn routes(&self, service: usize) -> &[Route] {
        self.routes
            .get(service)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The cluster (its index in [`Table::clusters`]) of a backend; `port`
    /// is the request's when the backend names none. None for a host the
    /// configuration does not know.
    pub fn cluster(&self, backend: &Backend, port: u16) -> Option<usize> {
        let service = *self.by_host.get(&backend.host)?;
        let port = backend.port.unwrap_or(port);
        self.cluster_index
            .get(&(service, port, backend.subset.clone()))
            .or_else(|| self.cluster_index.get(&(service, port, None)))
            .copied()
    }

    /// A service's own endpoints on a port (no route applies).
    pub fn service_cluster(&self, service: usize, port: u16) -> Option<usize> {
        self.cluster_index.get(&(service, port, None)).copied()
    }

    /// Every cluster, by index.
    pub fn clusters(&self) -> &[ClusterSpec] {
        &self.clusters
    }
}

fn identity(
    config: &ProxyConfig,
    service: &Service,
    endpoint: &plexus_config::Endpoint,
) -> Option<String> {
    match (&endpoint.sa, endpoint.meshed) {
        (Some(sa), true) => Some(config.spiffe_id(&service.namespace, sa)),
        _ => None,
    }
}

/// A setting from the first of `levels` (the subset's policy, then the
/// destination's) that has it, a port's level within each over the
/// policy's own: Istio merges the levels setting by setting.
fn setting<T: Clone>(
    levels: &[Option<&TrafficPolicy>],
    port: u16,
    own: impl Fn(&TrafficPolicy) -> &Option<T>,
    at_port: impl Fn(&PortPolicy) -> &Option<T>,
) -> Option<T> {
    levels.iter().flatten().find_map(|policy| {
        policy
            .ports
            .iter()
            .find(|p| p.port == port)
            .and_then(|p| at_port(p).clone())
            .or_else(|| own(policy).clone())
    })
}

fn cluster(
    config: &ProxyConfig,
    service: &Service,
    port: u16,
    subset: Option<&String>,
    resolved: &Resolved,
    originations: &mut Originations,
) -> ClusterSpec {
    let service_port = service.ports.iter().find(|p| p.port == port);
    let subset_policy = subset
        .and_then(|name| service.subsets.iter().find(|s| &s.name == name))
        .and_then(|s| s.policy.as_ref());
    let levels = [subset_policy, service.policy.as_ref()];
    // DestinationRule `tls`: DISABLE speaks plaintext even to a meshed
    // endpoint; ISTIO_MUTUAL set explicitly speaks mTLS only, so endpoints
    // without a proxy are left out. Unset, each endpoint gets what it takes:
    // mTLS to a meshed one, unless its PeerAuthentication says DISABLE.
    // SIMPLE (and MUTUAL) originate TLS to every endpoint, meshed or not.
    let tls = setting(&levels, port, |p| &p.tls, |p| &p.tls);
    let host = service.hosts.first().map_or("", String::as_str);
    let origination = tls
        .as_ref()
        .filter(|t| matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual))
        .map(|t| originations.get(t, host, &config.credentials));
    let tls = tls.map(|t| t.mode);
    let endpoints = service
        .endpoints
        .iter()
        .filter(|e| subset.is_none_or(|s| e.subsets.contains(s)))
        .flat_map(|e| {
            entries::addresses(service, &e.ip, resolved)
                .into_iter()
                .map(move |ip| (e, ip))
        })
        .filter_map(|(e, ip)| {
            let target_port = e
                .ports
                .get(&port)
                .copied()
                .or(service_port.and_then(|p| p.target_port))
                .unwrap_or(port);
            let identity = match tls {
                Some(ClientTlsMode::Disable | ClientTlsMode::Simple | ClientTlsMode::Mutual) => {
                    None
                }
                Some(ClientTlsMode::Mesh) => Some(identity(config, service, e)?),
                _ if e.plaintext.on(target_port) => None,
                _ => identity(config, service, e),
            };
            Some(EndpointSpec {
                addr: SocketAddr::new(ip, target_port),
                identity,
                origination: origination.clone(),
            })
        })
        .collect();
    let balance = match setting(&levels, port, |p| &p.load_balancer, |p| &p.load_balancer) {
        Some(LoadBalancer::RoundRobin) => Balance::RoundRobin,
        Some(LoadBalancer::Random) => Balance::Random,
        Some(LoadBalancer::PeakEwma) => Balance::PeakEwma,
        Some(LoadBalancer::ConsistentHash(key)) => Balance::Hash(key),
        Some(LoadBalancer::LeastRequest | LoadBalancer::Passthrough) | None => {
            Balance::LeastRequest
        }
    };
    let warmup = setting(&levels, port, |p| &p.warmup_ms, |p| &p.warmup_ms)
        .map(std::time::Duration::from_millis);
    let pool = setting(
        &levels,
        port,
        |p| &p.connection_pool,
        |p| &p.connection_pool,
    );
    let outlier = setting(
        &levels,
        port,
        |p| &p.outlier_detection,
        |p| &p.outlier_detection,
    );
    // No port-level retry budget in the API.
    let retry_concurrency = levels.iter().flatten().find_map(|p| p.retry_budget.clone());
    let mut name = format!("{}/{}:{port}", service.namespace, service.name);
    if let Some(subset) = subset {
        name.push('/');
        name.push_str(subset);
    }
    ClusterSpec {
        name,
        endpoints,
        passthrough: service.resolution == plexus_config::Resolution::Passthrough,
        balance,
        warmup,
        pool,
        outlier,
        retry_concurrency,
        retry_budget: service.profile.as_ref().map(|p| {
            p.retry_budget
                .clone()
                .unwrap_or_else(profile::default_budget)
        }),
    }
}

#[cfg(test)]
mod tests;
