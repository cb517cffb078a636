//! Names shared by the operator, the webhook and the proxy: labels,
//! annotations, Secret keys and object names. Defined once, here.

/// Namespace label (and pod label or annotation) that turns injection on
/// (`enabled`) or off (`disabled`).
pub const INJECT_LABEL: &str = "plexus.dev/inject";
/// Value of [`INJECT_LABEL`] that turns injection on.
pub const INJECT_ENABLED: &str = "enabled";
/// Value of [`INJECT_LABEL`] that turns injection off.
pub const INJECT_DISABLED: &str = "disabled";

/// Name of the proxy container the webhook injects.
pub const PROXY_CONTAINER: &str = "plexus-proxy";
/// Name of the init container that redirects the pod's traffic.
pub const INIT_CONTAINER: &str = "plexus-init";

/// The namespace the mesh's control plane runs in, unless configured otherwise.
pub const DEFAULT_MESH_NAMESPACE: &str = "plexus-system";
/// Field manager of every write the operator makes (server-side apply).
pub const OPERATOR_FIELD_MANAGER: &str = "plexus-operator";
/// `app.kubernetes.io/managed-by` value on objects the operator owns.
pub const MANAGED_BY_OPERATOR: &str = "plexus-operator";
/// The standard managed-by label.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Secret (in the mesh namespace) holding the signing root and the trust bundle.
pub const CA_SECRET: &str = "plexus-ca";
/// Secret (in the mesh namespace) holding the webhook's serving certificate.
pub const WEBHOOK_TLS_SECRET: &str = "plexus-webhook-tls";
/// Prefix of the identity Secret of a ServiceAccount: `plexus-identity-<sa>`.
pub const IDENTITY_SECRET_PREFIX: &str = "plexus-identity-";
/// Label on identity Secrets naming their ServiceAccount.
pub const IDENTITY_LABEL: &str = "plexus.dev/identity";
/// Annotation on identity Secrets: the SPIFFE ID of the certificate.
pub const SPIFFE_ID_ANNOTATION: &str = "plexus.dev/spiffe-id";
/// Annotation on the Mesh that forces a root rotation; any new value
/// triggers one (for drills), e.g. the current time.
pub const ROTATE_ROOT_ANNOTATION: &str = "plexus.dev/rotate-root";

/// Secret keys of identity Secrets (defined with the proxy's contract,
/// which reads them).
pub use plexus_config::sidecar::{CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};

/// Name of the identity Secret of ServiceAccount `service_account`.
pub fn identity_secret_name(service_account: &str) -> String {
    format!("{IDENTITY_SECRET_PREFIX}{service_account}")
}
