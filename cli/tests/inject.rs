//! `plexus inject` over a file with every kind of workload.

use plexus_cli::inject::{Report, inject_documents, to_yaml};
use plexus_crds::mesh::ProxyDefaults;
use plexus_webhook::inject::InjectConfig;
use serde_json::Value;

const WORKLOADS: &str = include_str!("fixtures/inject/workloads.yaml");

fn config() -> InjectConfig {
    InjectConfig::new(ProxyDefaults::default(), false, "plexus-system")
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[test]
fn every_workload_kind_gets_the_proxy_in_its_pod_template() {
    let (documents, reports) = inject_documents(WORKLOADS, &config()).expect("injects");
    let report = |origin: &str, skipped: Option<&'static str>| Report {
        origin: origin.into(),
        skipped,
    };
    assert_eq!(
        reports,
        vec![
            report("deployment/web", None),
            report("statefulset/db", None),
            report("job/migrate", None),
            report("cronjob/report", None),
            report("pod/debug", None),
            report("pod/agent", Some("host-network")),
        ]
    );
    let original: Vec<Value> = serde_yaml::Deserializer::from_str(WORKLOADS)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect();
    assert_eq!(documents.len(), original.len());
    for (document, before) in documents.iter().zip(&original) {
        let template = match document["kind"].as_str() {
            Some("Deployment" | "StatefulSet" | "Job") => &document["spec"]["template"],
            Some("CronJob") => &document["spec"]["jobTemplate"]["spec"]["template"],
            Some("Pod") if document["metadata"]["name"] == "debug" => document,
            _ => {
                assert_eq!(document, before, "{} changed", document["kind"]);
                continue;
            }
        };
        let spec = &template["spec"];
        assert_eq!(
            names(&spec["containers"])[0],
            "plexus-proxy",
            "{}",
            document["kind"]
        );
        assert!(names(&spec["initContainers"]).contains(&"plexus-init"));
        assert_eq!(
            template["metadata"]["annotations"]["plexus.dev/proxy-version"],
            env!("CARGO_PKG_VERSION")
        );
    }
    // The Deployment's HTTP readiness probe now goes through the admin port.
    let web = &documents[1]["spec"]["template"]["spec"]["containers"][1];
    assert_eq!(web["readinessProbe"]["httpGet"]["port"], 4191);
}

#[test]
fn injecting_twice_changes_nothing() {
    let (once, _) = inject_documents(WORKLOADS, &config()).expect("injects");
    let yaml = to_yaml(&once).expect("YAML");
    let (twice, reports) = inject_documents(&yaml, &config()).expect("injects again");
    assert_eq!(once, twice);
    assert!(reports.iter().all(|r| r.skipped.is_some()));
}

#[test]
fn a_bad_annotation_is_an_error_naming_the_workload() {
    let input = "kind: Pod\nmetadata: {name: p, annotations: {plexus.dev/proxy-memory: lots}}\nspec: {containers: [{name: a}]}\n";
    let error = inject_documents(input, &config()).expect_err("rejected");
    assert!(error.to_string().contains("pod/p"), "{error}");
    assert!(
        error.to_string().contains("plexus.dev/proxy-memory"),
        "{error}"
    );
}
