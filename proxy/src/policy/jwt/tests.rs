//! The JWT table: valid tokens of the RS, PS and ES families; expired, not
//! yet valid (and within the 60 s skew), bad signatures, `alg: none`,
//! algorithm confusion, unknown issuers, wrong audiences, mistyped claims,
//! two keys told apart by `kid`; where tokens are read, what reaches the
//! app, and the cache of verified tokens.

use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use plexus_config::JwtPolicy;
use serde_json::{Value, json};

use super::*;

const NOW: f64 = 1_800_000_000.0;
const ISSUER: &str = "https://issuer.example";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn jwks(keys: &[&str]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::from_str(&fixture(&format!("{k}.jwk.json"))).expect("a JWK"))
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A token signed by fixture key `key` with `alg`, naming `kid`.
fn sign(key: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let encoding = if key == "rsa" {
        EncodingKey::from_rsa_pem(pem.as_bytes())
    } else {
        EncodingKey::from_ec_pem(pem.as_bytes())
    }
    .expect("a key");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding).expect("signs")
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": "api", "exp": NOW + 600.0, "nbf": NOW - 10.0})
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().cloned().unwrap_or_default() {
        base[k] = v;
    }
    base
}

fn authenticator(rules: Value) -> Authenticator {
    let policy: JwtPolicy = serde_json::from_value(json!({
        "name": "RequestAuthentication/foo/jwt", "rules": rules
    }))
    .expect("a policy");
    Authenticator::new([&policy], None).expect("compiles")
}

fn rule(keys: &[&str]) -> Value {
    json!([{"issuer": ISSUER, "audiences": ["api"], "jwks": jwks(keys)}])
}

fn request(headers: &[(&str, &str)], uri: &str) -> http::request::Parts {
    let mut builder = Request::get(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).expect("a request").into_parts().0
}

fn bearer<'a>(a: &'a Authenticator, token: &str) -> Outcome<'a> {
    let mut parts = request(&[("authorization", &format!("Bearer {token}"))], "/");
    a.authenticate(&mut parts, NOW)
}

fn reason(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Anonymous => "anonymous",
        Outcome::Verified { .. } => "verified",
        Outcome::Refused { reason, .. } => reason,
    }
}

#[test]
fn the_jwt_table() {
    let a = authenticator(rule(&["rsa", "ec-a", "ec-384"]));
    for (key, alg, kid) in [
        ("rsa", Algorithm::RS256, "rsa"),
        ("rsa", Algorithm::RS384, "rsa"),
        ("rsa", Algorithm::RS512, "rsa"),
        ("rsa", Algorithm::PS256, "rsa"),
        ("rsa", Algorithm::PS512, "rsa"),
        ("ec-a", Algorithm::ES256, "ec-a"),
        ("ec-384", Algorithm::ES384, "ec-384"),
    ] {
        let token = |c: &Value| sign(key, alg, Some(kid), c);
        let case = |changes: Value| reason(bearer(&a, &token(&with(claims(), changes))));
        assert_eq!(case(json!({})), "verified", "{alg:?}");
        assert_eq!(case(json!({"exp": NOW - 61.0})), "expired", "{alg:?}");
        assert_eq!(
            case(json!({"exp": NOW - 30.0})),
            "verified",
            "{alg:?}: within the skew"
        );
        assert_eq!(case(json!({"nbf": NOW + 61.0})), "not-yet-valid", "{alg:?}");
        assert_eq!(
            case(json!({"nbf": NOW + 30.0})),
            "verified",
            "{alg:?}: within the skew"
        );
        assert_eq!(case(json!({"aud": "other"})), "wrong-audience", "{alg:?}");
        assert_eq!(
            case(json!({"aud": ["other", "api"]})),
            "verified",
            "{alg:?}"
        );
        assert_eq!(
            case(json!({"iss": "https://other.example"})),
            "unknown-issuer",
            "{alg:?}"
        );
        // Mistyped claims are malformed, never "absent".
        assert_eq!(case(json!({"exp": "99999999999"})), "malformed", "{alg:?}");
        assert_eq!(case(json!({"nbf": "0"})), "malformed", "{alg:?}");
        assert_eq!(case(json!({"aud": 7})), "malformed", "{alg:?}");
    }
    // A signature by another key, under this key's kid.
    let forged = sign("ec-b", Algorithm::ES256, Some("ec-a"), &claims());
    assert_eq!(reason(bearer(&a, &forged)), "bad-signature");
    // The signature part changed.
    let token = sign("ec-a", Algorithm::ES256, Some("ec-a"), &claims());
    let tampered = format!("{}AAAA", &token[..token.len() - 4]);
    assert_eq!(reason(bearer(&a, &tampered)), "bad-signature");
    // alg: none, unsigned.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    // An unsigned token is read far enough to name why it is refused.
    assert_eq!(
        reason(bearer(&a, &format!("{none_header}.{payload}."))),
        "unsupported-algorithm"
    );
    // A real algorithm with the signature left out.
    let (es_header, _) = token.split_once('.').expect("a header");
    assert_eq!(
        reason(bearer(&a, &format!("{es_header}.{payload}."))),
        "bad-signature"
    );
    assert_eq!(
        reason(bearer(&a, &format!("{none_header}.{payload}.c2ln"))),
        "unsupported-algorithm"
    );
    // Algorithm confusion: HS256 "signed" with the RSA key's public modulus.
    let rsa: Value = serde_json::from_str(&fixture("rsa.jwk.json")).expect("a JWK");
    let secret = rsa["n"].as_str().expect("n").as_bytes().to_vec();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let confused = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret))
        .expect("signs");
    assert_eq!(reason(bearer(&a, &confused)), "bad-signature");
    // Not a JWT at all.
    for junk in ["abc", "a.b", "a.b.c.d", "!!.??.**"] {
        assert_eq!(reason(bearer(&a, junk)), "malformed", "{junk}");
    }
    // No key set (a jwksUri not fetched yet): every token is refused.
    let keyless = authenticator(json!([{"issuer": ISSUER}]));
    assert_eq!(reason(bearer(&keyless, &token)), "no-keys");
}

