//! RateLimitPolicy (and the EnvoyFilter local rate limits `plexus convert`
//! turns into it): token buckets of the workloads it selects, kept by each
//! selected proxy (the proxy's `policy::rate_limit`).

use std::collections::BTreeMap;

use plexus_config as cfg;
use plexus_crds::rate_limit_policy::{RateLimitPolicySpec, TokenBucket};

use super::super::check::Check;
use super::super::routes;
use super::super::{Key, Kind, State, by_age};
use super::{Entry, Policies};

/// Judges every RateLimitPolicy and keeps those accepted.
pub(super) fn compile(state: &mut State<'_>, namespaces: &mut BTreeMap<String, Policies>) {
    for rl in by_age(&state.input.rate_limit_policies) {
        let key = Key::of(Kind::RateLimitPolicy, rl);
        let spec = &rl.spec;
        let mut check = Check::default();
        let selector = spec.selector.as_ref().map(|s| s.match_labels.clone());
        let mut limit = convert(spec, &mut check);
        if state.judge(&key, rl.metadata.generation, check.finish(key.kind, spec)) {
            limit.name = key.origin();
            limit.selector = selector.clone().unwrap_or_default();
            namespaces
                .entry(key.namespace.clone())
                .or_default()
                .rate_limits
                .push(Entry {
                    value: limit,
                    key,
                    selector,
                });
        }
    }
}

/// The limit (without its name and selector), checked.
fn convert(spec: &RateLimitPolicySpec, check: &mut Check) -> cfg::RateLimit {
    let default_bucket = spec
        .token_bucket
        .as_ref()
        .map(|b| bucket(check, "spec.tokenBucket", b));
    if default_bucket.is_none() && spec.routes.is_empty() {
        check.invalid("spec.tokenBucket", "set a tokenBucket or routes");
    }
    let mut route_limits = Vec::new();
    for (i, r) in spec.routes.iter().enumerate() {
        let path = format!("spec.routes[{i}]");
        route_limits.push(cfg::RateLimitRoute {
            name: r.name.clone().unwrap_or_else(|| format!("route-{i}")),
            matches: r
                .matches
                .iter()
                .enumerate()
                .map(|(j, m)| routes::http_match(check, &format!("{path}.match[{j}]"), m))
                .collect(),
            bucket: bucket(check, &format!("{path}.tokenBucket"), &r.token_bucket),
            // A route's own setting, else the policy's.
            per_source_identity: r
                .per_source_identity
                .or(spec.per_source_identity)
                .unwrap_or(false),
        });
    }
    let status = spec.status_code.unwrap_or(429);
    if !(400..600).contains(&status) {
        check.invalid(
            "spec.statusCode",
            format!("{status} is not a 4xx or 5xx status"),
        );
    }
    cfg::RateLimit {
        name: String::new(),
        selector: cfg::Selector::new(),
        bucket: default_bucket,
        per_source_identity: spec.per_source_identity.unwrap_or(false),
        routes: route_limits,
        status: u16::try_from(status).unwrap_or(429),
        limited_response_headers: routes::header_ops(&spec.limited_response_headers),
        enabled_percent: check
            .percent("spec.enabledPercent", spec.enabled_percent.unwrap_or(100.0)),
        enforced_percent: check.percent(
            "spec.enforcedPercent",
            spec.enforced_percent.unwrap_or(100.0),
        ),
        stat_prefix: spec.stat_prefix.clone().unwrap_or_default(),
    }
}

fn bucket(check: &mut Check, path: &str, b: &TokenBucket) -> cfg::TokenBucket {
    if b.max_tokens == 0 {
        check.invalid(format!("{path}.maxTokens"), "must be at least 1");
    }
    let fill = check
        .duration(format!("{path}.fillInterval"), &b.fill_interval)
        .unwrap_or(1000);
    if fill == 0 {
        check.invalid(format!("{path}.fillInterval"), "must be longer than 0");
    }
    if b.tokens_per_fill == Some(0) {
        check.invalid(format!("{path}.tokensPerFill"), "must be at least 1");
    }
    cfg::TokenBucket {
        max_tokens: b.max_tokens,
        // As Envoy's: one token a fill unless said otherwise.
        tokens_per_fill: b.tokens_per_fill.unwrap_or(1),
        fill_interval_ms: fill,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_their_checks() {
        let spec: RateLimitPolicySpec = serde_json::from_value(serde_json::json!({
            "tokenBucket": {"maxTokens": 10, "fillInterval": "1s"},
            "routes": [{"name": "login", "match": [{"uri": {"prefix": "/login"}}],
                        "tokenBucket": {"maxTokens": 0, "fillInterval": "0s"}}],
            "statusCode": 302
        }))
        .expect("spec");
        let mut check = Check::default();
        let limit = convert(&spec, &mut check);
        assert_eq!(
            limit.bucket,
            Some(cfg::TokenBucket {
                max_tokens: 10,
                tokens_per_fill: 1,
                fill_interval_ms: 1000
            })
        );
        let message = check
            .finish(Kind::RateLimitPolicy, &spec)
            .expect_err("rejected")
            .message;
        for field in [
            "spec.routes[0].tokenBucket.maxTokens",
            "spec.routes[0].tokenBucket.fillInterval",
            "spec.statusCode",
        ] {
            assert!(message.contains(field), "{message}");
        }
    }
}
