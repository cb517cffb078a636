//! The proxy configuration: what the operator compiles from the mesh's
//! resources and what every sidecar reads. This crate is the only definition;
//! the operator serializes it and the proxy deserializes it.
//!
//! One configuration is written per namespace with injected workloads, in the
//! ConfigMap [`CONFIGMAP_NAME`] under the `binaryData` key [`CONFIG_KEY`], as
//! gzip-compressed JSON ([`ProxyConfig::to_gzip`], [`ProxyConfig::from_gzip`]):
//! every namespace's configuration lists the whole mesh's destinations, and
//! compressed it stays far below the 1 MiB ConfigMap limit. It holds:
//! - `services` ([`service`], with their [`route`]s): every destination a
//!   proxy of that namespace may call, with its routes, traffic policy and
//!   endpoints (subsets already resolved);
//! - `inbound` ([`inbound`], [`policy`]): the policies of the namespace's
//!   workloads, each with the workload selector the proxy evaluates against
//!   its own pod's labels;
//! - `gateways` ([`gateway`]): Gateways of the namespace with the routes
//!   bound to them.
//!
//! Besides the types: [`sidecar`], the names the webhook and the proxy share
//! (environment variables, mount paths, ports, Secret keys, ALPNs), and
//! [`capability`], the one list of what the proxy enforces, from which the
//! operator's status derives.
//!
//! Durations are milliseconds, ports are numbers, hosts are fully qualified.
//! Values that take one of a set are enums ([`one_of!`]): the operator
//! validates with the same type, so it cannot accept what the proxy cannot
//! read. The format is versioned by [`SCHEMA`]; a proxy refuses a schema it
//! does not know and keeps its last good configuration.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod capability;
pub mod gateway;
pub mod inbound;
pub mod policy;
pub mod redirect;
pub mod route;
pub mod service;
pub mod sidecar;

pub use gateway::*;
pub use inbound::*;
pub use policy::*;
pub use route::*;
pub use service::*;
pub use sidecar::{AppProbe, CONFIG_KEY, CONFIGMAP_NAME};

/// The schema of this configuration; bumped on incompatible changes.
pub const SCHEMA: &str = "plexus.dev/proxy-config/v1";
/// The largest decompressed configuration a proxy accepts.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// The ConfigMap annotation carrying the configuration's revision.
pub const REVISION_ANNOTATION: &str = "plexus.dev/config-revision";

/// A value outside a [`one_of!`] set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was given.
    pub value: String,
    /// What is known.
    pub expected: &'static [&'static str],
    /// What else is accepted, ending in "or " (empty when nothing is).
    pub besides: &'static str,
}

impl std::fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown value {:?}; expected {}one of {}",
            self.value,
            self.besides,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

/// Declares an enum of named values, written as strings: its `VALUES`, a
/// `FromStr` whose error lists them, and serde by those names.
#[macro_export]
macro_rules! one_of {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $value)] $variant, )+
        }

        impl $name {
            /// Every value, as written.
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            /// The value as written.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $value, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $( $value => Ok(Self::$variant), )+
                    other => Err($crate::UnknownValue {
                        value: other.to_owned(),
                        expected: Self::VALUES,
                        besides: "",
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A namespace's proxy configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The namespace whose proxies read this configuration.
    pub namespace: String,
    /// The mesh's SPIFFE trust domain.
    pub trust_domain: String,
    /// What to do with traffic to destinations not in `services`.
    pub outbound_policy: OutboundPolicy,
    /// Destinations, sorted by their first host. Shared (not copied) between
    /// the namespaces' configurations when they see the same destinations.
    #[serde(default, skip_serializing_if = "no_services")]
    pub services: Arc<Vec<Service>>,
    /// Policies of this namespace's workloads.
    #[serde(default)]
    pub inbound: Inbound,
    /// Gateways of this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<Gateway>,
    /// The DestinationRules' `credentialName` Secrets of this namespace
    /// (the client's, as in Istio), by name: only their CA certificates,
    /// which are public. The proxy never reads Secrets but its own identity.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub credentials: std::collections::BTreeMap<String, Credential>,
}

/// What a proxy is given of a `credentialName` Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// The certificates (PEM) a server's chain must lead to: the Secret's
    /// `ca.crt` (or `cacert`).
    pub ca_certificates: String,
}

/// Errors reading a configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// Not gzip, or larger than [`MAX_CONFIG_BYTES`] decompressed.
    Compression(String),
    /// Not JSON of this shape.
    Malformed(serde_json::Error),
    /// A schema this proxy does not understand.
    Schema(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Compression(e) => write!(f, "proxy configuration is not readable gzip: {e}"),
            Self::Malformed(e) => write!(f, "malformed proxy configuration: {e}"),
            Self::Schema(s) => write!(f, "proxy configuration schema {s:?} is not {SCHEMA:?}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ProxyConfig {
    /// Reads a configuration, refusing unknown schemas.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes).map_err(ConfigError::Malformed)?;
        if config.schema != SCHEMA {
            return Err(ConfigError::Schema(config.schema));
        }
        Ok(config)
    }

    /// The configuration as written in its ConfigMap: compact JSON, gzip
    /// compressed. Deterministic: equal configurations give equal bytes.
    pub fn to_gzip(&self) -> Vec<u8> {
        compress(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a configuration from its ConfigMap's bytes.
    pub fn from_gzip(bytes: &[u8]) -> Result<Self, ConfigError> {
        use std::io::Read;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| ConfigError::Compression(e.to_string()))?;
        if json.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Compression(format!(
                "larger than {MAX_CONFIG_BYTES} bytes decompressed"
            )));
        }
        Self::from_json(&json)
    }

    /// The SPIFFE identity of a ServiceAccount.
    pub fn spiffe_id(&self, namespace: &str, service_account: &str) -> String {
        spiffe_id(&self.trust_domain, namespace, service_account)
    }
}

