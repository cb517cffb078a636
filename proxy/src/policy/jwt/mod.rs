//! RequestAuthentication: JWTs verified in the server proxy. The key sets
//! come in the configuration (inline, or fetched by the operator: a proxy
//! never reaches out). Signatures are checked by `jsonwebtoken` (ring);
//! claims (`exp`, `nbf`, `iss`, `aud`, with 60 s of clock skew) here, typed
//! strictly: a claim of the wrong type makes the token malformed.
//!
//! A request without a token passes, without a request principal. One with
//! a token that does not verify in every respect is refused (401). A token
//! that verified is cached until it expires: the next request carrying it
//! costs a lookup, not a signature check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue};
use plexus_config::{JwtPolicy, JwtRule};
use serde_json::{Map, Value};

use crate::policy::counters::Counters;
use cache::TailHash;
use keys::{Key, key_algorithm_is, keys};
use token::{audiences, numeric, optional_string, segments};

mod cache;
mod keys;
#[cfg(test)]
mod tests;
mod token;

/// Seconds a token's `exp` and `nbf` may be off.
pub const CLOCK_SKEW_SECS: f64 = 60.0;
/// Tokens remembered at most.
const MAX_CACHED: usize = 10_000;

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `<iss>/<sub>`.
    pub principal: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
    pub payload: Map<String, Value>,
}

impl Claims {
    /// The values of a claim, nested names in turn: a string, or each
    /// string of a list (numbers and booleans as written).
    pub fn claim_values(&self, path: &[String]) -> Vec<String> {
        let mut value = None;
        let mut object = Some(&self.payload);
        for name in path {
            value = object.and_then(|o| o.get(name.as_str()));
            object = value.and_then(Value::as_object);
        }
        match value {
            Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
            Some(v) => scalar(v).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Why a token was refused: a metric label.
pub type Reason = &'static str;

/// What authentication concluded about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// No token anywhere this pod's rules look.
    Anonymous,
    /// A token verified, by a rule of `policy`.
    Verified {
        policy: &'a str,
        claims: Arc<Claims>,
        /// The rule's counter of verified tokens.
        counters: &'a Counters<1>,
    },
    /// A token did not: 401.
    Refused {
        /// The RequestAuthentication whose rule refused it, or "" when no
        /// rule knows its issuer.
        policy: &'a str,
        reason: Reason,
    },
}

/// Where a token is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Header { name: HeaderName, prefix: String },
    Param(String),
    Cookie(String),
}

#[derive(Debug)]
struct Issuer {
    policy: String,
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<Key>,
    locations: Vec<Location>,
    forward: bool,
    payload_header: Option<HeaderName>,
    claim_headers: Vec<(HeaderName, String)>,
    /// What verification depends on: the issuer, the key set and the
    /// audiences.
    fingerprint: u64,
    counters: Counters<1>,
}

#[derive(Debug)]
struct Cached {
    fingerprint: u64,
    claims: Arc<Claims>,
    exp: Option<f64>,
}

/// The rules of the RequestAuthentications selecting this pod.
#[derive(Debug, Default)]
pub struct Authenticator {
    issuers: Vec<Issuer>,
    /// Verified tokens, shared by the configuration versions that follow.
    cache: Arc<Mutex<HashMap<String, Cached, TailHash>>>,
    /// The counter of requests without a token.
    pub anonymous: Counters<1>,
    /// Signatures checked so far (a cached token needs none).
    signature_checks: AtomicU64,
}

fn fingerprint(rule: &JwtRule) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one((
        &rule.issuer,
        &rule.jwks,
        &rule.audiences,
    ))
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::try_from(name).map_err(|e| format!("header {name:?}: {e}"))
}

impl Issuer {
    fn compile(policy: &str, rule: &JwtRule) -> Result<Self, String> {
        let mut locations = Vec::new();
        for h in &rule.from_headers {
            locations.push(Location::Header {
                name: header_name(&h.name)?,
                prefix: h.prefix.clone(),
            });
        }
        locations.extend(rule.from_params.iter().cloned().map(Location::Param));
        locations.extend(rule.from_cookies.iter().cloned().map(Location::Cookie));
        if locations.is_empty() {
            // Istio's (Envoy's) defaults.
            locations.push(Location::Header {
                name: AUTHORIZATION,
                prefix: "Bearer ".into(),
            });
            locations.push(Location::Param("access_token".into()));
        }
        Ok(Self {
            policy: policy.to_owned(),
            issuer: rule.issuer.clone(),
            audiences: rule.audiences.clone(),
            keys: rule
                .jwks
                .as_deref()
                .map(|jwks| keys(jwks, &rule.issuer))
                .unwrap_or_default(),
            locations,
            forward: rule.forward_original_token,
            payload_header: rule
                .output_payload_to_header
                .as_deref()
                .map(header_name)
                .transpose()?,
            claim_headers: rule
                .output_claim_to_headers
                .iter()
                .map(|c| Ok((header_name(&c.header)?, c.claim.clone())))
                .collect::<Result<_, String>>()?,
            fingerprint: fingerprint(rule),
            counters: Counters::default(),
        })
    }
}

