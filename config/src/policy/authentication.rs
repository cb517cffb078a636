//! RequestAuthentication: the JWTs a workload accepts. A request carrying a
//! token that does not verify is refused (401); one without a token passes
//! without a request principal, for AuthorizationPolicies to decide.

use serde::{Deserialize, Serialize};

use crate::route::Origin;
use crate::{Selector, is_false};

/// A RequestAuthentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtPolicy {
    /// Its origin.
    pub name: Origin,
    /// Which workloads.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
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
    /// The key set (JWKS, JSON) in force: inline in the resource, or what
    /// the operator fetched from `jwks_uri`. None when there is none yet:
    /// every token of the issuer is then refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Where the operator fetches the keys (the proxy never does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Headers carrying the token; with no location at all, `Authorization:
    /// Bearer <token>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<TokenHeader>,
    /// Query parameters carrying the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Keep the token on the request to the app (else it is removed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub forward_original_token: bool,
    /// Header receiving the verified payload (base64url, as Envoy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Claims copied into headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
}

/// A header a token is read from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenHeader {
    /// Its name.
    pub name: String,
    /// What comes before the token (`Bearer `); may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// A claim copied into a request header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// The header.
    pub header: String,
    /// The claim; nested names separated by dots.
    pub claim: String,
}
