//! The names the webhook (which builds the proxy's container) and the proxy
//! (which reads it) share: environment variables, mount paths, ports, the
//! proxy's user, Secret keys, ALPNs and admin paths. Defined once, here; the
//! webhook sets only variables of [`PROXY_ENV`], and the proxy's `run`
//! command reads exactly those (each side has a test that says so).

use serde::{Deserialize, Serialize};

/// The ConfigMap holding a namespace's proxy configuration.
pub const CONFIGMAP_NAME: &str = "plexus-proxy-config";
/// The ConfigMap `binaryData` key of the configuration (gzip-compressed JSON).
pub const CONFIG_KEY: &str = "config.json.gz";

/// Secret key: certificate (leaf first, then its chain), PEM.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Secret key: private key, PEM.
pub const TLS_KEY_KEY: &str = "tls.key";
/// Secret key: the trust bundle (every root currently trusted), PEM.
pub const CA_CERT_KEY: &str = "ca.crt";

/// Where the proxy's configuration ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/var/run/plexus/config";
/// Where the identity Secret is mounted.
pub const IDENTITY_DIR: &str = "/var/run/plexus/identity";
/// Where the downward API volume with the pod's labels is mounted.
pub const PODINFO_DIR: &str = "/var/run/plexus/podinfo";
/// The file of [`PODINFO_DIR`] holding the pod's labels.
pub const PODINFO_LABELS: &str = "labels";
/// The proxy's binary in its image.
pub const PROXY_BINARY: &str = "/plexus-proxy";

/// Where redirected inbound connections arrive.
pub const INBOUND_PORT: u16 = 4143;
/// Where redirected outbound connections arrive.
pub const OUTBOUND_PORT: u16 = 4140;
/// Health, readiness, metrics and admin endpoints; never redirected.
pub const ADMIN_PORT: u16 = 4191;
/// The proxy's fixed, non-root user and group; the init container exempts
/// its traffic from redirection.
pub const PROXY_UID: u32 = 2102;

/// Admin path: 200 while the process runs.
pub const LIVE_PATH: &str = "/live";
/// Admin path: 200 once the configuration and the certificate are loaded.
pub const READY_PATH: &str = "/ready";
/// Prefix of the admin paths that run an app's probe the webhook rewrote.
pub const APP_HEALTH_PREFIX: &str = "/app-health";

/// ALPN of opaque TCP carried between proxies.
pub const ALPN_TCP: &[u8] = b"plexus.tcp/1";
/// ALPN of HTTP carried between proxies (as HTTP/2, whatever the app spoke).
pub const ALPN_H2: &[u8] = b"plexus.h2/1";

/// The inbound port ([`INBOUND_PORT`]).
pub const ENV_INBOUND_PORT: &str = "PLEXUS_INBOUND_PORT";
/// The outbound port ([`OUTBOUND_PORT`]).
pub const ENV_OUTBOUND_PORT: &str = "PLEXUS_OUTBOUND_PORT";
/// The admin port ([`ADMIN_PORT`]).
pub const ENV_ADMIN_PORT: &str = "PLEXUS_ADMIN_PORT";
/// The configuration's mount ([`CONFIG_DIR`]).
pub const ENV_CONFIG_DIR: &str = "PLEXUS_CONFIG_DIR";
/// The identity's mount ([`IDENTITY_DIR`]).
pub const ENV_IDENTITY_DIR: &str = "PLEXUS_IDENTITY_DIR";
/// The pod labels' mount ([`PODINFO_DIR`]).
pub const ENV_PODINFO_DIR: &str = "PLEXUS_PODINFO_DIR";
/// The app's rewritten probes, a JSON map of [`AppProbe`] by admin path.
pub const ENV_APP_PROBES: &str = "PLEXUS_APP_PROBES";
/// `true`: exit once the app's processes have (Jobs without native sidecars).
pub const ENV_EXIT_WITH_APP: &str = "PLEXUS_EXIT_WITH_APP";
/// How long open connections may take to finish after SIGTERM.
pub const ENV_DRAIN_TIMEOUT: &str = "PLEXUS_DRAIN_TIMEOUT";
/// The log filter.
pub const ENV_LOG: &str = "PLEXUS_LOG";
/// The pod's namespace (downward API).
pub const ENV_POD_NAMESPACE: &str = "PLEXUS_POD_NAMESPACE";
/// The pod's ServiceAccount (downward API): a certificate for another
/// identity is refused.
pub const ENV_SERVICE_ACCOUNT: &str = "PLEXUS_SERVICE_ACCOUNT";
/// The identity Secret the proxy watches through the API.
pub const ENV_IDENTITY_SECRET: &str = "PLEXUS_IDENTITY_SECRET";
/// Threads serving traffic.
pub const ENV_THREADS: &str = "PLEXUS_PROXY_THREADS";
/// Without the redirection: where every outbound connection was going.
pub const ENV_OUTBOUND_ORIGINAL_DST: &str = "PLEXUS_OUTBOUND_ORIGINAL_DST";
/// Without the redirection: where every inbound connection was going.
pub const ENV_INBOUND_ORIGINAL_DST: &str = "PLEXUS_INBOUND_ORIGINAL_DST";

/// Every variable the proxy's `run` command reads.
pub const PROXY_ENV: &[&str] = &[
    ENV_INBOUND_PORT,
    ENV_OUTBOUND_PORT,
    ENV_ADMIN_PORT,
    ENV_CONFIG_DIR,
    ENV_IDENTITY_DIR,
    ENV_PODINFO_DIR,
    ENV_APP_PROBES,
    ENV_EXIT_WITH_APP,
    ENV_DRAIN_TIMEOUT,
    ENV_LOG,
    ENV_POD_NAMESPACE,
    ENV_SERVICE_ACCOUNT,
    ENV_IDENTITY_SECRET,
    ENV_THREADS,
    ENV_OUTBOUND_ORIGINAL_DST,
    ENV_INBOUND_ORIGINAL_DST,
];

/// An app's probe that the webhook rewrote to the proxy's admin port
/// (`/app-health/<container>/<kind>`), as it passes them to the proxy in
/// [`ENV_APP_PROBES`] (a JSON map by admin path): an HTTP GET on localhost,
/// or a TCP connect when `tcp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppProbe {
    pub port: u16,
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
}
