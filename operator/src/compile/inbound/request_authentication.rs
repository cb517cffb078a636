//! RequestAuthentication: the JWT issuers the workloads it selects accept.
//! The key set of a rule is its inline `jwks`, or what the operator fetched
//! from its `jwksUri` (`crate::jwks`; the proxies never reach out): the
//! last set fetched that holds a usable key stays in force when a later
//! fetch fails. A rule whose keys were never fetched is `Programmed=False`
//! (KeysUnavailable): the proxies refuse its issuer's tokens meanwhile.

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::request_authentication::{JwtRule, RequestAuthenticationSpec};

use super::super::check::Check;
use super::super::{FetchedJwks, Key, Kind, State, by_age};
use super::{Entry, Policies, target};

/// Judges every RequestAuthentication and keeps those accepted.
pub(super) fn compile(state: &mut State<'_>, namespaces: &mut BTreeMap<String, Policies>) {
    for ra in by_age(&state.input.request_authentications) {
        let key = Key::of(Kind::RequestAuthentication, ra);
        let spec = &ra.spec;
        let mut check = Check::default();
        let selector = target(&mut check, state, &key.namespace, spec);
        let rules = convert(spec, &state.input.jwks, &mut check);
        if state.judge(&key, ra.metadata.generation, check.finish(key.kind, spec)) {
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .authentication
                .push(Entry {
                    value: cfg::JwtPolicy {
                        name: key.origin(),
                        selector: selector.clone().unwrap_or_default(),
                        rules,
                    },
                    key,
                    selector,
                });
        }
    }
}

