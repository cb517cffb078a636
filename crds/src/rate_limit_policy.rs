//! `RateLimitPolicy`: local, per-proxy rate limits (Plexus's own kind).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, HeaderOperations, ResourceStatus, WorkloadSelector};
use crate::virtual_service::HttpMatchRequest;

/// Limits the rate of requests the selected workloads receive, enforced by
/// each workload's proxy with token buckets: no rate-limit service to run.
/// The first-class replacement for Istio's EnvoyFilter local rate-limit
/// pattern. Buckets can be per route and per calling identity.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "plexus.dev",
    version = "v1alpha1",
    kind = "RateLimitPolicy",
    plural = "ratelimitpolicies",
    namespaced,
    status = "ResourceStatus",
    shortname = "rlp",
    category = "plexus",
    printcolumn(
        name = "Max Tokens",
        type_ = "integer",
        json_path = ".spec.tokenBucket.maxTokens"
    ),
    printcolumn(
        name = "Fill Interval",
        type_ = "string",
        json_path = ".spec.tokenBucket.fillInterval"
    ),
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
pub struct RateLimitPolicySpec {
    /// Workloads whose inbound requests are limited; without it, every
    /// workload in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// The bucket for requests that no entry of `routes` matches; such
    /// requests are not limited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_bucket: Option<TokenBucket>,
    /// Give each calling identity (SPIFFE ID of the peer; plaintext callers
    /// share one) its own copy of the bucket, so one noisy client cannot
    /// exhaust everyone's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_source_identity: Option<bool>,
    /// Buckets for particular routes, tried in order; the first that matches
    /// applies instead of `tokenBucket`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RateLimitRoute>,
    /// HTTP status of the answer to a limited request; 429 when unset. The
    /// answer's body is `local_rate_limited`, and it carries
    /// `x-ratelimit-limit` (the bucket's size), `x-ratelimit-remaining` (0),
    /// `x-ratelimit-reset` and `retry-after` (seconds to the next token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u32>,
    /// Header changes on the answers to limited requests, after the
    /// rate-limit headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_response_headers: Option<HeaderOperations>,
    /// Share of requests, from 0 to 100, that the limiter counts; 100 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_percent: Option<f64>,
    /// Share of over-limit requests, from 0 to 100, that are refused; the rest
    /// are only counted in metrics (a dry run). 100 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_percent: Option<f64>,
    /// Prefix of this limiter's metric labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_prefix: Option<String>,
}

/// A token bucket: a request takes a token, or is refused when none is
/// left; `tokensPerFill` tokens are added every `fillInterval`, up to
/// `maxTokens`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenBucket {
    /// Capacity of the bucket, and the tokens it starts with: the largest burst.
    pub max_tokens: u32,
    /// Tokens added at each fill; 1 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_fill: Option<u32>,
    /// Time between fills, such as `1s`.
    pub fill_interval: Duration,
}

/// A bucket for the requests of particular routes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRoute {
    /// Name of the route, used in metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions, any of which selects the route, in VirtualService's match
    /// shape; empty matches every request.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// The route's bucket.
    pub token_bucket: TokenBucket,
    /// Give each calling identity its own copy of this route's bucket;
    /// inherits the policy's setting when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_source_identity: Option<bool>,
}
