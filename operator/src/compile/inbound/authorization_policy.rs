//! AuthorizationPolicy: ALLOW, DENY and AUDIT rules of the workloads it
//! selects. The proxy does not evaluate rules yet; it fails closed on them
//! (see the proxy's `policy`), and the capability list says so.

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::authorization_policy::{AuthorizationAction, AuthorizationPolicySpec};

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::{Entry, Policies, target};

/// Judges every AuthorizationPolicy and keeps those accepted, by namespace.
pub(super) fn compile(state: &mut State<'_>, namespaces: &mut BTreeMap<String, Policies>) {
    for ap in by_age(&state.input.authorization_policies) {
        let key = Key::of(Kind::AuthorizationPolicy, ap);
        let spec = &ap.spec;
        let mut check = Check::default();
        let selector = target(&mut check, state, &key.namespace, spec);
        let (action, rules) = convert(spec, &mut check);
        check.meanwhile = meanwhile(action, !rules.is_empty());
        if state.judge(&key, ap.metadata.generation, check.finish(key.kind, spec)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .authorization
                .push(Entry {
                    value: cfg::AuthorizationPolicy {
                        name: key.origin(),
                        selector: selector.clone().unwrap_or_default(),
                        action,
                        rules,
                    },
                    key,
                    selector,
                });
        }
    }
}

/// What the proxies do with a policy whose rules they cannot evaluate.
fn meanwhile(action: cfg::AuthorizationAction, rules: bool) -> Option<String> {
    match (action, rules) {
        (cfg::AuthorizationAction::Allow | cfg::AuthorizationAction::Deny, true) => Some(
            "Meanwhile the proxies of the workloads it selects refuse every request and connection to them (fail closed).".into(),
        ),
        (cfg::AuthorizationAction::Audit, true) => {
            Some("Meanwhile nothing is audited; decisions do not change.".into())
        }
        _ => None,
    }
}

/// The policy's action and rules, checked.
fn convert(
    spec: &AuthorizationPolicySpec,
    check: &mut Check,
) -> (cfg::AuthorizationAction, Vec<cfg::AuthorizationRule>) {
    let action = match spec.action.as_ref().unwrap_or(&AuthorizationAction::Allow) {
        AuthorizationAction::Custom => {
            check.unsupported(
                "spec.action",
                "CUSTOM (external authorization) is not implemented; the policy is not enforced",
            );
            cfg::AuthorizationAction::Allow
        }
        other => check
            .parse("spec.action", other.as_str())
            .unwrap_or_default(),
    };
    let mut rules = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        let fields = |value: serde_json::Value| -> BTreeMap<String, Vec<String>> {
            value
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    let values: Vec<String> = v
                        .as_array()?
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect();
                    (!values.is_empty()).then(|| (k.clone(), values))
                })
                .collect()
        };
        let mut from = Vec::new();
        for (j, f) in rule.from.iter().enumerate() {
            let s = &f.source;
            for (field, blocks) in [
                ("ipBlocks", &s.ip_blocks),
                ("notIpBlocks", &s.not_ip_blocks),
                ("remoteIpBlocks", &s.remote_ip_blocks),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
            ] {
                for (k, b) in blocks.iter().enumerate() {
                    if !is_cidr(b) {
                        check.invalid(
                            format!("{path}.from[{j}].source.{field}[{k}]"),
                            format!("{b:?} is not an IP address or CIDR"),
                        );
                    }
                }
            }
            from.push(fields(serde_json::to_value(s).unwrap_or_default()));
        }
        let mut to = Vec::new();
        for (j, t) in rule.to.iter().enumerate() {
            let o = &t.operation;
            for (field, ports) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
                for (k, p) in ports.iter().enumerate() {
                    if p.parse::<u16>().map_or(true, |p| p == 0) {
                        check.invalid(
                            format!("{path}.to[{j}].operation.{field}[{k}]"),
                            format!("{p:?} is not a port number"),
                        );
                    }
                }
            }
            to.push(fields(serde_json::to_value(o).unwrap_or_default()));
        }
        let mut when = Vec::new();
        for (j, c) in rule.when.iter().enumerate() {
            if !CONDITION_KEYS.iter().any(|k| {
                c.key == *k || (k.ends_with('[') && c.key.starts_with(k) && c.key.ends_with(']'))
            }) {
                check.invalid(
                    format!("{path}.when[{j}].key"),
                    format!("unknown attribute {:?}", c.key),
                );
            }
            when.push(cfg::AuthorizationCondition {
                key: c.key.clone(),
                values: c.values.clone(),
                not_values: c.not_values.clone(),
            });
        }
        rules.push(cfg::AuthorizationRule { from, to, when });
    }
    (action, rules)
}

/// Attributes an AuthorizationPolicy condition may test.
const CONDITION_KEYS: &[&str] = &[
    "request.headers[",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

fn is_cidr(value: &str) -> bool {
    let (address, prefix) = value.split_once('/').unwrap_or((value, ""));
    match address.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= max)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> AuthorizationPolicySpec {
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn rules_keep_their_fields() {
        let mut check = Check::default();
        let (action, rules) = convert(
            &spec(serde_json::json!({
                "action": "DENY",
                "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}],
                           "to": [{"operation": {"methods": ["POST"], "ports": ["8080"]}}],
                           "when": [{"key": "request.headers[x-role]", "values": ["admin"]}]}]
            })),
            &mut check,
        );
        assert!(check.ok());
        assert_eq!(action, cfg::AuthorizationAction::Deny);
        assert_eq!(rules[0].from[0]["principals"], ["cluster.local/ns/a/sa/b"]);
        assert_eq!(rules[0].to[0]["methods"], ["POST"]);
        assert_eq!(rules[0].when[0].key, "request.headers[x-role]");
        assert!(meanwhile(action, true).is_some_and(|m| m.contains("fail closed")));
        assert_eq!(meanwhile(cfg::AuthorizationAction::Allow, false), None);
    }

    #[test]
    fn bad_values_and_custom_are_rejected() {
        for (value, fragment) in [
            (
                serde_json::json!({"action": "CUSTOM"}),
                "spec.action: CUSTOM",
            ),
            (
                serde_json::json!({"action": "PERMIT"}),
                "spec.action: unknown value \"PERMIT\"",
            ),
            (
                serde_json::json!({"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}),
                "spec.rules[0].from[0].source.ipBlocks[0]",
            ),
            (
                serde_json::json!({"rules": [{"when": [{"key": "request.color", "values": ["red"]}]}]}),
                "spec.rules[0].when[0].key: unknown attribute",
            ),
        ] {
            let mut check = Check::default();
            convert(&spec(value), &mut check);
            let message = check
                .finish(Kind::AuthorizationPolicy, &serde_json::json!({}))
                .expect_err("rejected")
                .message;
            assert!(message.starts_with(fragment), "{message}");
        }
    }
}