/// The SPIFFE identity of ServiceAccount `service_account` of `namespace`
/// in `trust_domain`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// Compresses a configuration's JSON as [`ProxyConfig::to_gzip`] does.
pub fn compress(json: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Fast compression: JSON this repetitive still shrinks about 20 times.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(json);
    encoder.finish().unwrap_or_default()
}

fn no_services(services: &Arc<Vec<Service>>) -> bool {
    services.is_empty()
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn refuses_unknown_schemas_and_garbage() {
        let mut config = ProxyConfig {
            schema: SCHEMA.into(),
            namespace: "demo".into(),
            trust_domain: "cluster.local".into(),
            ..Default::default()
        };
        let json = serde_json::to_vec(&config).expect("serializes");
        assert_eq!(ProxyConfig::from_json(&json).expect("reads"), config);
        config.schema = "plexus.dev/proxy-config/v9".into();
        let json = serde_json::to_vec(&config).expect("serializes");
        assert!(matches!(
            ProxyConfig::from_json(&json),
            Err(ConfigError::Schema(_))
        ));
        assert!(matches!(
            ProxyConfig::from_json(b"{not json"),
            Err(ConfigError::Malformed(_))
        ));
    }

    #[test]
    fn gzip_round_trips_and_refuses_corruption() {
        let config = ProxyConfig {
            schema: SCHEMA.into(),
            namespace: "demo".into(),
            trust_domain: "cluster.local".into(),
            ..Default::default()
        };
        let bytes = config.to_gzip();
        assert_eq!(bytes, config.to_gzip(), "deterministic");
        assert_eq!(ProxyConfig::from_gzip(&bytes).expect("reads"), config);
        let mut corrupt = bytes.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        assert!(ProxyConfig::from_gzip(&corrupt).is_err());
        assert!(matches!(
            ProxyConfig::from_gzip(b"plain text"),
            Err(ConfigError::Compression(_))
        ));
    }

    #[test]
    fn selectors_need_every_label() {
        let labels = BTreeMap::from([("app".into(), "a".into()), ("v".into(), "1".into())]);
        assert!(selects(&Selector::new(), &labels));
        assert!(selects(
            &Selector::from([("app".into(), "a".into())]),
            &labels
        ));
        assert!(!selects(
            &Selector::from([("app".into(), "a".into()), ("v".into(), "2".into())]),
            &labels
        ));
    }

    #[test]
    fn enums_read_what_they_write_and_name_the_values_they_know() {
        let json = serde_json::to_string(&[
            RetryOn::Condition(RetryCondition::GatewayError),
            RetryOn::Status(409),
        ])
        .expect("serializes");
        assert_eq!(json, r#"["gateway-error","409"]"#);
        let back: Vec<RetryOn> = serde_json::from_str(&json).expect("reads");
        assert_eq!(back[1], RetryOn::Status(409));
        let error = "sometimes".parse::<RetryOn>().expect_err("unknown");
        assert!(error.to_string().contains("retriable-4xx"), "{error}");
        assert!(serde_json::from_str::<RetryOn>(r#""sometimes""#).is_err());
        assert_eq!(
            "DENY".parse::<AuthorizationAction>(),
            Ok(AuthorizationAction::Deny)
        );
    }
}
