//! What the unit tests of several modules configure: Service `web` of
//! namespace `demo` at 198.19.0.10:80 (target port 8080).

use std::sync::Arc;

use plexus_config::{Endpoint, LoadBalancer, ProxyConfig, Service, ServicePort, TrafficPolicy};

/// `web` with `endpoints` (address, and the ServiceAccount of a meshed
/// one) balanced by `lb`.
pub fn web(endpoints: &[(&str, Option<&str>)], lb: Option<LoadBalancer>) -> ProxyConfig {
    ProxyConfig {
        trust_domain: "cluster.local".into(),
        services: Arc::new(vec![Service {
            namespace: "demo".into(),
            name: "web".into(),
            hosts: vec!["web.demo.svc.cluster.local".into()],
            addresses: vec!["198.19.0.10".into()],
            ports: vec![ServicePort {
                port: 80,
                name: None,
                protocol: Default::default(),
                target_port: Some(8080),
            }],
            policy: lb.map(|lb| TrafficPolicy {
                load_balancer: Some(lb),
                ..Default::default()
            }),
            endpoints: endpoints
                .iter()
                .map(|(ip, sa)| Endpoint {
                    ip: (*ip).into(),
                    sa: sa.map(Into::into),
                    meshed: sa.is_some(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}
