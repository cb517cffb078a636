//! What the inbound policies did: denials by policy and rule, audited
//! requests, JWT outcomes and rate-limit decisions. Each denial and refusal
//! is also logged with what decided it (never told to the caller), within
//! a [`LogBudget`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::budget::LogBudget;
use crate::policy::authz::Denial;
use crate::policy::counters::Counters;
use crate::policy::rate_limit::Decision;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    /// `AuthorizationPolicy/<namespace>/<name>` (comma-separated when no
    /// ALLOW policy matched), or `Mesh/default`.
    pub policy: String,
    /// The index of the DENY rule that matched, "" otherwise.
    pub rule: String,
    /// denied, allow-nothing, no-allow-match or default-deny.
    pub reason: &'static str,
    /// http or tcp.
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditedLabels {
    pub policy: String,
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JwtLabels {
    /// The RequestAuthentication ("" when no rule knows the issuer).
    pub policy: String,
    /// verified, anonymous, or why the token was refused (expired,
    /// bad-signature, wrong-audience, ...).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    pub policy: String,
    pub stat_prefix: String,
    pub route: String,
    /// allowed, limited or shadow_limited.
    pub outcome: &'static str,
}

/// The families, registered with the proxy's registry.
#[derive(Default)]
pub struct PolicyMetrics {
    pub denied: Family<DeniedLabels, Counter>,
    pub audited: Family<AuditedLabels, Counter>,
    pub jwt: Family<JwtLabels, Counter>,
    pub rate_limit: Family<RateLimitLabels, Counter>,
    log: LogBudget,
}

impl PolicyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "authz_denied",
            "Inbound requests and connections refused by authorization, by policy and rule",
            self.denied.clone(),
        );
        registry.register(
            "authz_audited",
            "Inbound requests and connections an AUDIT policy matched",
            self.audited.clone(),
        );
        registry.register(
            "jwt",
            "Inbound requests by what JWT authentication concluded",
            self.jwt.clone(),
        );
        registry.register(
            "ratelimit",
            "Inbound requests counted by a local rate limit, by outcome",
            self.rate_limit.clone(),
        );
    }

    fn may_log(&self) -> Option<u64> {
        self.log.may_log()
    }

    /// Counts and logs a denial; `request` (the log's request line) is only
    /// made when a line is written.
    pub fn denied(
        &self,
        denial: &Denial,
        protocol: &'static str,
        peer: &str,
        request: &dyn Fn() -> String,
    ) {
        let rule = denial.rule.map(|r| r.to_string()).unwrap_or_default();
        self.denied
            .get_or_create(&DeniedLabels {
                policy: denial.policy.clone(),
                rule: rule.clone(),
                reason: denial.reason,
                protocol,
            })
            .inc();
        if let Some(dropped) = self.may_log() {
            tracing::info!(policy = %denial.policy, rule, reason = denial.reason, protocol,
                peer, request = %request(), dropped, "denied by authorization");
        }
    }

    /// Counts and logs an audited request.
    pub fn audited(&self, policy: &str, rule: usize, peer: &str, request: &dyn Fn() -> String) {
        self.audited
            .get_or_create(&AuditedLabels {
                policy: policy.to_owned(),
                rule: rule.to_string(),
            })
            .inc();
        if let Some(dropped) = self.may_log() {
            tracing::info!(
                policy,
                rule,
                peer,
                request = %request(),
                dropped,
                "audited by authorization"
            );
        }
    }

    /// Counts a request authentication let through (verified, or without
    /// a token), on the counter the compiled rule keeps.
    pub fn jwt_passed(&self, policy: &str, outcome: &'static str, counters: &Counters<1>) {
        counters
            .get(0, || {
                self.jwt
                    .get_or_create(&JwtLabels {
                        policy: policy.to_owned(),
                        outcome,
                    })
                    .clone()
            })
            .inc();
    }

    /// Counts what authentication concluded; logs refusals.
    pub fn jwt(
        &self,
        policy: &str,
        outcome: &'static str,
        peer: &str,
        request: &dyn Fn() -> String,
    ) {
        self.jwt
            .get_or_create(&JwtLabels {
                policy: policy.to_owned(),
                outcome,
            })
            .inc();
        if !matches!(outcome, "verified" | "anonymous")
            && let Some(dropped) = self.may_log()
        {
            tracing::info!(
                policy,
                reason = outcome,
                peer,
                request = %request(),
                dropped,
                "token refused by authentication"
            );
        }
    }

    /// Counts a rate limit's decision; logs limited requests.
    pub fn rate_limited(&self, decision: &Decision, peer: &str, request: &dyn Fn() -> String) {
        let outcome = decision.outcome.as_str();
        decision
            .counters
            .get(decision.outcome.index(), || {
                self.rate_limit
                    .get_or_create(&RateLimitLabels {
                        policy: decision.policy.to_owned(),
                        stat_prefix: decision.stat_prefix.to_owned(),
                        route: decision.route.to_owned(),
                        outcome,
                    })
                    .clone()
            })
            .inc();
        if decision.outcome != crate::policy::rate_limit::Outcome::Allowed
            && let Some(dropped) = self.may_log()
        {
            tracing::info!(policy = %decision.policy, route = %decision.route, outcome, peer,
                request = %request(), dropped, "rate limited");
        }
    }
}
