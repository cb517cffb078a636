//! The decision table of Istio's authorization documentation, and the rest
//! of its semantics: precedence of DENY, ALLOW and AUDIT, allow-nothing and
//! allow-all, every `not` field, every `when` key, path normalization
//! attempts, opaque TCP, trust domain aliases and the Mesh's default.

use std::net::IpAddr;

use http::HeaderMap;
use plexus_config::{AuthorizationDefaults, AuthorizationPolicy};
use serde_json::{Value, json};

use super::*;
use crate::policy::attributes::{HttpAttributes, Peer, remote_ip};
use crate::policy::jwt::Claims;
use crate::policy::path::normalize;

fn policy(name: &str, action: &str, rules: Value) -> AuthorizationPolicy {
    let mut spec = json!({"name": format!("AuthorizationPolicy/foo/{name}"), "action": action});
    if !rules.is_null() {
        spec["rules"] = rules;
    }
    serde_json::from_value(spec).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn authorizer(policies: &[AuthorizationPolicy]) -> Authorizer {
    with_defaults(policies, AuthorizationDefaults::default(), "cluster.local")
}

fn with_defaults(
    policies: &[AuthorizationPolicy],
    defaults: AuthorizationDefaults,
    trust_domain: &str,
) -> Authorizer {
    Authorizer::new(policies, &defaults, trust_domain).expect("compiles")
}

/// A request: defaults are a GET of `/` to `httpbin.foo:8000` on port 8000
/// from `sleep` in `foo` at 10.0.0.5.
#[derive(Clone)]
struct Req {
    peer: Option<&'static str>,
    source: &'static str,
    remote: &'static str,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    port: u16,
    headers: Vec<(&'static str, &'static str)>,
    claims: Option<Value>,
    sni: Option<&'static str>,
    tcp: bool,
}

impl Default for Req {
    fn default() -> Self {
        Self {
            peer: Some("spiffe://cluster.local/ns/foo/sa/sleep"),
            source: "10.0.0.5",
            remote: "10.0.0.5",
            method: "GET",
            path: "/",
            host: "httpbin.foo:8000",
            port: 8000,
            headers: Vec::new(),
            claims: None,
            sni: None,
            tcp: false,
        }
    }
}

fn claims(payload: Value) -> Claims {
    let map = payload.as_object().cloned().unwrap_or_default();
    let get = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
    let audiences = match map.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    Claims {
        principal: format!(
            "{}/{}",
            get("iss").unwrap_or_default(),
            get("sub").unwrap_or_default()
        ),
        issuer: get("iss").unwrap_or_default(),
        audiences,
        presenter: get("azp"),
        payload: map,
    }
}

/// The verdict on `req`: None when allowed, else (policy, rule, reason).
fn decide(a: &Authorizer, req: &Req) -> Option<(String, Option<usize>, &'static str)> {
    verdict(a, req).denial.map(|d| (d.policy, d.rule, d.reason))
}

fn verdict(a: &Authorizer, req: &Req) -> Verdict {
    let peer = req.peer.and_then(Peer::from_spiffe);
    let mut headers = HeaderMap::new();
    for (k, v) in &req.headers {
        headers.append(*k, v.parse().expect("header value"));
    }
    let path = normalize(req.path).expect("normalizes");
    let claims = req.claims.clone().map(claims);
    let ip = |s: &str| s.parse::<IpAddr>().expect("address");
    let attributes = Attributes {
        peer: peer.as_ref(),
        source_ip: ip(req.source),
        remote_ip: ip(req.remote),
        destination_ip: ip("10.0.0.9"),
        destination_port: req.port,
        sni: req.sni,
        http: (!req.tcp).then(|| HttpAttributes {
            host: req.host,
            method: req.method,
            path: &path,
            headers: &headers,
            auth: claims.as_ref(),
        }),
    };
    a.decide(&attributes)
}

fn allowed(a: &Authorizer, req: Req) -> bool {
    decide(a, &req).is_none()
}

fn from_ns(ns: &'static str, sa: &'static str) -> Option<&'static str> {
    Some(Box::leak(
        format!("spiffe://cluster.local/ns/{ns}/sa/{sa}").into_boxed_str(),
    ))
}

