//! The demo's manifests (`demo/`) are what the e2e suite and the demo
//! command deploy: checked here without a cluster, so that a broken edit
//! fails the unit tier.

use plexus_crds::destination_rule::DestinationRule;
use plexus_crds::virtual_service::VirtualService;
use serde::Deserialize;

fn documents(path: &std::path::Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_demo_app_runs_this_versions_test_server_as_bookinfo() {
    let docs = documents(&plexus_e2e::demo::demo_app());
    let kinds = |kind: &str| -> Vec<&serde_yaml::Value> {
        docs.iter().filter(|d| d["kind"] == kind).collect()
    };
    let mut services: Vec<&str> = kinds("Service")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    services.sort_unstable();
    assert_eq!(services, ["details", "productpage", "ratings", "reviews"]);
    let deployments = kinds("Deployment");
    let mut names: Vec<&str> = deployments
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    let mut expected = plexus_e2e::demo::DEPLOYMENTS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for deployment in deployments {
        let pod = &deployment["spec"]["template"];
        let labels = &pod["metadata"]["labels"];
        assert!(
            labels["app"].is_string() && labels["version"].is_string(),
            "{labels:?}"
        );
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["image"].as_str(),
            Some(plexus_e2e::test_server_image().as_str())
        );
        // Each service runs as its own ServiceAccount: its SPIFFE identity.
        assert_eq!(pod["spec"]["serviceAccountName"], labels["app"]);
    }
}

#[test]
fn the_demo_routing_rules_are_valid_plexus_resources() {
    let dir = plexus_e2e::demo::demo_routing();
    let mut rules = 0;
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry of demo/routing").path();
        for doc in documents(&path) {
            assert_eq!(
                doc["apiVersion"],
                "plexus.dev/v1alpha1",
                "{}",
                path.display()
            );
            match doc["kind"].as_str() {
                Some("VirtualService") => drop(
                    serde_yaml::from_value::<VirtualService>(doc)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                ),
                Some("DestinationRule") => drop(
                    serde_yaml::from_value::<DestinationRule>(doc)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                ),
                other => panic!("{}: unexpected kind {other:?}", path.display()),
            }
            rules += 1;
        }
    }
    assert_eq!(rules, 6);
}
