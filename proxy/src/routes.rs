//! The routing table compiled from a configuration, once per version:
//! destinations indexed by address and host, routes with their regexes
//! compiled, and every destination's endpoint sets ("clusters") by port and
//! subset with their load balancer. Everything here is pure: the HTTP data
//! path asks it which route a request takes, which backend a split sends it
//! to and which endpoint serves it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plexus_config::{
    Backend, HashKey, HttpMatch, HttpRoute, LoadBalancer, OutboundPolicy, Protocol, ProxyConfig,
    Service, StringMatch,
};
use regex::Regex;

/// A configuration that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("route {route}: regex {pattern:?}: {error}")]
pub struct TableError {
    route: String,
    pattern: String,
    error: regex::Error,
}

/// One endpoint a request or connection can go to.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The SPIFFE ID it must prove: set when a sidecar runs there.
    pub identity: Option<String>,
    /// Requests in flight to it (least-request balancing).
    pub in_flight: AtomicUsize,
}

/// How a cluster picks among its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    LeastRequest,
    RoundRobin,
    Random,
    Hash(HashKey),
}

/// The endpoints of a destination on one port, possibly one subset.
#[derive(Debug)]
pub struct Cluster {
    /// `<namespace>/<name>:<port>[/<subset>]`, for logs.
    pub name: String,
    pub targets: Vec<Arc<Target>>,
    pub balance: Balance,
    next: AtomicUsize,
}

impl Cluster {
    /// Picks an endpoint; `random` gives numbers below its argument and
    /// `hash` the request's hash key (for consistent hashing), if any.
    pub fn pick(
        &self,
        mut random: impl FnMut(usize) -> usize,
        hash: Option<u64>,
    ) -> Option<&Arc<Target>> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let index = match (&self.balance, hash) {
            _ if n == 1 => 0,
            (Balance::RoundRobin, _) => self.next.fetch_add(1, Ordering::Relaxed) % n,
            (Balance::Random, _) | (Balance::Hash(_), None) => random(n),
            (Balance::Hash(_), Some(hash)) => (hash % n as u64) as usize,
            (Balance::LeastRequest, _) => {
                // Power of two choices: two distinct endpoints at random,
                // the one with fewer requests in flight.
                let a = random(n);
                let b = (a + 1 + random(n - 1)) % n;
                let load = |i: usize| self.targets[i].in_flight.load(Ordering::Relaxed);
                if load(b) < load(a) { b } else { a }
            }
        };
        self.targets.get(index)
    }
}

/// A compiled string condition.
#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present,
}

impl Matcher {
    fn compile(m: &StringMatch, route: &str) -> Result<Self, TableError> {
        Ok(match m {
            StringMatch::Exact(s) => Self::Exact(s.clone()),
            StringMatch::Prefix(s) => Self::Prefix(s.clone()),
            StringMatch::Present(_) => Self::Present,
            StringMatch::Regex(pattern) => {
                Self::Regex(Regex::new(&format!("^(?:{pattern})$")).map_err(|error| {
                    TableError {
                        route: route.to_owned(),
                        pattern: pattern.clone(),
                        error,
                    }
                })?)
            }
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(s) => value.starts_with(s.as_str()),
            Self::Regex(r) => r.is_match(value),
            Self::Present => true,
        }
    }
}

#[derive(Debug)]
struct Match {
    uri: Option<Matcher>,
    ignore_uri_case: bool,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Vec<(String, Matcher)>,
    without_headers: Vec<(String, Matcher)>,
    query_params: Vec<(String, Matcher)>,
    port: Option<u16>,
    source_labels: BTreeMap<String, String>,
    source_namespace: Option<String>,
}

/// What a request is matched on.
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authority: &'a str,
    pub scheme: &'a str,
    pub port: u16,
    pub headers: &'a http::HeaderMap,
}

/// Who sends the request: the pod this proxy runs in.
pub struct Source<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub namespace: &'a str,
}

