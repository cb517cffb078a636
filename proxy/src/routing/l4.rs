//! Routes for opaque connections (VirtualService `tls` and `tcp`),
//! compiled once per version: a connection takes the first TLS route whose
//! match holds for its SNI, else the first TCP route whose match holds,
//! and one of the route's backends by weight.

use std::collections::BTreeMap;
use std::net::IpAddr;

use plexus_config::{Backend, Cidr, L4Match, TcpRoute};

use super::matches::Source;

/// What a connection is matched on.
pub struct Connection<'a> {
    pub ip: IpAddr,
    pub port: u16,
    /// The server name of its ClientHello, lowercase, if it opened with one.
    pub sni: Option<&'a str>,
}

#[derive(Debug)]
struct CompiledMatch {
    port: Option<u16>,
    subnets: Vec<Cidr>,
    source_labels: BTreeMap<String, String>,
    source_namespace: Option<String>,
    sni_hosts: Vec<String>,
}

impl CompiledMatch {
    fn compile(spec: &L4Match) -> Self {
        Self {
            port: spec.port,
            // The operator refuses subnets that do not parse.
            subnets: spec
                .destination_subnets
                .iter()
                .filter_map(|s| Cidr::parse(s).ok())
                .collect(),
            source_labels: spec.source_labels.clone(),
            source_namespace: spec.source_namespace.clone(),
            sni_hosts: spec.sni_hosts.clone(),
        }
    }

    fn matches(&self, connection: &Connection<'_>, source: &Source<'_>) -> bool {
        self.port.is_none_or(|p| p == connection.port)
            && (self.subnets.is_empty() || self.subnets.iter().any(|c| c.contains(connection.ip)))
            && self
                .source_labels
                .iter()
                .all(|(k, v)| source.labels.get(k) == Some(v))
            && self
                .source_namespace
                .as_ref()
                .is_none_or(|ns| ns == source.namespace)
            && (self.sni_hosts.is_empty()
                || connection
                    .sni
                    .is_some_and(|sni| self.sni_hosts.iter().any(|h| sni_matches(h, sni))))
    }
}

/// Whether `name` is `host`, or under it when `host` is `*.domain` (or
/// `*`).
pub fn sni_matches(host: &str, name: &str) -> bool {
    match host.strip_prefix('*') {
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => host == name,
    }
}

/// A compiled TLS or TCP route.
#[derive(Debug)]
pub struct L4Route {
    pub name: String,
    matches: Vec<CompiledMatch>,
    backends: Vec<Backend>,
    cumulative: Vec<u32>,
}

impl L4Route {
    pub fn compile(spec: &TcpRoute) -> Self {
        Self {
            name: spec.name.clone(),
            matches: spec.matches.iter().map(CompiledMatch::compile).collect(),
            backends: spec.backends.clone(),
            cumulative: spec
                .backends
                .iter()
                .scan(0u32, |sum, b| {
                    *sum += b.weight;
                    Some(*sum)
                })
                .collect(),
        }
    }

    pub fn matches(&self, connection: &Connection<'_>, source: &Source<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(connection, source))
    }

    /// Whether a connection to `port` may take this route.
    pub fn may_match_port(&self, port: u16) -> bool {
        self.matches.is_empty()
            || self
                .matches
                .iter()
                .any(|m| m.port.is_none_or(|p| p == port))
    }

    /// The backend for `random` (a draw below its argument).
    pub fn backend(&self, random: impl FnOnce(u32) -> u32) -> Option<&Backend> {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let draw = random(total.max(1));
        let index = self.cumulative.iter().position(|&sum| draw < sum)?;
        self.backends.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_hosts_match_exactly_or_under_a_wildcard() {
        assert!(sni_matches("a.example", "a.example"));
        assert!(!sni_matches("a.example", "b.a.example"));
        assert!(sni_matches("*.example", "a.example"));
        assert!(sni_matches("*.example", "b.a.example"));
        assert!(!sni_matches("*.example", "example"));
        assert!(!sni_matches("*.example", "aexample"));
        assert!(sni_matches("*", "anything"));
    }

    #[test]
    fn matches_hold_together_and_routes_split_by_weight() {
        let labels = BTreeMap::from([("app".to_owned(), "client".to_owned())]);
        let source = Source {
            labels: &labels,
            namespace: "demo",
        };
        let route = L4Route::compile(&TcpRoute {
            name: "r".into(),
            matches: vec![L4Match {
                port: Some(5432),
                destination_subnets: vec!["10.0.0.0/8".into()],
                source_labels: labels.clone(),
                source_namespace: Some("demo".into()),
                sni_hosts: vec!["*.db.example".into()],
            }],
            backends: vec![
                Backend {
                    host: "a".into(),
                    weight: 80,
                    ..Default::default()
                },
                Backend {
                    host: "b".into(),
                    weight: 20,
                    ..Default::default()
                },
            ],
        });
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let at = |ip, port, sni| Connection { ip, port, sni };
        assert!(route.matches(&at(ip, 5432, Some("x.db.example")), &source));
        assert!(!route.matches(&at(ip, 5433, Some("x.db.example")), &source));
        assert!(!route.matches(
            &at("11.0.0.1".parse().expect("ip"), 5432, Some("x.db.example")),
            &source
        ));
        assert!(!route.matches(&at(ip, 5432, None), &source));
        assert!(!route.matches(
            &at(ip, 5432, Some("x.db.example")),
            &Source {
                labels: &labels,
                namespace: "other"
            }
        ));
        assert_eq!(route.backend(|_| 79).map(|b| b.host.as_str()), Some("a"));
        assert_eq!(route.backend(|_| 80).map(|b| b.host.as_str()), Some("b"));
    }
}
