//! This pod's inbound policy, compiled from the configuration in force for
//! the pod's own labels, once per configuration version: the mTLS mode of
//! each port (PeerAuthentication), authentication (RequestAuthentication,
//! [`jwt`]), authorization (AuthorizationPolicy, [`authz`]) and local rate
//! limits ([`rate_limit`]). Verified tokens and rate-limit buckets outlive
//! a version (a new one takes them over); everything else is rebuilt.
//!
//! The inbound pipeline (`inbound::http`) runs them in Istio's order:
//! path normalization ([`path`]), authentication, authorization, rate
//! limits, then the app.

pub mod attributes;
pub mod authz;
pub mod counters;
pub mod jwt;
pub mod matcher;
pub mod path;
pub mod rate_limit;

use std::collections::BTreeMap;

use plexus_config::{MtlsMode, MtlsRule, ProxyConfig, selects};

pub use attributes::{Attributes, HttpAttributes, Peer};
pub use authz::{Authorizer, Denial, Verdict};
pub use counters::Counters;
pub use jwt::{Authenticator, Claims, Outcome};
pub use rate_limit::Limiter;

/// The inbound policy of this pod under one configuration version.
#[derive(Debug, Default)]
pub struct Inbound {
    mtls: Option<MtlsRule>,
    pub authz: Authorizer,
    pub jwt: Authenticator,
    pub limits: Limiter,
}

impl Inbound {
    /// Compiles what of `config` selects a pod with `labels`; `previous`
    /// (the version in force until now) hands over its tokens and buckets.
    pub fn new(
        config: &ProxyConfig,
        labels: &BTreeMap<String, String>,
        previous: Option<&Inbound>,
    ) -> Result<Self, String> {
        let inbound = &config.inbound;
        let mtls = inbound
            .mtls
            .iter()
            .find(|rule| selects(&rule.selector, labels))
            .cloned();
        let authz = Authorizer::new(
            inbound
                .authorization
                .iter()
                .filter(|p| selects(&p.selector, labels)),
            &inbound.authorization_defaults,
            &config.trust_domain,
        )?;
        let jwt = Authenticator::new(
            inbound
                .authentication
                .iter()
                .filter(|p| selects(&p.selector, labels)),
            previous.map(|p| &p.jwt),
        )?;
        let limits = Limiter::new(
            inbound
                .rate_limits
                .iter()
                .filter(|l| selects(&l.selector, labels)),
            previous.map(|p| &p.limits),
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            mtls,
            authz,
            jwt,
            limits,
        })
    }

    /// The mTLS mode of `port`: the first rule selecting the pod (the last
    /// one selects every workload); PERMISSIVE without one.
    pub fn mtls_mode(&self, port: u16) -> MtlsMode {
        self.mtls.as_ref().map_or(MtlsMode::Permissive, |rule| {
            rule.ports.get(&port).copied().unwrap_or(rule.mode)
        })
    }

    /// Whether requests must be read as HTTP for the policies to act on
    /// them (plaintext callers included).
    pub fn needs_http(&self) -> bool {
        !self.authz.is_empty() || !self.jwt.is_empty() || !self.limits.is_empty()
    }
}

#[cfg(test)]
mod tests;
