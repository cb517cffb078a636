//! Destinations and their routes: Services, ServiceEntries, DestinationRules,
//! Gateways, VirtualServices, TrafficSplits and ServiceProfiles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use plexus_config as cfg;
use plexus_crds::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings,
    OutlierDetection, SimpleLb, TrafficPolicy,
};
use plexus_crds::gateway::ServerTlsMode;
use plexus_crds::service_entry::{Location, Resolution};
use plexus_crds::service_profile::{RequestMatch, ResponseMatch};
use plexus_crds::virtual_service::Destination;

use super::check::{Check, unimplemented};
use super::routes::{self, Destinations};
use super::{Key, Kind, State, by_age};

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
    tcp: Vec<cfg::TcpRoute>,
}

struct GatewayOut {
    key: Key,
    gateway: cfg::Gateway,
    hosts: Vec<(Key, cfg::VirtualHost)>,
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
                    service.tcp.extend(set.tcp.iter().cloned());
                }
                service
            })
            .collect()
    }

    /// The namespace's Gateways with their routes.
    pub fn gateways_for(&self, namespace: &str, state: &mut State<'_>) -> Vec<cfg::Gateway> {
        let mut gateways = Vec::new();
        for out in self
            .gateways
            .iter()
            .filter(|g| g.key.namespace == namespace)
        {
            let mut gateway = out.gateway.clone();
            state.programmed(&out.key, namespace);
            for (key, host) in &out.hosts {
                gateway.virtual_hosts.push(host.clone());
                state.programmed(key, namespace);
            }
            gateways.push(gateway);
        }
        gateways
    }
}

const SERVICE_ENTRY_FIELDS: &[&str] = &[
    "hosts",
    "addresses",
    "ports[].number",
    "ports[].protocol",
    "ports[].name",
    "ports[].targetPort",
    "location",
    "resolution",
    "endpoints[].address",
    "endpoints[].ports.*",
    "endpoints[].labels.*",
];

const DESTINATION_RULE_FIELDS: &[&str] = &[
    "host",
    "trafficPolicy.loadBalancer.simple",
    "trafficPolicy.loadBalancer.consistentHash.httpHeaderName",
    "trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
    "trafficPolicy.loadBalancer.consistentHash.httpCookie.path",
    "trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl",
    "trafficPolicy.loadBalancer.consistentHash.useSourceIp",
    "trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName",
    "trafficPolicy.connectionPool.tcp.maxConnections",
    "trafficPolicy.connectionPool.tcp.connectTimeout",
    "trafficPolicy.connectionPool.tcp.maxConnectionDuration",
    "trafficPolicy.connectionPool.http.http1MaxPendingRequests",
    "trafficPolicy.connectionPool.http.http2MaxRequests",
    "trafficPolicy.connectionPool.http.maxRequestsPerConnection",
    "trafficPolicy.connectionPool.http.maxRetries",
    "trafficPolicy.connectionPool.http.idleTimeout",
    "trafficPolicy.outlierDetection.consecutive5xxErrors",
    "trafficPolicy.outlierDetection.consecutiveGatewayErrors",
    "trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
    "trafficPolicy.outlierDetection.consecutiveErrors",
    "trafficPolicy.outlierDetection.interval",
    "trafficPolicy.outlierDetection.baseEjectionTime",
    "trafficPolicy.outlierDetection.maxEjectionPercent",
    "trafficPolicy.outlierDetection.minHealthPercent",
    "trafficPolicy.tls.mode",
    "trafficPolicy.tls.sni",
    "trafficPolicy.tls.subjectAltNames",
    "trafficPolicy.tls.credentialName",
    "trafficPolicy.tls.insecureSkipVerify",
    "trafficPolicy.portLevelSettings[].port.number",
];

const GATEWAY_FIELDS: &[&str] = &[
    "selector.*",
    "servers[].port.number",
    "servers[].port.protocol",
    "servers[].port.name",
    "servers[].hosts",
    "servers[].name",
    "servers[].tls.mode",
    "servers[].tls.credentialName",
    "servers[].tls.httpsRedirect",
];