#[test]
fn without_policies_everything_is_allowed() {
    assert!(allowed(&authorizer(&[]), Req::default()));
    assert!(allowed(
        &authorizer(&[]),
        Req {
            peer: None,
            ..Req::default()
        }
    ));
}

#[test]
fn the_documented_allow_policy() {
    // Istio's example: sleep in default, or anyone in namespace test, may GET
    // /info* or POST /data, with a JWT issued by accounts.google.com.
    let a = authorizer(&[policy(
        "httpbin",
        "ALLOW",
        json!([{
            "from": [{"principals": ["cluster.local/ns/default/sa/sleep"]}, {"namespaces": ["test"]}],
            "to": [{"methods": ["GET"], "paths": ["/info*"]}, {"methods": ["POST"], "paths": ["/data"]}],
            "when": [{"key": "request.auth.claims[iss]", "values": ["https://accounts.google.com"]}]
        }]),
    )]);
    let google = Some(json!({"iss": "https://accounts.google.com", "sub": "u1"}));
    let ok = |peer, method, path, claims: &Option<Value>| {
        allowed(
            &a,
            Req {
                peer,
                method,
                path,
                claims: claims.clone(),
                ..Req::default()
            },
        )
    };
    assert!(ok(from_ns("default", "sleep"), "GET", "/info/x", &google));
    assert!(ok(from_ns("test", "anyone"), "POST", "/data", &google));
    assert!(!ok(from_ns("test", "anyone"), "POST", "/info", &google));
    assert!(!ok(from_ns("default", "other"), "GET", "/info", &google));
    assert!(!ok(from_ns("default", "sleep"), "GET", "/info", &None));
    assert!(!ok(None, "GET", "/info", &google));
    assert_eq!(
        decide(
            &a,
            &Req {
                peer: None,
                ..Req::default()
            }
        ),
        Some((
            "AuthorizationPolicy/foo/httpbin".into(),
            None,
            "no-allow-match"
        ))
    );
}

#[test]
fn deny_comes_first_then_allow_and_audit_decides_nothing() {
    let deny_get = policy("deny-get", "DENY", json!([{"to": [{"methods": ["GET"]}]}]));
    let allow_all = policy("allow-all", "ALLOW", json!([{}]));
    let audit_admin = policy(
        "audit-admin",
        "AUDIT",
        json!([{"to": [{"paths": ["/admin*"]}]}]),
    );
    let a = authorizer(&[allow_all.clone(), deny_get.clone(), audit_admin.clone()]);
    // DENY wins over an ALLOW that matches too.
    assert_eq!(
        decide(&a, &Req::default()),
        Some(("AuthorizationPolicy/foo/deny-get".into(), Some(0), "denied"))
    );
    assert!(allowed(
        &a,
        Req {
            method: "POST",
            ..Req::default()
        }
    ));
    // AUDIT marks what it matches, allowed or denied, and changes nothing.
    let post_admin = verdict(
        &a,
        &Req {
            method: "POST",
            path: "/admin/x",
            ..Req::default()
        },
    );
    assert!(post_admin.allowed());
    assert_eq!(
        post_admin.audited,
        [("AuthorizationPolicy/foo/audit-admin".to_owned(), 0)]
    );
    let get_admin = verdict(
        &a,
        &Req {
            path: "/admin",
            ..Req::default()
        },
    );
    assert!(!get_admin.allowed());
    assert_eq!(get_admin.audited.len(), 1);
    assert!(
        verdict(
            &a,
            &Req {
                method: "POST",
                ..Req::default()
            }
        )
        .audited
        .is_empty()
    );
    // Alone, AUDIT allows everything.
    assert!(allowed(
        &authorizer(&[audit_admin]),
        Req {
            path: "/admin",
            ..Req::default()
        }
    ));
    // The second rule of a DENY policy is named.
    let two = policy(
        "two",
        "DENY",
        json!([{"to": [{"paths": ["/a"]}]}, {"to": [{"paths": ["/b"]}]}]),
    );
    assert_eq!(
        decide(
            &authorizer(&[two]),
            &Req {
                path: "/b",
                ..Req::default()
            }
        ),
        Some(("AuthorizationPolicy/foo/two".into(), Some(1), "denied"))
    );
}

