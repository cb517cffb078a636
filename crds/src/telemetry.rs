//! `Telemetry`: metrics, access logs and tracing per workload (Istio's shape).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Duration, PolicyTargetReference, ProviderRef, ResourceStatus, WorkloadSelector, string_enum,
};

/// How telemetry is produced for the selected workloads: which metrics, with
/// which labels, which access logs, and how traces are sampled and tagged. A
/// workload's own policy overrides its namespace's, which overrides the
/// mesh's. Field for field the shape of Istio's Telemetry.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "Telemetry",
    plural = "telemetries",
    namespaced,
    status = "ResourceStatus",
    shortname = "telemetry",
    category = "plexus",
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
pub struct TelemetrySpec {
    /// Workloads the policy applies to; without it, every workload in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// An object the policy attaches to, instead of a selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Objects the policy attaches to, instead of a selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Tracing settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<Tracing>,
    /// Metrics settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metrics>,
    /// Access-log settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_logging: Vec<AccessLogging>,
}

string_enum! {
    /// Which side of a request a setting applies to.
    WorkloadMode {
        /// Both when the workload calls and when it is called.
        ClientAndServer = "CLIENT_AND_SERVER",
        /// When the workload calls others.
        Client = "CLIENT",
        /// When the workload is called.
        Server = "SERVER",
    }
}

/// Selects the traffic a setting applies to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSelector {
    /// CLIENT_AND_SERVER (the default), CLIENT or SERVER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

/// Tracing settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tracing {
    /// Traffic these settings apply to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficSelector>,
    /// Tracing back ends that receive spans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Share of requests sampled, from 0.0 to 100.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_sampling_percentage: Option<f64>,
    /// Propagate trace context but report no spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_span_reporting: Option<bool>,
    /// Tags added to spans, by tag name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Sample on the request ID, so that a trace's sampling is consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_request_id_for_trace_sampling: Option<bool>,
}

/// Where a span tag's value comes from; one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomTag {
    /// A fixed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<LiteralTag>,
    /// An environment variable of the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<NamedValueTag>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedValueTag>,
}

/// A fixed tag value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiteralTag {
    /// The value.
    pub value: String,
}

/// A tag value read from a named source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedValueTag {
    /// Name of the environment variable or header.
    pub name: String,
    /// Value used when the source is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
}

/// Metrics settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Metrics back ends, such as `prometheus`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Changes to individual metrics, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<MetricsOverrides>,
    /// How often metrics are reported, for push-based providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<Duration>,
}

/// A change to the metrics matched.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsOverrides {
    /// Metrics this change applies to; all when unset.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub selector: Option<MetricSelector>,
    /// Stop producing the matched metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Labels to add, change or remove, by label name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

string_enum! {
    /// The mesh's standard metrics.
    StandardMetric {
        /// Every metric.
        AllMetrics = "ALL_METRICS",
        /// Requests handled.
        RequestCount = "REQUEST_COUNT",
        /// Request latency.
        RequestDuration = "REQUEST_DURATION",
        /// Request body sizes.
        RequestSize = "REQUEST_SIZE",
        /// Response body sizes.
        ResponseSize = "RESPONSE_SIZE",
        /// TCP connections opened.
        TcpOpenedConnections = "TCP_OPENED_CONNECTIONS",
        /// TCP connections closed.
        TcpClosedConnections = "TCP_CLOSED_CONNECTIONS",
        /// Bytes sent on TCP connections.
        TcpSentBytes = "TCP_SENT_BYTES",
        /// Bytes received on TCP connections.
        TcpReceivedBytes = "TCP_RECEIVED_BYTES",
        /// gRPC request messages.
        GrpcRequestMessages = "GRPC_REQUEST_MESSAGES",
        /// gRPC response messages.
        GrpcResponseMessages = "GRPC_RESPONSE_MESSAGES",
    }
}

/// Selects metrics.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSelector {
    /// A standard metric: ALL_METRICS, REQUEST_COUNT, REQUEST_DURATION,
    /// REQUEST_SIZE, RESPONSE_SIZE, TCP_OPENED_CONNECTIONS,
    /// TCP_CLOSED_CONNECTIONS, TCP_SENT_BYTES, TCP_RECEIVED_BYTES,
    /// GRPC_REQUEST_MESSAGES or GRPC_RESPONSE_MESSAGES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<StandardMetric>,
    /// A metric by name, instead of a standard one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_metric: Option<String>,
    /// CLIENT_AND_SERVER (the default), CLIENT or SERVER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

string_enum! {
    /// What happens to a metric label.
    TagOperation {
        /// Add the label, or change its value.
        Upsert = "UPSERT",
        /// Remove the label.
        Remove = "REMOVE",
    }
}

/// A change to one metric label.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagOverride {
    /// UPSERT (the default) or REMOVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<TagOperation>,
    /// Expression giving the label's value, for UPSERT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Access-log settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogging {
    /// Traffic these settings apply to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficSelector>,
    /// Log back ends, such as `envoy` (the proxy's standard output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Turn access logs off for the selected workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Only requests this filter accepts are logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AccessLogFilter>,
}

/// Chooses which requests are logged.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogFilter {
    /// Expression on request attributes, such as `response.code >= 400`.
    pub expression: String,
}
