//! `ServiceEntry`: adds services to the mesh's registry (Istio's shape).
//!
//! Only the shape is defined so far: Plexus accepts and stores ServiceEntries
//! so that manifests carry over.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ResourceStatus, WorkloadLabels, string_enum};
use crate::gateway::Port;

/// Adds a service that Kubernetes does not know (an external API, a VM, a
/// service of another cluster) to the mesh's registry, so that routing and
/// policies apply to it. Field for field the shape of Istio's ServiceEntry.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "ServiceEntry",
    plural = "serviceentries",
    namespaced,
    status = "ResourceStatus",
    shortname = "se",
    category = "plexus",
    printcolumn(name = "Hosts", type_ = "string", json_path = ".spec.hosts"),
    printcolumn(name = "Location", type_ = "string", json_path = ".spec.location"),
    printcolumn(name = "Resolution", type_ = "string", json_path = ".spec.resolution"),
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
pub struct ServiceEntrySpec {
    /// Host names of the service; wildcards allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Virtual IP addresses (or CIDR blocks) of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Ports of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// MESH_EXTERNAL (outside the mesh) or MESH_INTERNAL (part of it, with mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How endpoints are found: NONE, STATIC, DNS or DNS_ROUND_ROBIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Endpoints of the service, for STATIC and DNS resolution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Pods that are endpoints of the service, by labels (instead of `endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadLabels>,
    /// Namespaces this entry is visible to: `.` for its own, `*` for all (the
    /// default), or namespace names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Identities (SANs) the service's certificates must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

string_enum! {
    /// Whether a service is part of the mesh.
    Location {
        /// Outside the mesh: no mTLS, no inbound policies.
        MeshExternal = "MESH_EXTERNAL",
        /// Part of the mesh, behind proxies speaking mTLS.
        MeshInternal = "MESH_INTERNAL",
    }
}

string_enum! {
    /// How a ServiceEntry's endpoints are found.
    Resolution {
        /// Forward to the original destination address.
        None = "NONE",
        /// Use the addresses in `endpoints`.
        Static = "STATIC",
        /// Resolve the hosts (or endpoint addresses) through DNS, all addresses.
        Dns = "DNS",
        /// Resolve through DNS and use the first address.
        DnsRoundRobin = "DNS_ROUND_ROBIN",
    }
}

/// One endpoint of a ServiceEntry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// IP address, host name or Unix socket of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port numbers of this endpoint, by the service's port names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// Labels of the endpoint, used by subsets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network the endpoint is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Locality of the endpoint, `region/zone/subzone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load-balancing weight of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// ServiceAccount of the endpoint, which gives its identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}
