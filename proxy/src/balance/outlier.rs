//! Outlier detection (DestinationRule `outlierDetection`) as Envoy does it
//! for Istio: each endpoint counts its consecutive 5xx answers, gateway
//! errors (502, 503, 504) and, when local-origin errors are split, its
//! consecutive failures to answer at all (connect failure, reset, timeout;
//! otherwise those count as a 503, a timeout as a 504). A count reaching
//! its threshold ejects the endpoint for the base ejection time times the
//! number of its ejections (capped at five minutes, or the base time when
//! that is longer), unless that would eject more than `maxEjectionPercent`
//! of the cluster. An ejected endpoint returns once its time is up (checked
//! when the cluster next picks, not on a timer); each interval it then
//! stays healthy takes one off its ejection count.
//!
//! The state lives with the endpoint, so it outlives configuration versions
//! for endpoints that remain.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use plexus_config::OutlierDetection;

use crate::classify::Class;

/// Envoy's `max_ejection_time` default.
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// An endpoint's outlier state.
#[derive(Debug, Default)]
pub struct Health(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    /// Ejected until then.
    until: Option<Instant>,
    /// Ejections so far, less the healthy intervals since.
    ejections: u32,
    /// When it last returned (the healthy intervals count from there).
    returned: Option<Instant>,
}

/// What an outcome did to an endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed its standing.
    Counted,
    /// A count reached its threshold (`why`): eject it, if the cluster may.
    Eject { why: &'static str },
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an attempt's outcome.
    pub fn observe(&self, class: Class, config: &OutlierDetection) -> Verdict {
        let mut state = self.state();
        // The status the outcome counts as, when it counts as one.
        let status = match class {
            Class::Response { status } | Class::AppUnreachable { status } => {
                state.consecutive_local = 0;
                Some(status)
            }
            _ if config.split_local_origin_errors => {
                state.consecutive_local += 1;
                None
            }
            Class::Timeout => Some(504),
            _ => Some(503),
        };
        if let Some(status) = status {
            if status >= 500 {
                state.consecutive_5xx += 1;
            } else {
                state.consecutive_5xx = 0;
            }
            if (502..=504).contains(&status) {
                state.consecutive_gateway += 1;
            } else {
                state.consecutive_gateway = 0;
            }
        }
        let reached =
            |count: u32, threshold: Option<u32>| threshold.is_some_and(|t| t > 0 && count >= t);
        let why = if reached(state.consecutive_5xx, config.consecutive_5xx) {
            "consecutive-5xx"
        } else if reached(state.consecutive_gateway, config.consecutive_gateway_errors) {
            "consecutive-gateway-errors"
        } else if config.split_local_origin_errors
            && reached(state.consecutive_local, config.consecutive_local_failures)
        {
            "consecutive-local-origin-failures"
        } else {
            return Verdict::Counted;
        };
        state.consecutive_5xx = 0;
        state.consecutive_gateway = 0;
        state.consecutive_local = 0;
        Verdict::Eject { why }
    }

    /// Ejects it at `now`; the time it is out for.
    pub fn eject(&self, now: Instant, config: &OutlierDetection) -> Duration {
        let mut state = self.state();
        let interval = Duration::from_millis(config.interval_ms.max(1));
        if let Some(returned) = state.returned.take() {
            let healthy = now.saturating_duration_since(returned).as_nanos() / interval.as_nanos();
            state.ejections = state
                .ejections
                .saturating_sub(u32::try_from(healthy).unwrap_or(u32::MAX));
        }
        state.ejections = state.ejections.saturating_add(1);
        let base = Duration::from_millis(config.base_ejection_ms);
        let out = base
            .saturating_mul(state.ejections)
            .min(MAX_EJECTION.max(base));
        state.until = Some(now + out);
        out
    }

    /// Whether it is ejected at `now`; true in `returned` when its time
    /// was up just now (it is back).
    pub fn ejected(&self, now: Instant, returned: &mut bool) -> bool {
        let mut state = self.state();
        match state.until {
            Some(until) if until > now => true,
            Some(until) => {
                state.until = None;
                state.returned = Some(until);
                *returned = true;
                false
            }
            None => false,
        }
    }

    /// Ejected now, for how much longer; and its ejections so far.
    pub fn standing(&self, now: Instant) -> (Option<Duration>, u32) {
        let state = self.state();
        let left = state
            .until
            .filter(|u| *u > now)
            .map(|u| u.saturating_duration_since(now));
        (left, state.ejections)
    }
}