impl Match {
    fn compile(m: &HttpMatch, route: &str) -> Result<Self, TableError> {
        let one =
            |m: &Option<StringMatch>| m.as_ref().map(|m| Matcher::compile(m, route)).transpose();
        let all = |ms: &BTreeMap<String, StringMatch>| {
            ms.iter()
                .map(|(k, m)| Ok((k.to_ascii_lowercase(), Matcher::compile(m, route)?)))
                .collect::<Result<Vec<_>, TableError>>()
        };
        let uri = match (&m.uri, m.ignore_uri_case) {
            (Some(StringMatch::Exact(s)), true) => Some(Matcher::Exact(s.to_lowercase())),
            (Some(StringMatch::Prefix(s)), true) => Some(Matcher::Prefix(s.to_lowercase())),
            (Some(StringMatch::Regex(r)), true) => Some(Matcher::compile(
                &StringMatch::Regex(format!("(?i:{r})")),
                route,
            )?),
            _ => one(&m.uri)?,
        };
        Ok(Self {
            uri,
            ignore_uri_case: m.ignore_uri_case,
            scheme: one(&m.scheme)?,
            method: one(&m.method)?,
            authority: one(&m.authority)?,
            headers: all(&m.headers)?,
            without_headers: all(&m.without_headers)?,
            query_params: all(&m.query_params)?,
            port: m.port,
            source_labels: m.source_labels.clone(),
            source_namespace: m.source_namespace.clone(),
        })
    }

    fn matches(&self, request: &RequestInfo<'_>, source: &Source<'_>) -> bool {
        let header = |name: &str| {
            request
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
        };
        let path_ok = match &self.uri {
            None => true,
            Some(Matcher::Regex(r)) => r.is_match(request.path),
            Some(m) if self.ignore_uri_case => m.matches(&request.path.to_lowercase()),
            Some(m) => m.matches(request.path),
        };
        path_ok
            && self.port.is_none_or(|p| p == request.port)
            && self
                .scheme
                .as_ref()
                .is_none_or(|m| m.matches(request.scheme))
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.matches(request.method))
            && self
                .authority
                .as_ref()
                .is_none_or(|m| m.matches(request.authority))
            && self
                .headers
                .iter()
                .all(|(name, m)| header(name).iter().any(|v| m.matches(v)))
            && !self
                .without_headers
                .iter()
                .any(|(name, m)| header(name).iter().any(|v| m.matches(v)))
            && self
                .query_params
                .iter()
                .all(|(name, m)| query_values(request.query, name).any(|v| m.matches(&v)))
            && self
                .source_labels
                .iter()
                .all(|(k, v)| source.labels.get(k) == Some(v))
            && self
                .source_namespace
                .as_ref()
                .is_none_or(|ns| ns == source.namespace)
    }
}

