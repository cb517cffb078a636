//! `plexus inject`: the webhook's injection function applied offline to
//! YAML files, like `linkerd inject --manual`. Workloads (Pods, Deployments,
//! StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs) get the proxy in
//! their pod template; every other document passes through unchanged.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use plexus_crds::keys::{INJECT_ENABLED, INJECT_LABEL};
use plexus_webhook::inject::{self, InjectConfig, Outcome};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("document {index}: not YAML: {source}")]
    Yaml {
        index: usize,
        source: serde_yaml::Error,
    },
    #[error("{origin}: the pod template is not a valid pod: {source}")]
    Template {
        origin: String,
        source: serde_json::Error,
    },
    #[error("{origin}: {source}")]
    Inject {
        origin: String,
        source: inject::InjectError,
    },
    #[error("{origin}: the patch does not apply: {source}")]
    Patch {
        origin: String,
        source: json_patch::PatchError,
    },
}

/// What happened to one workload.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// `kind/name`.
    pub origin: String,
    /// None when injected; otherwise why not (e.g. `host-network`).
    pub skipped: Option<&'static str>,
}

/// Injects every workload in `input` (multi-document YAML); returns the
/// documents, in order, and a report per workload.
pub fn inject_documents(
    input: &str,
    config: &InjectConfig,
) -> Result<(Vec<Value>, Vec<Report>), InjectError> {
    let mut documents = Vec::new();
    let mut reports = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let mut value =
            Value::deserialize(document).map_err(|source| InjectError::Yaml { index, source })?;
        if value.is_null() {
            continue;
        }
        if let Some(report) = inject_document(&mut value, config)? {
            reports.push(report);
        }
        documents.push(value);
    }
    Ok((documents, reports))
}

/// Where a kind keeps its pod template, as a JSON pointer.
fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn inject_document(
    document: &mut Value,
    config: &InjectConfig,
) -> Result<Option<Report>, InjectError> {
    let kind = document["kind"].as_str().unwrap_or_default().to_owned();
    let Some(pointer) = template_pointer(&kind) else {
        return Ok(None);
    };
    let name = document["metadata"]["name"].as_str().unwrap_or("<unnamed>");
    let origin = format!("{}/{name}", kind.to_lowercase());
    let namespace = document["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let Some(template) = document.pointer_mut(pointer) else {
        return Ok(None);
    };
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": template.get("metadata").cloned().unwrap_or_default(),
        "spec": template.get("spec").cloned().unwrap_or_default(),
    }))
    .map_err(|source| InjectError::Template {
        origin: origin.clone(),
        source,
    })?;
    // Asking for injection is what running this command means: the
    // namespace counts as labelled; a pod's own opt-out still wins.
    let labels = BTreeMap::from([(INJECT_LABEL.to_owned(), INJECT_ENABLED.to_owned())]);
    let outcome = inject::inject(&pod, &namespace, &labels, config).map_err(|source| {
        InjectError::Inject {
            origin: origin.clone(),
            source,
        }
    })?;
    match outcome {
        Outcome::Skipped(skip) => Ok(Some(Report {
            origin,
            skipped: Some(skip.as_str()),
        })),
        Outcome::Injected(patch) => {
            if template.get("metadata").is_none_or(Value::is_null) {
                template["metadata"] = Value::Object(Default::default());
            }
            json_patch::patch(template, &patch).map_err(|source| InjectError::Patch {
                origin: origin.clone(),
                source,
            })?;
            Ok(Some(Report {
                origin,
                skipped: None,
            }))
        }
    }
}

/// The documents as multi-document YAML.
pub fn to_yaml(documents: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for document in documents {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(document)?);
    }
    Ok(out)
}
