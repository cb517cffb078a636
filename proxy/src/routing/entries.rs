//! Destinations known by name rather than address: ServiceEntries that
//! declare hosts but no addresses. A connection to an address the table
//! does not know, on a port such an entry declares, is matched by its HTTP
//! Host or TLS server name (exact, or a `*.` wildcard's suffix). The names
//! the proxy resolves itself (`dns`) are the endpoints of DNS destinations
//! and the hosts of these entries: a TCP connection to an address one of
//! them resolved to is that entry's.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use plexus_config::{Protocol, Resolution, Service};

/// What each name resolved to, by the proxy's own DNS lookups.
pub type Resolved = HashMap<String, Vec<IpAddr>>;

/// Hosts-only destinations, by port.
#[derive(Debug, Default)]
pub struct Named(HashMap<u16, Vec<(String, usize)>>);

impl Named {
    pub fn add(&mut self, index: usize, service: &Service) {
        if !service.addresses.is_empty() {
            return;
        }
        for port in &service.ports {
            for host in &service.hosts {
                self.0
                    .entry(port.port)
                    .or_default()
                    .push((host.to_ascii_lowercase(), index));
            }
        }
    }

    /// Whether some entry declares `port`.
    pub fn on_port(&self, port: u16) -> bool {
        self.0.contains_key(&port)
    }

    /// The entry whose host `name` (an HTTP authority, port and all, or a
    /// server name) is, on `port`: an exact host before a wildcard, the
    /// longest wildcard first.
    pub fn find(&self, name: &str, port: u16) -> Option<usize> {
        let name = strip_port(name).trim_end_matches('.').to_ascii_lowercase();
        let hosts = self.0.get(&port)?;
        hosts
            .iter()
            .find(|(host, _)| *host == name)
            .or_else(|| {
                hosts
                    .iter()
                    .filter(|(host, _)| {
                        host.strip_prefix('*').is_some_and(|suffix| {
                            name.ends_with(suffix) && name.len() > suffix.len()
                        })
                    })
                    .max_by_key(|(host, _)| host.len())
            })
            .map(|(_, index)| *index)
    }
}

/// `host[:port]` or `[v6]:port` without its port.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Whether a destination's endpoints are names the proxy resolves.
pub fn resolves(service: &Service) -> bool {
    matches!(
        service.resolution,
        Resolution::Dns | Resolution::DnsRoundRobin
    )
}

/// The names a configuration's proxies resolve: the endpoints of DNS
/// destinations, and the plain (not wildcard) hosts of hosts-only ones
/// with a port that is not HTTP (HTTP is matched by its Host; the rest by
/// the address dialled).
pub fn names<'a>(services: impl IntoIterator<Item = &'a Service>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for service in services {
        if resolves(service) {
            names.extend(
                service
                    .endpoints
                    .iter()
                    .filter(|e| e.ip.parse::<IpAddr>().is_err())
                    .map(|e| e.ip.clone()),
            );
        }
        let opaque = service
            .ports
            .iter()
            .any(|p| !matches!(p.protocol, Protocol::Http | Protocol::Http2));
        if service.addresses.is_empty() && service.external && opaque {
            names.extend(
                service
                    .hosts
                    .iter()
                    .filter(|h| !h.starts_with('*'))
                    .cloned(),
            );
        }
    }
    names
}

/// The addresses an endpoint stands for: its own, or those its name
/// resolved to (only the first under DNS_ROUND_ROBIN).
pub fn addresses(service: &Service, ip: &str, resolved: &Resolved) -> Vec<IpAddr> {
    if let Ok(ip) = ip.parse::<IpAddr>() {
        return vec![ip];
    }
    if !resolves(service) {
        return Vec::new();
    }
    let all = resolved.get(ip).map(Vec::as_slice).unwrap_or_default();
    match service.resolution {
        Resolution::DnsRoundRobin => all.iter().take(1).copied().collect(),
        _ => all.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_config::ServicePort;

    fn entry(hosts: &[&str]) -> Service {
        Service {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ports: vec![ServicePort {
                port: 443,
                protocol: Protocol::Tls,
                ..Default::default()
            }],
            external: true,
            ..Default::default()
        }
    }

    #[test]
    fn hosts_match_exactly_then_by_the_longest_wildcard() {
        let mut named = Named::default();
        named.add(0, &entry(&["*.example.com"]));
        named.add(1, &entry(&["*.api.example.com"]));
        named.add(2, &entry(&["login.api.example.com"]));
        assert_eq!(named.find("login.api.example.com:443", 443), Some(2));
        assert_eq!(named.find("Pay.API.example.com.", 443), Some(1));
        assert_eq!(named.find("www.example.com", 443), Some(0));
        assert_eq!(named.find("example.com", 443), None);
        assert_eq!(named.find("www.example.com", 80), None);
        assert!(named.on_port(443) && !named.on_port(80));
    }

    #[test]
    fn entries_with_addresses_are_matched_by_address() {
        let mut named = Named::default();
        let mut service = entry(&["db.example.com"]);
        service.addresses = vec!["198.51.100.1".into()];
        named.add(0, &service);
        assert!(!named.on_port(443));
    }

    #[test]
    fn round_robin_takes_the_first_address_only() {
        let mut service = entry(&["db.example.com"]);
        let resolved = Resolved::from([(
            "db.example.com".to_owned(),
            vec![[127, 0, 0, 1].into(), [127, 0, 0, 2].into()],
        )]);
        service.resolution = Resolution::Dns;
        assert_eq!(addresses(&service, "db.example.com", &resolved).len(), 2);
        service.resolution = Resolution::DnsRoundRobin;
        assert_eq!(addresses(&service, "db.example.com", &resolved).len(), 1);
        assert_eq!(addresses(&service, "127.0.0.9", &resolved).len(), 1);
        service.resolution = Resolution::Endpoints;
        assert!(addresses(&service, "db.example.com", &resolved).is_empty());
        assert_eq!(
            names([&service]),
            BTreeSet::from(["db.example.com".to_owned()])
        );
    }
}