const SERVICE_PROFILE_FIELDS: &[&str] = &[
    "routes[].name",
    "routes[].condition.**",
    "routes[].isRetryable",
    "routes[].timeout",
    "routes[].responseClasses[].condition.**",
    "routes[].responseClasses[].isFailure",
    "retryBudget.**",
    "opaquePorts",
];

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
    let input = state.input;
    let mut dests: Vec<Dest> = Vec::new();

    // Kubernetes Services and their endpoints.
    let mut endpoints: HashMap<(&str, &str), Vec<&super::EndpointInput>> = HashMap::new();
    for e in &input.endpoints {
        endpoints
            .entry((e.namespace.as_str(), e.service.as_str()))
            .or_default()
            .push(e);
    }
    for svc in &input.services {
        let mut eps: Vec<&super::EndpointInput> = endpoints
            .remove(&(svc.namespace.as_str(), svc.name.as_str()))
            .unwrap_or_default();
        eps.sort_by(|a, b| a.ip.cmp(&b.ip));
        eps.dedup_by(|a, b| a.ip == b.ip);
        dests.push(Dest {
            entry: None,
            service: cfg::Service {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                hosts: vec![state.service_host(&svc.namespace, &svc.name)],
                addresses: svc.cluster_ip.iter().cloned().collect(),
                ports: svc
                    .ports
                    .iter()
                    .map(|p| cfg::ServicePort {
                        port: p.port,
                        name: p.name.clone(),
                        protocol: protocol(p.app_protocol.as_deref(), p.name.as_deref()),
                        target_port: p.target_port,
                    })
                    .collect(),
                resolution: cfg::Resolution::Endpoints,
                endpoints: eps
                    .iter()
                    .map(|e| cfg::Endpoint {
                        ip: e.ip.clone(),
                        sa: e.service_account.clone(),
                        meshed: e.meshed,
                        subsets: Vec::new(),
                        ports: e.ports.clone(),
                    })
                    .collect(),
                ..Default::default()
            },
            labels: eps.iter().map(|e| e.labels.clone()).collect(),
            routes: Vec::new(),
            contributors: Vec::new(),
        });
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, d) in dests.iter().enumerate() {
        for host in &d.service.hosts {
            index.insert(host.clone(), i);
        }
    }

    // ServiceEntries.
    for se in by_age(&input.service_entries) {
        let key = Key::of(Kind::ServiceEntry, se);
        let namespace = key.namespace.clone();
        let spec = &se.spec;
        let mut check = Check::default();
        if spec.hosts.is_empty() {
            check.invalid("spec.hosts", "at least one host is required");
        }
        if let Some(location) = &spec.location {
            check.known(
                "spec.location",
                location.as_str(),
                location.is_known(),
                Location::VALUES,
            );
        }
        let resolution = match &spec.resolution {
            None | Some(Resolution::None) => cfg::Resolution::Passthrough,
            Some(Resolution::Static) => cfg::Resolution::Endpoints,
            Some(Resolution::Dns | Resolution::DnsRoundRobin) => cfg::Resolution::Dns,
            Some(other) => {
                check.known("spec.resolution", other.as_str(), false, Resolution::VALUES);
                cfg::Resolution::Passthrough
            }
        };
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let port = check.port(format!("spec.ports[{i}].number"), p.number);
            ports.push(cfg::ServicePort {
                port,
                name: p.name.clone(),
                protocol: protocol(Some(&p.protocol), None),
                target_port: p.target_port.and_then(|t| u16::try_from(t).ok()),
            });
        }
        let mut eps = Vec::new();
        let mut labels = Vec::new();
        for (i, e) in spec.endpoints.iter().enumerate() {
            match &e.address {
                Some(address) => {
                    eps.push(cfg::Endpoint {
                        ip: address.clone(),
                        ports: ports
                            .iter()
                            .filter_map(|p| {
                                let name = p.name.as_ref()?;
                                let target = *e.ports.get(name)?;
                                Some((p.port, u16::try_from(target).ok()?))
                            })
                            .collect(),
                        ..Default::default()
                    });
                    labels.push(e.labels.clone());
                }
                None => check.invalid(
                    format!("spec.endpoints[{i}].address"),
                    "an address is required",
                ),
            }
        }
        if resolution == cfg::Resolution::Endpoints && eps.is_empty() {
            check.invalid("spec.endpoints", "resolution STATIC needs endpoints");
        }
        let hosts: Vec<String> = spec
            .hosts
            .iter()
            .map(|h| state.qualify(h, &namespace))
            .collect();
        for (i, host) in hosts.iter().enumerate() {
            if let Some(&existing) = index.get(host) {
                let owner = &dests[existing].service;
                check.invalid(
                    format!("spec.hosts[{i}]"),
                    format!(
                        "{host} is already defined by {}/{}",
                        owner.namespace, owner.name
                    ),
                );
            }
        }
        let fields = unimplemented(spec, SERVICE_ENTRY_FIELDS);
        let generation = se.metadata.generation;
        if state.judge(&key, generation, check.finish(fields)) {
            for host in &hosts {
                index.insert(host.clone(), dests.len());
            }
            dests.push(Dest {
                entry: Some(key.clone()),
                service: cfg::Service {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    hosts,
                    addresses: spec.addresses.clone(),
                    ports,
                    resolution,
                    external: !matches!(spec.location, Some(Location::MeshInternal)),
                    endpoints: eps,
                    ..Default::default()
                },
                labels,
                routes: Vec::new(),
                contributors: Vec::new(),
            });
        }
    }

    // DestinationRules: the oldest rule of a host sets its policy; subsets
    // of every rule are merged, the oldest definition of a name winning.
    for dr in by_age(&input.destination_rules) {
        let key = Key::of(Kind::DestinationRule, dr);
        let spec = &dr.spec;
        let mut check = Check::default();
        let host = state.qualify(&spec.host, &key.namespace);
        let targets = lookup(&index, &dests, &host);
        if targets.is_empty() {
            check.missing(
                "spec.host",
                format!("no Service or ServiceEntry is named {host}"),
            );
        }
        let policy = spec
            .traffic_policy
            .as_ref()
            .map(|p| traffic_policy(&mut check, "spec.trafficPolicy", p));
        let mut subsets = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, s) in spec.subsets.iter().enumerate() {
            if !seen.insert(s.name.as_str()) {
                check.invalid(
                    format!("spec.subsets[{i}].name"),
                    format!("subset {} is defined twice", s.name),
                );
            }
            let policy = s.traffic_policy.as_ref().map(|p| {
                traffic_policy(&mut check, &format!("spec.subsets[{i}].trafficPolicy"), p)
            });
            subsets.push((s.name.clone(), s.labels.clone(), policy));
        }
        let mut implemented: Vec<String> = DESTINATION_RULE_FIELDS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        implemented.extend(["subsets[].name".into(), "subsets[].labels.*".into()]);
        for f in DESTINATION_RULE_FIELDS
            .iter()
            .filter_map(|f| f.strip_prefix("trafficPolicy."))
        {
            implemented.push(format!("trafficPolicy.portLevelSettings[].{f}"));
            implemented.push(format!("subsets[].trafficPolicy.{f}"));
        }
        let implemented: Vec<&str> = implemented.iter().map(String::as_str).collect();
        let fields = unimplemented(spec, &implemented);
        for &t in &targets {
            let dest = &dests[t];
            if dest.service.policy.is_some() && policy.is_some() {
                check.notes.push(format!(
                    "the traffic policy of an older DestinationRule for {} is in force",
                    dest.service.hosts[0]
                ));
            }
            for (name, _, _) in &subsets {
                if dest.service.subsets.iter().any(|s| &s.name == name) {
                    check.notes.push(format!(
                        "subset {name} of an older DestinationRule is in force"
                    ));
                }
            }
        }
        if state.judge(&key, dr.metadata.generation, check.finish(fields)) {
            for t in targets {
                let dest = &mut dests[t];
                if dest.service.policy.is_none() {
                    dest.service.policy = policy.clone();
                }
                for (name, labels, policy) in &subsets {
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
                        if super::selects(labels, endpoint_labels) {
                            endpoint.subsets.push(name.clone());
                        }
                    }
                }
                dest.contributors.push(key.clone());
            }
        }
    }

    // Gateways.
    let mut gateways: Vec<GatewayOut> = Vec::new();
    for gw in by_age(&input.gateways) {
        let key = Key::of(Kind::Gateway, gw);
        let mut check = Check::default();
        let mut servers = Vec::new();
        for (i, s) in gw.spec.servers.iter().enumerate() {
            let path = format!("spec.servers[{i}]");
            let port = check.port(format!("{path}.port.number"), s.port.number);
            let proto = s.port.protocol.to_ascii_uppercase();
            if !["HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS"].contains(&proto.as_str()) {
                check.invalid(
                    format!("{path}.port.protocol"),
                    format!(
                        "unknown protocol {:?}; expected HTTP, HTTPS, HTTP2, GRPC, TCP or TLS",
                        s.port.protocol
                    ),
                );
            }
            if s.hosts.is_empty() {
                check.invalid(format!("{path}.hosts"), "at least one host is required");
            }
            let tls_mode = s.tls.as_ref().and_then(|t| t.mode.as_ref());
            if let Some(mode) = tls_mode {
                check.known(
                    format!("{path}.tls.mode"),
                    mode.as_str(),
                    mode.is_known(),
                    ServerTlsMode::VALUES,
                );
            }
            if proto == "HTTPS" && tls_mode.is_none() {
                check.invalid(format!("{path}.tls"), "an HTTPS server needs tls settings");
            }
            servers.push(cfg::GatewayServer {
                port,
                protocol: proto,
                hosts: s.hosts.clone(),
                tls_mode: tls_mode.map(|m| m.as_str().to_owned()),
                credential_name: s.tls.as_ref().and_then(|t| t.credential_name.clone()),
                https_redirect: s
                    .tls
                    .as_ref()
                    .and_then(|t| t.https_redirect)
                    .unwrap_or(false),
            });
        }
        let fields = unimplemented(&gw.spec, GATEWAY_FIELDS);
        if state.judge(&key, gw.metadata.generation, check.finish(fields)) {
            gateways.push(GatewayOut {
                gateway: cfg::Gateway {
                    name: key.origin(),
                    selector: gw.spec.selector.clone(),
                    servers,
                    virtual_hosts: Vec::new(),
                },
                key,
                hosts: Vec::new(),
            });
        }
    }

    // VirtualServices.
    for vs in by_age(&input.virtual_services) {
        let key = Key::of(Kind::VirtualService, vs);
        let namespace = key.namespace.clone();
        let spec = &vs.spec;
        let mut check = Check::default();
        let resolver = Resolver {
            state,
            index: &index,
            dests: &dests,
            namespace: &namespace,
        };
        let bindings: Vec<String> = if spec.gateways.is_empty() {
            vec!["mesh".into()]
        } else {
            spec.gateways.clone()
        };
        let mut mesh = false;
        let mut bound = Vec::new();
        for (i, g) in bindings.iter().enumerate() {
            if g == "mesh" {
                mesh = true;
                continue;
            }
            let (gns, gname) = g
                .split_once('/')
                .unwrap_or((namespace.as_str(), g.as_str()));
            match gateways
                .iter()
                .position(|o| o.key.namespace == gns && o.key.name == gname)
            {
                Some(p) => bound.push(p),
                None => check.missing(
                    format!("spec.gateways[{i}]"),
                    format!("no accepted Gateway {gns}/{gname}"),
                ),
            }
        }
        if spec.hosts.is_empty() {
            check.invalid("spec.hosts", "at least one host is required");
        }
        let mut targets = BTreeSet::new();
        if mesh {
            let mut unresolved = Vec::new();
            for host in &spec.hosts {
                let found = lookup(&index, &dests, &state.qualify(host, &namespace));
                if found.is_empty() {
                    unresolved.push(host.as_str());
                }
                targets.extend(found);
            }
            if targets.is_empty() && !spec.hosts.is_empty() {
                check.missing(
                    "spec.hosts",
                    format!(
                        "no Service or ServiceEntry is named {}",
                        unresolved.join(", ")
                    ),
                );
            } else if !unresolved.is_empty() {
                check.notes.push(format!(
                    "hosts without a Service or ServiceEntry are not routed by sidecars: {}",
                    unresolved.join(", ")
                ));
            }
        }
        let origin = key.origin();
        let http: Vec<cfg::HttpRoute> = spec
            .http
            .iter()
            .enumerate()
            .map(|(i, r)| {
                routes::http_route(
                    &mut check,
                    &format!("spec.http[{i}]"),
                    r,
                    origin.clone(),
                    &resolver,
                )
            })
            .collect();
        let mut tcp = Vec::new();
        for (i, r) in spec.tcp.iter().enumerate() {
            let path = format!("spec.tcp[{i}]");
            let destinations: Vec<_> = r
                .route
                .iter()
                .map(|d| (&d.destination, d.weight, cfg::HeaderRules::default()))
                .collect();
            let backends = routes::backends(
                &mut check,
                &format!("{path}.route"),
                &destinations,
                &resolver,
            );
            let ports: Vec<Option<u16>> = if r.matches.is_empty() {
                vec![None]
            } else {
                r.matches
                    .iter()
                    .enumerate()
                    .map(|(j, m)| {
                        m.port
                            .map(|p| check.port(format!("{path}.match[{j}].port"), p))
                    })
                    .collect()
            };
            for port in ports {
                tcp.push(cfg::TcpRoute {
                    name: origin.clone(),
                    port,
                    backends: backends.clone(),
                });
            }
        }
        let mut implemented = vec![
            "hosts",
            "gateways",
            "exportTo",
            "tcp[].match[].port",
            "tcp[].route[].**",
        ];
        let http_fields: Vec<String> = routes::HTTP_ROUTE_FIELDS
            .iter()
            .map(|f| format!("http[].{f}"))
            .collect();
        implemented.extend(http_fields.iter().map(String::as_str));
        let fields = unimplemented(spec, &implemented);
        if state.judge(&key, vs.metadata.generation, check.finish(fields)) {
            let visibility = Visibility::of(&spec.export_to, &namespace);
            for t in targets {
                dests[t].routes.push(RouteSet {
                    key: key.clone(),
                    visibility: visibility.clone(),
                    http: http.clone(),
                    tcp: tcp.clone(),
                });
            }
            for g in bound {
                gateways[g].hosts.push((
                    key.clone(),
                    cfg::VirtualHost {
                        hosts: spec.hosts.clone(),
                        http: http.clone(),
                    },
                ));
            }
        }
    }

    // TrafficSplits: a weighted route for the apex service.
    for ts in by_age(&input.traffic_splits) {
        let key = Key::of(Kind::TrafficSplit, ts);
        let namespace = key.namespace.clone();
        let mut check = Check::default();
        let apex = state.qualify(&ts.spec.service, &namespace);
        let targets = lookup(&index, &dests, &apex);
        if targets.is_empty() {
            check.missing("spec.service", format!("no Service is named {apex}"));
        }
        if !ts.spec.matches.is_empty() {
            check.unsupported(
                "spec.matches",
                "HTTPRouteGroup matches are not implemented; the split would apply to every request",
            );
        }
        let mut weighted = Vec::new();
        for (i, b) in ts.spec.backends.iter().enumerate() {
            let host = state.qualify(&b.service, &namespace);
            if lookup(&index, &dests, &host).is_empty() {
                check.missing(
                    format!("spec.backends[{i}].service"),
                    format!("no Service is named {host}"),
                );
            }
            match b.weight_millis() {
                Ok(w) => weighted.push((host, w)),
                Err(e) => check.invalid(
                    format!("spec.backends[{i}].weight"),
                    format!("{:?} is not a weight", e.0),
                ),
            }
        }
        let total: u64 = weighted.iter().map(|(_, w)| w).sum();
        if total == 0 && check.ok() {
            check.invalid("spec.backends", "the weights sum to 0");
        }
        let fields = unimplemented(
            &ts.spec,
            &["service", "backends[].service", "backends[].weight"],
        );
        if state.judge(&key, ts.metadata.generation, check.finish(fields)) {
            let route = cfg::HttpRoute {
                name: key.origin(),
                backends: percentages(&weighted, total)
                    .into_iter()
                    .filter(|(_, w)| *w > 0)
                    .map(|(host, weight)| cfg::Backend {
                        host,
                        weight,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            for t in targets {
                dests[t].routes.push(RouteSet {
                    key: key.clone(),
                    visibility: Visibility::All,
                    http: vec![route.clone()],
                    tcp: Vec::new(),
                });
            }
        }
    }

    // ServiceProfiles, named by the host they describe.
    for sp in by_age(&input.service_profiles) {
        let key = Key::of(Kind::ServiceProfile, sp);
        let mut check = Check::default();
        let host = state.qualify(&sp.name_any(), &key.namespace);
        let targets = lookup(&index, &dests, &host);
        if targets.is_empty() {
            check.missing("metadata.name", format!("no Service is named {host}"));
        }
        let mut profile_routes = Vec::new();
        for (i, r) in sp.spec.routes.iter().enumerate() {
            let path = format!("spec.routes[{i}]");
            let condition =
                request_condition(&mut check, &format!("{path}.condition"), &r.condition);
            let mut failure_statuses = Vec::new();
            for (j, class) in r.response_classes.iter().enumerate() {
                if class.is_failure.unwrap_or(true) {
                    response_ranges(
                        &mut check,
                        &format!("{path}.responseClasses[{j}].condition"),
                        &class.condition,
                        &mut failure_statuses,
                    );
                }
            }
            profile_routes.push(cfg::ProfileRoute {
                name: r.name.clone(),
                condition,
                retryable: r.is_retryable.unwrap_or(false),
                timeout_ms: r
                    .timeout
                    .as_ref()
                    .and_then(|t| check.duration(format!("{path}.timeout"), t)),
                failure_statuses,
            });
        }
        let retry_budget = sp.spec.retry_budget.as_ref().map(|b| cfg::RetryBudget {
            ratio: b.retry_ratio,
            min_per_second: b.min_retries_per_second,
            ttl_ms: check
                .duration("spec.retryBudget.ttl", &b.ttl)
                .unwrap_or(10_000),
        });
        let mut opaque = Vec::new();
        for (i, p) in sp.spec.opaque_ports.iter().enumerate() {
            opaque.push(check.port(format!("spec.opaquePorts[{i}]"), *p));
        }
        for &t in &targets {
            if dests[t].service.profile.is_some() {
                check
                    .notes
                    .push(format!("an older ServiceProfile for {host} is in force"));
            }
        }
        let fields = unimplemented(&sp.spec, SERVICE_PROFILE_FIELDS);
        if state.judge(&key, sp.metadata.generation, check.finish(fields)) {
            for t in targets {
                let dest = &mut dests[t];
                if dest.service.profile.is_some() {
                    continue;
                }
                dest.service.profile = Some(cfg::Profile {
                    name: key.origin(),
                    routes: profile_routes.clone(),
                    retry_budget: retry_budget.clone(),
                });
                for port in &mut dest.service.ports {
                    if opaque.contains(&port.port) {
                        port.protocol = cfg::Protocol::Tcp;
                    }
                }
                dest.contributors.push(key.clone());
            }
        }
    }

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

/// Integer percentages summing to 100 (largest remainder).
fn percentages(weighted: &[(String, u64)], total: u64) -> Vec<(String, u32)> {
    if total == 0 {
        return Vec::new();
    }
    let mut shares: Vec<(String, u32, u64)> = weighted
        .iter()
        .map(|(h, w)| {
            let scaled = w * 100;
            (
                h.clone(),
                u32::try_from(scaled / total).unwrap_or(100),
                scaled % total,
            )
        })
        .collect();
    let assigned: u32 = shares.iter().map(|s| s.1).sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for &i in order
        .iter()
        .take(100usize.saturating_sub(assigned as usize))
    {
        shares[i].1 += 1;
    }
    shares.into_iter().map(|(h, w, _)| (h, w)).collect()
}

/// The destinations a host names: exact, or every host a `*.suffix` matches.
fn lookup(index: &HashMap<String, usize>, dests: &[Dest], host: &str) -> Vec<usize> {
    if let Some(suffix) = host.strip_prefix('*') {
        let mut found: Vec<usize> = dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.service.hosts.iter().any(|h| h.ends_with(suffix)))
            .map(|(i, _)| i)
            .collect();
        found.dedup();
        return found;
    }
    index.get(host).copied().into_iter().collect()
}

struct Resolver<'a> {
    state: &'a State<'a>,
    index: &'a HashMap<String, usize>,
    dests: &'a [Dest],
    namespace: &'a str,
}

impl Destinations for Resolver<'_> {
    fn resolve(&self, check: &mut Check, path: &str, d: &Destination) -> Option<String> {
        let host = self.state.qualify(&d.host, self.namespace);
        let Some(&i) = self.index.get(&host) else {
            check.missing(
                format!("{path}.host"),
                format!("no Service or ServiceEntry is named {host}"),
            );
            return None;
        };
        let dest = &self.dests[i].service;
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

fn traffic_policy(check: &mut Check, path: &str, p: &TrafficPolicy) -> cfg::TrafficPolicy {
    cfg::TrafficPolicy {
        load_balancer: p
            .load_balancer
            .as_ref()
            .and_then(|lb| load_balancer(check, &format!("{path}.loadBalancer"), lb)),
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
        consecutive_5xx: o.consecutive_5xx_errors,
        consecutive_gateway_errors: o
            .consecutive_gateway_errors
            .or_else(|| o.consecutive_errors.and_then(|e| u32::try_from(e).ok())),
        consecutive_local_failures: o.consecutive_local_origin_failures,
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
        ClientTlsMode::Disable => "DISABLE",
        ClientTlsMode::Simple => "SIMPLE",
        ClientTlsMode::Mutual => "MUTUAL",
        ClientTlsMode::IstioMutual => "MESH",
        other => {
            check.known(
                format!("{path}.mode"),
                other.as_str(),
                false,
                ClientTlsMode::VALUES,
            );
            "MESH"
        }
    };
    cfg::ClientTls {
        mode: mode.into(),
        sni: t.sni.clone(),
        subject_alt_names: t.subject_alt_names.clone(),
        credential_name: t.credential_name.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    }
}

fn request_condition(check: &mut Check, path: &str, m: &RequestMatch) -> cfg::RequestCondition {
    let mut parts = Vec::new();
    if !m.all.is_empty() {
        parts.push(cfg::RequestCondition::All(
            m.all
                .iter()
                .enumerate()
                .map(|(i, c)| request_condition(check, &format!("{path}.all[{i}]"), c))
                .collect(),
        ));
    }
    if !m.any.is_empty() {
        parts.push(cfg::RequestCondition::Any(
            m.any
                .iter()
                .enumerate()
                .map(|(i, c)| request_condition(check, &format!("{path}.any[{i}]"), c))
                .collect(),
        ));
    }
    if let Some(not) = &m.not {
        parts.push(cfg::RequestCondition::Not(Box::new(request_condition(
            check,
            &format!("{path}.not"),
            not,
        ))));
    }
    if let Some(regex) = &m.path_regex {
        check.regex(format!("{path}.pathRegex"), regex);
        parts.push(cfg::RequestCondition::PathRegex(regex.clone()));
    }
    if let Some(method) = &m.method {
        parts.push(cfg::RequestCondition::Method(method.to_ascii_uppercase()));
    }
    match parts.len() {
        0 => {
            check.invalid(
                path,
                "a condition needs one of all, any, not, pathRegex and method",
            );
            cfg::RequestCondition::default()
        }
        1 => parts.remove(0),
        _ => cfg::RequestCondition::All(parts),
    }
}

fn response_ranges(check: &mut Check, path: &str, m: &ResponseMatch, out: &mut Vec<(u16, u16)>) {
    if let Some(status) = &m.status {
        let min = status.min.unwrap_or(100);
        let max = status.max.unwrap_or(599);
        if !(100..=599).contains(&min) || !(100..=599).contains(&max) || min > max {
            check.invalid(
                format!("{path}.status"),
                format!("{min}-{max} is not a range of HTTP statuses"),
            );
        }
        out.push((
            u16::try_from(min).unwrap_or(500),
            u16::try_from(max).unwrap_or(599),
        ));
    }
    for (i, any) in m.any.iter().enumerate() {
        response_ranges(check, &format!("{path}.any[{i}]"), any, out);
    }
    if !m.all.is_empty() || m.not.is_some() {
        check.unsupported(
            path,
            "only status ranges and `any` of them are implemented in response classes",
        );
    }
}