/// The values of a query parameter, percent-decoded.
fn query_values<'a>(query: Option<&'a str>, name: &'a str) -> impl Iterator<Item = String> + 'a {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A compiled route: the configuration's route and its matches.
#[derive(Debug)]
pub struct Route {
    pub spec: HttpRoute,
    matches: Vec<Match>,
    /// Backends with the cumulative weight up to and including each.
    cumulative: Vec<u32>,
    /// The rewrite's path regex, compiled (unanchored, as written).
    pub rewrite_regex: Option<Regex>,
}

impl Route {
    fn compile(spec: &HttpRoute) -> Result<Self, TableError> {
        let matches = spec
            .matches
            .iter()
            .map(|m| Match::compile(m, &spec.name))
            .collect::<Result<_, _>>()?;
        let cumulative = spec
            .backends
            .iter()
            .scan(0u32, |sum, b| {
                *sum += b.weight;
                Some(*sum)
            })
            .collect();
        // A regex that does not compile leaves paths as they are.
        let rewrite_regex = spec
            .rewrite
            .as_ref()
            .and_then(|r| r.uri_regex.as_ref())
            .and_then(|(pattern, _)| Regex::new(pattern).ok());
        Ok(Self {
            spec: spec.clone(),
            matches,
            cumulative,
            rewrite_regex,
        })
    }

    /// Whether the request takes this route.
    pub fn matches(&self, request: &RequestInfo<'_>, source: &Source<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(request, source))
    }

    /// The backend for a number drawn below the weights' total (see
    /// [`Route::total_weight`]); None when the route has no backends.
    pub fn backend(&self, draw: u32) -> Option<&Backend> {
        let index = self.cumulative.iter().position(|&sum| draw < sum)?;
        self.spec.backends.get(index)
    }

    pub fn total_weight(&self) -> u32 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

/// What the proxy does with an outbound connection to an address.
#[derive(Debug)]
pub enum Destination {
    /// A known service on one of its ports.
    Service { service: usize, port: u16 },
    /// A pod of a known service addressed directly.
    Pod(Arc<Target>),
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
    by_pod: HashMap<IpAddr, Arc<Target>>,
    routes: Vec<Vec<Route>>,
    clusters: HashMap<(usize, u16, Option<String>), Arc<Cluster>>,
}

impl Table {
    pub fn new(config: Arc<ProxyConfig>) -> Result<Self, TableError> {
        let mut table = Self {
            config: config.clone(),
            by_addr: HashMap::new(),
            by_host: HashMap::new(),
            by_pod: HashMap::new(),
            routes: Vec::with_capacity(config.services.len()),
            clusters: HashMap::new(),
        };
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
            table.routes.push(
                service
                    .http
                    .iter()
                    .map(Route::compile)
                    .collect::<Result<_, _>>()?,
            );
            let subsets =
                std::iter::once(None).chain(service.subsets.iter().map(|s| Some(&s.name)));
            for subset in subsets {
                for port in &service.ports {
                    let cluster = cluster(&config, service, port.port, subset);
                    table
                        .clusters
                        .insert((index, port.port, subset.cloned()), Arc::new(cluster));
                }
            }
            for endpoint in &service.endpoints {
                if let Ok(ip) = endpoint.ip.parse::<IpAddr>() {
                    table.by_pod.entry(ip).or_insert_with(|| {
                        Arc::new(Target {
                            addr: SocketAddr::new(ip, 0),
                            identity: identity(&config, service, endpoint),
                            in_flight: AtomicUsize::new(0),
                        })
                    });
                }
            }
        }
        Ok(table)
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
        if let Some(pod) = self.by_pod.get(&original.ip()) {
            return Destination::Pod(Arc::new(Target {
                addr: original,
                identity: pod.identity.clone(),
                in_flight: AtomicUsize::new(0),
            }));
        }
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

    /// The endpoints of a backend; `port` is the request's when the
    /// backend names none. None for a host the configuration does not know.
    pub fn cluster(&self, backend: &Backend, port: u16) -> Option<&Arc<Cluster>> {
        let service = *self.by_host.get(&backend.host)?;
        let port = backend.port.unwrap_or(port);
        self.clusters
            .get(&(service, port, backend.subset.clone()))
            .or_else(|| self.clusters.get(&(service, port, None)))
    }

    /// A service's own endpoints on a port (no route applies).
    pub fn service_cluster(&self, service: usize, port: u16) -> Option<&Arc<Cluster>> {
        self.clusters.get(&(service, port, None))
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

fn cluster(config: &ProxyConfig, service: &Service, port: u16, subset: Option<&String>) -> Cluster {
    let service_port = service.ports.iter().find(|p| p.port == port);
    let targets = service
        .endpoints
        .iter()
        .filter(|e| subset.is_none_or(|s| e.subsets.contains(s)))
        .filter_map(|e| {
            let ip = e.ip.parse::<IpAddr>().ok()?;
            let target_port = e
                .ports
                .get(&port)
                .copied()
                .or(service_port.and_then(|p| p.target_port))
                .unwrap_or(port);
            Some(Arc::new(Target {
                addr: SocketAddr::new(ip, target_port),
                identity: identity(config, service, e),
                in_flight: AtomicUsize::new(0),
            }))
        })
        .collect();
    // The subset's policy over the port's over the destination's.
    let subset_policy = subset
        .and_then(|name| service.subsets.iter().find(|s| &s.name == name))
        .and_then(|s| s.policy.as_ref());
    let port_lb = |policy: &plexus_config::TrafficPolicy| {
        policy
            .ports
            .iter()
            .find(|p| p.port == port)
            .and_then(|p| p.load_balancer.clone())
            .or_else(|| policy.load_balancer.clone())
    };
    let balance = match subset_policy
        .and_then(port_lb)
        .or_else(|| service.policy.as_ref().and_then(port_lb))
    {
        Some(LoadBalancer::RoundRobin) => Balance::RoundRobin,
        Some(LoadBalancer::Random) => Balance::Random,
        Some(LoadBalancer::ConsistentHash(key)) => Balance::Hash(key),
        Some(LoadBalancer::LeastRequest | LoadBalancer::Passthrough) | None => {
            Balance::LeastRequest
        }
    };
    let mut name = format!("{}/{}:{port}", service.namespace, service.name);
    if let Some(subset) = subset {
        name.push('/');
        name.push_str(subset);
    }
    Cluster {
        name,
        targets,
        balance,
        next: AtomicUsize::new(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_config::{Endpoint, ServicePort, Subset, TrafficPolicy};

    fn service(name: &str, ip: &str, endpoints: Vec<Endpoint>, http: Vec<HttpRoute>) -> Service {
        Service {
            namespace: "demo".into(),
            name: name.into(),
            hosts: vec![format!("{name}.demo.svc.cluster.local")],
            addresses: vec![ip.into()],
            ports: vec![ServicePort {
                port: 80,
                name: None,
                protocol: Protocol::Http,
                target_port: Some(8080),
            }],
            http,
            subsets: vec![
                Subset {
                    name: "v1".into(),
                    policy: Some(TrafficPolicy {
                        load_balancer: Some(LoadBalancer::RoundRobin),
                        ..Default::default()
                    }),
                },
                Subset {
                    name: "v2".into(),
                    policy: None,
                },
            ],
            endpoints,
            ..Default::default()
        }
    }

    fn endpoint(ip: &str, subset: &str) -> Endpoint {
        Endpoint {
            ip: ip.into(),
            sa: Some("reviews".into()),
            meshed: true,
            subsets: vec![subset.into()],
            ..Default::default()
        }
    }

    fn backend(host: &str, subset: Option<&str>, weight: u32) -> Backend {
        Backend {
            host: host.into(),
            subset: subset.map(Into::into),
            weight,
            ..Default::default()
        }
    }

    fn table() -> Table {
        let reviews = "reviews.demo.svc.cluster.local";
        let jason = HttpRoute {
            name: "VirtualService/demo/reviews/jason".into(),
            matches: vec![HttpMatch {
                headers: [("end-user".into(), StringMatch::Exact("jason".into()))].into(),
                ..Default::default()
            }],
            backends: vec![backend(reviews, Some("v2"), 100)],
            ..Default::default()
        };
        let api = HttpRoute {
            name: "VirtualService/demo/reviews/api".into(),
            matches: vec![HttpMatch {
                uri: Some(StringMatch::Regex("/api/v[0-9]+/.*".into())),
                method: Some(StringMatch::Exact("GET".into())),
                query_params: [("debug".into(), StringMatch::Exact("on now".into()))].into(),
                ..Default::default()
            }],
            backends: vec![backend(reviews, Some("v1"), 100)],
            ..Default::default()
        };
        let split = HttpRoute {
            name: "VirtualService/demo/reviews".into(),
            backends: vec![
                backend(reviews, Some("v1"), 90),
                backend(reviews, Some("v2"), 10),
            ],
            ..Default::default()
        };
        let config = ProxyConfig {
            trust_domain: "cluster.local".into(),
            services: Arc::new(vec![service(
                "reviews",
                "198.19.0.20",
                vec![
                    endpoint("198.18.0.20", "v1"),
                    endpoint("198.18.0.21", "v1"),
                    endpoint("198.18.0.22", "v2"),
                ],
                vec![jason, api, split],
            )]),
            ..Default::default()
        };
        Table::new(Arc::new(config)).expect("compiles")
    }

    fn request<'a>(
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a http::HeaderMap,
    ) -> RequestInfo<'a> {
        RequestInfo {
            method: "GET",
            path,
            query,
            authority: "reviews",
            scheme: "http",
            port: 80,
            headers,
        }
    }

    #[test]
    fn routes_by_header_path_method_and_query() {
        let table = table();
        let labels = BTreeMap::new();
        let source = Source {
            labels: &labels,
            namespace: "demo",
        };
        let Destination::Service { service, port } =
            table.destination("198.19.0.20:80".parse().expect("addr"))
        else {
            panic!("a service");
        };
        assert_eq!(port, 80);
        let mut headers = http::HeaderMap::new();
        headers.insert("end-user", "jason".parse().expect("value"));
        let route = |path, query, headers| {
            table
                .route(service, &request(path, query, headers), &source)
                .map(|r| r.spec.name.as_str())
        };
        assert_eq!(
            route("/", None, &headers),
            Some("VirtualService/demo/reviews/jason")
        );
        let none = http::HeaderMap::new();
        assert_eq!(
            route("/api/v2/x", Some("a=1&debug=on+now"), &none),
            Some("VirtualService/demo/reviews/api")
        );
        assert_eq!(
            route("/api/v2/x", Some("debug=on%20now"), &none),
            Some("VirtualService/demo/reviews/api")
        );
        assert_eq!(
            route("/api/v2/x", Some("debug=off"), &none),
            Some("VirtualService/demo/reviews")
        );
        assert_eq!(
            route("/xapi/v2/x", Some("debug=on+now"), &none),
            Some("VirtualService/demo/reviews")
        );
    }

    #[test]
    fn splits_by_weight_and_resolves_subsets() {
        let table = table();
        let split = &table.routes[0][2];
        assert_eq!(split.total_weight(), 100);
        let subsets: Vec<_> = [0, 89, 90, 99]
            .iter()
            .map(|&d| split.backend(d).and_then(|b| b.subset.clone()))
            .collect();
        assert_eq!(
            subsets,
            ["v1", "v1", "v2", "v2"].map(|s| Some(s.to_owned()))
        );
        let v1 = table
            .cluster(split.backend(0).expect("v1"), 80)
            .expect("cluster");
        assert_eq!(v1.name, "demo/reviews:80/v1");
        assert_eq!(v1.balance, Balance::RoundRobin);
        let addrs: Vec<_> = (0..4)
            .map(|_| v1.pick(|_| 0, None).expect("endpoint").addr.to_string())
            .collect();
        assert_eq!(
            addrs,
            [
                "198.18.0.20:8080",
                "198.18.0.21:8080",
                "198.18.0.20:8080",
                "198.18.0.21:8080"
            ]
        );
        let v2 = table
            .cluster(split.backend(95).expect("v2"), 80)
            .expect("cluster");
        assert_eq!(v2.targets.len(), 1);
        assert_eq!(
            v2.targets[0].identity.as_deref(),
            Some("spiffe://cluster.local/ns/demo/sa/reviews")
        );
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let table = table();
        let all = table.service_cluster(0, 80).expect("cluster");
        assert_eq!(all.balance, Balance::LeastRequest);
        all.targets[0].in_flight.store(5, Ordering::Relaxed);
        // Draws 0 and 1 compare endpoints 0 and 1: the idle one wins.
        let mut draws = [0usize, 0].into_iter();
        let picked = all
            .pick(|_| draws.next().unwrap_or(0), None)
            .expect("endpoint");
        assert_eq!(picked.addr.to_string(), "198.18.0.21:8080");
    }

    #[test]
    fn bad_regexes_are_refused() {
        let config = ProxyConfig {
            services: Arc::new(vec![service(
                "x",
                "198.19.0.30",
                vec![],
                vec![HttpRoute {
                    name: "r".into(),
                    matches: vec![HttpMatch {
                        uri: Some(StringMatch::Regex("(".into())),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            )]),
            ..Default::default()
        };
        assert!(Table::new(Arc::new(config)).is_err());
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
        assert_eq!(
            query_values(Some("x=1&y&x=2"), "x").collect::<Vec<_>>(),
            ["1", "2"]
        );
    }
}
