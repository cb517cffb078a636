//! Security policy of workloads: AuthorizationPolicy, RequestAuthentication
//! (JWT) and local rate limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::route::Origin;
use crate::{HeaderOps, HttpMatch, Selector, is_false};

crate::one_of! {
    /// What an AuthorizationPolicy does with the requests it matches. CUSTOM
    /// (external authorization) is not here: the operator rejects it.
    #[derive(Default)]
    AuthorizationAction {
        /// Allowed; with any ALLOW policy selecting a workload, a request
        /// must match one of them.
        #[default]
        Allow = "ALLOW",
        /// Denied, whatever ALLOW policies say.
        Deny = "DENY",
        /// Marked in logs and metrics; the decision does not change.
        Audit = "AUDIT",
    }
}
/// An AuthorizationPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// What a match does.
    pub action: AuthorizationAction,
    /// A request matches the policy when it matches any rule. An ALLOW policy
    /// without rules allows nothing; a rule without fields matches everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
}

/// A rule: any `from`, any `to` and every `when` must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationRule {
    /// Sources: fields are ANDed, values ORed; `not*` values exclude.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<BTreeMap<String, Vec<String>>>,
    /// Operations, as for sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<BTreeMap<String, Vec<String>>>,
    /// Conditions on request attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<AuthorizationCondition>,
}

/// A condition on a request attribute (`request.headers[x]`,
/// `source.principal`, ...).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationCondition {
    /// The attribute.
    pub key: String,
    /// Values of which one must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values none of which may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// A RequestAuthentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtPolicy {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// Accepted issuers.
    pub rules: Vec<JwtRule>,
}

/// One accepted issuer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// The `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the keys are fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Inline keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Headers carrying the token: (name, prefix). Default: Authorization, `Bearer `.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<(String, String)>,
    /// Query parameters carrying the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Keep the token on the forwarded request.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forward_original_token: bool,
    /// Header receiving the verified payload (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Claims copied into headers: (header, claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<(String, String)>,
}

/// A local rate limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: Selector,
    /// The bucket for requests no route below matches.
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
    /// Share of requests the limit applies to.
    pub enabled_percent: f64,
    /// Share of limited requests actually refused (the rest are counted).
    pub enforced_percent: f64,
}

/// A rate-limited route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRoute {
    /// Name (for metrics).
    pub name: String,
    /// Any of these matches.
    pub matches: Vec<HttpMatch>,
    /// Its bucket.
    pub bucket: TokenBucket,
    /// One bucket per caller identity.
    #[serde(default, skip_serializing_if = "is_false")]
    pub per_source_identity: bool,
}

/// A token bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenBucket {
    /// Capacity.
    pub max_tokens: u32,
    /// Tokens added per fill.
    pub tokens_per_fill: u32,
    /// Fill period.
    pub fill_interval_ms: u64,
}
