//! Acceptance: every seed manifest (Istio and Linkerd manifests users bring)
//! converts, or is reported as untranslatable by kind and name; the output
//! deserializes into the Plexus types; and no leaf of the input is lost.

use std::collections::BTreeMap;
use std::path::PathBuf;

use plexus_cli::convert::{self, Converted};
use plexus_crds as api;
use serde_json::Value;

fn fixtures() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-manifests");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (
                name,
                std::fs::read_to_string(&path).expect("readable fixture"),
            )
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 26, "the 26 seed manifests are fixtures");
    files
}

/// Every scalar with its path, written without the converter's help.
fn leaves(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| leaves(v, format!("{path}/{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| leaves(v, format!("{path}/{i}"), out)),
        Value::Null => {}
        Value::Number(n) => {
            out.insert(path, Value::from(n.as_f64().expect("finite")));
        }
        scalar => {
            out.insert(path, scalar.clone());
        }
    }
}

fn deserializes_as_plexus(document: &Converted) {
    let object = document.object.clone();
    let kind = object["kind"].as_str().expect("kind").to_owned();
    let result = match kind.as_str() {
        "VirtualService" => serde_json::from_value::<api::VirtualService>(object).map(drop),
        "DestinationRule" => serde_json::from_value::<api::DestinationRule>(object).map(drop),
        "Gateway" => serde_json::from_value::<api::Gateway>(object).map(drop),
        "ServiceEntry" => serde_json::from_value::<api::ServiceEntry>(object).map(drop),
        "PeerAuthentication" => serde_json::from_value::<api::PeerAuthentication>(object).map(drop),
        "AuthorizationPolicy" => {
            serde_json::from_value::<api::AuthorizationPolicy>(object).map(drop)
        }
        "RequestAuthentication" => {
            serde_json::from_value::<api::RequestAuthentication>(object).map(drop)
        }
        "Telemetry" => serde_json::from_value::<api::Telemetry>(object).map(drop),
        "TrafficSplit" => serde_json::from_value::<api::TrafficSplit>(object).map(drop),
        "ServiceProfile" => serde_json::from_value::<api::ServiceProfile>(object).map(drop),
        "RateLimitPolicy" => serde_json::from_value::<api::RateLimitPolicy>(object).map(drop),
        other => panic!("{other} is not a Plexus kind"),
    };
    result.unwrap_or_else(|e| panic!("{}: output is not a valid {kind}: {e}", document.origin));
    assert_eq!(document.object["apiVersion"], api::API_VERSION);
}

#[test]
fn every_seed_manifest_converts_without_losing_a_field() {
    let mut converted = 0;
    let mut untranslatable = Vec::new();
    for (file, text) in fixtures() {
        let conversion = convert::convert(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let inputs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde::Deserialize::deserialize(doc).expect("fixtures are YAML"))
            .filter(|doc: &Value| !doc.is_null())
            .collect();
        for document in &conversion.converted {
            deserializes_as_plexus(document);
            let input = &inputs[document.origin.position.document - 1];
            assert_eq!(input["kind"], document.object["kind"], "{file}: same kind");
            let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
            leaves(&input["metadata"], "/metadata".into(), &mut before);
            leaves(&input["spec"], "/spec".into(), &mut before);
            leaves(&document.object, String::new(), &mut after);
            for (path, value) in &before {
                assert_eq!(
                    after.get(path),
                    Some(value),
                    "{file}: {path} was lost or changed"
                );
            }
            // The output also re-reads as YAML, as a user would pipe it to kubectl.
            let yaml = convert::to_yaml(std::slice::from_ref(document)).expect("renders");
            let reread: Value =
                serde_yaml::from_str(yaml.trim_start_matches("---\n")).expect("YAML");
            assert_eq!(reread, document.object, "{file}");
            converted += 1;
        }
        for problem in conversion.untranslatable {
            untranslatable.push(format!(
                "{file}: {} {}: {}",
                problem.origin.kind, problem.origin.name, problem.reason
            ));
        }
    }
    assert_eq!(converted, 25);
    // The one seed that cannot be translated: an EnvoyFilter that inserts the
    // global rate limit filter (an external rate-limit service), not a local one.
    assert_eq!(untranslatable.len(), 1, "{untranslatable:#?}");
    assert!(
        untranslatable[0].starts_with("18-envoyfilter-ratelimit.yaml: EnvoyFilter ratelimit: ")
            && untranslatable[0].contains("global rate limit"),
        "{untranslatable:#?}"
    );
}

#[test]
fn seed_kinds_map_to_plexus_kinds_of_the_same_name() {
    let mut kinds = BTreeMap::new();
    for (_, text) in fixtures() {
        for document in convert::convert(&text).expect("documents").converted {
            *kinds
                .entry(document.object["kind"].as_str().expect("kind").to_owned())
                .or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<String, i32> = [
        ("AuthorizationPolicy", 2),
        ("DestinationRule", 3),
        ("Gateway", 2),
        ("PeerAuthentication", 2),
        ("RequestAuthentication", 1),
        ("ServiceEntry", 1),
        ("ServiceProfile", 2),
        ("Telemetry", 3),
        ("TrafficSplit", 2),
        ("VirtualService", 7),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(kinds, expected);
}