/// Whether one more of `n` endpoints, `ejected` of them out already, may
/// be ejected under `max_percent`.
pub fn may_eject(ejected: usize, n: usize, max_percent: u32) -> bool {
    n > 0 && (ejected + 1) * 100 <= n * max_percent as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(
        five: u32,
        gateway: Option<u32>,
        local: Option<u32>,
        split: bool,
    ) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: Some(five),
            consecutive_gateway_errors: gateway,
            consecutive_local_failures: local,
            split_local_origin_errors: split,
            interval_ms: 1_000,
            base_ejection_ms: 10_000,
            max_ejection_percent: 100,
            min_health_percent: 0,
        }
    }

    const E500: Class = Class::Response { status: 500 };
    const E503: Class = Class::Response { status: 503 };
    const OK: Class = Class::Response { status: 200 };

    #[test]
    fn counts_reach_their_thresholds() {
        let health = Health::default();
        let five = config(3, None, None, false);
        assert_eq!(health.observe(E500, &five), Verdict::Counted);
        assert_eq!(health.observe(E500, &five), Verdict::Counted);
        assert_eq!(health.observe(OK, &five), Verdict::Counted);
        // A success in between starts the count over.
        assert_eq!(health.observe(E500, &five), Verdict::Counted);
        assert_eq!(
            health.observe(Class::ConnectFailure, &five),
            Verdict::Counted
        );
        assert_eq!(
            health.observe(Class::Timeout, &five),
            Verdict::Eject {
                why: "consecutive-5xx"
            }
        );
        let gateway = config(0, Some(2), None, false);
        assert_eq!(health.observe(E500, &gateway), Verdict::Counted);
        assert_eq!(health.observe(E503, &gateway), Verdict::Counted);
        assert_eq!(
            health.observe(E503, &gateway),
            Verdict::Eject {
                why: "consecutive-gateway-errors"
            }
        );
        // Split: the proxy's own failures count apart, 5xx answers never
        // reach the local count.
        let split = config(2, None, Some(2), true);
        assert_eq!(health.observe(Class::Reset, &split), Verdict::Counted);
        assert_eq!(health.observe(E500, &split), Verdict::Counted);
        assert_eq!(health.observe(OK, &split), Verdict::Counted);
        assert_eq!(health.observe(Class::Reset, &split), Verdict::Counted);
        assert_eq!(
            health.observe(Class::ConnectFailure, &split),
            Verdict::Eject {
                why: "consecutive-local-origin-failures"
            }
        );
    }

    #[test]
    fn ejections_grow_and_decay() {
        let health = Health::default();
        let c = config(1, None, None, false);
        let t0 = Instant::now();
        let mut back = false;
        assert_eq!(health.eject(t0, &c), Duration::from_secs(10));
        assert!(health.ejected(t0 + Duration::from_secs(9), &mut back));
        assert!(!back);
        assert!(!health.ejected(t0 + Duration::from_secs(10), &mut back));
        assert!(back, "its time is up: it returned");
        // Ejected again right away: twice as long.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(health.eject(t1, &c), Duration::from_secs(20));
        assert!(!health.ejected(t1 + Duration::from_secs(20), &mut back));
        // Two healthy intervals (1 s each) take the count from 2 to 0: the
        // next ejection is the base time again.
        let t2 = t1 + Duration::from_secs(22);
        assert_eq!(health.eject(t2, &c), Duration::from_secs(10));
        assert_eq!(health.standing(t2), (Some(Duration::from_secs(10)), 1));
    }

    #[test]
    fn max_ejection_percent() {
        assert!(may_eject(0, 2, 50));
        assert!(!may_eject(1, 2, 50));
        assert!(!may_eject(0, 2, 10), "10 % of two endpoints is none");
        assert!(may_eject(2, 3, 100));
        assert!(!may_eject(0, 0, 100));
    }
}