/// A token found, and where.
struct Found {
    token: String,
    location: Location,
}

fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn param(query: Option<&str>, name: &str) -> Option<String> {
    crate::routing::matches::query_values(query, name).next()
}

impl Location {
    fn find(&self, parts: &http::request::Parts) -> Option<String> {
        match self {
            Self::Header { name, prefix } => parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| {
                    if prefix.is_empty() {
                        Some(v)
                    } else {
                        // The scheme is case-insensitive (`bearer x` too).
                        v.get(..prefix.len())
                            .filter(|p| p.eq_ignore_ascii_case(prefix))
                            .map(|_| &v[prefix.len()..])
                    }
                })
                .map(|t| t.trim().to_owned()),
            Self::Param(name) => param(parts.uri.query(), name),
            Self::Cookie(name) => cookie(&parts.headers, name).map(str::to_owned),
        }
        .filter(|t| !t.is_empty())
    }
}

impl Authenticator {
    /// The rules of `policies` (those selecting this pod), combined;
    /// `previous` lends its cache of verified tokens.
    pub fn new<'p>(
        policies: impl IntoIterator<Item = &'p JwtPolicy>,
        previous: Option<&Authenticator>,
    ) -> Result<Self, String> {
        let mut issuers = Vec::new();
        for policy in policies {
            for rule in &policy.rules {
                issuers.push(
                    Issuer::compile(&policy.name, rule)
                        .map_err(|e| format!("{}: {e}", policy.name))?,
                );
            }
        }
        Ok(Self {
            issuers,
            cache: previous.map(|p| p.cache.clone()).unwrap_or_default(),
            anonymous: Counters::default(),
            signature_checks: AtomicU64::new(0),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Authenticates a request at `now` (seconds since the epoch): finds
    /// its tokens, verifies them, and prepares the request for the app
    /// (tokens removed unless forwarded, claims copied into headers; those
    /// headers are never taken from the caller).
    pub fn authenticate(&self, parts: &mut http::request::Parts, now: f64) -> Outcome<'_> {
        if self.issuers.is_empty() {
            return Outcome::Anonymous;
        }
        for issuer in &self.issuers {
            for name in issuer
                .payload_header
                .iter()
                .chain(issuer.claim_headers.iter().map(|(h, _)| h))
            {
                parts.headers.remove(name);
            }
        }
        let mut found: Vec<Found> = Vec::new();
        for location in self.issuers.iter().flat_map(|i| &i.locations) {
            if let Some(token) = location.find(parts)
                && !found
                    .iter()
                    .any(|f| f.token == token && f.location == *location)
            {
                found.push(Found {
                    token,
                    location: location.clone(),
                });
            }
        }
        let mut verified: Option<(Arc<Claims>, &Issuer, &Found)> = None;
        for f in &found {
            match self.verify(f, now) {
                Ok((claims, issuer)) => {
                    if verified.is_none() {
                        verified = Some((claims, issuer, f));
                    }
                }
                Err((policy, reason)) => return Outcome::Refused { policy, reason },
            }
        }
        let Some((claims, issuer, f)) = verified else {
            return Outcome::Anonymous;
        };
        if !issuer.forward
            && let Location::Header { name, .. } = &f.location
        {
            parts.headers.remove(name);
        }
        if let Some(header) = &issuer.payload_header
            && let Some((_, payload, _)) = segments(&f.token)
            && let Ok(value) = HeaderValue::from_str(payload)
        {
            parts.headers.insert(header.clone(), value);
        }
        for (header, claim) in &issuer.claim_headers {
            let path: Vec<String> = claim.split('.').map(str::to_owned).collect();
            if let Some(value) = claims.claim_values(&path).first()
                && let Ok(value) = HeaderValue::from_str(value)
            {
                parts.headers.insert(header.clone(), value);
            }
        }
        Outcome::Verified {
            policy: &issuer.policy,
            claims,
            counters: &issuer.counters,
        }
    }

    /// Verifies one token against the rule of its issuer that looks where
    /// it was found.
    fn verify(&self, f: &Found, now: f64) -> Result<(Arc<Claims>, &Issuer), (&str, Reason)> {
        if let Some(hit) = self.cached(f, now) {
            return Ok(hit);
        }
        fn refuse(issuer: Option<&Issuer>, reason: Reason) -> (&str, Reason) {
            (issuer.map_or("", |i| i.policy.as_str()), reason)
        }
        let (header, payload, signature) = segments(&f.token).ok_or(refuse(None, "malformed"))?;
        let payload_json: Map<String, Value> = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(refuse(None, "malformed"))?;
        let iss = optional_string(&payload_json, "iss").map_err(|r| refuse(None, r))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| Some(&i.issuer) == iss.as_ref() && i.locations.contains(&f.location))
            .ok_or(refuse(None, "unknown-issuer"))?;
        let fail = |reason| refuse(Some(issuer), reason);
        // The header: a known algorithm (`none` is not one).
        let jws_header = jsonwebtoken::decode_header(&f.token).map_err(|_| {
            let raw = URL_SAFE_NO_PAD.decode(header).ok();
            let alg = raw
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
            fail(if alg.is_some() {
                "unsupported-algorithm"
            } else {
                "malformed"
            })
        })?;
        let alg = jws_header.alg;
        if issuer.keys.is_empty() {
            return Err(fail("no-keys"));
        }
        let by_kid: Vec<&Key> = match &jws_header.kid {
            Some(kid) => {
                let named: Vec<&Key> = issuer
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    issuer.keys.iter().filter(|k| k.kid.is_none()).collect()
                } else {
                    named
                }
            }
            None => issuer.keys.iter().collect(),
        };
        let message = format!("{header}.{payload}");
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let verified = by_kid
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .filter(|k| k.alg.is_none_or(|a| key_algorithm_is(a, alg)))
            .any(|k| {
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), &k.key, alg)
                    .unwrap_or(false)
            });
        if !verified {
            return Err(fail("bad-signature"));
        }
        let exp = numeric(&payload_json, "exp").map_err(fail)?;
        let nbf = numeric(&payload_json, "nbf").map_err(fail)?;
        if exp.is_some_and(|exp| now > exp + CLOCK_SKEW_SECS) {
            return Err(fail("expired"));
        }
        if nbf.is_some_and(|nbf| now + CLOCK_SKEW_SECS < nbf) {
            return Err(fail("not-yet-valid"));
        }
        let aud = audiences(&payload_json).map_err(fail)?;
        if !issuer.audiences.is_empty() && !aud.iter().any(|a| issuer.audiences.contains(a)) {
            return Err(fail("wrong-audience"));
        }
        let sub = optional_string(&payload_json, "sub").map_err(fail)?;
        let presenter = optional_string(&payload_json, "azp").map_err(fail)?;
        let claims = Arc::new(Claims {
            principal: format!("{}/{}", issuer.issuer, sub.unwrap_or_default()),
            issuer: issuer.issuer.clone(),
            audiences: aud,
            presenter,
            payload: payload_json,
        });
        self.remember(&f.token, issuer.fingerprint, &claims, exp, now);
        Ok((claims, issuer))
    }

    /// A token verified before (and not expired since) under a rule, with
    /// the same issuer, keys and audiences, that looks where it was found:
    /// no parsing, no signature check.
    fn cached(&self, f: &Found, now: f64) -> Option<(Arc<Claims>, &Issuer)> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(f.token.as_str())?;
        if entry.exp.is_some_and(|exp| now > exp + CLOCK_SKEW_SECS) {
            return None;
        }
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.fingerprint == entry.fingerprint && i.locations.contains(&f.location))?;
        Some((entry.claims.clone(), issuer))
    }

    fn remember(
        &self,
        token: &str,
        fingerprint: u64,
        claims: &Arc<Claims>,
        exp: Option<f64>,
        now: f64,
    ) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, e| e.exp.is_some_and(|exp| now <= exp + CLOCK_SKEW_SECS));
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(
            token.to_owned(),
            Cached {
                fingerprint,
                claims: claims.clone(),
                exp,
            },
        );
    }

    /// How many signatures this version checked.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// How many verified tokens are remembered.
    pub fn cached_tokens(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}
