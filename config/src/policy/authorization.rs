//! AuthorizationPolicy: who may call a workload, with Istio's semantics.
//! DENY policies first (any matching rule denies), then ALLOW (with any
//! ALLOW policy selecting the workload, a request must match one of them);
//! AUDIT marks what it matches and decides nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::route::Origin;
use crate::{Selector, is_false};

crate::one_of! {
    /// What an AuthorizationPolicy does with the requests it matches. CUSTOM
    /// (external authorization) is not here: the operator rejects it.
    #[derive(Default)]
    AuthorizationAction {
        /// Allowed; with any ALLOW policy selecting a workload, a request
        /// must match one of them.
        #[default]
        Allow = "ALLOW",
        /// Denied, whatever ALLOW policies say.
        Deny = "DENY",
        /// Marked in logs and metrics; the decision does not change.
        Audit = "AUDIT",
    }
}

/// An AuthorizationPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    /// What a match does.
    pub action: AuthorizationAction,
    /// A request matches the policy when it matches any rule. An ALLOW policy
    /// without rules allows nothing; a rule without fields matches everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
}

/// A rule: one of `from`, one of `to` and every `when` must match (an
/// empty list matches anything).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRule {
    /// Sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Source>,
    /// Operations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Operation>,
    /// Conditions on request attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// Who sends a request. Every field that is set must match; a field matches
/// when any of its values does, a `not` field when none does. String values
/// are exact, `prefix*`, `*suffix` or `*` (present).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Peer identities, `<trust domain>/ns/<namespace>/sa/<account>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// JWT principals, `<iss>/<sub>` (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// The peer's address: CIDRs or single addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// The original client's address (X-Forwarded-For behind the Mesh's
    /// trusted proxies, else the peer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    /// ServiceAccounts of the peer identity, `<namespace>/<account>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
}

impl Source {
    /// Whether it sets a field only HTTP requests have.
    pub fn uses_http(&self) -> bool {
        !self.request_principals.is_empty() || !self.not_request_principals.is_empty()
    }
}

/// What a request asks for, as for [`Source`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Host header, case-insensitive, with or without its port (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// The workload's port the connection is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
    /// Methods (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Paths after normalization, without the query (HTTP only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

impl Operation {
    /// Whether it sets a field only HTTP requests have.
    pub fn uses_http(&self) -> bool {
        [
            &self.hosts,
            &self.not_hosts,
            &self.methods,
            &self.not_methods,
            &self.paths,
            &self.not_paths,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }
}

/// A condition: the attribute has one of `values` (when given) and none of
/// `not_values`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub key: Attribute,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// An attribute of a request a condition tests, written as Istio writes
/// `when` keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(try_from = "String", into = "String")]
pub enum Attribute {
    /// `request.headers[<name>]` (name lowercase).
    RequestHeader(String),
    /// `source.ip`: the peer's address.
    SourceIp,
    /// `remote.ip`: the original client's address.
    RemoteIp,
    /// `source.namespace`, of the peer identity.
    SourceNamespace,
    /// `source.principal`: the peer identity.
    SourcePrincipal,
    /// `source.serviceAccount`: `<namespace>/<account>` of the peer identity.
    SourceServiceAccount,
    /// `request.auth.principal`: `<iss>/<sub>` of the verified JWT.
    AuthPrincipal,
    /// `request.auth.audiences`: its `aud`.
    AuthAudiences,
    /// `request.auth.presenter`: its `azp`.
    AuthPresenter,
    /// `request.auth.claims[<name>]...`: a claim, nested names in turn.
    AuthClaim(Vec<String>),
    /// `destination.ip`: the workload's address the connection is for.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`: the server name of the mTLS handshake.
    ConnectionSni,
}

const SIMPLE_ATTRIBUTES: &[(&str, Attribute)] = &[
    ("source.ip", Attribute::SourceIp),
    ("remote.ip", Attribute::RemoteIp),
    ("source.namespace", Attribute::SourceNamespace),
    ("source.principal", Attribute::SourcePrincipal),
    ("source.serviceAccount", Attribute::SourceServiceAccount),
    ("request.auth.principal", Attribute::AuthPrincipal),
    ("request.auth.audiences", Attribute::AuthAudiences),
    ("request.auth.presenter", Attribute::AuthPresenter),
    ("destination.ip", Attribute::DestinationIp),
    ("destination.port", Attribute::DestinationPort),
    ("connection.sni", Attribute::ConnectionSni),
];

const HEADERS: &str = "request.headers";
const CLAIMS: &str = "request.auth.claims";

impl Attribute {
    /// Whether only HTTP requests have it.
    pub fn http_only(&self) -> bool {
        matches!(
            self,
            Self::RequestHeader(_)
                | Self::AuthPrincipal
                | Self::AuthAudiences
                | Self::AuthPresenter
                | Self::AuthClaim(_)
        )
    }

