//! `Mesh`: the mesh-wide settings, one cluster-scoped object named `default`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, string_enum};
use crate::peer_authentication::MtlsMode;

/// The name of the one Mesh object the operator reads.
pub const MESH_NAME: &str = "default";

/// Mesh-wide settings: the trust domain and certificate lifetimes of the
/// mesh's certificate authority, the default mTLS mode, the defaults of
/// injected proxies and the policy for traffic to unknown destinations. The
/// operator reads the object named `default` and reports the CA's health in
/// its status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "Mesh",
    plural = "meshes",
    status = "MeshStatus",
    category = "plexus",
    printcolumn(
        name = "Trust Domain",
        type_ = "string",
        json_path = ".spec.trustDomain"
    ),
    printcolumn(name = "mTLS", type_ = "string", json_path = ".spec.mtls.mode"),
    printcolumn(
        name = "Identities",
        type_ = "integer",
        json_path = ".status.identities"
    ),
    printcolumn(
        name = "Root Expiry",
        type_ = "string",
        json_path = ".status.root.notAfter"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    /// Trust domain of the mesh's SPIFFE identities,
    /// `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceaccount>`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// Lifetimes and renewal points of the mesh's certificates.
    #[serde(default)]
    pub certificates: CertificateSettings,
    /// The mutual-TLS mode of workloads that no PeerAuthentication selects.
    #[serde(default)]
    pub mtls: MeshMtls,
    /// Defaults of the injected proxy; annotations on pods override some.
    #[serde(default)]
    pub proxy: ProxyDefaults,
    /// What proxies do with traffic to destinations the mesh does not know.
    #[serde(default)]
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// Mesh-wide authorization: what workloads no ALLOW policy selects do,
    /// and which X-Forwarded-For entries are trusted.
    #[serde(default)]
    pub authorization: MeshAuthorization,
}

impl Default for MeshSpec {
    fn default() -> Self {
        Self {
            trust_domain: default_trust_domain(),
            certificates: CertificateSettings::default(),
            mtls: MeshMtls::default(),
            proxy: ProxyDefaults::default(),
            outbound_traffic_policy: OutboundTrafficPolicy::default(),
            authorization: MeshAuthorization::default(),
        }
    }
}

fn default_trust_domain() -> String {
    "cluster.local".into()
}

/// Lifetimes and renewal points of the mesh's certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSettings {
    /// Lifetime of a workload certificate, such as `24h`.
    #[serde(default = "default_workload_ttl")]
    pub workload_ttl: Duration,
    /// Share of a workload certificate's lifetime after which it is renewed,
    /// from 0 to 1 (exclusive); two thirds by default.
    #[serde(default = "default_renewal_fraction")]
    pub workload_renewal_fraction: f64,
    /// Lifetime of the root certificate the operator generates, such as `8760h`.
    #[serde(default = "default_root_ttl")]
    pub root_ttl: Duration,
    /// Share of the root's lifetime after which a new root is rolled out,
    /// from 0 to 1 (exclusive); two thirds by default.
    #[serde(default = "default_renewal_fraction")]
    pub root_renewal_fraction: f64,
}

impl Default for CertificateSettings {
    fn default() -> Self {
        Self {
            workload_ttl: default_workload_ttl(),
            workload_renewal_fraction: default_renewal_fraction(),
            root_ttl: default_root_ttl(),
            root_renewal_fraction: default_renewal_fraction(),
        }
    }
}

fn default_workload_ttl() -> Duration {
    Duration::from("24h")
}

fn default_root_ttl() -> Duration {
    Duration::from("8760h")
}

fn default_renewal_fraction() -> f64 {
    2.0 / 3.0
}

/// The mesh-wide mTLS mode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshMtls {
    /// DISABLE, PERMISSIVE (the default: accept mTLS and plaintext, so that
    /// workloads can join the mesh one at a time) or STRICT.
    #[serde(default = "default_mtls_mode")]
    pub mode: MtlsMode,
}

impl Default for MeshMtls {
    fn default() -> Self {
        Self {
            mode: default_mtls_mode(),
        }
    }
}

fn default_mtls_mode() -> MtlsMode {
    MtlsMode::Permissive
}

string_enum! {
    /// Encoding of the proxy's access logs.
    AccessLogEncoding {
        /// One line of text per request.
        Text = "TEXT",
        /// One JSON object per request.
        Json = "JSON",
    }
}

