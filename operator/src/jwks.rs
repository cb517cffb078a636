//! The key sets of RequestAuthentications' `jwksUri`s: the operator fetches
//! them (the proxies never reach out), refreshes them every
//! `--jwks-refresh-interval` (Istio's default: 20 minutes), retries a failed
//! fetch sooner, and hands the compiler what it has ([`FetchedJwks`]): the
//! last set that held a usable key stays in force through failed fetches.
//! A key rotation at the issuer (a new `kid`) is in the proxies' hands
//! within one refresh interval.
//!
//! Which hosts may be fetched can be limited (`--jwks-allowed-hosts`): an
//! operator that fetches any URL a namespace's user writes is a way into
//! the cluster's network, so production installs should list their issuers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio::time::Instant;

use plexus_crds::request_authentication::RequestAuthentication;

use crate::compile::FetchedJwks;

/// The largest key set read.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// A fetch's timeout when the rule gives none (Istio's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A `jwksUri` the operator can fetch: http(s), with a host.
pub fn parse_uri(uri: &str) -> Result<http::Uri, String> {
    let parsed: http::Uri = uri
        .parse()
        .map_err(|e| format!("{uri:?} is not a URL: {e}"))?;
    match (parsed.scheme_str(), parsed.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(parsed),
        _ => Err(format!("{uri:?} is not an http(s) URL")),
    }
}

/// How many keys of a JWKS the proxies can verify with, or why none.
pub fn usable_keys(jwks: &str) -> Result<usize, String> {
    let set: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("is not a JSON Web Key Set: {e}"))?;
    let keys = set
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("is not a JSON Web Key Set: no \"keys\" list")?;
    let usable = keys
        .iter()
        .filter_map(|k| serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.clone()).ok())
        .filter(|k| jsonwebtoken::DecodingKey::from_jwk(k).is_ok())
        .count();
    if usable == 0 {
        return Err(format!(
            "holds no key the proxies can verify with ({} keys: RSA, EC P-256/P-384, Ed25519 and HMAC are)",
            keys.len()
        ));
    }
    Ok(usable)
}

/// Whether `host` is one of `allowed` (`*.example.com` names subdomains);
/// every host when `allowed` is empty.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    allowed.is_empty()
        || allowed
            .iter()
            .any(|pattern| match pattern.strip_prefix('*') {
                Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
                None => host.eq_ignore_ascii_case(pattern),
            })
}

/// The `jwksUri`s of RequestAuthentications (rules without inline keys),
/// each with its fetch timeout.
pub fn wanted<'a>(
    requests: impl IntoIterator<Item = &'a RequestAuthentication>,
) -> BTreeMap<String, Duration> {
    requests
        .into_iter()
        .flat_map(|ra| &ra.spec.jwt_rules)
        .filter(|rule| rule.jwks.is_none())
        .filter_map(|rule| {
            let timeout = rule
                .timeout
                .as_ref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(DEFAULT_TIMEOUT);
            Some((rule.jwks_uri.clone()?, timeout))
        })
        .collect()
}

/// How the key sets are kept.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time between two fetches of a key set that was fetched.
    pub refresh: Duration,
    /// Time before a failed fetch is tried again (at most `refresh`).
    pub retry: Duration,
    /// Hosts that may be fetched; any when empty.
    pub allowed_hosts: Vec<String>,
}

struct Entry {
    fetched: FetchedJwks,
    next: Instant,
}

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<bytes::Bytes>,
>;

/// The key sets, as fetched so far.
pub struct Jwks {
    settings: Settings,
    entries: Mutex<BTreeMap<String, Entry>>,
    client: HttpClient,
}

impl Jwks {
    /// The fetcher, with the system's CA certificates for https URIs (none
    /// when the system has none: https fetches then fail, and say so).
    pub fn new(settings: Settings) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "no system CA certificates: https jwksUris cannot be verified");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = tls.https_or_http().enable_http1().build();
        Ok(Self {
            settings,
            entries: Mutex::default(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// What the compiler reads: every key set fetched or tried.
    pub fn snapshot(&self) -> BTreeMap<String, FetchedJwks> {
        self.entries
            .lock()
            .map(|e| {
                e.iter()
                    .map(|(uri, entry)| (uri.clone(), entry.fetched.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fetches what `wanted` names (URIs with their timeouts) when due,
    /// forgets what it no longer names; `changed` is told when what the
    /// compiler would read changed. Every second, until the process ends.
    pub async fn run(
        self: Arc<Self>,
        wanted: impl Fn() -> BTreeMap<String, Duration>,
        changed: Arc<Notify>,
    ) {
        loop {
            if self.refresh_due(&wanted()).await {
                changed.notify_one();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One round: whether anything the compiler reads changed.
    pub async fn refresh_due(&self, wanted: &BTreeMap<String, Duration>) -> bool {
        let now = Instant::now();
        let due: Vec<(String, Duration)> = {
            let Ok(mut entries) = self.entries.lock() else {
                return false;
            };
            entries.retain(|uri, _| wanted.contains_key(uri));
            wanted
                .iter()
                .filter(|(uri, _)| entries.get(*uri).is_none_or(|e| e.next <= now))
                .map(|(uri, timeout)| (uri.clone(), *timeout))
                .collect()
        };
        let results =
            futures::future::join_all(due.iter().map(|(uri, timeout)| self.fetch(uri, *timeout)))
                .await;
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let mut changed = false;
        for ((uri, _), result) in due.into_iter().zip(results) {
            let previous = entries.get(&uri).map(|e| e.fetched.clone());
            let mut fetched = previous.clone().unwrap_or_default();
            let next = match result {
                Ok(keys) => {
                    if fetched.keys.as_ref() != Some(&keys) {
                        tracing::info!(%uri, "key set fetched");
                    }
                    fetched.keys = Some(keys);
                    fetched.error = None;
                    now + self.settings.refresh
                }
                Err(error) => {
                    tracing::warn!(%uri, %error, kept = fetched.keys.is_some(),
                        "fetching a key set failed");
                    fetched.error = Some(error);
                    now + self.settings.retry.min(self.settings.refresh)
                }
            };
            changed |= previous.as_ref() != Some(&fetched);
            entries.insert(uri, Entry { fetched, next });
        }
        changed
    }

    /// Fetches a key set: its text, or why not.
    async fn fetch(&self, uri: &str, timeout: Duration) -> Result<String, String> {
        let parsed = parse_uri(uri)?;
        let host = parsed.host().unwrap_or_default();
        if !host_allowed(host, &self.settings.allowed_hosts) {
            return Err(format!(
                "the operator may not fetch from {host} (--jwks-allowed-hosts: {})",
                self.settings.allowed_hosts.join(",")
            ));
        }
        let request = http::Request::get(parsed)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e}: {}", source_chain(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the key set: {e}"))?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| "the key set is not UTF-8".to_owned())
        };
        let text = tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| format!("timed out after {timeout:?}"))??;
        usable_keys(&text).map_err(|e| format!("the answer {e}"))?;
        Ok(text)
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        out.push(e.to_string());
        source = e.source();
    }
    out.join(": ")
}

#[cfg(test)]
mod tests;
