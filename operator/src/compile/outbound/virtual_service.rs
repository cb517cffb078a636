//! VirtualServices: HTTP and TCP routes for the destinations their hosts
//! name (bound to `mesh`, the sidecars), and virtual hosts of the Gateways
//! they bind to.

use std::collections::BTreeSet;

use plexus_config as cfg;
use plexus_crds::virtual_service::{L4MatchAttributes, RouteDestination, VirtualServiceSpec};

use super::super::check::Check;
use super::super::routes::{self, Destinations};
use super::super::{Key, Kind, State, by_age};
use super::{Dests, GatewayOut, Resolver, RouteSet, Visibility};

/// Judges every VirtualService (oldest first, so older routes come first)
/// and adds the routes of those accepted.
pub(super) fn compile(state: &mut State<'_>, dests: &mut Dests, gateways: &mut [GatewayOut]) {
    for vs in by_age(&state.input.virtual_services) {
        let key = Key::of(Kind::VirtualService, vs);
        let spec = &vs.spec;
        let mut check = Check::default();
        let (mesh, bound) = bindings(spec, &key.namespace, gateways, &mut check);
        let targets = if mesh {
            targets(state, dests, spec, &key.namespace, &mut check)
        } else {
            BTreeSet::new()
        };
        let resolver = Resolver {
            state,
            dests,
            namespace: &key.namespace,
        };
        let Routes { http, tls, tcp } = convert(spec, &key.origin(), &resolver, &mut check);
        if !state.judge(&key, vs.metadata.generation, check.finish(key.kind, spec)) {
            continue;
        }
        let visibility = Visibility::of(&spec.export_to, &key.namespace);
        for t in targets {
            dests.all[t].routes.push(RouteSet {
                key: key.clone(),
                visibility: visibility.clone(),
                http: http.clone(),
                tls: tls.clone(),
                tcp: tcp.clone(),
            });
        }
        for g in bound {
            gateways[g].hosts.push(cfg::VirtualHost {
                hosts: spec.hosts.clone(),
                http: http.clone(),
            });
        }
    }
}

/// Whether the VirtualService applies to sidecars (`mesh`, the default),
/// and the Gateways it binds to.
fn bindings(
    spec: &VirtualServiceSpec,
    namespace: &str,
    gateways: &[GatewayOut],
    check: &mut Check,
) -> (bool, Vec<usize>) {
    if spec.gateways.is_empty() {
        return (true, Vec::new());
    }
    let mut mesh = false;
    let mut bound = Vec::new();
    for (i, g) in spec.gateways.iter().enumerate() {
        if g == "mesh" {
            mesh = true;
            continue;
        }
        let (gns, gname) = g.split_once('/').unwrap_or((namespace, g.as_str()));
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
    (mesh, bound)
}

/// The destinations the hosts name, for sidecars.
fn targets(
    state: &State<'_>,
    dests: &Dests,
    spec: &VirtualServiceSpec,
    namespace: &str,
    check: &mut Check,
) -> BTreeSet<usize> {
    if spec.hosts.is_empty() {
        check.invalid("spec.hosts", "at least one host is required");
        return BTreeSet::new();
    }
    let mut targets = BTreeSet::new();
    let mut unresolved = Vec::new();
    for host in &spec.hosts {
        let found = dests.lookup(&state.qualify(host, namespace));
        if found.is_empty() {
            unresolved.push(host.as_str());
        }
        targets.extend(found);
    }
    if targets.is_empty() {
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
    targets
}

/// The routes of a VirtualService whose origin is `origin`: HTTP, TLS and
/// TCP.
fn convert(
    spec: &VirtualServiceSpec,
    origin: &str,
    resolver: &dyn Destinations,
    check: &mut Check,
) -> Routes {
    let http = spec
        .http
        .iter()
        .enumerate()
        .map(|(i, r)| {
            routes::http_route(
                check,
                &format!("spec.http[{i}]"),
                r,
                origin.to_owned(),
                resolver,
            )
        })
        .collect();
    let tls = spec
        .tls
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("spec.tls[{i}]");
            let matches = r
                .matches
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    let path = format!("{path}.match[{j}]");
                    if m.sni_hosts.is_empty() {
                        check.invalid(format!("{path}.sniHosts"), "a TLS match needs sniHosts");
                    }
                    cfg::L4Match {
                        sni_hosts: m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                        ..l4_match(check, &path, &m.connection)
                    }
                })
                .collect();
            if r.matches.is_empty() {
                check.invalid(format!("{path}.match"), "a TLS route needs a match");
            }
            l4_route(check, &path, origin, matches, &r.route, resolver)
        })
        .collect();
    let tcp = spec
        .tcp
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("spec.tcp[{i}]");
            let matches = r
                .matches
                .iter()
                .enumerate()
                .map(|(j, m)| l4_match(check, &format!("{path}.match[{j}]"), m))
                .collect();
            l4_route(check, &path, origin, matches, &r.route, resolver)
        })
        .collect();
    Routes { http, tls, tcp }
}

