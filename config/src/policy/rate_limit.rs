//! Local rate limits: token buckets in each selected proxy, per workload,
//! per route and per calling identity.

use serde::{Deserialize, Serialize};

use crate::route::Origin;
use crate::{HeaderOps, HttpMatch, Selector, is_false};

/// A RateLimitPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    /// The bucket for requests no route below matches (none: not limited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<TokenBucket>,
    /// One bucket per caller identity.
    #[serde(default, skip_serializing_if = "is_false")]
    pub per_source_identity: bool,
    /// Buckets for matching requests; the first match counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RateLimitRoute>,
    /// Status of a limited request.
    pub status: u16,
    /// Headers added to limited responses.
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub limited_response_headers: HeaderOps,
    /// Share of requests the limit applies to, in percent.
    pub enabled_percent: f64,
    /// Share of limited requests actually refused (the rest are only
    /// counted), in percent.
    pub enforced_percent: f64,
    /// The `stat_prefix` label of its metrics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stat_prefix: String,
}

/// A rate-limited route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRoute {
    /// Name (for metrics).
    pub name: String,
    /// Any of these matches; none matches every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatch>,
    /// Its bucket.
    pub bucket: TokenBucket,
    /// One bucket per caller identity (the operator resolved the
    /// policy's setting into it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub per_source_identity: bool,
}

/// A token bucket: it starts full; `tokens_per_fill` tokens are added every
/// `fill_interval_ms`, up to `max_tokens`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct TokenBucket {
    /// Capacity.
    pub max_tokens: u32,
    /// Tokens added per fill.
    pub tokens_per_fill: u32,
    /// Fill period.
    pub fill_interval_ms: u64,
}
