//! Token buckets on a paused clock: exact counts per window, refills, per
//! identity buckets and their bound, routes, the enabled and enforced
//! shares, and buckets kept across configuration versions.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderMap;
use plexus_config::RateLimit;
use serde_json::json;
use tokio::time::{Instant, advance};

use super::*;

fn limit(spec: serde_json::Value) -> RateLimit {
    let mut base = json!({"name": "RateLimitPolicy/foo/limit", "status": 429,
                          "enabledPercent": 100.0, "enforcedPercent": 100.0});
    for (k, v) in spec.as_object().cloned().unwrap_or_default() {
        base[k] = v;
    }
    serde_json::from_value(base).expect("a limit")
}

fn bucket(max: u32, per_fill: u32, ms: u64) -> serde_json::Value {
    json!({"maxTokens": max, "tokensPerFill": per_fill, "fillIntervalMs": ms})
}

fn limiter(limits: &[RateLimit], previous: Option<&Limiter>) -> Limiter {
    Limiter::new(limits, previous).expect("compiles")
}

/// The outcomes of the limits for a GET of `path` from `identity`.
fn check(l: &Limiter, path: &str, identity: &str) -> Vec<(String, Outcome)> {
    check_drawing(l, path, identity, || 0.0)
}

fn check_drawing(
    l: &Limiter,
    path: &str,
    identity: &str,
    draw: impl FnMut() -> f64,
) -> Vec<(String, Outcome)> {
    let headers = HeaderMap::new();
    let request = RequestInfo {
        method: "GET",
        path,
        query: None,
        authority: "web",
        scheme: "http",
        port: 8080,
        headers: &headers,
    };
    let labels = BTreeMap::new();
    let source = Source {
        labels: &labels,
        namespace: "foo",
    };
    l.check(&request, &source, identity, Instant::now(), draw)
        .into_iter()
        .map(|(_, d)| (d.route.to_owned(), d.outcome))
        .collect()
}

fn allowed(l: &Limiter, path: &str, identity: &str) -> bool {
    check(l, path, identity)
        .iter()
        .all(|(_, o)| *o != Outcome::Limited)
}

/// How many of `n` requests pass.
fn passes(l: &Limiter, n: usize, identity: &str) -> usize {
    (0..n).filter(|_| allowed(l, "/", identity)).count()
}

#[tokio::test(start_paused = true)]
async fn a_bucket_lets_exactly_its_tokens_through_and_refills_by_the_interval() {
    let l = limiter(&[limit(json!({"bucket": bucket(3, 1, 1000)}))], None);
    assert_eq!(passes(&l, 10, ""), 3);
    advance(Duration::from_millis(999)).await;
    assert_eq!(passes(&l, 1, ""), 0);
    advance(Duration::from_millis(1)).await;
    assert_eq!(passes(&l, 10, ""), 1);
    // Idle for long: full again, never fuller.
    advance(Duration::from_secs(60)).await;
    assert_eq!(passes(&l, 10, ""), 3);
    // Two tokens every half second.
    let l = limiter(&[limit(json!({"bucket": bucket(4, 2, 500)}))], None);
    assert_eq!(passes(&l, 10, ""), 4);
    advance(Duration::from_millis(1250)).await;
    assert_eq!(passes(&l, 10, ""), 4);
    advance(Duration::from_millis(250)).await;
    assert_eq!(passes(&l, 10, ""), 2, "the fill that was due at 1.5 s");
}

#[tokio::test(start_paused = true)]
async fn per_identity_buckets_are_independent_and_bounded() {
    let shared = limiter(&[limit(json!({"bucket": bucket(2, 1, 60_000)}))], None);
    assert_eq!(passes(&shared, 5, "spiffe://a"), 2);
    assert_eq!(
        passes(&shared, 5, "spiffe://b"),
        0,
        "one bucket for everyone"
    );
    let own = limiter(
        &[limit(
            json!({"bucket": bucket(2, 1, 60_000), "perSourceIdentity": true}),
        )],
        None,
    );
    assert_eq!(passes(&own, 5, "spiffe://a"), 2);
    assert_eq!(passes(&own, 5, "spiffe://b"), 2);
    assert_eq!(passes(&own, 5, ""), 2, "plaintext callers share one");
    // The bound: callers beyond it share an overflow bucket...
    let many = limiter(
        &[limit(
            json!({"bucket": bucket(1, 1, 60_000), "perSourceIdentity": true}),
        )],
        None,
    );
    for i in 0..MAX_IDENTITIES {
        assert_eq!(passes(&many, 1, &format!("spiffe://caller-{i}")), 1);
    }
    assert_eq!(passes(&many, 1, "spiffe://late-1"), 1);
    assert_eq!(
        passes(&many, 1, "spiffe://late-2"),
        0,
        "the overflow bucket is spent"
    );
    // ...until idle callers' buckets refilled and they are forgotten.
    advance(Duration::from_secs(60)).await;
    assert_eq!(passes(&many, 1, "spiffe://late-2"), 1);
    assert_eq!(passes(&many, 1, "spiffe://late-3"), 1);
}

