//! `PeerAuthentication`: whether workloads accept plaintext (Istio's shape).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{PolicyTargetReference, ResourceStatus, WorkloadSelector, string_enum};

/// The mutual-TLS mode of the workloads it selects: whether their proxies
/// accept plaintext, mTLS or both. The most specific policy wins: one with a
/// selector, then the namespace's, then the mesh's default. Field for field
/// the shape of Istio's PeerAuthentication.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "PeerAuthentication",
    namespaced,
    status = "ResourceStatus",
    shortname = "pa",
    category = "plexus",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mtls.mode"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Accepted")].status"#
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Programmed")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// Workloads the policy applies to; without it, every workload in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Objects the policy attaches to, instead of a selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Mutual TLS for all ports of the selected workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Mutual TLS for individual ports, by port number (the container port);
    /// overrides `mtls`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level_mtls: BTreeMap<String, MutualTls>,
}

string_enum! {
    /// Whether a workload accepts plaintext.
    MtlsMode {
        /// Inherit from the parent policy (namespace, then mesh).
        Unset = "UNSET",
        /// Plaintext only; the proxy does not terminate mTLS.
        Disable = "DISABLE",
        /// Both mTLS and plaintext.
        Permissive = "PERMISSIVE",
        /// mTLS only; plaintext connections are refused.
        Strict = "STRICT",
    }
}

/// A mutual-TLS setting.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MutualTls {
    /// UNSET (inherit), DISABLE, PERMISSIVE or STRICT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}