/// The accepted issuers, checked, with their key sets.
fn convert(
    spec: &RequestAuthenticationSpec,
    fetched: &BTreeMap<String, FetchedJwks>,
    check: &mut Check,
) -> Vec<cfg::JwtRule> {
    let mut unavailable = Vec::new();
    let rules = spec
        .jwt_rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            rule(
                check,
                &format!("spec.jwtRules[{i}]"),
                r,
                fetched,
                &mut unavailable,
            )
        })
        .collect();
    if !unavailable.is_empty() {
        check.unavailable = Some(format!(
            "Keys unavailable: {}. Meanwhile the proxies refuse (401) every token of {}.",
            unavailable
                .iter()
                .map(|(why, _)| why.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            unavailable
                .iter()
                .map(|(_, issuer)| issuer.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    rules
}

/// A header name as HTTP allows one (lowercase token characters).
fn header_name(check: &mut Check, path: String, name: &str) {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        check.invalid(path, format!("{name:?} is not a header name"));
    }
}

fn rule(
    check: &mut Check,
    path: &str,
    r: &JwtRule,
    fetched: &BTreeMap<String, FetchedJwks>,
    unavailable: &mut Vec<(String, String)>,
) -> cfg::JwtRule {
    if r.issuer.is_empty() {
        check.invalid(format!("{path}.issuer"), "an issuer is required");
    }
    if let Some(uri) = &r.jwks_uri
        && let Err(error) = crate::jwks::parse_uri(uri)
    {
        check.invalid(format!("{path}.jwksUri"), error);
    }
    let jwks = match (&r.jwks, &r.jwks_uri) {
        (Some(inline), _) => match crate::jwks::usable_keys(inline) {
            Ok(_) => Some(inline.clone()),
            Err(error) => {
                check.invalid(format!("{path}.jwks"), error);
                None
            }
        },
        (None, Some(uri)) => match fetched.get(uri) {
            Some(FetchedJwks {
                keys: Some(keys),
                error,
            }) => {
                if let Some(error) = error {
                    check.notes.push(format!(
                        "{path}.jwksUri: the last fetch failed ({error}); the keys fetched before stay in force"
                    ));
                }
                Some(keys.clone())
            }
            Some(FetchedJwks {
                keys: None,
                error: Some(error),
            }) => {
                unavailable.push((
                    format!("{path}.jwksUri {uri} could not be fetched: {error}"),
                    r.issuer.clone(),
                ));
                None
            }
            _ => {
                unavailable.push((
                    format!("{path}.jwksUri {uri} is not fetched yet"),
                    r.issuer.clone(),
                ));
                None
            }
        },
        (None, None) => {
            check.invalid(path, "set jwks or jwksUri");
            None
        }
    };
    if let Some(timeout) = &r.timeout {
        check.duration(format!("{path}.timeout"), timeout);
    }
    for (i, h) in r.from_headers.iter().enumerate() {
        header_name(
            check,
            format!("{path}.fromHeaders[{i}].name"),
            &h.name.to_ascii_lowercase(),
        );
    }
    if let Some(h) = &r.output_payload_to_header {
        header_name(
            check,
            format!("{path}.outputPayloadToHeader"),
            &h.to_ascii_lowercase(),
        );
    }
    for (i, c) in r.output_claim_to_headers.iter().enumerate() {
        header_name(
            check,
            format!("{path}.outputClaimToHeaders[{i}].header"),
            &c.header.to_ascii_lowercase(),
        );
        if c.claim.is_empty() {
            check.invalid(
                format!("{path}.outputClaimToHeaders[{i}].claim"),
                "a claim is required",
            );
        }
    }
    cfg::JwtRule {
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        jwks,
        jwks_uri: r.jwks_uri.clone(),
        from_headers: r
            .from_headers
            .iter()
            .map(|h| cfg::TokenHeader {
                name: h.name.to_ascii_lowercase(),
                prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: r.from_params.clone(),
        from_cookies: r.from_cookies.clone(),
        forward_original_token: r.forward_original_token.unwrap_or(false),
        output_payload_to_header: r
            .output_payload_to_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase()),
        output_claim_to_headers: r
            .output_claim_to_headers
            .iter()
            .map(|c| cfg::ClaimToHeader {
                header: c.header.to_ascii_lowercase(),
                claim: c.claim.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    fn spec(value: serde_json::Value) -> RequestAuthenticationSpec {
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn issuers_token_locations_and_checks() {
        let spec = spec(serde_json::json!({
            "jwtRules": [
                {"issuer": "https://example.com", "jwks": JWKS,
                 "fromHeaders": [{"name": "X-Token", "prefix": "Bearer "}],
                 "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}]},
                {"issuer": "", "jwksUri": "ftp://nope", "jwks": "{not json"},
                {"issuer": "https://none.example"},
                {"issuer": "https://bad.example", "jwks": JWKS, "fromHeaders": [{"name": "bad header"}]}
            ]
        }));
        let mut check = Check::default();
        let rules = convert(&spec, &BTreeMap::new(), &mut check);
        assert_eq!(
            rules[0].from_headers,
            [cfg::TokenHeader {
                name: "x-token".into(),
                prefix: "Bearer ".into()
            }]
        );
        assert_eq!(rules[0].jwks.as_deref(), Some(JWKS));
        let message = check
            .finish(Kind::RequestAuthentication, &spec)
            .expect_err("rejected")
            .message;
        for field in [
            "spec.jwtRules[1].issuer",
            "spec.jwtRules[1].jwks",
            "spec.jwtRules[1].jwksUri",
            "spec.jwtRules[2]: set jwks or jwksUri",
            "spec.jwtRules[3].fromHeaders[0].name",
        ] {
            assert!(message.contains(field), "{field}: {message}");
        }
    }

    #[test]
    fn fetched_keys_are_used_and_the_last_good_ones_stay() {
        let uri = "https://issuer.example/jwks";
        let spec = spec(serde_json::json!({
            "jwtRules": [{"issuer": "https://issuer.example", "jwksUri": uri}]
        }));
        // Not fetched yet: not in force, and said so.
        let mut check = Check::default();
        let rules = convert(&spec, &BTreeMap::new(), &mut check);
        assert_eq!(rules[0].jwks, None);
        let accepted = check
            .finish(Kind::RequestAuthentication, &spec)
            .expect("accepted");
        assert_eq!(
            accepted.unavailable.as_deref(),
            Some(
                "Keys unavailable: spec.jwtRules[0].jwksUri https://issuer.example/jwks is not fetched yet. \
                 Meanwhile the proxies refuse (401) every token of https://issuer.example."
            )
        );
        // Fetched: in force.
        let fetched = |keys: Option<&str>, error: Option<&str>| {
            BTreeMap::from([(
                uri.to_owned(),
                FetchedJwks {
                    keys: keys.map(str::to_owned),
                    error: error.map(str::to_owned),
                },
            )])
        };
        let mut check = Check::default();
        let rules = convert(&spec, &fetched(Some(JWKS), None), &mut check);
        assert_eq!(rules[0].jwks.as_deref(), Some(JWKS));
        assert!(check.unavailable.is_none() && check.notes.is_empty());
        // A later fetch failed: the keys stay, a note says so.
        let mut check = Check::default();
        let rules = convert(&spec, &fetched(Some(JWKS), Some("HTTP 503")), &mut check);
        assert_eq!(rules[0].jwks.as_deref(), Some(JWKS));
        assert!(
            check.notes[0].contains("the last fetch failed (HTTP 503)"),
            "{:?}",
            check.notes
        );
        // Never fetched successfully: unavailable, with the error.
        let mut check = Check::default();
        convert(
            &spec,
            &fetched(None, Some("connection refused")),
            &mut check,
        );
        assert!(
            check
                .unavailable
                .as_deref()
                .is_some_and(|m| m.contains("could not be fetched: connection refused")),
            "{:?}",
            check.unavailable
        );
    }
}
