use std::collections::BTreeMap;

use plexus_config::{MtlsMode, ProxyConfig};
use serde_json::json;

use super::*;

fn config(inbound: serde_json::Value) -> ProxyConfig {
    serde_json::from_value(json!({
        "schema": plexus_config::SCHEMA, "namespace": "demo", "trustDomain": "cluster.local",
        "outboundPolicy": "ALLOW_ANY", "inbound": inbound
    }))
    .expect("a configuration")
}

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_owned(), app.to_owned())].into()
}

#[test]
fn a_pod_takes_the_policies_that_select_it() {
    let config = config(json!({
        "mtls": [
            {"name": "PeerAuthentication/demo/web", "selector": {"app": "web"}, "mode": "STRICT",
             "ports": {"9000": "PERMISSIVE"}},
            {"name": "Mesh/default", "mode": "PERMISSIVE"}
        ],
        "authorization": [{"name": "AuthorizationPolicy/demo/web", "selector": {"app": "web"},
                           "action": "ALLOW"}],
        "rateLimits": [{"name": "RateLimitPolicy/demo/db", "selector": {"app": "db"}, "status": 429,
                        "enabledPercent": 100.0, "enforcedPercent": 100.0,
                        "bucket": {"maxTokens": 1, "tokensPerFill": 1, "fillIntervalMs": 1000}}]
    }));
    let web = Inbound::new(&config, &labels("web"), None).expect("compiles");
    assert_eq!(web.mtls_mode(8080), MtlsMode::Strict);
    assert_eq!(web.mtls_mode(9000), MtlsMode::Permissive);
    assert!(web.needs_http() && web.authz.restricts() && web.limits.is_empty());
    let db = Inbound::new(&config, &labels("db"), None).expect("compiles");
    assert_eq!(db.mtls_mode(8080), MtlsMode::Permissive);
    assert!(db.needs_http() && !db.authz.restricts() && !db.limits.is_empty());
    let other = Inbound::new(&config, &labels("other"), None).expect("compiles");
    assert!(!other.needs_http());
    assert_eq!(Inbound::default().mtls_mode(80), MtlsMode::Permissive);
}

#[test]
fn a_policy_the_proxy_cannot_compile_rejects_the_configuration() {
    let bad = config(json!({
        "authorization": [{"name": "AuthorizationPolicy/demo/bad", "action": "DENY",
                           "rules": [{"from": [{"ipBlocks": ["10.0.0.0/40"]}]}]}]
    }));
    let error = Inbound::new(&bad, &labels("web"), None).expect_err("rejected");
    assert!(error.contains("AuthorizationPolicy/demo/bad"), "{error}");
}
