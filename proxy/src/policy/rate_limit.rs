//! Local rate limits: token buckets in this proxy, per RateLimitPolicy
//! selecting the pod, per route of it (the first route whose match holds,
//! else the policy's own bucket) and, when asked, per calling identity.
//! As Envoy's local rate limit: a bucket starts full, gains
//! `tokens_per_fill` every fill interval up to its size, and each request
//! takes a token or is limited; `enabled_percent` of requests are counted
//! at all and `enforced_percent` of the limited ones refused (the rest are
//! only counted: a dry run).
//!
//! Buckets belong to the proxy, not to a configuration version: a new
//! version keeps the bucket of every limit whose spec did not change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_config::{HeaderOps, RateLimit, TokenBucket};
use tokio::time::Instant;

use crate::policy::counters::Counters;
use crate::routing::matches::{Match, RequestInfo, Source, TableError};

/// Callers with a bucket of their own, at most, per limit; further callers
/// share one overflow bucket until idle ones are forgotten.
pub const MAX_IDENTITIES: usize = 1024;

/// One bucket's state.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: u32,
    last_fill: Instant,
}

impl Bucket {
    fn full(spec: &TokenBucket, now: Instant) -> Self {
        Self {
            tokens: spec.max_tokens,
            last_fill: now,
        }
    }

    /// Adds the fills due by `now`.
    fn refill(&mut self, spec: &TokenBucket, now: Instant) {
        let interval = Duration::from_millis(spec.fill_interval_ms.max(1));
        let elapsed = now.saturating_duration_since(self.last_fill);
        let fills = elapsed.as_nanos() / interval.as_nanos();
        if fills == 0 {
            return;
        }
        let added = u128::from(spec.tokens_per_fill).saturating_mul(fills);
        let tokens = (u128::from(self.tokens) + added).min(u128::from(spec.max_tokens));
        self.tokens = u32::try_from(tokens).unwrap_or(spec.max_tokens);
        let step = interval.saturating_mul(u32::try_from(fills).unwrap_or(u32::MAX));
        self.last_fill += step;
    }

    /// Time until the next fill.
    fn reset_in(&self, spec: &TokenBucket, now: Instant) -> Duration {
        let interval = Duration::from_millis(spec.fill_interval_ms.max(1));
        (self.last_fill + interval).saturating_duration_since(now)
    }
}

/// Takes a token from `bucket`, refilled first.
fn take_from(bucket: &mut Bucket, spec: &TokenBucket, now: Instant) -> Taken {
    bucket.refill(spec, now);
    let allowed = bucket.tokens > 0;
    if allowed {
        bucket.tokens -= 1;
    }
    Taken {
        allowed,
        remaining: bucket.tokens,
        reset: bucket.reset_in(spec, now),
    }
}

/// A limit's buckets: one, or one per calling identity.
#[derive(Debug)]
pub struct Buckets {
    spec: TokenBucket,
    per_identity: bool,
    state: Mutex<BucketState>,
}

#[derive(Debug, Default)]
struct BucketState {
    shared: Option<Bucket>,
    by_identity: HashMap<String, Bucket>,
}

/// What taking a token said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub allowed: bool,
    pub remaining: u32,
    /// Until the next fill.
    pub reset: Duration,
}

impl Buckets {
    fn new(spec: TokenBucket, per_identity: bool) -> Self {
        Self {
            spec,
            per_identity,
            state: Mutex::default(),
        }
    }

    /// Takes a token for `identity` ("" for a caller without one) at `now`.
    pub fn take(&self, identity: &str, now: Instant) -> Taken {
        let Ok(mut state) = self.state.lock() else {
            return Taken {
                allowed: true,
                remaining: 0,
                reset: Duration::ZERO,
            };
        };
        let spec = &self.spec;
        let state = &mut *state;
        if !self.per_identity {
            return take_from(
                state.shared.get_or_insert_with(|| Bucket::full(spec, now)),
                spec,
                now,
            );
        }
        if let Some(bucket) = state.by_identity.get_mut(identity) {
            return take_from(bucket, spec, now);
        }
        if state.by_identity.len() >= MAX_IDENTITIES {
            // Forget callers whose buckets refilled: they were idle.
            state.by_identity.retain(|_, b| {
                b.refill(spec, now);
                b.tokens < spec.max_tokens
            });
        }
        let bucket = if state.by_identity.len() < MAX_IDENTITIES {
            state
                .by_identity
                .entry(identity.to_owned())
                .or_insert_with(|| Bucket::full(spec, now))
        } else {
            state.shared.get_or_insert_with(|| Bucket::full(spec, now))
        };
        take_from(bucket, spec, now)
    }

    pub fn spec(&self) -> &TokenBucket {
        &self.spec
    }
}

/// The buckets of every limit of this proxy, by what they are: a new
/// configuration version takes those whose spec did not change.
#[derive(Debug, Default)]
pub struct Registry {
    buckets: Mutex<HashMap<BucketKey, Arc<Buckets>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    policy: String,
    route: String,
    spec: TokenBucket,
    per_identity: bool,
}

