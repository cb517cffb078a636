//! AuthorizationPolicy: ALLOW, DENY and AUDIT rules of the workloads it
//! selects, checked and carried to the proxies typed (the proxy's `policy`
//! evaluates them per request and per opaque connection).

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::authorization_policy::{
    AuthorizationAction, AuthorizationPolicySpec, Condition, Operation, Source,
};

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
    let rules = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let path = format!("spec.rules[{i}]");
            cfg::AuthorizationRule {
                from: rule
                    .from
                    .iter()
                    .enumerate()
                    .map(|(j, f)| source(check, &format!("{path}.from[{j}].source"), &f.source))
                    .collect(),
                to: rule
                    .to
                    .iter()
                    .enumerate()
                    .map(|(j, t)| {
                        operation(check, &format!("{path}.to[{j}].operation"), &t.operation)
                    })
                    .collect(),
                when: rule
                    .when
                    .iter()
                    .enumerate()
                    .filter_map(|(j, c)| condition(check, &format!("{path}.when[{j}]"), c))
                    .collect(),
            }
        })
        .collect();
    (action, rules)
}

fn source(check: &mut Check, path: &str, s: &Source) -> cfg::Source {
    for (field, blocks) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        for (k, b) in blocks.iter().enumerate() {
            if !is_cidr(b) {
                check.invalid(
                    format!("{path}.{field}[{k}]"),
                    format!("{b:?} is not an IP address or CIDR"),
                );
            }
        }
    }
    for (field, values) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
    ] {
        for (k, v) in values.iter().enumerate() {
            if v.starts_with("spiffe://") {
                check.invalid(
                    format!("{path}.{field}[{k}]"),
                    format!("{v:?}: principals are written without spiffe://, as <trust domain>/ns/<namespace>/sa/<account>"),
                );
            }
        }
    }
    let source = cfg::Source {
        principals: s.principals.clone(),
        not_principals: s.not_principals.clone(),
        request_principals: s.request_principals.clone(),
        not_request_principals: s.not_request_principals.clone(),
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
        ip_blocks: s.ip_blocks.clone(),
        not_ip_blocks: s.not_ip_blocks.clone(),
        remote_ip_blocks: s.remote_ip_blocks.clone(),
        not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
        service_accounts: s.service_accounts.clone(),
        not_service_accounts: s.not_service_accounts.clone(),
    };
    if *s == Source::default() {
        check.invalid(
            path,
            "set at least one field (an empty source would match anyone)",
        );
    }
    for (field, values) in [
        ("principals", &source.principals),
        ("notPrincipals", &source.not_principals),
        ("requestPrincipals", &source.request_principals),
        ("notRequestPrincipals", &source.not_request_principals),
        ("namespaces", &source.namespaces),
        ("notNamespaces", &source.not_namespaces),
        ("serviceAccounts", &source.service_accounts),
        ("notServiceAccounts", &source.not_service_accounts),
    ] {
        wildcards(check, path, field, values);
    }
    source
}

fn operation(check: &mut Check, path: &str, o: &Operation) -> cfg::Operation {
    let mut ports = |field: &str, values: &[String]| -> Vec<u16> {
        values
            .iter()
            .enumerate()
            .filter_map(|(k, p)| match p.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    check.invalid(
                        format!("{path}.{field}[{k}]"),
                        format!("{p:?} is not a port number"),
                    );
                    None
                }
            })
            .collect()
    };
    let operation = cfg::Operation {
        hosts: o.hosts.clone(),
        not_hosts: o.not_hosts.clone(),
        ports: ports("ports", &o.ports),
        not_ports: ports("notPorts", &o.not_ports),
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
    };
    if *o == Operation::default() {
        check.invalid(
            path,
            "set at least one field (an empty operation would match anything)",
        );
    }
    for (field, values) in [
        ("hosts", &operation.hosts),
        ("notHosts", &operation.not_hosts),
        ("methods", &operation.methods),
        ("notMethods", &operation.not_methods),
        ("paths", &operation.paths),
        ("notPaths", &operation.not_paths),
    ] {
        wildcards(check, path, field, values);
    }
    operation
}

