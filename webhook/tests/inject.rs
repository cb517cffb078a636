//! Fixture tests of the injection function: each `tests/fixtures/<case>/pod.yaml`
//! (the pod, its namespace and the cluster's sidecar support) has the exact
//! expected outcome in `expected.json`: the JSON patch, or why the pod is
//! skipped. `PLEXUS_BLESS=1 cargo test -p plexus-webhook --test inject`
//! rewrites the expectations (review the diff).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use plexus_crds::mesh::ProxyDefaults;
use plexus_webhook::inject::{self, InjectConfig, Outcome, Skip};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    namespace: String,
    namespace_labels: BTreeMap<String, String>,
    native_sidecars: bool,
    pod: Pod,
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Skipped(skip) => json!({ "skipped": skip.as_str() }),
        Outcome::Injected(patch) => json!({ "patch": patch }),
    }
}

fn run_case(dir: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(dir.join("pod.yaml"))?;
    let case: Case = serde_yaml::from_str(&text).context("pod.yaml")?;
    let config = InjectConfig::new(
        ProxyDefaults::default(),
        case.native_sidecars,
        "plexus-system",
    );
    let outcome = inject::inject(&case.pod, &case.namespace, &case.namespace_labels, &config)?;
    let actual = outcome_json(&outcome);
    let expected_path = dir.join("expected.json");
    if std::env::var_os("PLEXUS_BLESS").is_some() {
        std::fs::write(
            &expected_path,
            serde_json::to_string_pretty(&actual)? + "\n",
        )?;
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&expected_path)
            .context("expected.json (PLEXUS_BLESS=1 writes it)")?,
    )?;
    anyhow::ensure!(
        actual == expected,
        "the outcome differs from expected.json:\n{}",
        serde_json::to_string_pretty(&actual)?
    );

    // An injected pod: the patch applies to the pod as the API server holds
    // it, the result is a valid Pod, and injecting it again changes nothing.
    if let Outcome::Injected(patch) = outcome {
        let mut document = serde_json::to_value(&case.pod)?;
        json_patch::patch(&mut document, &patch).context("the patch does not apply")?;
        let injected: Pod = serde_json::from_value(document).context("the result is not a Pod")?;
        let again = inject::inject(&injected, &case.namespace, &case.namespace_labels, &config)?;
        anyhow::ensure!(
            again == Outcome::Skipped(Skip::AlreadyInjected),
            "injected twice"
        );
    }
    Ok(())
}

#[test]
fn fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 11, "fixtures are missing: {dirs:?}");
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| {
            run_case(dir)
                .err()
                .map(|e| format!("{}: {e:#}", dir.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