#[test]
fn allow_nothing_and_allow_all() {
    let nothing = policy("allow-nothing", "ALLOW", Value::Null);
    let all = policy("allow-all", "ALLOW", json!([{}]));
    assert_eq!(
        decide(&authorizer(std::slice::from_ref(&nothing)), &Req::default()),
        Some((
            "AuthorizationPolicy/foo/allow-nothing".into(),
            None,
            "allow-nothing"
        ))
    );
    assert!(allowed(
        &authorizer(std::slice::from_ref(&all)),
        Req {
            peer: None,
            ..Req::default()
        }
    ));
    // Another ALLOW policy that matches opens what allow-nothing closes.
    assert!(allowed(
        &authorizer(&[nothing.clone(), all]),
        Req::default()
    ));
    let get = policy("get", "ALLOW", json!([{"to": [{"methods": ["GET"]}]}]));
    let a = authorizer(&[nothing, get]);
    assert!(allowed(&a, Req::default()));
    assert_eq!(
        decide(
            &a,
            &Req {
                method: "PUT",
                ..Req::default()
            }
        ),
        Some((
            "AuthorizationPolicy/foo/allow-nothing,AuthorizationPolicy/foo/get".into(),
            None,
            "no-allow-match"
        ))
    );
    // A DENY policy without rules denies nothing.
    assert!(allowed(
        &authorizer(&[policy("deny-nothing", "DENY", Value::Null)]),
        Req::default()
    ));
}

/// (field, value, a request that has it, one that does not).
fn field_cases() -> Vec<(&'static str, Value, Req, Req)> {
    let base = Req::default;
    vec![
        (
            "principals",
            json!(["cluster.local/ns/foo/sa/sleep"]),
            base(),
            Req {
                peer: from_ns("foo", "other"),
                ..base()
            },
        ),
        (
            "principals",
            json!(["*"]),
            base(),
            Req {
                peer: None,
                ..base()
            },
        ),
        (
            "principals",
            json!(["cluster.local/ns/foo/*"]),
            base(),
            Req {
                peer: from_ns("bar", "sleep"),
                ..base()
            },
        ),
        (
            "principals",
            json!(["*/sa/sleep"]),
            base(),
            Req {
                peer: from_ns("foo", "curl"),
                ..base()
            },
        ),
        (
            "namespaces",
            json!(["foo"]),
            base(),
            Req {
                peer: from_ns("bar", "sleep"),
                ..base()
            },
        ),
        (
            "serviceAccounts",
            json!(["foo/sleep"]),
            base(),
            Req {
                peer: from_ns("foo", "curl"),
                ..base()
            },
        ),
        (
            "ipBlocks",
            json!(["10.0.0.0/24"]),
            base(),
            Req {
                source: "10.0.1.5",
                ..base()
            },
        ),
        (
            "ipBlocks",
            json!(["10.0.0.5"]),
            base(),
            Req {
                source: "10.0.0.6",
                ..base()
            },
        ),
        (
            "remoteIpBlocks",
            json!(["203.0.113.0/24"]),
            Req {
                remote: "203.0.113.7",
                ..base()
            },
            base(),
        ),
        (
            "requestPrincipals",
            json!(["https://issuer/alice"]),
            Req {
                claims: Some(json!({"iss": "https://issuer", "sub": "alice"})),
                ..base()
            },
            Req {
                claims: Some(json!({"iss": "https://issuer", "sub": "bob"})),
                ..base()
            },
        ),
        (
            "requestPrincipals",
            json!(["*"]),
            Req {
                claims: Some(json!({"iss": "https://issuer", "sub": "bob"})),
                ..base()
            },
            base(),
        ),
        (
            "hosts",
            json!(["httpbin.foo"]),
            base(),
            Req {
                host: "other.foo",
                ..base()
            },
        ),
        (
            "hosts",
            json!(["HTTPBIN.foo:8000"]),
            base(),
            Req {
                host: "httpbin.foo:9000",
                ..base()
            },
        ),
        (
            "hosts",
            json!(["*.foo"]),
            base(),
            Req {
                host: "httpbin.bar",
                ..base()
            },
        ),
        (
            "ports",
            json!([8000]),
            base(),
            Req {
                port: 9000,
                ..base()
            },
        ),
        (
            "methods",
            json!(["GET", "HEAD"]),
            base(),
            Req {
                method: "DELETE",
                ..base()
            },
        ),
        (
            "paths",
            json!(["/api/*"]),
            Req {
                path: "/api/v1",
                ..base()
            },
            Req {
                path: "/apix",
                ..base()
            },
        ),
        (
            "paths",
            json!(["*.json"]),
            Req {
                path: "/a.json",
                ..base()
            },
            Req {
                path: "/a.xml",
                ..base()
            },
        ),
        (
            "paths",
            json!(["/exact"]),
            Req {
                path: "/exact?q=1",
                ..base()
            },
            Req {
                path: "/exact/",
                ..base()
            },
        ),
    ]
}

