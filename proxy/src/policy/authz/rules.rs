//! Authorization rules compiled: each field's patterns (and `not`
//! patterns), matched against a request's or a connection's attributes.

use plexus_config::{Attribute, AuthorizationPolicy, Condition, Operation, Source};

use crate::policy::attributes::{Attributes, HttpAttributes};
use crate::policy::matcher::{Cidr, Pattern, any, cidrs, within};

/// A policy's rules, compiled.
#[derive(Debug)]
pub(super) struct Compiled {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug)]
pub(super) struct Rule {
    from: Vec<SourceMatch>,
    to: Vec<OperationMatch>,
    when: Vec<ConditionMatch>,
    /// Whether it tests anything only HTTP requests have.
    http_only: bool,
}

/// A field's patterns and its `not` patterns: both empty when unset.
#[derive(Debug)]
struct Field<T> {
    any: Vec<T>,
    none: Vec<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Self {
            any: Vec::new(),
            none: Vec::new(),
        }
    }
}

impl<T> Field<T> {
    fn new(any: Vec<T>, none: Vec<T>) -> Self {
        Self { any, none }
    }

    fn is_set(&self) -> bool {
        !self.any.is_empty() || !self.none.is_empty()
    }

    /// `any` holds (when set) and `none` does not.
    fn test(&self, hit: impl Fn(&[T]) -> bool) -> bool {
        (self.any.is_empty() || hit(&self.any)) && (self.none.is_empty() || !hit(&self.none))
    }
}

fn patterns(values: &[String]) -> Vec<Pattern> {
    values.iter().map(|v| Pattern::new(v)).collect()
}

#[derive(Debug)]
struct SourceMatch {
    principals: Field<Pattern>,
    request_principals: Field<Pattern>,
    namespaces: Field<Pattern>,
    ip_blocks: Field<Cidr>,
    remote_ip_blocks: Field<Cidr>,
    service_accounts: Field<Pattern>,
}

#[derive(Debug)]
struct OperationMatch {
    hosts: Field<Pattern>,
    ports: Field<u16>,
    methods: Field<Pattern>,
    paths: Field<Pattern>,
}

#[derive(Debug)]
struct ConditionMatch {
    key: Attribute,
    strings: Field<Pattern>,
    blocks: Field<Cidr>,
}

/// How a rule is read: a request, or an opaque connection under an ALLOW
/// or a DENY policy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Http,
    TcpAllow,
    TcpDeny,
}

impl Mode {
    /// An HTTP-only test: on TCP, false under ALLOW, left out under DENY.
    fn http(self, test: impl FnOnce() -> bool) -> bool {
        match self {
            Self::Http => test(),
            Self::TcpAllow => false,
            Self::TcpDeny => true,
        }
    }
}

/// Principals as written with the default trust domain also name this
/// mesh's (Istio treats `cluster.local` as an alias of the trust domain).
fn principals(values: &[String], trust_domain: &str) -> Vec<Pattern> {
    let mut out = patterns(values);
    if trust_domain != "cluster.local" {
        out.extend(
            values
                .iter()
                .filter_map(|v| v.strip_prefix("cluster.local/"))
                .map(|rest| Pattern::new(&format!("{trust_domain}/{rest}"))),
        );
    }
    out
}

impl SourceMatch {
    fn compile(s: &Source, trust_domain: &str) -> Result<Self, String> {
        Ok(Self {
            principals: Field::new(
                principals(&s.principals, trust_domain),
                principals(&s.not_principals, trust_domain),
            ),
            request_principals: Field::new(
                patterns(&s.request_principals),
                patterns(&s.not_request_principals),
            ),
            namespaces: Field::new(patterns(&s.namespaces), patterns(&s.not_namespaces)),
            ip_blocks: Field::new(cidrs(&s.ip_blocks)?, cidrs(&s.not_ip_blocks)?),
            remote_ip_blocks: Field::new(
                cidrs(&s.remote_ip_blocks)?,
                cidrs(&s.not_remote_ip_blocks)?,
            ),
            service_accounts: Field::new(
                patterns(&s.service_accounts),
                patterns(&s.not_service_accounts),
            ),
        })
    }

    fn matches(&self, a: &Attributes<'_>, mode: Mode) -> bool {
        let peer = a.peer;
        self.principals
            .test(|p| any(p, peer.map(|p| p.principal.as_str())))
            && self
                .namespaces
                .test(|p| any(p, peer.map(|p| p.namespace.as_str())))
            && self
                .service_accounts
                .test(|p| any(p, peer.map(|p| p.service_account.as_str())))
            && self.ip_blocks.test(|b| within(b, a.source_ip))
            && self.remote_ip_blocks.test(|b| within(b, a.remote_ip))
            && (!self.request_principals.is_set()
                || mode.http(|| {
                    let principal = a
                        .http
                        .as_ref()
                        .and_then(|h| h.auth)
                        .map(|c| c.principal.as_str());
                    self.request_principals.test(|p| any(p, principal))
                }))
    }
}

/// The host without its port (`[::1]:80` keeps its brackets).
fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    }
}

impl OperationMatch {
    fn compile(o: &Operation) -> Self {
        let hosts = |v: &[String]| v.iter().map(|h| Pattern::lowercase(h)).collect();
        Self {
            hosts: Field::new(hosts(&o.hosts), hosts(&o.not_hosts)),
            ports: Field::new(o.ports.clone(), o.not_ports.clone()),
            methods: Field::new(patterns(&o.methods), patterns(&o.not_methods)),
            paths: Field::new(patterns(&o.paths), patterns(&o.not_paths)),
        }
    }