/// Defaults of injected proxies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyDefaults {
    /// Image of the proxy (also used by its init container).
    #[serde(default = "default_proxy_image")]
    pub image: String,
    /// Pull policy of the proxy image: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory requests and limits of the proxy container; the
    /// annotations `plexus.dev/proxy-cpu` and `plexus.dev/proxy-memory` (and
    /// their `-limit` forms) override them per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ProxyResources>,
    /// Log level of the proxy: error, warn, info, debug or trace, or a
    /// tracing filter such as `info,plexus_proxy=debug`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Encoding of access logs: TEXT (the default) or JSON.
    #[serde(default = "default_access_log_encoding")]
    pub access_log_encoding: AccessLogEncoding,
    /// Template of access-log lines in TEXT encoding, with `%FIELD%`
    /// placeholders; the proxy's built-in format when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_format: Option<String>,
}

impl Default for ProxyDefaults {
    fn default() -> Self {
        Self {
            image: default_proxy_image(),
            image_pull_policy: None,
            resources: None,
            log_level: default_log_level(),
            access_log_encoding: default_access_log_encoding(),
            access_log_format: None,
        }
    }
}

/// CPU and memory of the proxy container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyResources {
    /// What the scheduler reserves for the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ComputeResources>,
    /// The most the proxy may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ComputeResources>,
}

/// Amounts of CPU and memory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeResources {
    /// CPU, such as `100m` (a tenth of a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory, such as `64Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

fn default_proxy_image() -> String {
    concat!("plexus/proxy:", env!("CARGO_PKG_VERSION")).into()
}

fn default_log_level() -> String {
    "info".into()
}

fn default_access_log_encoding() -> AccessLogEncoding {
    AccessLogEncoding::Text
}

string_enum! {
    /// What proxies do with traffic to unknown destinations.
    OutboundTrafficMode {
        /// Pass it through as plain TCP.
        AllowAny = "ALLOW_ANY",
        /// Refuse it: only Services and ServiceEntries are reachable.
        RegistryOnly = "REGISTRY_ONLY",
    }
}

/// The policy for traffic to destinations the mesh does not know.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    /// ALLOW_ANY (the default) or REGISTRY_ONLY.
    #[serde(default = "default_outbound_mode")]
    pub mode: OutboundTrafficMode,
}

impl Default for OutboundTrafficPolicy {
    fn default() -> Self {
        Self {
            mode: default_outbound_mode(),
        }
    }
}

fn default_outbound_mode() -> OutboundTrafficMode {
    OutboundTrafficMode::AllowAny
}

string_enum! {
    /// What a workload does with requests when no ALLOW policy selects it.
    DefaultAuthorization {
        /// Takes every request no DENY policy denies (Istio's behaviour).
        Allow = "ALLOW",
        /// Refuses every request, until an ALLOW policy selecting it allows
        /// some (Linkerd's `deny` default policy).
        Deny = "DENY",
    }
}

/// Mesh-wide authorization settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshAuthorization {
    /// ALLOW (the default) or DENY: what meshed workloads that no ALLOW
    /// AuthorizationPolicy selects do with the requests no DENY policy denies.
    #[serde(default = "default_authorization")]
    pub default_action: DefaultAuthorization,
    /// How many proxies (load balancers, gateways) in front of the mesh
    /// append to X-Forwarded-For and are trusted: `remote.ip` and
    /// `remoteIpBlocks` take the address that many entries from its end.
    /// 0 (the default) trusts none: the remote address is the peer's.
    #[serde(default)]
    pub num_trusted_proxies: u32,
}

impl Default for MeshAuthorization {
    fn default() -> Self {
        Self {
            default_action: default_authorization(),
            num_trusted_proxies: 0,
        }
    }
}

fn default_authorization() -> DefaultAuthorization {
    DefaultAuthorization::Allow
}

/// What the operator reports about the mesh.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the certificate authority is serving. `CertificateExpiringSoon`:
    /// a root or identity is close to expiry without a successful renewal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// The root certificate that signs new workload certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootStatus>,
    /// Roots still in the trust bundle during a rotation, besides `root`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_roots: Vec<RootStatus>,
    /// Number of workload identities (ServiceAccounts) with a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<u32>,
}

/// A root certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RootStatus {
    /// SHA-256 fingerprint of the certificate, hex.
    pub fingerprint: String,
    /// When the certificate expires (RFC 3339).
    pub not_after: String,
}
