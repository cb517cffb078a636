//! A peak-EWMA latency estimate per endpoint (Linkerd's default balancer,
//! a Plexus option here: `loadBalancer.simple: PEAK_EWMA`). A sample above
//! the estimate replaces it at once (the peak); one below moves it there
//! as an exponentially weighted average whose weight decays with the time
//! since the last sample (10 s). Without samples it decays towards zero,
//! so that an endpoint once slow is tried again. An endpoint's cost is its
//! estimate times one more than its requests in flight; the balancer takes
//! the cheaper of two random endpoints.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How fast old samples lose weight (Linkerd's default).
const DECAY: Duration = Duration::from_secs(10);
/// The estimate of an endpoint nothing was heard from yet (Linkerd's).
const DEFAULT_RTT: Duration = Duration::from_millis(30);

#[derive(Debug)]
pub struct Ewma(Mutex<Estimate>);

#[derive(Debug)]
struct Estimate {
    /// Seconds.
    rtt: f64,
    at: Instant,
}

impl Default for Ewma {
    fn default() -> Self {
        Self(Mutex::new(Estimate {
            rtt: DEFAULT_RTT.as_secs_f64(),
            at: Instant::now(),
        }))
    }
}

impl Estimate {
    /// Decays the estimate to `now`; the weight an old value keeps.
    fn decay(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let weight = (-elapsed / DECAY.as_secs_f64()).exp();
        self.at = now;
        weight
    }
}

impl Ewma {
    fn estimate(&self) -> std::sync::MutexGuard<'_, Estimate> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a latency sample at `now`.
    pub fn observe(&self, rtt: Duration, now: Instant) {
        let rtt = rtt.as_secs_f64();
        let mut estimate = self.estimate();
        let weight = estimate.decay(now);
        estimate.rtt = if rtt > estimate.rtt {
            rtt
        } else {
            estimate.rtt * weight + rtt * (1.0 - weight)
        };
    }

    /// The estimate at `now`, seconds: decayed towards zero since the
    /// last sample.
    pub fn rtt(&self, now: Instant) -> f64 {
        let mut estimate = self.estimate();
        let weight = estimate.decay(now);
        estimate.rtt *= weight;
        estimate.rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_at_once_and_decays_slowly() {
        let ewma = Ewma::default();
        let t0 = Instant::now();
        ewma.observe(Duration::from_millis(100), t0);
        assert!(
            (ewma.rtt(t0) - 0.1).abs() < 1e-9,
            "a peak replaces the estimate"
        );
        // A fast sample a second later moves it about a tenth of the way.
        let t1 = t0 + Duration::from_secs(1);
        ewma.observe(Duration::from_millis(1), t1);
        let rtt = ewma.rtt(t1);
        assert!(rtt > 0.08 && rtt < 0.095, "{rtt}");
        // Silence: towards zero.
        assert!(ewma.rtt(t1 + Duration::from_secs(30)) < 0.005);
    }
}
