//! AuthorizationPolicy, evaluated as Istio does: the policies selecting
//! this pod, compiled once per configuration version, decide each HTTP
//! request and each opaque connection.
//!
//! DENY policies first: any matching rule denies. Then ALLOW: with any
//! ALLOW policy selecting the pod, a request must match one of its rules
//! (one without rules allows nothing); with none, the request is allowed,
//! unless the Mesh denies what is not allowed. AUDIT rules mark what they
//! match and decide nothing.
//!
//! An opaque connection has no HTTP attributes: an ALLOW rule that tests
//! any never matches it, and a DENY rule's HTTP fields are left out, so the
//! rest of it decides (Istio's TCP semantics: both fail closed).

use plexus_config::{AuthorizationAction, AuthorizationDefaults, AuthorizationPolicy};

use super::attributes::Attributes;
use rules::{Compiled, Mode};

mod rules;
#[cfg(test)]
mod tests;

/// Why a request was denied, and by what (logged and counted, never told).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// `AuthorizationPolicy/<namespace>/<name>` (several, comma-separated,
    /// when no ALLOW policy matched), or `Mesh/default`.
    pub policy: String,
    /// The index of the DENY rule that matched.
    pub rule: Option<usize>,
    /// `denied` (a DENY rule), `allow-nothing` (the only ALLOW policy has
    /// no rules), `no-allow-match`, or `default-deny` (the Mesh's).
    pub reason: &'static str,
}

/// What authorization decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub denial: Option<Denial>,
    /// The AUDIT rules that matched: (policy, rule index).
    pub audited: Vec<(String, usize)>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}

/// The policies selecting this pod, compiled.
#[derive(Debug, Default)]
pub struct Authorizer {
    deny: Vec<Compiled>,
    allow: Vec<Compiled>,
    audit: Vec<Compiled>,
    deny_unless_allowed: bool,
    trusted_proxies: u32,
}

impl Authorizer {
    /// The policies of `policies` that select a pod (`selects`), compiled.
    pub fn new<'p>(
        policies: impl IntoIterator<Item = &'p AuthorizationPolicy>,
        defaults: &AuthorizationDefaults,
        trust_domain: &str,
    ) -> Result<Self, String> {
        let mut authorizer = Self {
            deny_unless_allowed: defaults.deny_unless_allowed,
            trusted_proxies: defaults.trusted_proxies,
            ..Self::default()
        };
        for policy in policies {
            let compiled = Compiled::compile(policy, trust_domain)?;
            match policy.action {
                AuthorizationAction::Deny => authorizer.deny.push(compiled),
                AuthorizationAction::Allow => authorizer.allow.push(compiled),
                AuthorizationAction::Audit => authorizer.audit.push(compiled),
            }
        }
        Ok(authorizer)
    }

    /// Whether any policy (or the Mesh's default) can refuse anything.
    pub fn restricts(&self) -> bool {
        !self.deny.is_empty() || !self.allow.is_empty() || self.deny_unless_allowed
    }

    /// Whether anything is evaluated at all (AUDIT too).
    pub fn is_empty(&self) -> bool {
        !self.restricts() && self.audit.is_empty()
    }

    /// X-Forwarded-For entries trusted for the remote address.
    pub fn trusted_proxies(&self) -> u32 {
        self.trusted_proxies
    }

    /// The decision on a request (`a.http` set) or an opaque connection.
    pub fn decide(&self, a: &Attributes<'_>) -> Verdict {
        let (allow_mode, deny_mode) = if a.http.is_some() {
            (Mode::Http, Mode::Http)
        } else {
            (Mode::TcpAllow, Mode::TcpDeny)
        };
        let audited = self
            .audit
            .iter()
            .filter_map(|p| {
                // As an ALLOW rule: one that tests HTTP does not mark a
                // connection that has none.
                p.matching_rule(a, allow_mode)
                    .map(|rule| (p.name.clone(), rule))
            })
            .collect();
        let denial = self.denial(a, allow_mode, deny_mode);
        Verdict { denial, audited }
    }

    fn denial(&self, a: &Attributes<'_>, allow_mode: Mode, deny_mode: Mode) -> Option<Denial> {
        for policy in &self.deny {
            if let Some(rule) = policy.matching_rule(a, deny_mode) {
                return Some(Denial {
                    policy: policy.name.clone(),
                    rule: Some(rule),
                    reason: "denied",
                });
            }
        }
        if self.allow.is_empty() {
            return self.deny_unless_allowed.then(|| Denial {
                policy: "Mesh/default".into(),
                rule: None,
                reason: "default-deny",
            });
        }
        if self
            .allow
            .iter()
            .any(|p| p.matching_rule(a, allow_mode).is_some())
        {
            return None;
        }
        let nothing = self.allow.len() == 1 && self.allow[0].rules.is_empty();
        Some(Denial {
            policy: self
                .allow
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            rule: None,
            reason: if nothing {
                "allow-nothing"
            } else {
                "no-allow-match"
            },
        })
    }
}
