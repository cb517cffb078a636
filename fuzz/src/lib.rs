//! What several fuzz targets share: the test key set and a configuration
//! whose inbound policy exercises every stage of the request pipeline.

use serde_json::{Value, json};

/// The issuer of the test tokens.
pub const ISSUER: &str = "https://issuer.example";

/// The proxy's test keys (RSA, EC P-256, EC P-384) as a JWKS: public keys
/// only, so that no token the fuzzer makes can verify.
pub fn jwks() -> String {
    let keys: Vec<Value> = [
        include_str!("../../proxy/tests/fixtures/jwt/rsa.jwk.json"),
        include_str!("../../proxy/tests/fixtures/jwt/ec-a.jwk.json"),
        include_str!("../../proxy/tests/fixtures/jwt/ec-384.jwk.json"),
    ]
    .iter()
    .map(|k| serde_json::from_str(k).expect("a JWK"))
    .collect();
    json!({ "keys": keys }).to_string()
}

/// A proxy configuration for pods labelled `app: web` with a
/// RequestAuthentication, DENY, ALLOW and AUDIT policies and a rate limit
/// on `/limited`.
pub fn policy_config() -> Value {
    json!({
        "schema": plexus_config::SCHEMA, "namespace": "demo", "trustDomain": "cluster.local",
        "outboundPolicy": "ALLOW_ANY",
        "inbound": {
            "authentication": [{"name": "RequestAuthentication/demo/jwt", "selector": {"app": "web"},
                     "rules": [{"issuer": ISSUER, "audiences": ["api"], "jwks": jwks(),
                                "fromHeaders": [{"name": "authorization", "prefix": "Bearer "}],
                                "fromParams": ["token"],
                                "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]}]}],
            "authorization": [
                {"name": "AuthorizationPolicy/demo/no-admin", "action": "DENY",
                 "rules": [{"to": [{"paths": ["/admin", "/admin/*"]}]}]},
                {"name": "AuthorizationPolicy/demo/audit", "action": "AUDIT",
                 "rules": [{"to": [{"methods": ["DELETE"]}]}]},
                {"name": "AuthorizationPolicy/demo/web", "action": "ALLOW",
                 "rules": [{"to": [{"methods": ["GET", "HEAD", "POST", "DELETE"]}]},
                           {"from": [{"requestPrincipals": ["*"]}]}]}
            ],
            "rateLimits": [{"name": "RateLimitPolicy/demo/web", "selector": {"app": "web"},
                            "status": 429, "enabledPercent": 100.0, "enforcedPercent": 100.0,
                            "routes": [{"name": "limited", "matches": [{"uri": {"prefix": "/limited"}}],
                                        "bucket": {"maxTokens": 1, "tokensPerFill": 1,
                                                   "fillIntervalMs": 60000}}]}]
        }
    })
}
