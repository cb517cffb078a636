use serde_json::json;

use super::*;

fn report(kind: &str, spec: Value) -> Vec<String> {
    unenforced(kind, &spec).unenforced
}

#[test]
fn names_the_root_of_what_no_capability_reaches() {
    let spec = json!({
        "hosts": ["a"],
        "http": [{
            "match": [{"headers": {"x": {"exact": "1"}}, "statPrefix": "s"}],
            "delegate": {"name": "o"},
            "route": [{"destination": {"host": "a", "subset": "v1"}}]
        }]
    });
    assert_eq!(
        report("VirtualService", spec),
        ["spec.http[0].delegate", "spec.http[0].match[0].statPrefix"]
    );
}

#[test]
fn names_values_that_are_not_enforced() {
    let spec = json!({"http": [{
        "retries": {"attempts": 2, "retryOn": "5xx, retriable-4xx,409,unavailable"},
        "route": [{"destination": {"host": "a"}}]
    }], "gateways": ["mesh", "ingress"]});
    assert_eq!(report("VirtualService", spec), ["spec.gateways[1]=ingress"]);
    let dr = json!({"host": "a", "trafficPolicy": {"loadBalancer": {"simple": "PASSTHROUGH"}}});
    assert_eq!(
        report("DestinationRule", dr),
        ["spec.trafficPolicy.loadBalancer.simple=PASSTHROUGH"]
    );
    let pa = json!({"mtls": {"mode": "DISABLE"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}});
    assert!(report("PeerAuthentication", pa).is_empty());
    // MUTUAL is in force with a credentialName; the file paths are not.
    let tls = json!({"host": "a", "trafficPolicy": {"tls": {
        "mode": "MUTUAL", "sni": "a", "credentialName": "c", "caCertificates": "/ca.pem"}}});
    assert_eq!(
        report("DestinationRule", tls),
        ["spec.trafficPolicy.tls.caCertificates"]
    );
    // Two capabilities of one field, each for some of its values.
    for mode in ["ALLOW_ANY", "REGISTRY_ONLY"] {
        let mesh = json!({"outboundTrafficPolicy": {"mode": mode}});
        assert!(report("Mesh", mesh).is_empty(), "{mode}");
    }
    let mesh = json!({"outboundTrafficPolicy": {"mode": "SOMETIMES"}});
    assert_eq!(
        report("Mesh", mesh),
        ["spec.outboundTrafficPolicy.mode=SOMETIMES"]
    );
}

#[test]
fn an_empty_list_item_is_a_setting() {
    // `rules: [{}]` allows everything: not the same as no rules at all, and
    // enforced where the proxy reads the list's items.
    let spec = json!({"selector": {"matchLabels": {"app": "a"}}, "rules": [{}]});
    let allow_all = unenforced("AuthorizationPolicy", &spec);
    assert!(allow_all.unenforced.is_empty() && allow_all.enforced_any);
    // Where it reads none, an empty item is a setting not in force.
    let tracing = json!({"tracing": [{}]});
    assert_eq!(report("Telemetry", tracing), ["spec.tracing"]);
    let allow_nothing = unenforced(
        "AuthorizationPolicy",
        &json!({"selector": {"matchLabels": {"app": "a"}}}),
    );
    assert!(allow_nothing.unenforced.is_empty());
    assert!(allow_nothing.enforced_any);
    // An empty object outside a list sets nothing.
    assert!(report("PeerAuthentication", json!({"mtls": {}})).is_empty());
}

#[test]
fn a_kind_without_capabilities_enforces_nothing() {
    let telemetry = unenforced(
        "Telemetry",
        &json!({"tracing": [{"randomSamplingPercentage": 10}]}),
    );
    assert_eq!(telemetry.unenforced, ["spec.tracing"]);
    assert!(!telemetry.enforced_any);
}

fn workspace() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
}

/// Every capability names a test that exists.
#[test]
fn capability_tests_exist() {
    let missing = missing_tests(KINDS, workspace());
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The check above notices a test that does not exist, or a name that is
/// not `<file>::<function>`.
#[test]
fn a_missing_test_is_noticed() {
    let bogus = [Kind {
        kind: "VirtualService",
        security: false,
        enforced: &[
            Capability {
                path: "hosts",
                values: Values::Any,
                test: "proxy/tests/routing.rs::splits_follow_the_weights",
            },
            Capability {
                path: "http[].timeout",
                values: Values::Any,
                test: "proxy/tests/routing.rs::no_such_test_anywhere",
            },
            Capability {
                path: "tcp",
                values: Values::Any,
                test: "no-file-and-function",
            },
        ],
    }];
    assert_eq!(
        missing_tests(&bogus, workspace()),
        [
            "VirtualService http[].timeout: no test no_such_test_anywhere in proxy/tests/routing.rs",
            "VirtualService tcp: \"no-file-and-function\" is not <file>::<function>",
        ]
    );
}
