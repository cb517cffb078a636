//! A retry budget (ServiceProfile `retryBudget`, Linkerd's): over a
//! sliding window of `ttl`, retries may be at most `minRetriesPerSecond`
//! times the window's seconds plus `retryRatio` times the requests. The
//! window is two buckets of `ttl`, the older one weighted by how much of it
//! still lies within the window. The state outlives configuration
//! versions (kept by cluster name).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plexus_config::RetryBudget;

#[derive(Debug, Clone)]
pub struct Budget {
    pub config: RetryBudget,
    pub window: Arc<Mutex<Window>>,
}

#[derive(Debug)]
pub struct Window {
    start: Instant,
    requests: f64,
    retries: f64,
    previous_requests: f64,
    previous_retries: f64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            requests: 0.0,
            retries: 0.0,
            previous_requests: 0.0,
            previous_retries: 0.0,
        }
    }
}

impl Budget {
    fn ttl(&self) -> Duration {
        Duration::from_millis(self.config.ttl_ms.max(1))
    }

    /// The window rolled on to `now`, and the older bucket's weight.
    fn window(&self, now: Instant) -> (std::sync::MutexGuard<'_, Window>, f64) {
        let ttl = self.ttl();
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(w.start);
        if elapsed >= ttl * 2 {
            *w = Window {
                start: now,
                ..Window::default()
            };
        } else if elapsed >= ttl {
            w.previous_requests = std::mem::take(&mut w.requests);
            w.previous_retries = std::mem::take(&mut w.retries);
            w.start += ttl;
        }
        let into = now.saturating_duration_since(w.start).as_secs_f64() / ttl.as_secs_f64();
        (w, (1.0 - into).clamp(0.0, 1.0))
    }

    /// Counts a request.
    pub fn deposit(&self, now: Instant) {
        self.window(now).0.requests += 1.0;
    }

    /// Takes a retry from the budget, if it has one left.
    pub fn withdraw(&self, now: Instant) -> bool {
        let ttl = self.ttl().as_secs_f64();
        let (mut w, old) = self.window(now);
        let requests = w.requests + w.previous_requests * old;
        let retries = w.retries + w.previous_retries * old;
        let allowed = f64::from(self.config.min_per_second) * ttl + self.config.ratio * requests;
        if retries + 1.0 <= allowed {
            w.retries += 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_within_the_minimum_and_the_ratio() {
        let budget = Budget {
            config: RetryBudget {
                ratio: 0.5,
                min_per_second: 1,
                ttl_ms: 2_000,
            },
            window: Arc::default(),
        };
        let t0 = budget.window.lock().expect("window").start;
        // Two retries a window whatever the load.
        assert!(budget.withdraw(t0));
        assert!(budget.withdraw(t0));
        assert!(!budget.withdraw(t0));
        // Ten requests make room for five more.
        for _ in 0..10 {
            budget.deposit(t0);
        }
        let granted = (0..10).filter(|_| budget.withdraw(t0)).count();
        assert_eq!(granted, 5);
        // Two windows later it is all forgotten.
        let later = t0 + Duration::from_secs(5);
        assert!(budget.withdraw(later) && budget.withdraw(later) && !budget.withdraw(later));
    }
}
