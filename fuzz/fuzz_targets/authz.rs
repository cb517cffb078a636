//! Authorization's path matching as the inbound pipeline does it: the
//! request target is parsed as hyper would, its path normalized
//! (`policy::path::normalize`), then decided by DENY and ALLOW policies
//! with exact, prefix, suffix and presence paths, methods and header
//! conditions. The input is `METHOD\nHOST\nTARGET`. Nothing panics; no
//! normalized path keeps a dot segment; and no spelling of a path under
//! `/admin` gets past the DENY policy that covers it.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use plexus_config::ProxyConfig;
use plexus_proxy::policy::path::normalize;
use plexus_proxy::policy::{Attributes, HttpAttributes, Inbound, Peer};
use serde_json::json;

static INBOUND: LazyLock<Inbound> = LazyLock::new(|| {
    let config: ProxyConfig = serde_json::from_value(json!({
        "schema": plexus_config::SCHEMA, "namespace": "demo", "trustDomain": "cluster.local",
        "outboundPolicy": "ALLOW_ANY",
        "inbound": {"authorization": [
            {"name": "AuthorizationPolicy/demo/no-admin", "action": "DENY",
             "rules": [{"to": [{"paths": ["/admin", "/admin/*"]}]}]},
            {"name": "AuthorizationPolicy/demo/no-secrets", "action": "DENY",
             "rules": [{"to": [{"paths": ["*.key", "/internal"], "notMethods": ["HEAD"]}]}]},
            {"name": "AuthorizationPolicy/demo/web", "action": "ALLOW",
             "rules": [{"from": [{"principals": ["cluster.local/ns/demo/sa/client"]}],
                        "to": [{"methods": ["GET", "POST"], "paths": ["/api/*", "*", "/exact"]}],
                        "when": [{"key": "request.headers[x-team]", "values": ["a*", "*b"]}]},
                       {"to": [{"hosts": ["web.demo.svc.cluster.local", "*.example"],
                                "notPaths": ["/private*"]}]}]}
        ]}
    }))
    .expect("a configuration");
    let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
    Inbound::new(&config, &labels, None).expect("the policies compile")
});

static PEER: LazyLock<Peer> = LazyLock::new(|| {
    Peer::from_spiffe("spiffe://cluster.local/ns/demo/sa/client").expect("a SPIFFE ID")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (Some(method), Some(host), Some(target)) = (lines.next(), lines.next(), lines.next())
    else {
        return;
    };
    let Ok(uri) = target.parse::<http::Uri>() else {
        return;
    };
    let Ok(path) = normalize(uri.path()) else {
        return;
    };
    assert!(
        !path.split('/').any(|s| s == "." || s == ".."),
        "{:?} normalized to {path:?}",
        uri.path()
    );
    let mut headers = HeaderMap::new();
    headers.insert("x-team", http::HeaderValue::from_static("alpha"));
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let attributes = Attributes {
        peer: Some(&PEER),
        source_ip: ip,
        remote_ip: ip,
        destination_ip: ip,
        destination_port: 8080,
        sni: None,
        http: Some(HttpAttributes {
            host,
            method,
            path: &path,
            headers: &headers,
            auth: None,
        }),
    };
    let verdict = INBOUND.authz.decide(&attributes);
    if path == "/admin" || path.starts_with("/admin/") {
        assert!(
            !verdict.allowed(),
            "{:?} (normalized {path:?}) was allowed",
            uri.path()
        );
    }
});