    /// Whether its values are addresses (CIDRs or single addresses).
    pub fn is_address(&self) -> bool {
        matches!(self, Self::SourceIp | Self::RemoteIp | Self::DestinationIp)
    }
}

/// `[a][b]...` as its names; None unless every name is bracketed and non-empty.
fn bracketed(mut text: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    while !text.is_empty() {
        let rest = text.strip_prefix('[')?;
        let end = rest.find(']')?;
        let name = &rest[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        names.push(name.to_owned());
        text = &rest[end + 1..];
    }
    (!names.is_empty()).then_some(names)
}

impl FromStr for Attribute {
    type Err = String;

    fn from_str(key: &str) -> Result<Self, String> {
        if let Some((_, attribute)) = SIMPLE_ATTRIBUTES.iter().find(|(k, _)| *k == key) {
            return Ok(attribute.clone());
        }
        let unknown = || {
            format!(
                "unknown attribute {key:?}; expected {HEADERS}[<name>], {CLAIMS}[<name>], or one of {}",
                SIMPLE_ATTRIBUTES
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if let Some(rest) = key.strip_prefix(HEADERS) {
            return match bracketed(rest).as_deref() {
                Some([name]) => Ok(Self::RequestHeader(name.to_ascii_lowercase())),
                _ => Err(unknown()),
            };
        }
        if let Some(rest) = key.strip_prefix(CLAIMS) {
            return bracketed(rest).map(Self::AuthClaim).ok_or_else(unknown);
        }
        Err(unknown())
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestHeader(name) => write!(f, "{HEADERS}[{name}]"),
            Self::AuthClaim(names) => {
                f.write_str(CLAIMS)?;
                names.iter().try_for_each(|n| write!(f, "[{n}]"))
            }
            simple => {
                let key = SIMPLE_ATTRIBUTES
                    .iter()
                    .find(|(_, a)| a == simple)
                    .map_or("", |(k, _)| k);
                f.write_str(key)
            }
        }
    }
}

impl TryFrom<String> for Attribute {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl From<Attribute> for String {
    fn from(value: Attribute) -> Self {
        value.to_string()
    }
}

/// Mesh-wide authorization settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationDefaults {
    /// Every workload refuses what no ALLOW policy selecting it allows (with
    /// no ALLOW policy: everything), as Linkerd's `deny` default policy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny_unless_allowed: bool,
    /// Proxies in front of the mesh whose X-Forwarded-For entries are
    /// trusted: `remote.ip` is the entry that many places from its end (0:
    /// the peer itself).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trusted_proxies: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_read_and_write_as_istio_writes_them() {
        for key in [
            "request.headers[x-tenant]",
            "source.ip",
            "remote.ip",
            "source.namespace",
            "source.principal",
            "source.serviceAccount",
            "request.auth.principal",
            "request.auth.audiences",
            "request.auth.presenter",
            "request.auth.claims[groups]",
            "request.auth.claims[realm][roles]",
            "destination.ip",
            "destination.port",
            "connection.sni",
        ] {
            let attribute: Attribute = key.parse().expect(key);
            assert_eq!(attribute.to_string(), key);
        }
        assert_eq!(
            "request.headers[X-Tenant]".parse::<Attribute>(),
            Ok(Attribute::RequestHeader("x-tenant".into()))
        );
        for bad in [
            "request.color",
            "request.headers",
            "request.headers[]",
            "request.headers[a][b]",
            "request.auth.claims",
            "request.auth.claims[a",
            "request.auth.claims[a]x",
        ] {
            let error = bad.parse::<Attribute>().expect_err(bad);
            assert!(error.starts_with("unknown attribute"), "{error}");
        }
    }
}
