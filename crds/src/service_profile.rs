//! `ServiceProfile`: per-route policy for a service (Linkerd's shape).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, ResourceStatus};

/// Describes the routes of a service, so that proxies can apply per-route
/// timeouts and retries, classify responses as failures and keep per-route
/// metrics; its retry budget caps retries across all routes. Named after the
/// fully qualified host it describes, such as
/// `myapp.default.svc.cluster.local`, as in Linkerd. Field for field the shape
/// of Linkerd's ServiceProfile.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "ServiceProfile",
    namespaced,
    status = "ResourceStatus",
    shortname = "sp",
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
pub struct ServiceProfileSpec {
    /// Routes of the service; a request takes the first route it matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// Caps retries to the service at a share of its requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// Sends the service's traffic to other authorities by weight (a split).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst_overrides: Vec<WeightedDst>,
    /// Ports whose traffic is opaque TCP: no protocol detection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opaque_ports: Vec<u32>,
}

/// One route of the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Name of the route, used in metrics, such as `GET /api/users`.
    pub name: String,
    /// Which requests belong to the route.
    pub condition: RequestMatch,
    /// Which responses count as failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_classes: Vec<ResponseClass>,
    /// Whether failed requests on this route may be retried (within the budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_retryable: Option<bool>,
    /// Time allowed for a request on this route, such as `3000ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// A condition on requests; every field that is set must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    /// Conditions that must all hold (objects of this same shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "nested_list")]
    pub all: Vec<RequestMatch>,
    /// Conditions at least one of which must hold (objects of this same shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "nested_list")]
    pub any: Vec<RequestMatch>,
    /// A condition that must not hold (an object of this same shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nested_object")]
    pub not: Option<Box<RequestMatch>>,
    /// Regular expression the whole request path must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// HTTP method of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Classifies responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseClass {
    /// Which responses are in the class.
    pub condition: ResponseMatch,
    /// Whether responses in the class are failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_failure: Option<bool>,
}

/// A condition on responses; every field that is set must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMatch {
    /// Conditions that must all hold (objects of this same shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "nested_list")]
    pub all: Vec<ResponseMatch>,
    /// Conditions at least one of which must hold (objects of this same shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "nested_list")]
    pub any: Vec<ResponseMatch>,
    /// A condition that must not hold (an object of this same shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "nested_object")]
    pub not: Option<Box<ResponseMatch>>,
    /// Range the status code must fall in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusRange>,
}

/// An inclusive range of HTTP status codes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusRange {
    /// Lowest status code in the range; 100 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Highest status code in the range; 599 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// Linkerd's retry budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries allowed per original request, such as 0.2 for 20% more load.
    pub retry_ratio: f64,
    /// Retries always allowed per second, whatever the ratio.
    pub min_retries_per_second: u32,
    /// Window over which the ratio is computed, such as `10s`.
    pub ttl: Duration,
}

/// Another authority receiving a share of the traffic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightedDst {
    /// The authority, such as `myapp-v2.default.svc.cluster.local:8080`.
    pub authority: String,
    /// Weight relative to the other overrides: an integer or a quantity such as `500m`.
    pub weight: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
}

// CRD schemas cannot refer to themselves, so nested matches are objects whose
// fields the API server keeps as they are; the operator validates them.
fn nested_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

fn nested_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}