impl Registry {
    fn get(&self, key: BucketKey) -> Arc<Buckets> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Arc::new(Buckets::new(key.spec, key.per_identity));
        };
        buckets
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Buckets::new(key.spec, key.per_identity)))
            .clone()
    }

    /// Forgets buckets no limit in force uses.
    fn keep_only(&self, used: &[BucketKey]) {
        if let Ok(mut buckets) = self.buckets.lock() {
            buckets.retain(|k, _| used.contains(k));
        }
    }
}

/// A route of a limit (the default one has no matches).
#[derive(Debug)]
struct Route {
    name: String,
    matches: Vec<Match>,
    buckets: Arc<Buckets>,
    /// Its metric counters, by [`Outcome`].
    counters: Counters<3>,
}

/// One RateLimitPolicy, compiled.
#[derive(Debug)]
pub struct Limit {
    pub name: String,
    pub stat_prefix: String,
    routes: Vec<Route>,
    default: Option<Route>,
    pub status: u16,
    pub headers: HeaderOps,
    enabled: f64,
    enforced: f64,
}

/// What a limit decided for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'a> {
    /// The policy.
    pub policy: &'a str,
    pub stat_prefix: &'a str,
    /// Its route, or "default".
    pub route: &'a str,
    pub outcome: Outcome,
    /// The route's counters, by outcome.
    pub counters: &'a Counters<3>,
    /// The bucket's size, what is left, and the time to the next fill.
    pub limit: u32,
    pub remaining: u32,
    pub reset: Duration,
}

/// A limit's outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A token was there.
    Allowed,
    /// None was: the request is refused.
    Limited,
    /// None was, but the limit is not enforced for this one (dry run).
    ShadowLimited,
}

impl Outcome {
    /// Its place among a route's counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Limited => "limited",
            Self::ShadowLimited => "shadow_limited",
        }
    }
}

/// The limits selecting this pod.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: Vec<Limit>,
    registry: Arc<Registry>,
}

impl Limiter {
    /// Compiles `limits` (those selecting this pod), taking buckets from
    /// `previous`'s registry when their spec did not change.
    pub fn new<'p>(
        limits: impl IntoIterator<Item = &'p RateLimit>,
        previous: Option<&Limiter>,
    ) -> Result<Self, TableError> {
        let registry = previous.map(|p| p.registry.clone()).unwrap_or_default();
        let mut used = Vec::new();
        let mut bucket = |policy: &str, route: &str, spec: &TokenBucket, per_identity: bool| {
            let key = BucketKey {
                policy: policy.to_owned(),
                route: route.to_owned(),
                spec: spec.clone(),
                per_identity,
            };
            used.push(key.clone());
            registry.get(key)
        };
        let mut compiled = Vec::new();
        for limit in limits {
            let routes = limit
                .routes
                .iter()
                .map(|r| {
                    Ok(Route {
                        name: r.name.clone(),
                        matches: r
                            .matches
                            .iter()
                            .map(|m| Match::compile(m, &limit.name))
                            .collect::<Result<_, TableError>>()?,
                        buckets: bucket(&limit.name, &r.name, &r.bucket, r.per_source_identity),
                        counters: Counters::default(),
                    })
                })
                .collect::<Result<_, TableError>>()?;
            compiled.push(Limit {
                name: limit.name.clone(),
                stat_prefix: limit.stat_prefix.clone(),
                routes,
                default: limit.bucket.as_ref().map(|b| Route {
                    name: "default".into(),
                    matches: Vec::new(),
                    buckets: bucket(&limit.name, "", b, limit.per_source_identity),
                    counters: Counters::default(),
                }),
                status: limit.status,
                headers: limit.limited_response_headers.clone(),
                enabled: limit.enabled_percent,
                enforced: limit.enforced_percent,
            });
        }
        registry.keep_only(&used);
        Ok(Self {
            limits: compiled,
            registry,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Every limit's decision on a request from `identity` at `now`;
    /// `draw` gives numbers in [0, 100) for the enabled and enforced shares.
    pub fn check(
        &self,
        request: &RequestInfo<'_>,
        source: &Source<'_>,
        identity: &str,
        now: Instant,
        mut draw: impl FnMut() -> f64,
    ) -> Vec<(&Limit, Decision<'_>)> {
        let mut decisions = Vec::new();
        for limit in &self.limits {
            let route = limit
                .routes
                .iter()
                .find(|r| {
                    r.matches.is_empty() || r.matches.iter().any(|m| m.matches(request, source))
                })
                .or(limit.default.as_ref());
            let Some(route) = route else {
                continue;
            };
            let buckets = &route.buckets;
            if limit.enabled < 100.0 && draw() >= limit.enabled {
                continue;
            }
            let taken = buckets.take(identity, now);
            let outcome = if taken.allowed {
                Outcome::Allowed
            } else if limit.enforced >= 100.0 || draw() < limit.enforced {
                Outcome::Limited
            } else {
                Outcome::ShadowLimited
            };
            decisions.push((
                limit,
                Decision {
                    policy: &limit.name,
                    stat_prefix: &limit.stat_prefix,
                    route: &route.name,
                    outcome,
                    counters: &route.counters,
                    limit: buckets.spec().max_tokens,
                    remaining: taken.remaining,
                    reset: taken.reset,
                },
            ));
        }
        decisions
    }
}

#[cfg(test)]
mod tests;
