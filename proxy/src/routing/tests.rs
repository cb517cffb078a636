use std::collections::BTreeMap;

use super::*;
use plexus_config::{
    Endpoint, HttpMatch, HttpRoute, ServicePort, StringMatch, Subset, TrafficPolicy,
};

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
    let v1 = &table.clusters()[table
        .cluster(split.backend(0).expect("v1"), 80)
        .expect("cluster")];
    assert_eq!(v1.name, "demo/reviews:80/v1");
    assert_eq!(v1.balance, Balance::RoundRobin);
    let addrs: Vec<_> = v1.endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(addrs, ["198.18.0.20:8080", "198.18.0.21:8080"]);
    let v2 = &table.clusters()[table
        .cluster(split.backend(95).expect("v2"), 80)
        .expect("cluster")];
    assert_eq!(v2.endpoints.len(), 1);
    assert_eq!(
        v2.endpoints[0].identity.as_deref(),
        Some("spiffe://cluster.local/ns/demo/sa/reviews")
    );
    let all = &table.clusters()[table.service_cluster(0, 80).expect("cluster")];
    assert_eq!(all.balance, Balance::LeastRequest);
    assert_eq!(all.endpoints.len(), 3);
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
