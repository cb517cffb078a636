//! RequestAuthentication end to end: resources as users write them, the
//! operator's compiler (and its key set fetcher, against an issuer on
//! loopback), proxies on loopback, and what reaches the app. Tokens are
//! signed with the fixture keys of `tests/fixtures/jwt`.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::world::{Answer, NS, World, host, send, service, workload};
use support::{count, http_client, metrics};

const ISSUER: &str = "https://issuer.example";
const PARTNER: &str = "https://partner.example";
const NO_LABELS: &[(&str, &str)] = &[];
const API: &[(&str, &str)] = &[("app", "api")];
const ADMIN: &[(&str, &str)] = &[("app", "admin")];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The JWKS of fixture keys `keys`, on one line (it goes into YAML).
fn jwks(keys: &[&str]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::from_str(&fixture(&format!("{k}.jwk.json"))).expect("a JWK"))
        .collect();
    json!({ "keys": keys }).to_string()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// A token of `iss` for `sub` (audience `api`, valid for ten minutes) with
/// `extra` claims, signed by fixture key `key` naming its `kid`.
fn token(key: &str, iss: &str, sub: &str, extra: Value) -> String {
    let mut claims = json!({"iss": iss, "sub": sub, "aud": "api",
                            "exp": now() as u64 + 600, "nbf": now() as u64 - 10});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        claims[k] = v;
    }
    let pem = fixture(&format!("{key}.pem"));
    let (encoding, alg) = if key == "rsa" {
        (EncodingKey::from_rsa_pem(pem.as_bytes()), Algorithm::RS256)
    } else {
        (EncodingKey::from_ec_pem(pem.as_bytes()), Algorithm::ES256)
    };
    let mut header = Header::new(alg);
    header.kid = Some(key.to_owned());
    jsonwebtoken::encode(&header, &claims, &encoding.expect("a key")).expect("signs")
}

/// An unsigned token (`alg: none`) with the claims of a valid one.
fn unsigned(sub: &str) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({"iss": ISSUER, "sub": sub, "aud": "api", "exp": now() as u64 + 600});
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The world of workloads `api` (127.0.0.151, Service at 127.0.10.151) and
/// `admin` (127.0.0.152), with `resources`, and a caller (alice) of each.
async fn world(
    name: &str,
    resources: &str,
    fetched: BTreeMap<String, plexus_operator::compile::FetchedJwks>,
) -> (World, SocketAddr, SocketAddr) {
    let workloads = [
        workload("api", "127.0.0.151", API),
        workload("admin", "127.0.0.152", ADMIN),
    ];
    let services = vec![
        service("api", "127.0.10.151", API),
        service("admin", "127.0.10.152", ADMIN),
    ];
    let resources = resources.to_owned();
    let mut world =
        World::start_with_jwks(name, &workloads, services, |_| resources, fetched).await;
    let (api, _) = world
        .client_as(NS, "alice", NO_LABELS, "127.0.10.151:80")
        .await;
    let (admin, _) = world
        .client_as(NS, "alice", NO_LABELS, "127.0.10.152:80")
        .await;
    (world, api, admin)
}

