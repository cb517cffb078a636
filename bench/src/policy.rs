//! The security policy of `--policy`: resources as users write them,
//! compiled by the operator's compiler, for the server proxy. Ten
//! AuthorizationPolicy rules (a DENY policy of four, an ALLOW policy of
//! six whose last rule is the one that matches), one RequestAuthentication
//! rule with an inline key (every request carries the same token, so after
//! the first one it is a cache hit) and a per-identity rate limit far
//! above the rate (it never triggers). All three are namespace-wide, so the
//! proxy's pod labels do not matter.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use plexus_config::Inbound;
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.bench.invalid";
const KEY_PEM: &str = include_str!("../../proxy/tests/fixtures/jwt/ec-a.pem");
const KEY_JWK: &str = include_str!("../../proxy/tests/fixtures/jwt/ec-a.jwk.json");

fn policy(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "plexus.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": "bench"}, "spec": spec})
}

fn objects() -> anyhow::Result<Vec<Value>> {
    let jwk: Value = serde_json::from_str(KEY_JWK)?;
    let client = "cluster.local/ns/bench/sa/client";
    Ok(vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "bench", "labels": {"plexus.dev/inject": "enabled"}}}),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "upstream", "namespace": "bench", "labels": {"app": "upstream"}},
               "spec": {"serviceAccountName": "upstream",
                        // The proxy's container, as the webhook names it.
                        "containers": [{"name": "app"}, {"name": "plexus-proxy"}]},
               "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}),
        policy(
            "AuthorizationPolicy",
            "deny",
            json!({
            "action": "DENY",
            "rules": [
                {"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]},
                {"to": [{"operation": {"methods": ["DELETE", "PATCH"]}}]},
                {"from": [{"source": {"namespaces": ["untrusted"]}}]},
                {"when": [{"key": "request.headers[x-debug]", "values": ["*"]}]},
            ]}),
        ),
        policy(
            "AuthorizationPolicy",
            "allow",
            json!({
            "action": "ALLOW",
            "rules": [
                {"from": [{"source": {"principals": ["cluster.local/ns/ops/sa/admin"]}}]},
                {"to": [{"operation": {"methods": ["GET"], "paths": ["/public/*"]}}]},
                {"from": [{"source": {"namespaces": ["monitoring"]}}],
                 "to": [{"operation": {"paths": ["/metrics"]}}]},
                {"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]},
                {"when": [{"key": "request.headers[x-canary]", "values": ["yes"]}]},
                {"from": [{"source": {"principals": [client],
                                      "requestPrincipals": [format!("{ISSUER}/*")]}}],
                 "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/*"]}}],
                 "when": [{"key": "request.auth.claims[scope]", "values": ["bench"]}]},
            ]}),
        ),
        policy(
            "RequestAuthentication",
            "jwt",
            json!({
            "jwtRules": [{"issuer": ISSUER, "jwks": json!({"keys": [jwk]}).to_string()}]}),
        ),
        policy(
            "RateLimitPolicy",
            "generous",
            json!({
            "perSourceIdentity": true,
            "tokenBucket": {"maxTokens": 1_000_000, "tokensPerFill": 1_000_000, "fillInterval": "1s"}}),
        ),
    ])
}

/// The server proxy's inbound policy, as the operator compiles it; fails
/// unless every resource is accepted and enforced.
pub fn inbound() -> anyhow::Result<Inbound> {
    let input =
        plexus_operator::snapshot::input_from_objects(objects()?, "plexus-system", "cluster.local")
            .map_err(|e| anyhow::anyhow!(e))?;
    let output = plexus_operator::compile::compile(&input);
    for (key, verdict) in &output.verdicts {
        let accepted = verdict.accepted();
        anyhow::ensure!(accepted.status, "{}: {}", key.origin(), accepted.message);
    }
    let config = output
        .configs
        .get("bench")
        .context("no configuration for namespace bench")?;
    anyhow::ensure!(
        config.inbound.authorization.len() == 2
            && config.inbound.authentication.len() == 1
            && config.inbound.rate_limits.len() == 1,
        "the compiled policy is not the one described"
    );
    Ok(config.inbound.clone())
}

/// The token every request carries: valid for a day.
pub fn token() -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({"iss": ISSUER, "sub": "bench", "scope": "bench", "exp": now + 86_400});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("ec-a".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(KEY_PEM.as_bytes())?;
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}