#[test]
fn two_keys_are_told_apart_by_kid() {
    let a = authenticator(rule(&["ec-a", "ec-b"]));
    let by =
        |key, kid: Option<&str>| reason(bearer(&a, &sign(key, Algorithm::ES256, kid, &claims())));
    assert_eq!(by("ec-a", Some("ec-a")), "verified");
    assert_eq!(by("ec-b", Some("ec-b")), "verified");
    assert_eq!(by("ec-b", Some("ec-a")), "bad-signature");
    // No kid: any key of the set may have signed it.
    assert_eq!(by("ec-b", None), "verified");
    // An unknown kid: keys without a kid would be tried; there are none.
    assert_eq!(by("ec-a", Some("rotated-away")), "bad-signature");
    // After a rotation that dropped ec-a, its tokens fail.
    let rotated = authenticator(rule(&["ec-b"]));
    let old = sign("ec-a", Algorithm::ES256, Some("ec-a"), &claims());
    assert_eq!(reason(bearer(&rotated, &old)), "bad-signature");
}

#[test]
fn a_request_without_a_token_passes_without_a_principal() {
    let a = authenticator(rule(&["ec-a"]));
    let mut parts = request(&[], "/");
    assert_eq!(a.authenticate(&mut parts, NOW), Outcome::Anonymous);
    // Another scheme in Authorization is not a token of ours.
    let mut basic = request(&[("authorization", "Basic YTpi")], "/");
    assert_eq!(a.authenticate(&mut basic, NOW), Outcome::Anonymous);
    let token = sign("ec-a", Algorithm::ES256, Some("ec-a"), &claims());
    match bearer(&a, &token) {
        Outcome::Verified { policy, claims, .. } => {
            assert_eq!(policy, "RequestAuthentication/foo/jwt");
            assert_eq!(claims.principal, format!("{ISSUER}/alice"));
            assert_eq!(claims.audiences, ["api"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tokens_are_read_where_the_rule_says_and_prepared_for_the_app() {
    let a = authenticator(json!([
        {"issuer": ISSUER, "jwks": jwks(&["ec-a"]),
         "fromHeaders": [{"name": "x-jwt", "prefix": "Token "}],
         "outputPayloadToHeader": "x-jwt-payload",
         "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"},
                                  {"header": "x-team", "claim": "org.team"}]},
        {"issuer": "https://second.example", "jwks": jwks(&["ec-b"]),
         "fromParams": ["token"], "fromCookies": ["session"], "forwardOriginalToken": true}
    ]));
    let first = with(claims(), json!({"org": {"team": "blue"}}));
    let token = sign("ec-a", Algorithm::ES256, Some("ec-a"), &first);
    // A caller's own copies of the output headers never reach the app.
    let mut parts = request(
        &[
            ("x-jwt", &format!("Token {token}")),
            ("x-sub", "mallory"),
            ("x-team", "red"),
        ],
        "/",
    );
    assert_eq!(reason(a.authenticate(&mut parts, NOW)), "verified");
    assert!(parts.headers.get("x-jwt").is_none(), "the token is removed");
    assert_eq!(parts.headers["x-sub"], "alice");
    assert_eq!(parts.headers["x-team"], "blue");
    let payload = token.split('.').nth(1).expect("a payload");
    assert_eq!(parts.headers["x-jwt-payload"], payload);
    // Without a token, the output headers are still not the caller's.
    let mut spoofed = request(&[("x-sub", "mallory")], "/");
    assert_eq!(a.authenticate(&mut spoofed, NOW), Outcome::Anonymous);
    assert!(spoofed.headers.get("x-sub").is_none());
    // The Authorization header is not a location of these rules.
    assert_eq!(reason(bearer(&a, &token)), "anonymous");
    // Query parameter and cookie of the second rule.
    let second = with(claims(), json!({"iss": "https://second.example"}));
    let token2 = sign("ec-b", Algorithm::ES256, Some("ec-b"), &second);
    let mut by_param = request(&[], &format!("/x?a=1&token={token2}"));
    assert_eq!(reason(a.authenticate(&mut by_param, NOW)), "verified");
    let mut by_cookie = request(&[("cookie", &format!("theme=dark; session={token2}"))], "/");
    assert_eq!(reason(a.authenticate(&mut by_cookie, NOW)), "verified");
    assert!(by_cookie.headers.get("cookie").is_some(), "forwarded");
    // A token of one rule's issuer where only the other rule looks.
    let mut misplaced = request(&[], &format!("/x?token={token}"));
    assert_eq!(
        reason(a.authenticate(&mut misplaced, NOW)),
        "unknown-issuer"
    );
    // One good token and one bad: refused.
    let mut mixed = request(
        &[("x-jwt", &format!("Token {token}"))],
        "/x?token=bad.bad.bad",
    );
    assert_eq!(reason(a.authenticate(&mut mixed, NOW)), "malformed");
    // Default locations: Authorization: Bearer, and access_token.
    let plain = authenticator(rule(&["ec-a"]));
    let mut by_default_param = request(
        &[],
        &format!(
            "/?access_token={}",
            sign("ec-a", Algorithm::ES256, Some("ec-a"), &claims())
        ),
    );
    assert_eq!(
        reason(plain.authenticate(&mut by_default_param, NOW)),
        "verified"
    );
    let mut lower = request(&[("authorization", &format!("bearer {token}"))], "/");
    assert_eq!(reason(plain.authenticate(&mut lower, NOW)), "verified");
}

#[test]
fn a_verified_token_is_not_checked_again_until_it_expires() {
    let a = authenticator(rule(&["ec-a"]));
    let token = sign("ec-a", Algorithm::ES256, Some("ec-a"), &claims());
    for _ in 0..5 {
        assert_eq!(reason(bearer(&a, &token)), "verified");
    }
    assert_eq!(a.signature_checks(), 1);
    assert_eq!(a.cached_tokens(), 1);
    // Expired since: refused, though cached.
    let mut parts = request(&[("authorization", &format!("Bearer {token}"))], "/");
    assert_eq!(reason(a.authenticate(&mut parts, NOW + 700.0)), "expired");
    // A new configuration version with the same keys takes the cache over;
    // one with other keys checks again.
    let policy: JwtPolicy = serde_json::from_value(json!({
        "name": "RequestAuthentication/foo/jwt", "rules": rule(&["ec-a"])
    }))
    .expect("a policy");
    let next = Authenticator::new([&policy], Some(&a)).expect("compiles");
    assert_eq!(reason(bearer(&next, &token)), "verified");
    assert_eq!(next.signature_checks(), 0);
    let rotated: JwtPolicy = serde_json::from_value(json!({
        "name": "RequestAuthentication/foo/jwt", "rules": rule(&["ec-a", "ec-b"])
    }))
    .expect("a policy");
    let other = Authenticator::new([&rotated], Some(&a)).expect("compiles");
    assert_eq!(reason(bearer(&other, &token)), "verified");
    assert_eq!(other.signature_checks(), 1);
}

#[test]
fn nested_and_list_claims() {
    let c = Claims {
        principal: "i/s".into(),
        issuer: "i".into(),
        audiences: Vec::new(),
        presenter: None,
        payload: json!({"a": {"b": ["x", "y"], "n": 2, "t": true}, "s": "v"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(c.claim_values(&path(&["a", "b"])), ["x", "y"]);
    assert_eq!(c.claim_values(&path(&["a", "n"])), ["2"]);
    assert_eq!(c.claim_values(&path(&["a", "t"])), ["true"]);
    assert_eq!(c.claim_values(&path(&["s"])), ["v"]);
    assert!(c.claim_values(&path(&["a", "missing"])).is_empty());
    assert!(c.claim_values(&path(&["s", "deeper"])).is_empty());
}