/// The headers the app saw (it echoes them when asked with `x-echo`).
fn seen(answer: &Answer) -> BTreeMap<String, String> {
    answer
        .body
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn jwt_count(world: &World, workload: &str, policy: &str, outcome: &str) -> u64 {
    count(
        &metrics(&world.servers[workload].state),
        &format!(r#"plexus_proxy_jwt_total{{policy="{policy}",outcome="{outcome}"}}"#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_where_rules_say() {
    let resources = format!(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: RequestAuthentication
metadata: {{name: api-jwt}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  jwtRules:
  - issuer: {ISSUER}
    audiences: [api, api.example]
    jwks: '{both}'
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {{header: x-jwt-team, claim: org.team}}
    - {{header: x-jwt-sub, claim: sub}}
---
apiVersion: plexus.dev/v1alpha1
kind: RequestAuthentication
metadata: {{name: partner-jwt}}
spec:
  targetRef: {{kind: Service, name: api}}
  jwtRules:
  - issuer: {PARTNER}
    jwks: '{partner}'
    fromHeaders: [{{name: x-partner-token, prefix: "Token "}}]
    fromParams: [token]
    fromCookies: [session]
    forwardOriginalToken: true
"#,
        both = jwks(&["ec-a", "rsa"]),
        partner = jwks(&["ec-b"]),
    );
    let (world, api, _) = world("jwt-verify", &resources, BTreeMap::new()).await;
    world.assert_enforced("RequestAuthentication/demo/api-jwt");
    world.assert_enforced("RequestAuthentication/demo/partner-jwt");
    assert!(world.programmed["RequestAuthentication/demo/api-jwt"].0);
    let client = http_client(false);
    let call = |headers: Vec<(&'static str, String)>, path: &'static str| {
        let client = client.clone();
        async move {
            let mut headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            headers.push(("x-echo", "1"));
            send(&client, api, "GET", path, &host("api"), &headers).await
        }
    };

    // No token: authentication passes without a principal (no policy asks
    // for one here).
    assert_eq!(call(vec![], "/").await.status, 200);

    // Valid tokens of both keys (told apart by kid); what reaches the app.
    let alice = token("ec-a", ISSUER, "alice", json!({"org": {"team": "core"}}));
    let answer = call(
        vec![
            ("authorization", bearer(&alice)),
            ("x-jwt-team", "forged".into()),
        ],
        "/",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let headers = seen(&answer);
    assert_eq!(headers.get("x-jwt-team").map(String::as_str), Some("core"));
    assert_eq!(headers.get("x-jwt-sub").map(String::as_str), Some("alice"));
    assert_eq!(
        headers.get("x-jwt-payload"),
        alice.split('.').nth(1).map(str::to_owned).as_ref()
    );
    assert!(
        !headers.contains_key("authorization"),
        "the token is not forwarded: {headers:?}"
    );
    let rsa = token(
        "rsa",
        ISSUER,
        "bob",
        json!({"aud": ["other", "api.example"]}),
    );
    let answer = call(
        vec![
            ("authorization", bearer(&rsa)),
            ("x-jwt-team", "forged".into()),
        ],
        "/",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        !seen(&answer).contains_key("x-jwt-team"),
        "a caller never sets claim headers"
    );

    // Invalid tokens: 401 with a Bearer challenge, never the app.
    let before = world.servers["api"].app.total();
    let cases = [
        (
            "expired",
            token("ec-a", ISSUER, "alice", json!({"exp": now() as u64 - 120})),
        ),
        (
            "not-yet-valid",
            token("ec-a", ISSUER, "alice", json!({"nbf": now() as u64 + 600})),
        ),
        ("bad-signature", token("ec-b", ISSUER, "alice", json!({}))),
        ("unsupported-algorithm", unsigned("alice")),
        (
            "unknown-issuer",
            token("ec-a", "https://stranger.example", "alice", json!({})),
        ),
        (
            "wrong-audience",
            token("ec-a", ISSUER, "alice", json!({"aud": "billing"})),
        ),
        ("malformed", "not.a.token".to_owned()),
    ];
    for (why, bad) in &cases {
        let answer = call(vec![("authorization", bearer(bad))], "/").await;
        assert_eq!(answer.status, 401, "{why}: {answer:?}");
        assert_eq!(answer.body, "Jwt verification fails", "{why}");
        let challenge = answer.headers["www-authenticate"].to_str().expect("ascii");
        assert!(challenge.starts_with("Bearer"), "{why}: {challenge}");
    }
    assert_eq!(
        world.servers["api"].app.total(),
        before,
        "no refused request reaches the app"
    );
    for reason in [
        "expired",
        "not-yet-valid",
        "bad-signature",
        "unsupported-algorithm",
        "wrong-audience",
    ] {
        assert_eq!(
            jwt_count(&world, "api", "RequestAuthentication/demo/api-jwt", reason),
            1,
            "{reason}"
        );
    }
    // A token no rule's issuer takes is nobody's: the policy label is empty.
    for reason in ["unknown-issuer", "malformed"] {
        assert_eq!(jwt_count(&world, "api", "", reason), 1, "{reason}");
    }

    // The second RequestAuthentication's rule: its header with its prefix,
    // its query parameter and its cookie; forwarded as asked.
    let partner = token("ec-b", PARTNER, "acme", json!({}));
    let answer = call(vec![("x-partner-token", format!("Token {partner}"))], "/").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        seen(&answer).get("x-partner-token"),
        Some(&format!("Token {partner}"))
    );
    let by_param: &'static str = Box::leak(format!("/?token={partner}").into_boxed_str());
    assert_eq!(call(vec![], by_param).await.status, 200);
    assert_eq!(
        call(vec![("cookie", format!("a=b; session={partner}"))], "/")
            .await
            .status,
        200
    );
    // A rule reads tokens only where it looks: a partner token in
    // Authorization is read by the first rule, whose issuer it is not.
    let answer = call(vec![("authorization", bearer(&partner))], "/").await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(
        jwt_count(
            &world,
            "api",
            "RequestAuthentication/demo/partner-jwt",
            "verified"
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_require_request_principals() {
    let resources = format!(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: RequestAuthentication
metadata: {{name: jwt}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{keys}'
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: require-jwt}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: admins}}
spec:
  selector: {{matchLabels: {{app: admin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice", "{ISSUER}/carol"]}}}}]
    when:
    - {{key: "request.auth.claims[groups]", values: [admins]}}
    - {{key: "request.auth.claims[org][team]", values: [core, "sec*"]}}
    - {{key: request.auth.audiences, values: [api]}}
---
apiVersion: plexus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: not-carol}}
spec:
  selector: {{matchLabels: {{app: admin}}}}
  action: DENY
  rules:
  - from: [{{source: {{requestPrincipals: ["*"], notRequestPrincipals: ["{ISSUER}/alice"]}}}}]
    when: [{{key: request.auth.presenter, notValues: [console]}}]
"#,
        keys = jwks(&["ec-a"]),
    );
    let (world, api, admin) = world("jwt-principals", &resources, BTreeMap::new()).await;
    for name in [
        "RequestAuthentication/demo/jwt",
        "AuthorizationPolicy/demo/require-jwt",
        "AuthorizationPolicy/demo/admins",
        "AuthorizationPolicy/demo/not-carol",
    ] {
        world.assert_enforced(name);
    }
    let client = http_client(false);
    let call = |proxy: SocketAddr, target: &'static str, token: Option<String>| {
        let client = client.clone();
        async move {
            let header = token.map(|t| bearer(&t));
            let headers: Vec<(&str, &str)> = header
                .iter()
                .map(|h| ("authorization", h.as_str()))
                .collect();
            send(&client, proxy, "GET", "/", &host(target), &headers)
                .await
                .status
        }
    };
    let signed = |sub: &str, claims: Value| Some(token("ec-a", ISSUER, sub, claims));

    // requestPrincipals ["*"]: a valid token 200, none 403, a bad one 401.
    assert_eq!(call(api, "api", signed("anyone", json!({}))).await, 200);
    assert_eq!(call(api, "api", None).await, 403);
    assert_eq!(call(api, "api", Some("x.y.z".into())).await, 401);

    // A principal and its claims (nested ones too), and a DENY on every
    // principal but alice's unless the presenter is the console.
    let admin_claims = json!({"groups": ["dev", "admins"], "org": {"team": "security"}});
    assert_eq!(
        call(admin, "admin", signed("alice", admin_claims.clone())).await,
        200
    );
    assert_eq!(
        call(
            admin,
            "admin",
            signed("alice", json!({"groups": ["dev"], "org": {"team": "core"}}))
        )
        .await,
        403
    );
    assert_eq!(
        call(
            admin,
            "admin",
            signed(
                "alice",
                json!({"groups": "admins", "org": {"team": "sales"}})
            )
        )
        .await,
        403
    );
    assert_eq!(
        call(admin, "admin", signed("bob", admin_claims.clone())).await,
        403
    );
    assert_eq!(
        call(admin, "admin", signed("carol", admin_claims.clone())).await,
        403
    );
    let mut console = admin_claims.clone();
    console["azp"] = json!("console");
    assert_eq!(call(admin, "admin", signed("carol", console)).await, 200);
    assert_eq!(call(admin, "admin", None).await, 403);

    assert_eq!(world.servers["api"].app.total(), 1);
    assert_eq!(world.servers["admin"].app.total(), 2);
    let state = &world.servers["admin"].state;
    let denied = |policy: &str, rule: &str, reason: &str| {
        count(
            &metrics(state),
            &format!(
                r#"plexus_proxy_authz_denied_total{{policy="{policy}",rule="{rule}",reason="{reason}",protocol="http"}}"#
            ),
        )
    };
    // bob and carol (without the console) are denied before ALLOW is read.
    assert_eq!(
        denied("AuthorizationPolicy/demo/not-carol", "0", "denied"),
        2
    );
    assert_eq!(
        denied("AuthorizationPolicy/demo/admins", "", "no-allow-match"),
        3
    );
}

/// What the issuer on loopback answers.
#[derive(Clone)]
enum Issuer {
    Keys(String),
    Fails,
}

/// An issuer on loopback serving `answer` at `/jwks`: its URI.
async fn issuer(answer: Arc<Mutex<Issuer>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (status, body) = match answer.lock().expect("answer").clone() {
                Issuer::Keys(keys) => (200, keys),
                Issuer::Fails => (503, "unavailable".to_owned()),
            };
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_from_jwks_uris() {
    use plexus_operator::jwks::{Jwks, Settings, wanted};
    let answer = Arc::new(Mutex::new(Issuer::Keys(jwks(&["ec-a"]))));
    let uri = issuer(answer.clone()).await;
    let resources = format!(
        r#"
apiVersion: plexus.dev/v1alpha1
kind: RequestAuthentication
metadata: {{name: remote-keys}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: {uri}
    timeout: 2s
"#
    );
    let requests: Vec<plexus_crds::request_authentication::RequestAuthentication> =
        vec![serde_yaml::from_str(&resources).expect("a RequestAuthentication")];
    let uris = wanted(&requests);
    assert_eq!(
        uris,
        BTreeMap::from([(uri.clone(), Duration::from_secs(2))])
    );
    let fetcher = Jwks::new(Settings {
        refresh: Duration::ZERO,
        retry: Duration::ZERO,
        allowed_hosts: vec!["127.0.0.1".into()],
    })
    .expect("a TLS client");

    // Not fetched yet: not programmed, and every token is refused.
    let (mut world, api, _) = world("jwt-fetched", &resources, fetcher.snapshot()).await;
    let origin = "RequestAuthentication/demo/remote-keys";
    let (programmed, reason, message) = world.programmed[origin].clone();
    assert_eq!(
        (programmed, reason.as_str()),
        (false, "KeysUnavailable"),
        "{message}"
    );
    assert!(message.contains("not fetched yet"), "{message}");
    let client = http_client(false);
    let status = |token: String| {
        let client = client.clone();
        async move {
            let header = bearer(&token);
            send(
                &client,
                api,
                "GET",
                "/",
                &host("api"),
                &[("authorization", &header)],
            )
            .await
            .status
        }
    };
    let signed = |key: &str| token(key, ISSUER, "alice", json!({}));
    assert_eq!(status(signed("ec-a")).await, 401);

    // Fetched: the keys are in force.
    assert!(fetcher.refresh_due(&uris).await);
    world.set_jwks(fetcher.snapshot());
    world.apply(&resources);
    assert!(world.programmed[origin].0, "{:?}", world.programmed[origin]);
    assert_eq!(status(signed("ec-a")).await, 200);
    assert_eq!(status(signed("ec-b")).await, 401);

    // The issuer rotates to a new kid: the next fetch follows it.
    *answer.lock().expect("answer") = Issuer::Keys(jwks(&["ec-b"]));
    assert!(fetcher.refresh_due(&uris).await);
    world.set_jwks(fetcher.snapshot());
    world.apply(&resources);
    assert_eq!(status(signed("ec-b")).await, 200);
    assert_eq!(status(signed("ec-a")).await, 401);

    // The issuer fails: the last good keys stay, and status says so.
    *answer.lock().expect("answer") = Issuer::Fails;
    assert!(fetcher.refresh_due(&uris).await);
    world.set_jwks(fetcher.snapshot());
    world.apply(&resources);
    assert_eq!(status(signed("ec-b")).await, 200);
    let (accepted, message) = world.accepted(origin);
    assert!(
        accepted && message.contains("the last fetch failed (HTTP 503"),
        "{message}"
    );
    assert!(world.programmed[origin].0);
}
