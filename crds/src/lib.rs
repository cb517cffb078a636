//! The Plexus mesh API: custom resource types of the `plexus.dev` group and
//! the CRD manifests generated from them.
//!
//! The spec shapes follow Istio's API reference field for field (and
//! Linkerd's and SMI's for ServiceProfile and TrafficSplit), so that their
//! manifests deserialize unchanged once their `apiVersion` is `plexus.dev/v1alpha1`.
#![forbid(unsafe_code)]
#![allow(
    clippy::duplicated_attributes,
    reason = "each kind lists several printcolumn(...) entries with the same type_; they are distinct columns"
)]

pub mod authorization_policy;
pub mod common;
pub mod destination_rule;
pub mod gateway;
pub mod keys;
pub mod mesh;
pub mod peer_authentication;
pub mod rate_limit_policy;
pub mod request_authentication;
pub mod service_entry;
pub mod service_profile;
pub mod telemetry;
pub mod traffic_split;
pub mod virtual_service;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use authorization_policy::AuthorizationPolicy;
pub use destination_rule::DestinationRule;
pub use gateway::Gateway;
pub use mesh::Mesh;
pub use peer_authentication::PeerAuthentication;
pub use rate_limit_policy::RateLimitPolicy;
pub use request_authentication::RequestAuthentication;
pub use service_entry::ServiceEntry;
pub use service_profile::ServiceProfile;
pub use telemetry::Telemetry;
pub use traffic_split::TrafficSplit;
pub use virtual_service::VirtualService;

/// API group of every Plexus kind.
pub const GROUP: &str = "plexus.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Plexus object.
pub const API_VERSION: &str = "plexus.dev/v1alpha1";
/// Label the CRDs carry, so that `kubectl get crd -l` finds them.
pub const PART_OF_LABEL: (&str, &str) = ("app.kubernetes.io/part-of", "plexus");

/// Every kind of the API, in a stable order.
pub const KINDS: &[&str] = &[
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Telemetry",
    "TrafficSplit",
    "ServiceProfile",
    "RateLimitPolicy",
    "Mesh",
];

/// The CRDs of every kind, in the order of [`KINDS`].
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        VirtualService::crd(),
        DestinationRule::crd(),
        Gateway::crd(),
        ServiceEntry::crd(),
        PeerAuthentication::crd(),
        AuthorizationPolicy::crd(),
        RequestAuthentication::crd(),
        Telemetry::crd(),
        TrafficSplit::crd(),
        ServiceProfile::crd(),
        RateLimitPolicy::crd(),
        Mesh::crd(),
    ];
    for crd in &mut crds {
        describe_root(crd);
        crd.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(PART_OF_LABEL.0.into(), PART_OF_LABEL.1.into());
    }
    crds
}

/// kube-derive describes the root as "Auto-generated derived type"; what a
/// user of `kubectl explain` wants there is what the kind is for, which the
/// spec's doc comment says.
fn describe_root(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let spec_description = root
            .properties
            .as_ref()
            .and_then(|p| p.get("spec"))
            .and_then(|spec| spec.description.clone());
        if let Some(description) = spec_description {
            root.description = Some(description);
        }
    }
}

/// A CRD manifest: its file name and YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdManifest {
    /// File name, `<group>_<plural>.yaml`.
    pub file_name: String,
    /// The YAML document, with a header saying it is generated.
    pub yaml: String,
}

/// Rendering a CRD failed.
#[derive(Debug, thiserror::Error)]
#[error("rendering the CRD {name} as YAML: {source}")]
pub struct RenderError {
    name: String,
    #[source]
    source: serde_yaml::Error,
}

/// Header of every generated manifest.
pub const GENERATED_HEADER: &str = "# Generated from the Rust types in crds/ by `plexus crds --output-dir helm/plexus/crds`.\n# Do not edit: change the types and run the command again.\n";

/// The manifests of every CRD, as the generator writes them.
pub fn manifests() -> Result<Vec<CrdManifest>, RenderError> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let body = serde_yaml::to_string(&crd).map_err(|source| RenderError {
                name: name.clone(),
                source,
            })?;
            Ok(CrdManifest {
                file_name: format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural),
                yaml: format!("{GENERATED_HEADER}{body}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
