//! RequestAuthentication: the JWT issuers the workloads it selects accept.
//! The proxy validates no token yet: the capability list enforces nothing
//! of it, so it is never `Programmed`.

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::request_authentication::{JwtRule, RequestAuthenticationSpec};

use super::super::check::Check;
use super::super::{Key, Kind, State, by_age};
use super::{Entry, Policies, target};

/// Judges every RequestAuthentication and keeps those accepted.
pub(super) fn compile(state: &mut State<'_>, namespaces: &mut BTreeMap<String, Policies>) {
    for ra in by_age(&state.input.request_authentications) {
        let key = Key::of(Kind::RequestAuthentication, ra);
        let spec = &ra.spec;
        let mut check = Check::default();
        let selector = target(&mut check, state, &key.namespace, spec);
        let rules = convert(spec, &mut check);
        check.meanwhile = Some(
            "Meanwhile tokens reach the workloads it selects unverified: do not rely on it.".into(),
        );
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

/// The accepted issuers, checked.
fn convert(spec: &RequestAuthenticationSpec, check: &mut Check) -> Vec<cfg::JwtRule> {
    spec.jwt_rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(check, &format!("spec.jwtRules[{i}]"), r))
        .collect()
}

fn rule(check: &mut Check, path: &str, r: &JwtRule) -> cfg::JwtRule {
    if r.issuer.is_empty() {
        check.invalid(format!("{path}.issuer"), "an issuer is required");
    }
    if let Some(jwks) = &r.jwks
        && serde_json::from_str::<serde_json::Value>(jwks).is_err()
    {
        check.invalid(format!("{path}.jwks"), "is not a JSON Web Key Set");
    }
    if let Some(uri) = &r.jwks_uri
        && !(uri.starts_with("https://") || uri.starts_with("http://"))
    {
        check.invalid(
            format!("{path}.jwksUri"),
            format!("{uri:?} is not an http(s) URL"),
        );
    }
    cfg::JwtRule {
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        jwks_uri: r.jwks_uri.clone(),
        jwks: r.jwks.clone(),
        from_headers: r
            .from_headers
            .iter()
            .map(|h| (h.name.clone(), h.prefix.clone().unwrap_or_default()))
            .collect(),
        from_params: r.from_params.clone(),
        from_cookies: r.from_cookies.clone(),
        forward_original_token: r.forward_original_token.unwrap_or(false),
        output_payload_to_header: r.output_payload_to_header.clone(),
        output_claim_to_headers: r
            .output_claim_to_headers
            .iter()
            .map(|c| (c.header.clone(), c.claim.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_and_token_locations() {
        let spec: RequestAuthenticationSpec = serde_json::from_value(serde_json::json!({
            "jwtRules": [
                {"issuer": "https://example.com", "jwksUri": "https://example.com/jwks.json",
                 "fromHeaders": [{"name": "x-token", "prefix": "Bearer "}]},
                {"issuer": "", "jwksUri": "ftp://nope", "jwks": "{not json"}
            ]
        }))
        .expect("spec");
        let mut check = Check::default();
        let rules = convert(&spec, &mut check);
        assert_eq!(
            rules[0].from_headers,
            [("x-token".to_owned(), "Bearer ".to_owned())]
        );
        let message = check
            .finish(Kind::RequestAuthentication, &spec)
            .expect_err("rejected")
            .message;
        for field in [
            "spec.jwtRules[1].issuer",
            "spec.jwtRules[1].jwks",
            "spec.jwtRules[1].jwksUri",
        ] {
            assert!(message.contains(field), "{message}");
        }
    }
}