#[tokio::test(start_paused = true)]
async fn routes_take_their_own_buckets() {
    let l = limiter(
        &[limit(json!({
            "bucket": bucket(5, 1, 60_000),
            "routes": [{"name": "login", "matches": [{"uri": {"prefix": "/login"}}],
                        "bucket": bucket(1, 1, 60_000)}]
        }))],
        None,
    );
    assert_eq!(
        check(&l, "/login", ""),
        [("login".into(), Outcome::Allowed)]
    );
    assert_eq!(
        check(&l, "/login/x", ""),
        [("login".into(), Outcome::Limited)]
    );
    assert_eq!(
        check(&l, "/other", ""),
        [("default".into(), Outcome::Allowed)]
    );
    // Without a bucket of its own, what no route matches is not limited.
    let routes_only = limiter(
        &[limit(json!({
            "routes": [{"name": "login", "matches": [{"uri": {"exact": "/login"}}],
                        "bucket": bucket(1, 1, 60_000)}]
        }))],
        None,
    );
    assert!(check(&routes_only, "/other", "").is_empty());
}

#[tokio::test(start_paused = true)]
async fn enabled_and_enforced_shares() {
    // Not enabled for a request: not counted at all.
    let off = limiter(
        &[limit(
            json!({"bucket": bucket(1, 1, 60_000), "enabledPercent": 50.0}),
        )],
        None,
    );
    assert!(check_drawing(&off, "/", "", || 75.0).is_empty());
    assert_eq!(
        check_drawing(&off, "/", "", || 25.0),
        [("default".into(), Outcome::Allowed)]
    );
    assert_eq!(
        check_drawing(&off, "/", "", || 25.0),
        [("default".into(), Outcome::Limited)]
    );
    // Enforced for none: a dry run, counted as shadow_limited.
    let dry = limiter(
        &[limit(
            json!({"bucket": bucket(1, 1, 60_000), "enforcedPercent": 0.0}),
        )],
        None,
    );
    assert_eq!(check(&dry, "/", ""), [("default".into(), Outcome::Allowed)]);
    assert_eq!(
        check(&dry, "/", ""),
        [("default".into(), Outcome::ShadowLimited)]
    );
    assert!(allowed(&dry, "/", ""));
}

#[tokio::test(start_paused = true)]
async fn buckets_outlive_configuration_versions_while_their_spec_holds() {
    let spec = limit(json!({"bucket": bucket(3, 1, 60_000)}));
    let first = limiter(std::slice::from_ref(&spec), None);
    assert_eq!(passes(&first, 2, ""), 2);
    let second = limiter(std::slice::from_ref(&spec), Some(&first));
    assert_eq!(passes(&second, 5, ""), 1, "the bucket was kept");
    let changed = limit(json!({"bucket": bucket(4, 1, 60_000)}));
    let third = limiter(&[changed], Some(&second));
    assert_eq!(
        passes(&third, 5, ""),
        4,
        "a new spec starts a new, full bucket"
    );
}

#[test]
fn decisions_carry_what_the_headers_say() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let l = limiter(&[limit(json!({"bucket": bucket(2, 1, 10_000)}))], None);
        let headers = HeaderMap::new();
        let request = RequestInfo {
            method: "GET",
            path: "/",
            query: None,
            authority: "web",
            scheme: "http",
            port: 80,
            headers: &headers,
        };
        let labels = BTreeMap::new();
        let source = Source {
            labels: &labels,
            namespace: "",
        };
        let take = || {
            l.check(&request, &source, "", Instant::now(), || 0.0)
                .pop()
                .map(|(_, d)| (d.outcome, d.limit, d.remaining, d.reset))
        };
        assert_eq!(
            take(),
            Some((Outcome::Allowed, 2, 1, Duration::from_secs(10)))
        );
        advance(Duration::from_secs(4)).await;
        assert_eq!(
            take(),
            Some((Outcome::Allowed, 2, 0, Duration::from_secs(6)))
        );
        assert_eq!(
            take(),
            Some((Outcome::Limited, 2, 0, Duration::from_secs(6)))
        );
    });
}
