//! ServiceEntries: destinations outside Kubernetes' Services, by address
//! and host, with static endpoints or passed through as addressed.

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::service_entry::{Location, Resolution, ServiceEntrySpec};

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::{Dest, Dests, protocol};

/// Judges every ServiceEntry (oldest first) and adds those accepted.
pub(super) fn compile(state: &mut State<'_>, dests: &mut Dests) {
    for se in by_age(&state.input.service_entries) {
        let key = Key::of(Kind::ServiceEntry, se);
        let mut check = Check::default();
        let hosts: Vec<String> = se
            .spec
            .hosts
            .iter()
            .map(|h| state.qualify(h, &key.namespace))
            .collect();
        for (i, host) in hosts.iter().enumerate() {
            if let Some(&existing) = dests.index.get(host) {
                let owner = &dests.all[existing].service;
                check.invalid(
                    format!("spec.hosts[{i}]"),
                    format!(
                        "{host} is already defined by {}/{}",
                        owner.namespace, owner.name
                    ),
                );
            }
        }
        let (service, labels) = convert(&se.spec, &key, hosts, &mut check);
        if state.judge(
            &key,
            se.metadata.generation,
            check.finish(key.kind, &se.spec),
        ) {
            dests.push(Dest {
                entry: Some(key),
                service,
                labels,
                routes: Vec::new(),
                contributors: Vec::new(),
            });
        }
    }
}

/// The destination a ServiceEntry declares, and its endpoints' labels.
fn convert(
    spec: &ServiceEntrySpec,
    key: &Key,
    hosts: Vec<String>,
    check: &mut Check,
) -> (cfg::Service, Vec<BTreeMap<String, String>>) {
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
        Some(Resolution::Dns) => cfg::Resolution::Dns,
        Some(Resolution::DnsRoundRobin) => cfg::Resolution::DnsRoundRobin,
        Some(other) => {
            check.known("spec.resolution", other.as_str(), false, Resolution::VALUES);
            cfg::Resolution::Passthrough
        }
    };
    let ports: Vec<cfg::ServicePort> = spec
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| cfg::ServicePort {
            port: check.port(format!("spec.ports[{i}].number"), p.number),
            name: p.name.clone(),
            protocol: protocol(Some(&p.protocol), None),
            target_port: p.target_port.and_then(|t| u16::try_from(t).ok()),
        })
        .collect();
    let internal = matches!(spec.location, Some(Location::MeshInternal));
    let dns = matches!(
        resolution,
        cfg::Resolution::Dns | cfg::Resolution::DnsRoundRobin
    );
    let mut endpoints = Vec::new();
    let mut labels = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let Some(address) = &e.address else {
            check.invalid(
                format!("spec.endpoints[{i}].address"),
                "an address is required",
            );
            continue;
        };
        endpoints.push(cfg::Endpoint {
            ip: address.clone(),
            ports: ports
                .iter()
                .filter_map(|p| {
                    let target = *e.ports.get(p.name.as_ref()?)?;
                    Some((p.port, u16::try_from(target).ok()?))
                })
                .collect(),
            // MESH_INTERNAL: a sidecar runs there, proving the endpoint's
            // ServiceAccount (mTLS, as to a pod).
            sa: e.service_account.clone().filter(|_| internal),
            meshed: internal && e.service_account.is_some(),
            ..Default::default()
        });
        labels.push(e.labels.clone());
    }
    if resolution == cfg::Resolution::Endpoints && endpoints.is_empty() {
        check.invalid("spec.endpoints", "resolution STATIC needs endpoints");
    }
    // DNS without endpoints: the hosts themselves are resolved (wildcards
    // cannot be).
    if dns && endpoints.is_empty() {
        for (i, host) in spec.hosts.iter().enumerate() {
            if host.starts_with('*') {
                check.invalid(
                    format!("spec.hosts[{i}]"),
                    "a wildcard host cannot be resolved by DNS: list endpoints",
                );
                continue;
            }
            endpoints.push(cfg::Endpoint {
                ip: host.clone(),
                ..Default::default()
            });
            labels.push(BTreeMap::new());
        }
    }
    let service = cfg::Service {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        hosts,
        addresses: spec.addresses.clone(),
        ports,
        resolution,
        external: !internal,
        endpoints,
        ..Default::default()
    };
    (service, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            kind: Kind::ServiceEntry,
            namespace: "demo".into(),
            name: "api".into(),
        }
    }

    #[test]
    fn static_endpoints_take_their_named_ports() {
        let spec: ServiceEntrySpec = serde_json::from_value(serde_json::json!({
            "hosts": ["api.example.com"],
            "addresses": ["198.51.100.7"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.51", "ports": {"http": 8080}}]
        }))
        .expect("spec");
        let mut check = Check::default();
        let (service, _) = convert(&spec, &key(), vec!["api.example.com".into()], &mut check);
        assert!(check.ok());
        assert_eq!(service.resolution, cfg::Resolution::Endpoints);
        assert_eq!(service.ports[0].protocol, cfg::Protocol::Http);
        assert_eq!(service.endpoints[0].ports, BTreeMap::from([(80, 8080)]));
        assert!(service.external);
    }

    #[test]
    fn dns_without_endpoints_resolves_the_hosts() {
        let spec: ServiceEntrySpec = serde_json::from_value(serde_json::json!({
            "hosts": ["legacy.example.test"],
            "ports": [{"number": 8080, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS_ROUND_ROBIN"
        }))
        .expect("spec");
        let mut check = Check::default();
        let (service, _) = convert(
            &spec,
            &key(),
            vec!["legacy.example.test".into()],
            &mut check,
        );
        assert!(check.ok());
        assert_eq!(service.resolution, cfg::Resolution::DnsRoundRobin);
        assert_eq!(service.endpoints[0].ip, "legacy.example.test");
        let wildcard: ServiceEntrySpec = serde_json::from_value(serde_json::json!({
            "hosts": ["*.example.test"], "resolution": "DNS"
        }))
        .expect("spec");
        let mut check = Check::default();
        convert(&wildcard, &key(), vec!["*.example.test".into()], &mut check);
        assert!(!check.ok());
    }

    #[test]
    fn mesh_internal_endpoints_prove_their_account() {
        let spec: ServiceEntrySpec = serde_json::from_value(serde_json::json!({
            "hosts": ["vm.example.test"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "endpoints": [{"address": "198.51.100.9", "serviceAccount": "vm"}]
        }))
        .expect("spec");
        let mut check = Check::default();
        let (service, _) = convert(&spec, &key(), vec!["vm.example.test".into()], &mut check);
        assert!(check.ok());
        assert!(!service.external);
        assert_eq!(service.endpoints[0].sa.as_deref(), Some("vm"));
        assert!(service.endpoints[0].meshed);
    }

    #[test]
    fn static_without_endpoints_is_invalid() {
        let spec: ServiceEntrySpec = serde_json::from_value(serde_json::json!({
            "hosts": ["api.example.com"], "resolution": "STATIC"
        }))
        .expect("spec");
        let mut check = Check::default();
        convert(&spec, &key(), vec!["api.example.com".into()], &mut check);
        assert!(!check.ok());
    }
}