/// A VirtualService's routes of each kind.
#[derive(Clone)]
struct Routes {
    http: Vec<cfg::HttpRoute>,
    tls: Vec<cfg::TcpRoute>,
    tcp: Vec<cfg::TcpRoute>,
}

fn l4_route(
    check: &mut Check,
    path: &str,
    origin: &str,
    matches: Vec<cfg::L4Match>,
    route: &[RouteDestination],
    resolver: &dyn Destinations,
) -> cfg::TcpRoute {
    let destinations: Vec<_> = route
        .iter()
        .map(|d| (&d.destination, d.weight, cfg::HeaderRules::default()))
        .collect();
    cfg::TcpRoute {
        name: origin.to_owned(),
        matches,
        backends: routes::backends(check, &format!("{path}.route"), &destinations, resolver),
    }
}

/// Conditions on a connection; subnets must be addresses or CIDRs.
fn l4_match(check: &mut Check, path: &str, m: &L4MatchAttributes) -> cfg::L4Match {
    for (i, subnet) in m.destination_subnets.iter().enumerate() {
        if let Err(error) = cfg::Cidr::parse(subnet) {
            check.invalid(format!("{path}.destinationSubnets[{i}]"), error);
        }
    }
    cfg::L4Match {
        port: m.port.map(|p| check.port(format!("{path}.port"), p)),
        destination_subnets: m.destination_subnets.clone(),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
        sni_hosts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use plexus_crds::virtual_service::Destination;

    use super::*;

    /// Every host resolves, fully qualified, with every subset.
    struct Anything;

    impl Destinations for Anything {
        fn resolve(&self, _: &mut Check, _: &str, d: &Destination) -> Option<String> {
            Some(format!("{}.demo.svc.cluster.local", d.host))
        }
    }

    #[test]
    fn routes_keep_their_order_and_names() {
        let spec: VirtualServiceSpec = serde_json::from_value(serde_json::json!({
            "hosts": ["reviews"],
            "http": [
                {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                 "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
                {"retries": {"attempts": 2, "retryOn": "5xx,409"},
                 "route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                           {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]}
            ],
            "tcp": [{"match": [{"port": 27017}], "route": [{"destination": {"host": "mongo"}}]}]
        }))
        .expect("spec");
        let mut check = Check::default();
        let Routes { http, tcp, .. } =
            convert(&spec, "VirtualService/demo/reviews", &Anything, &mut check);
        assert!(check.ok());
        assert_eq!(http[0].name, "VirtualService/demo/reviews/jason");
        assert_eq!(
            http[1]
                .backends
                .iter()
                .map(|b| b.weight)
                .collect::<Vec<_>>(),
            [90, 10]
        );
        assert_eq!(
            http[1].retries.as_ref().map(|r| r.retry_on.clone()),
            Some(vec![
                cfg::RetryOn::Condition(cfg::RetryCondition::ServerError),
                cfg::RetryOn::Status(409)
            ])
        );
        assert_eq!(tcp[0].matches[0].port, Some(27017));
    }

    #[test]
    fn redirects_and_direct_responses_need_no_destination() {
        let spec: VirtualServiceSpec = serde_json::from_value(serde_json::json!({
            "hosts": ["web"],
            "http": [
                {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new"}},
                {"directResponse": {"status": 418}}
            ]
        }))
        .expect("spec");
        let mut check = Check::default();
        let Routes { http, .. } = convert(&spec, "VirtualService/demo/web", &Anything, &mut check);
        assert!(check.ok());
        assert!(http.iter().all(|r| r.backends.is_empty()));
        assert_eq!(
            http[1].direct_response.as_ref().map(|d| d.status),
            Some(418)
        );
    }

    #[test]
    fn an_unknown_retry_condition_is_invalid() {
        let spec: VirtualServiceSpec = serde_json::from_value(serde_json::json!({
            "hosts": ["reviews"],
            "http": [{"retries": {"attempts": 1, "retryOn": "5xx,sometimes"},
                      "route": [{"destination": {"host": "reviews"}}]}]
        }))
        .expect("spec");
        let mut check = Check::default();
        convert(&spec, "VirtualService/demo/reviews", &Anything, &mut check);
        let message = check
            .finish(Kind::VirtualService, &spec)
            .expect_err("rejected")
            .message;
        assert!(
            message.starts_with("spec.http[0].retries.retryOn: unknown value \"sometimes\""),
            "{message}"
        );
    }
}
