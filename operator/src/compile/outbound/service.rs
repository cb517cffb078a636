//! Kubernetes Services and their ready endpoints.

use std::collections::HashMap;

use plexus_config as cfg;

use super::super::{EndpointInput, ServiceInput, State};
use super::{Dest, Dests, protocol};

/// Adds every Service of the input, with its endpoints.
pub(super) fn compile(state: &State<'_>, dests: &mut Dests) {
    let mut endpoints: HashMap<(&str, &str), Vec<&EndpointInput>> = HashMap::new();
    for e in &state.input.endpoints {
        endpoints
            .entry((e.namespace.as_str(), e.service.as_str()))
            .or_default()
            .push(e);
    }
    for svc in &state.input.services {
        let eps = endpoints
            .remove(&(svc.namespace.as_str(), svc.name.as_str()))
            .unwrap_or_default();
        let host = state.service_host(&svc.namespace, &svc.name);
        dests.push(convert(svc, host, eps));
    }
}

/// A Service as a destination: its ClusterIP and ports, its endpoints
/// sorted by address (one per address).
fn convert(svc: &ServiceInput, host: String, mut eps: Vec<&EndpointInput>) -> Dest {
    eps.sort_by(|a, b| a.ip.cmp(&b.ip));
    eps.dedup_by(|a, b| a.ip == b.ip);
    Dest {
        entry: None,
        service: cfg::Service {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            hosts: vec![host],
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
                    plaintext: cfg::Plaintext::default(),
                })
                .collect(),
            ..Default::default()
        },
        labels: eps.iter().map(|e| e.labels.clone()).collect(),
        routes: Vec::new(),
        contributors: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::ServicePortInput;
    use super::*;

    #[test]
    fn one_endpoint_per_address_and_protocols_from_names() {
        let svc = ServiceInput {
            namespace: "demo".into(),
            name: "web".into(),
            cluster_ip: Some("198.19.0.10".into()),
            ports: vec![
                ServicePortInput {
                    name: Some("grpc-api".into()),
                    port: 9000,
                    ..Default::default()
                },
                ServicePortInput {
                    name: Some("db".into()),
                    port: 5432,
                    app_protocol: Some("tcp".into()),
                    ..Default::default()
                },
            ],
            selector: None,
        };
        let endpoint = |ip: &str| EndpointInput {
            namespace: "demo".into(),
            service: "web".into(),
            ip: ip.into(),
            ..Default::default()
        };
        let (a, b, c) = (
            endpoint("198.18.0.9"),
            endpoint("198.18.0.7"),
            endpoint("198.18.0.9"),
        );
        let dest = convert(&svc, "web.demo.svc.cluster.local".into(), vec![&a, &b, &c]);
        let ips: Vec<&str> = dest
            .service
            .endpoints
            .iter()
            .map(|e| e.ip.as_str())
            .collect();
        assert_eq!(ips, ["198.18.0.7", "198.18.0.9"]);
        let protocols: Vec<_> = dest.service.ports.iter().map(|p| p.protocol).collect();
        assert_eq!(protocols, [cfg::Protocol::Http2, cfg::Protocol::Tcp]);
    }
}
