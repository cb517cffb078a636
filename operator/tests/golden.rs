//! Golden tests of the compiler: objects in (`tests/golden/<case>/input.yaml`),
//! exact configuration and verdicts out (`expected.json`).
//!
//! After an intended change, `PLEXUS_BLESS=1 cargo test -p plexus-operator
//! --test golden` rewrites the expected files; review their diff.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use plexus_operator::compile::{Input, compile};
use plexus_operator::snapshot;
use serde::Deserialize;
use serde_json::{Value, json};

fn load(path: &Path) -> Input {
    let text = std::fs::read_to_string(path).expect("input.yaml");
    let mut input = Input {
        root_namespace: "plexus-system".into(),
        cluster_domain: "cluster.local".into(),
        ..Default::default()
    };
    let mut namespaces = Vec::new();
    let mut pods = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).expect("YAML");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().expect("kind").to_owned();
        let object = value.clone();
        match kind.as_str() {
            "Namespace" => {
                namespaces.push(serde_json::from_value::<Namespace>(object).expect("Namespace"))
            }
            "Service" => {
                let svc: Service = serde_json::from_value(object).expect("Service");
                input.services.extend(snapshot::service_input(&svc));
            }
            "Pod" => pods.push(snapshot::pod_view(
                &serde_json::from_value::<Pod>(object).expect("Pod"),
            )),
            "Mesh" => {
                input.mesh = serde_json::from_value(object["spec"].clone()).expect("Mesh spec")
            }
            "VirtualService" => input
                .virtual_services
                .push(serde_json::from_value(object).expect("VirtualService")),
            "DestinationRule" => input
                .destination_rules
                .push(serde_json::from_value(object).expect("DestinationRule")),
            "Gateway" => input
                .gateways
                .push(serde_json::from_value(object).expect("Gateway")),
            "ServiceEntry" => input
                .service_entries
                .push(serde_json::from_value(object).expect("ServiceEntry")),
            "TrafficSplit" => input
                .traffic_splits
                .push(serde_json::from_value(object).expect("TrafficSplit")),
            "ServiceProfile" => input
                .service_profiles
                .push(serde_json::from_value(object).expect("ServiceProfile")),
            "PeerAuthentication" => input
                .peer_authentications
                .push(serde_json::from_value(object).expect("PeerAuthentication")),
            "AuthorizationPolicy" => input
                .authorization_policies
                .push(serde_json::from_value(object).expect("AuthorizationPolicy")),
            "RequestAuthentication" => input
                .request_authentications
                .push(serde_json::from_value(object).expect("RequestAuthentication")),
            "RateLimitPolicy" => input
                .rate_limit_policies
                .push(serde_json::from_value(object).expect("RateLimitPolicy")),
            "Telemetry" => input
                .telemetries
                .push(serde_json::from_value(object).expect("Telemetry")),
            other => panic!("{}: unexpected kind {other}", path.display()),
        }
    }
    input.namespaces = namespaces
        .iter()
        .map(|n| n.metadata.name.clone().unwrap_or_default())
        .collect();
    input.endpoints = snapshot::endpoints_from_pods(&input.services, &pods);
    input.injected = snapshot::injected_namespaces(&namespaces, &pods, &input.root_namespace);
    input
}

fn render(input: &Input) -> Value {
    let output = compile(input);
    let verdicts: BTreeMap<String, Value> = output
        .verdicts
        .iter()
        .map(|(key, verdict)| {
            let accepted = verdict.accepted();
            let programmed = verdict.programmed(&input.injected);
            (
                key.origin(),
                json!({
                    "accepted": accepted,
                    "programmed": programmed,
                }),
            )
        })
        .collect();
    json!({ "verdicts": verdicts, "configs": output.configs })
}

#[test]
fn golden() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("PLEXUS_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let input = load(&case.join("input.yaml"));
        let actual = render(&input);
        // Compiling twice gives the same bytes: output is deterministic.
        assert_eq!(actual, render(&input), "{}", case.display());
        let text = serde_json::to_string_pretty(&actual).expect("JSON") + "\n";
        let expected_path = case.join("expected.json");
        if bless {
            std::fs::write(&expected_path, &text).expect("write expected.json");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != text {
            let actual_path = case.join("actual.json");
            std::fs::write(&actual_path, &text).expect("write actual.json");
            failures.push(format!(
                "{}: output differs from expected.json (see diff -u {} {})",
                case.display(),
                expected_path.display(),
                actual_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
