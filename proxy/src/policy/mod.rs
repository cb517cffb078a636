//! This pod's inbound policy, evaluated against its own labels: the mTLS
//! mode of a port (PeerAuthentication) and what authorization decides for
//! a connection (AuthorizationPolicy).
//!
//! The proxy does not evaluate authorization rules yet, and fails closed on
//! them: a DENY policy with rules denies everything, and with any ALLOW
//! policy selecting the pod nothing is allowed (an ALLOW policy without
//! rules allows nothing, as in Istio; one with rules cannot be shown to
//! match). AUDIT policies change no decision. The operator reports such
//! policies `Programmed=False` (NotEnforced).

use std::collections::BTreeMap;

use plexus_config::{AuthorizationAction, MtlsMode, ProxyConfig, selects};

/// The workload's mTLS mode on `port`: the first rule selecting its labels
/// (the last one selects every workload); PERMISSIVE without a configuration.
pub fn mtls_mode(
    config: Option<&ProxyConfig>,
    labels: &BTreeMap<String, String>,
    port: u16,
) -> MtlsMode {
    config
        .and_then(|c| {
            c.inbound
                .mtls
                .iter()
                .find(|rule| selects(&rule.selector, labels))
        })
        .map(|rule| rule.ports.get(&port).copied().unwrap_or(rule.mode))
        .unwrap_or(MtlsMode::Permissive)
}

/// What authorization decides for the pod's inbound traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny {
        /// The deciding policy, `AuthorizationPolicy/<namespace>/<name>`.
        policy: String,
        /// `allow-nothing` or `not-enforced` (rules it cannot evaluate).
        reason: &'static str,
    },
}

/// The decision for a pod with `labels` under `config`'s policies.
pub fn authorize(config: Option<&ProxyConfig>, labels: &BTreeMap<String, String>) -> Decision {
    let Some(config) = config else {
        return Decision::Allow;
    };
    let selecting = || {
        config
            .inbound
            .authorization
            .iter()
            .filter(|p| selects(&p.selector, labels))
    };
    let deny = |policy: &plexus_config::AuthorizationPolicy, reason| Decision::Deny {
        policy: policy.name.clone(),
        reason,
    };
    if let Some(policy) =
        selecting().find(|p| p.action == AuthorizationAction::Deny && !p.rules.is_empty())
    {
        return deny(policy, "not-enforced");
    }
    let allows: Vec<_> = selecting()
        .filter(|p| p.action == AuthorizationAction::Allow)
        .collect();
    match allows.iter().find(|p| !p.rules.is_empty()) {
        Some(policy) => deny(policy, "not-enforced"),
        None => match allows.first() {
            Some(policy) => deny(policy, "allow-nothing"),
            None => Decision::Allow,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_config::{AuthorizationPolicy, AuthorizationRule, Inbound};

    fn policy(
        name: &str,
        app: &str,
        action: AuthorizationAction,
        rules: usize,
    ) -> AuthorizationPolicy {
        AuthorizationPolicy {
            name: format!("AuthorizationPolicy/demo/{name}"),
            selector: [("app".to_owned(), app.to_owned())].into(),
            action,
            rules: vec![AuthorizationRule::default(); rules],
        }
    }

    fn decide(policies: Vec<AuthorizationPolicy>) -> Decision {
        let config = ProxyConfig {
            inbound: Inbound {
                authorization: policies,
                ..Default::default()
            },
            ..Default::default()
        };
        let labels = [("app".to_owned(), "web".to_owned())].into();
        authorize(Some(&config), &labels)
    }

    #[test]
    fn fails_closed_on_rules_it_cannot_evaluate() {
        use AuthorizationAction::*;
        assert_eq!(decide(vec![]), Decision::Allow);
        // Policies for other workloads, DENY or AUDIT without rules: nothing.
        assert_eq!(
            decide(vec![
                policy("other", "db", Allow, 0),
                policy("deny-none", "web", Deny, 0),
                policy("audit", "web", Audit, 1),
            ]),
            Decision::Allow
        );
        assert_eq!(
            decide(vec![policy("nothing", "web", Allow, 0)]),
            Decision::Deny {
                policy: "AuthorizationPolicy/demo/nothing".into(),
                reason: "allow-nothing"
            }
        );
        assert_eq!(
            decide(vec![
                policy("nothing", "web", Allow, 0),
                policy("get-only", "web", Allow, 1)
            ]),
            Decision::Deny {
                policy: "AuthorizationPolicy/demo/get-only".into(),
                reason: "not-enforced"
            }
        );
        assert_eq!(
            decide(vec![
                policy("get-only", "web", Allow, 1),
                policy("deny-admin", "web", Deny, 1)
            ]),
            Decision::Deny {
                policy: "AuthorizationPolicy/demo/deny-admin".into(),
                reason: "not-enforced"
            }
        );
    }
}
