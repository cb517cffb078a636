//! JWT parsing and verification (`Authenticator::authenticate`) under a
//! RequestAuthentication with RSA and EC keys. The input is a token, either
//! as raw text or, so that the fuzzer reaches the JSON inside, as header,
//! claims and signature (separated by 0xff) which the target encodes; or a
//! key set for the rule. Nothing panics, and no token the fuzzer makes
//! verifies: it holds none of the keys' private halves.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use libfuzzer_sys::fuzz_target;
use plexus_config::JwtPolicy;
use plexus_fuzz::ISSUER;
use plexus_proxy::policy::jwt::{Authenticator, Outcome};
use serde_json::json;

/// When the fuzzer's tokens are checked: their `exp` and `nbf` are in its hands.
const NOW: f64 = 1_800_000_000.0;

fn authenticator(jwks: &str) -> Result<Authenticator, String> {
    let policy: JwtPolicy = serde_json::from_value(json!({
        "name": "RequestAuthentication/demo/jwt",
        "rules": [{"issuer": ISSUER, "audiences": ["api"], "jwks": jwks,
                   "fromHeaders": [{"name": "authorization", "prefix": "Bearer "},
                                   {"name": "x-token"}],
                   "fromParams": ["token"], "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]}]
    }))
    .map_err(|e| e.to_string())?;
    Authenticator::new([&policy], None)
}

static FIXED: LazyLock<Authenticator> =
    LazyLock::new(|| authenticator(&plexus_fuzz::jwks()).expect("the rule compiles"));

/// Header, claims and signature, each base64url-encoded, joined by dots.
fn token_of(parts: &[u8]) -> String {
    parts
        .splitn(3, |b| *b == 0xff)
        .map(|p| URL_SAFE_NO_PAD.encode(p))
        .collect::<Vec<_>>()
        .join(".")
}

fn authenticate<'a>(a: &'a Authenticator, token: &str) -> Option<Outcome<'a>> {
    let request = Request::get(format!("/?token={}", token.replace(['&', '#', ' '], "")))
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .ok()?;
    let mut parts = request.into_parts().0;
    Some(a.authenticate(&mut parts, NOW))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 | 1 => {
            let token = if mode % 3 == 0 {
                String::from_utf8_lossy(rest).into_owned()
            } else {
                token_of(rest)
            };
            if let Some(outcome) = authenticate(&FIXED, &token) {
                assert!(
                    !matches!(outcome, Outcome::Verified { .. }),
                    "a token the fuzzer made verified: {token}"
                );
            }
        }
        _ => {
            // A key set as the operator might hand it over.
            let Ok(jwks) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(a) = authenticator(jwks) {
                let token =
                    token_of(b"{\"alg\":\"RS256\"}\xff{\"iss\":\"https://issuer.example\"}\xffsig");
                let _ = authenticate(&a, &token);
            }
        }
    }
});