fn condition(check: &mut Check, path: &str, c: &Condition) -> Option<cfg::Condition> {
    let key = match c.key.parse::<cfg::Attribute>() {
        Ok(key) => key,
        Err(error) => {
            check.invalid(format!("{path}.key"), error);
            return None;
        }
    };
    if c.values.is_empty() && c.not_values.is_empty() {
        check.invalid(path, "set values or notValues");
    }
    for (field, values) in [("values", &c.values), ("notValues", &c.not_values)] {
        for (k, v) in values.iter().enumerate() {
            let wrong = if key.is_address() {
                (!is_cidr(v)).then(|| format!("{v:?} is not an IP address or CIDR"))
            } else if key == cfg::Attribute::DestinationPort {
                v.parse::<u16>()
                    .is_err()
                    .then(|| format!("{v:?} is not a port number"))
            } else {
                None
            };
            if let Some(wrong) = wrong {
                check.invalid(format!("{path}.{field}[{k}]"), wrong);
            }
        }
        if !key.is_address() && key != cfg::Attribute::DestinationPort {
            wildcards(check, path, field, values);
        }
    }
    Some(cfg::Condition {
        key,
        values: c.values.clone(),
        not_values: c.not_values.clone(),
    })
}

/// String values match exactly, by prefix (`abc*`), by suffix (`*abc`), or
/// anything present (`*`): a `*` anywhere else is a mistake, not a pattern.
fn wildcards(check: &mut Check, path: &str, field: &str, values: &[String]) {
    for (k, v) in values.iter().enumerate() {
        let stars = v.matches('*').count();
        let at_an_end = v.starts_with('*') || v.ends_with('*');
        if stars > 1 || (stars == 1 && !at_an_end) {
            check.invalid(
                format!("{path}.{field}[{k}]"),
                format!("{v:?}: a wildcard is `*`, `prefix*` or `*suffix`"),
            );
        }
    }
}

fn is_cidr(value: &str) -> bool {
    cfg::Cidr::parse(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> AuthorizationPolicySpec {
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn rules_keep_their_fields_typed() {
        let mut check = Check::default();
        let (action, rules) = convert(
            &spec(serde_json::json!({
                "action": "DENY",
                "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"],
                                                "ipBlocks": ["10.0.0.0/8"]}}],
                           "to": [{"operation": {"methods": ["POST"], "ports": ["8080"]}}],
                           "when": [{"key": "request.headers[X-Role]", "values": ["admin"]},
                                    {"key": "request.auth.claims[realm][roles]", "notValues": ["guest"]}]}]
            })),
            &mut check,
        );
        assert!(check.ok());
        assert_eq!(action, cfg::AuthorizationAction::Deny);
        assert_eq!(rules[0].from[0].principals, ["cluster.local/ns/a/sa/b"]);
        assert_eq!(rules[0].from[0].ip_blocks, ["10.0.0.0/8"]);
        assert_eq!(rules[0].to[0].methods, ["POST"]);
        assert_eq!(rules[0].to[0].ports, [8080]);
        assert_eq!(
            rules[0].when[0].key,
            cfg::Attribute::RequestHeader("x-role".into())
        );
        assert_eq!(
            rules[0].when[1].key,
            cfg::Attribute::AuthClaim(vec!["realm".into(), "roles".into()])
        );
        // Allow-all and allow-nothing stay as written.
        let (_, all) = convert(&spec(serde_json::json!({"rules": [{}]})), &mut check);
        assert_eq!(all, [cfg::AuthorizationRule::default()]);
        let (_, nothing) = convert(&spec(serde_json::json!({})), &mut check);
        assert!(nothing.is_empty() && check.ok());
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
            (
                serde_json::json!({"rules": [{"when": [{"key": "source.ip", "values": ["nope"]}]}]}),
                "spec.rules[0].when[0].values[0]",
            ),
            (
                serde_json::json!({"rules": [{"when": [{"key": "destination.port", "values": ["http"]}]}]}),
                "spec.rules[0].when[0].values[0]",
            ),
            (
                serde_json::json!({"rules": [{"when": [{"key": "source.namespace"}]}]}),
                "spec.rules[0].when[0]: set values or notValues",
            ),
            (
                serde_json::json!({"rules": [{"from": [{"source": {}}]}]}),
                "spec.rules[0].from[0].source: set at least one field",
            ),
            (
                serde_json::json!({"rules": [{"to": [{"operation": {}}]}]}),
                "spec.rules[0].to[0].operation: set at least one field",
            ),
            (
                serde_json::json!({"rules": [{"to": [{"operation": {"ports": ["0"]}}]}]}),
                "spec.rules[0].to[0].operation.ports[0]",
            ),
            (
                serde_json::json!({"rules": [{"to": [{"operation": {"paths": ["/a/*/b"]}}]}]}),
                "spec.rules[0].to[0].operation.paths[0]",
            ),
            (
                serde_json::json!({"rules": [{"from": [{"source": {"principals": ["spiffe://cluster.local/ns/a/sa/b"]}}]}]}),
                "spec.rules[0].from[0].source.principals[0]",
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