#[test]
fn every_field_and_its_not_field() {
    for (field, value, with, without) in field_cases() {
        let place = match field {
            "hosts" | "ports" | "methods" | "paths" => "to",
            _ => "from",
        };
        let rule = |name: &str| json!([{ place: [{ name: value.clone() }] }]);
        let not = format!("not{}{}", field[..1].to_uppercase(), &field[1..]);
        let a = authorizer(&[policy("field", "ALLOW", rule(field))]);
        let not_a = authorizer(&[policy("not-field", "ALLOW", rule(&not))]);
        // A `paths` request carries its query: it is not compared.
        let path_of = |r: &Req| r.path.split('?').next().map(str::to_owned);
        let with_ = Req {
            path: Box::leak(path_of(&with).unwrap_or_default().into_boxed_str()),
            ..with
        };
        assert!(allowed(&a, with_.clone()), "{field} {value} must match");
        assert!(
            !allowed(&a, without.clone()),
            "{field} {value} must not match"
        );
        assert!(!allowed(&not_a, with_), "{not} {value} must exclude");
        assert!(allowed(&not_a, without), "{not} {value} must admit");
    }
}

#[test]
fn conditions_test_every_attribute() {
    let jwt = json!({"iss": "https://issuer", "sub": "alice", "aud": ["api", "web"], "azp": "cli",
                     "groups": ["admin", "dev"], "realm": {"roles": ["ops"]}, "level": 3});
    let base = || Req {
        claims: Some(jwt.clone()),
        headers: vec![("x-tenant", "acme"), ("x-tag", "a"), ("x-tag", "b")],
        sni: Some("outbound_.8000_._.httpbin.foo.svc.cluster.local"),
        remote: "203.0.113.7",
        ..Req::default()
    };
    for (key, values, matches) in [
        ("request.headers[x-tenant]", json!(["acme"]), true),
        ("request.headers[X-Tenant]", json!(["ac*"]), true),
        ("request.headers[x-tenant]", json!(["other"]), false),
        ("request.headers[x-tag]", json!(["a,b"]), true),
        ("request.headers[x-missing]", json!(["*"]), false),
        ("source.ip", json!(["10.0.0.0/8"]), true),
        ("source.ip", json!(["192.168.0.1"]), false),
        ("remote.ip", json!(["203.0.113.0/24"]), true),
        ("source.namespace", json!(["foo"]), true),
        (
            "source.principal",
            json!(["cluster.local/ns/foo/sa/sleep"]),
            true,
        ),
        ("source.serviceAccount", json!(["foo/sleep"]), true),
        (
            "request.auth.principal",
            json!(["https://issuer/alice"]),
            true,
        ),
        ("request.auth.audiences", json!(["web"]), true),
        ("request.auth.audiences", json!(["other"]), false),
        ("request.auth.presenter", json!(["cli"]), true),
        ("request.auth.claims[groups]", json!(["admin"]), true),
        ("request.auth.claims[groups]", json!(["root"]), false),
        ("request.auth.claims[realm][roles]", json!(["ops"]), true),
        ("request.auth.claims[level]", json!(["3"]), true),
        ("request.auth.claims[iss]", json!(["*issuer"]), true),
        ("request.auth.claims[iss]", json!(["*other"]), false),
        ("destination.ip", json!(["10.0.0.9"]), true),
        ("destination.port", json!(["8000"]), true),
        ("destination.port", json!(["9000"]), false),
        ("connection.sni", json!(["*.svc.cluster.local"]), true),
    ] {
        let with_values = policy(
            "when",
            "ALLOW",
            json!([{"when": [{"key": key, "values": values}]}]),
        );
        assert_eq!(
            allowed(&authorizer(&[with_values]), base()),
            matches,
            "{key} {values}"
        );
        let with_not = policy(
            "when-not",
            "ALLOW",
            json!([{"when": [{"key": key, "notValues": values}]}]),
        );
        assert_eq!(
            allowed(&authorizer(&[with_not]), base()),
            !matches,
            "{key} notValues {values}"
        );
    }
    // Every condition of a rule must hold.
    let both = policy(
        "both",
        "ALLOW",
        json!([{"when": [{"key": "source.namespace", "values": ["foo"]},
                          {"key": "request.headers[x-tenant]", "values": ["other"]}]}]),
    );
    assert!(!allowed(&authorizer(&[both]), base()));
}

