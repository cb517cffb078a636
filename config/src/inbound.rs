//! The inbound side of a namespace's configuration: which policies apply to
//! which of its workloads (by label selector), mTLS modes and telemetry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::route::Origin;
use crate::{AuthorizationDefaults, AuthorizationPolicy, JwtPolicy, RateLimit, is_false};

/// Policies of a namespace's workloads. Each entry's `selector` is evaluated
/// by the proxy against its pod's labels; no selector means every workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    /// mTLS modes by precedence: the first entry whose selector matches
    /// applies. The last entry has no selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mtls: Vec<MtlsRule>,
    /// Every matching policy applies: DENY, then ALLOW (with at least one
    /// matching ALLOW policy, a request must match one of them); AUDIT
    /// marks. Namespace-wide and root-namespace policies included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<AuthorizationPolicy>,
    /// The Mesh's authorization settings.
    #[serde(default, skip_serializing_if = "is_default")]
    pub authorization_defaults: AuthorizationDefaults,
    /// JWT validation; every matching entry applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authentication: Vec<JwtPolicy>,
    /// Local rate limits; every matching entry applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Telemetry by precedence: the first entry whose selector matches applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telemetry: Vec<TelemetryRule>,
}

fn is_default(value: &AuthorizationDefaults) -> bool {
    *value == AuthorizationDefaults::default()
}

/// Labels a workload must carry; empty means every workload.
pub type Selector = BTreeMap<String, String>;

/// Whether a workload's labels satisfy a selector.
pub fn selects(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Effective mTLS of the workloads a selector picks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MtlsRule {
    /// Its origin (`PeerAuthentication/<ns>/<name>` or `Mesh/default`).
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// The mode.
    pub mode: MtlsMode,
    /// Modes of single ports (the workload's container ports).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, MtlsMode>,
}

/// Inbound mTLS.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// mTLS only.
    Strict,
    /// mTLS or plaintext.
    #[default]
    Permissive,
    /// Plaintext; TLS is passed through.
    Disable,
}

/// Telemetry of the workloads a selector picks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryRule {
    /// Its origins, most specific first.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// Access logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingPolicy>,
    /// Metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsPolicy>,
}

crate::one_of! {
    /// Which proxies of a call a Telemetry setting applies to.
    #[derive(Default)]
    WorkloadMode {
        /// Both the caller's and the server's.
        #[default]
        ClientAndServer = "CLIENT_AND_SERVER",
        /// The caller's (outbound).
        Client = "CLIENT",
        /// The server's (inbound).
        Server = "SERVER",
    }
}

/// Access logging.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// Logging on or off.
    pub enabled: bool,
    /// Providers named by the Telemetry; the proxy logs to stdout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Which side logs.
    pub mode: WorkloadMode,
}

/// Tracing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracingPolicy {
    /// Share of requests sampled, in percent.
    pub sampling_percent: f64,
    /// Providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Spans are not reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_span_reporting: bool,
    /// Literal tags added to spans.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub literal_tags: BTreeMap<String, String>,
}

/// Metrics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsPolicy {
    /// Providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Standard metrics turned off (`REQUEST_COUNT`, ...; `ALL_METRICS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
    /// Reporting interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval_ms: Option<u64>,
}