    fn matches(&self, a: &Attributes<'_>, mode: Mode) -> bool {
        let http = a.http.as_ref();
        let http_field = |field: &Field<Pattern>, value: fn(&HttpAttributes<'_>) -> String| {
            !field.is_set()
                || mode.http(|| {
                    let value = http.map(value);
                    field.test(|p| any(p, value.as_deref()))
                })
        };
        self.ports.test(|ports| ports.contains(&a.destination_port))
            && (!self.hosts.is_set()
                || mode.http(|| {
                    let host = http.map(|h| h.host.to_ascii_lowercase());
                    let bare = host.as_deref().map(without_port);
                    self.hosts.test(|p| any(p, host.as_deref()) || any(p, bare))
                }))
            && http_field(&self.methods, |h| h.method.to_owned())
            && http_field(&self.paths, |h| h.path.to_owned())
    }
}

impl ConditionMatch {
    fn compile(c: &Condition) -> Result<Self, String> {
        let (strings, blocks) = if c.key.is_address() {
            (
                Field::default(),
                Field::new(cidrs(&c.values)?, cidrs(&c.not_values)?),
            )
        } else {
            (
                Field::new(patterns(&c.values), patterns(&c.not_values)),
                Field::default(),
            )
        };
        Ok(Self {
            key: c.key.clone(),
            strings,
            blocks,
        })
    }

    fn matches(&self, a: &Attributes<'_>, mode: Mode) -> bool {
        if self.key.http_only() {
            return mode.http(|| self.test_values(a));
        }
        self.test_values(a)
    }

    fn test_values(&self, a: &Attributes<'_>) -> bool {
        let ip = match self.key {
            Attribute::SourceIp => Some(a.source_ip),
            Attribute::RemoteIp => Some(a.remote_ip),
            Attribute::DestinationIp => Some(a.destination_ip),
            _ => None,
        };
        if let Some(ip) = ip {
            return self.blocks.test(|b| within(b, ip));
        }
        let values = self.values(a);
        self.strings
            .test(|p| values.iter().any(|v| p.iter().any(|p| p.matches(v))))
    }

    /// The attribute's values (several for lists: audiences, list claims).
    fn values(&self, a: &Attributes<'_>) -> Vec<String> {
        let auth = a.http.as_ref().and_then(|h| h.auth);
        let peer = a.peer;
        match &self.key {
            Attribute::RequestHeader(name) => {
                let joined: Vec<&str> = a
                    .http
                    .as_ref()
                    .map(|h| {
                        h.headers
                            .get_all(name.as_str())
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                // Repeated headers are one value, joined with commas.
                if joined.is_empty() {
                    Vec::new()
                } else {
                    vec![joined.join(",")]
                }
            }
            Attribute::SourceNamespace => peer.map(|p| p.namespace.clone()).into_iter().collect(),
            Attribute::SourcePrincipal => peer.map(|p| p.principal.clone()).into_iter().collect(),
            Attribute::SourceServiceAccount => peer
                .map(|p| p.service_account.clone())
                .into_iter()
                .collect(),
            Attribute::AuthPrincipal => auth.map(|c| c.principal.clone()).into_iter().collect(),
            Attribute::AuthAudiences => auth.map(|c| c.audiences.clone()).unwrap_or_default(),
            Attribute::AuthPresenter => {
                auth.and_then(|c| c.presenter.clone()).into_iter().collect()
            }
            Attribute::AuthClaim(path) => auth.map(|c| c.claim_values(path)).unwrap_or_default(),
            Attribute::DestinationPort => vec![a.destination_port.to_string()],
            Attribute::ConnectionSni => a.sni.map(str::to_owned).into_iter().collect(),
            Attribute::SourceIp | Attribute::RemoteIp | Attribute::DestinationIp => Vec::new(),
        }
    }
}

impl Rule {
    fn matches(&self, a: &Attributes<'_>, mode: Mode) -> bool {
        if mode == Mode::TcpAllow && self.http_only {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(a, mode)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(a, mode)))
            && self.when.iter().all(|c| c.matches(a, mode))
    }
}

impl Compiled {
    pub fn compile(policy: &AuthorizationPolicy, trust_domain: &str) -> Result<Self, String> {
        let rules = policy
            .rules
            .iter()
            .map(|r| {
                Ok(Rule {
                    from: r
                        .from
                        .iter()
                        .map(|s| SourceMatch::compile(s, trust_domain))
                        .collect::<Result<_, String>>()?,
                    to: r.to.iter().map(OperationMatch::compile).collect(),
                    when: r
                        .when
                        .iter()
                        .map(ConditionMatch::compile)
                        .collect::<Result<_, String>>()?,
                    http_only: r.from.iter().any(Source::uses_http)
                        || r.to.iter().any(Operation::uses_http)
                        || r.when.iter().any(|c| c.key.http_only()),
                })
            })
            .collect::<Result<_, String>>()
            .map_err(|e| format!("{}: {e}", policy.name))?;
        Ok(Self {
            name: policy.name.clone(),
            rules,
        })
    }

    /// The index of the first rule that matches.
    pub fn matching_rule(&self, a: &Attributes<'_>, mode: Mode) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(a, mode))
    }
}