#[test]
fn normalized_paths_cannot_slip_past_a_deny() {
    let a = authorizer(&[
        policy(
            "deny-admin",
            "DENY",
            json!([{"to": [{"paths": ["/admin", "/admin/*"]}]}]),
        ),
        policy(
            "allow-info",
            "ALLOW",
            json!([{"to": [{"paths": ["/info*", "/admin*"]}]}]),
        ),
    ]);
    for path in [
        "/admin",
        "/info/../admin",
        "/%2e%2e/admin",
        "/info/%2E%2E/admin",
        "/info/./../admin/x",
        "/info\\..\\admin",
        "/%61dmin",
    ] {
        assert_eq!(
            decide(
                &a,
                &Req {
                    path,
                    ..Req::default()
                }
            )
            .map(|d| d.2),
            Some("denied"),
            "{path}"
        );
    }
    assert!(allowed(
        &a,
        Req {
            path: "/info/./x",
            ..Req::default()
        }
    ));
    // An encoded slash is not a slash: the app decides what it means.
    assert_eq!(
        decide(
            &a,
            &Req {
                path: "/admin%2Fx",
                ..Req::default()
            }
        )
        .map(|d| d.2),
        None
    );
}

#[test]
fn opaque_connections_read_http_fields_to_fail_closed() {
    let tcp = |peer, port| Req {
        peer,
        port,
        tcp: true,
        ..Req::default()
    };
    // ALLOW: a rule that tests HTTP never matches a connection.
    let allow = authorizer(&[policy(
        "allow",
        "ALLOW",
        json!([{"from": [{"principals": ["cluster.local/ns/foo/sa/sleep"]}], "to": [{"methods": ["GET"]}]},
               {"from": [{"principals": ["cluster.local/ns/foo/sa/tcp"]}], "to": [{"ports": [9000]}]}]),
    )]);
    assert!(!allowed(&allow, tcp(from_ns("foo", "sleep"), 8000)));
    assert!(allowed(&allow, tcp(from_ns("foo", "tcp"), 9000)));
    assert!(!allowed(&allow, tcp(from_ns("foo", "tcp"), 9001)));
    // DENY: HTTP fields are left out, the rest of the rule decides.
    let deny = authorizer(&[policy(
        "deny",
        "DENY",
        json!([{"to": [{"methods": ["GET"], "ports": [9000]}]}]),
    )]);
    assert_eq!(
        decide(&deny, &tcp(from_ns("foo", "sleep"), 9000)),
        Some(("AuthorizationPolicy/foo/deny".into(), Some(0), "denied"))
    );
    assert!(allowed(&deny, tcp(from_ns("foo", "sleep"), 9001)));
    let deny_jwt = authorizer(&[policy(
        "deny-jwt",
        "DENY",
        json!([{"from": [{"notRequestPrincipals": ["*"]}]}]),
    )]);
    assert!(!allowed(&deny_jwt, tcp(from_ns("foo", "sleep"), 9000)));
    // L4 fields work on TCP as on HTTP.
    let by_principal = authorizer(&[policy(
        "l4",
        "ALLOW",
        json!([{"from": [{"principals": ["cluster.local/ns/foo/sa/tcp"]}]}]),
    )]);
    assert!(allowed(&by_principal, tcp(from_ns("foo", "tcp"), 9000)));
    assert!(!allowed(&by_principal, tcp(from_ns("foo", "other"), 9000)));
    assert!(!allowed(&by_principal, tcp(None, 9000)));
}

#[test]
fn cluster_local_names_the_mesh_trust_domain() {
    let a = with_defaults(
        &[policy(
            "td",
            "ALLOW",
            json!([{"from": [{"principals": ["cluster.local/ns/foo/sa/sleep"]}]}]),
        )],
        AuthorizationDefaults::default(),
        "mesh.example",
    );
    assert!(allowed(
        &a,
        Req {
            peer: Some("spiffe://mesh.example/ns/foo/sa/sleep"),
            ..Req::default()
        }
    ));
    assert!(allowed(&a, Req::default()));
    assert!(!allowed(
        &a,
        Req {
            peer: Some("spiffe://other.example/ns/foo/sa/sleep"),
            ..Req::default()
        }
    ));
}

#[test]
fn the_mesh_can_deny_what_no_policy_allows() {
    let defaults = AuthorizationDefaults {
        deny_unless_allowed: true,
        trusted_proxies: 0,
    };
    let none = with_defaults(&[], defaults.clone(), "cluster.local");
    assert_eq!(
        decide(&none, &Req::default()),
        Some(("Mesh/default".into(), None, "default-deny"))
    );
    let get = with_defaults(
        &[policy(
            "get",
            "ALLOW",
            json!([{"to": [{"methods": ["GET"]}]}]),
        )],
        defaults,
        "cluster.local",
    );
    assert!(allowed(&get, Req::default()));
    assert!(!allowed(
        &get,
        Req {
            method: "POST",
            ..Req::default()
        }
    ));
}

#[test]
fn the_remote_address_comes_from_trusted_proxies() {
    let peer: IpAddr = "10.0.0.5".parse().expect("address");
    let mut headers = HeaderMap::new();
    headers.append(
        "x-forwarded-for",
        "203.0.113.7, 198.51.100.2".parse().expect("value"),
    );
    headers.append("x-forwarded-for", "10.1.1.1".parse().expect("value"));
    let remote = |n| remote_ip(&headers, peer, n).to_string();
    assert_eq!(remote(0), "10.0.0.5");
    assert_eq!(remote(1), "10.1.1.1");
    assert_eq!(remote(3), "203.0.113.7");
    assert_eq!(
        remote(4),
        "10.0.0.5",
        "fewer entries than trusted proxies: the peer"
    );
    assert_eq!(
        remote_ip(&HeaderMap::new(), peer, 2).to_string(),
        "10.0.0.5"
    );
}

#[test]
fn peers_read_from_spiffe_ids() {
    assert_eq!(
        Peer::from_spiffe("spiffe://cluster.local/ns/foo/sa/sleep"),
        Some(Peer {
            principal: "cluster.local/ns/foo/sa/sleep".into(),
            namespace: "foo".into(),
            service_account: "foo/sleep".into(),
        })
    );
    for bad in [
        "cluster.local/ns/foo/sa/sleep",
        "spiffe://td/ns/foo",
        "spiffe://td/x/foo/sa/b",
        "spiffe://td/ns/a/sa/b/c",
    ] {
        assert_eq!(Peer::from_spiffe(bad), None, "{bad}");
    }
}
