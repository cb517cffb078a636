//! A cluster's circuit breakers (DestinationRule `connectionPool`), per
//! client proxy, with Istio's (Envoy's) meaning:
//!
//! - `http2MaxRequests`: requests in flight to the cluster, whatever their
//!   protocol; one more is refused at once;
//! - `maxConnections` with `http1MaxPendingRequests`: an HTTP/1.1 request
//!   holds a connection for as long as it is in flight (as it would on
//!   Envoy's HTTP/1.1 upstream pool, which Istio uses for HTTP/1.1 apps),
//!   so at most `maxConnections` of them are in flight; the next ones wait
//!   for one to end, at most `http1MaxPendingRequests` of them, and one
//!   more is refused at once;
//! - `maxRetries`: retries in flight to the cluster; a retry beyond it is
//!   not made, and the caller gets the attempt's own answer;
//! - `retryBudget` (the DestinationRule's, Envoy's): retries in flight at
//!   most `percent` of the requests in flight, or `minRetryConcurrency`.
//!
//! The counts outlive configuration versions (kept by cluster name); the
//! limits are each version's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plexus_config::{ConcurrencyBudget, ConnectionPool};
use tokio::sync::Notify;

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// `http2MaxRequests`.
    Requests,
    /// `maxConnections` and `http1MaxPendingRequests`.
    Pending,
    /// `maxRetries`.
    Retries,
    /// DestinationRule `retryBudget`.
    RetryBudget,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "max-requests",
            Self::Pending => "max-pending-requests",
            Self::Retries => "max-retries",
            Self::RetryBudget => "retry-budget",
        }
    }
}

/// What is in flight to a cluster now.
#[derive(Debug, Default)]
pub struct Counts {
    requests: AtomicUsize,
    http1: AtomicUsize,
    pending: AtomicUsize,
    retries: AtomicUsize,
    /// Woken when an HTTP/1.1 request ends.
    freed: Notify,
}

/// Takes one of `count` if fewer than `limit` are taken.
fn take(count: &AtomicUsize, limit: Option<u32>) -> bool {
    let limit = limit.map_or(usize::MAX, |l| l as usize);
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// A cluster's limits over its counts.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub counts: Arc<Counts>,
    pub config: Option<ConnectionPool>,
    /// Retries in flight by requests in flight.
    pub retry_budget: Option<ConcurrencyBudget>,
}

/// What a request holds while it is in flight.
#[derive(Debug)]
pub struct Admitted {
    counts: Arc<Counts>,
    http1: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.counts.requests.fetch_sub(1, Ordering::AcqRel);
        if self.http1 {
            self.counts.http1.fetch_sub(1, Ordering::AcqRel);
            self.counts.freed.notify_one();
        }
    }
}

/// A retry in flight.
#[derive(Debug)]
pub struct Retrying(Arc<Counts>);

impl Drop for Retrying {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limits {
    /// Admits a request (`http1`: the app speaks HTTP/1.1), waiting for a
    /// connection when the HTTP/1.1 ones are all busy and the queue has
    /// room; the limit that refused it otherwise.
    pub async fn admit(&self, http1: bool) -> Result<Admitted, Overflow> {
        let Some(config) = &self.config else {
            // Counted for the retry budget.
            self.counts.requests.fetch_add(1, Ordering::AcqRel);
            return Ok(self.admitted(false));
        };
        if !take(&self.counts.requests, config.max_requests) {
            return Err(Overflow::Requests);
        }
        // From here on the request is counted: the guard gives it back.
        let mut admitted = self.admitted(false);
        if !http1 || config.max_connections.is_none() {
            return Ok(admitted);
        }
        let counts = &self.counts;
        if take(&counts.http1, config.max_connections) {
            admitted.http1 = true;
            return Ok(admitted);
        }
        if !take(&counts.pending, config.max_pending_requests) {
            return Err(Overflow::Pending);
        }
        let _pending = Pending(counts);
        loop {
            let freed = counts.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if take(&counts.http1, config.max_connections) {
                admitted.http1 = true;
                return Ok(admitted);
            }
            freed.await;
        }
    }

    fn admitted(&self, http1: bool) -> Admitted {
        Admitted {
            counts: self.counts.clone(),
            http1,
        }
    }

    /// Whether requests are counted: a limit or the budget needs them.
    pub fn counting(&self) -> bool {
        self.config.is_some() || self.retry_budget.is_some()
    }

    /// A retry, if `maxRetries` and the retry budget leave room for one.
    pub fn retry(&self) -> Result<Retrying, Overflow> {
        let limit = self.config.as_ref().and_then(|c| c.max_retries);
        if !take(&self.counts.retries, limit) {
            return Err(Overflow::Retries);
        }
        let retrying = Retrying(self.counts.clone());
        if let Some(budget) = &self.retry_budget {
            // This retry among those in flight, against the requests.
            let retries = self.counts.retries.load(Ordering::Acquire);
            let share = budget.percent / 100.0 * self.in_flight() as f64;
            let allowed = (share as usize).max(budget.min_concurrency as usize);
            if retries > allowed {
                return Err(Overflow::RetryBudget);
            }
        }
        Ok(retrying)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.counts.requests.load(Ordering::Acquire)
    }
}

/// A request waiting for an HTTP/1.1 connection.
struct Pending<'a>(&'a Counts);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(pool: ConnectionPool) -> Limits {
        Limits {
            counts: Arc::default(),
            config: Some(pool),
            retry_budget: None,
        }
    }

    #[tokio::test]
    async fn requests_beyond_the_limit_are_refused() {
        let limits = limits(ConnectionPool {
            max_requests: Some(2),
            ..Default::default()
        });
        let a = limits.admit(false).await.expect("first");
        let _b = limits.admit(true).await.expect("second");
        assert_eq!(limits.admit(false).await.err(), Some(Overflow::Requests));
        drop(a);
        assert!(limits.admit(false).await.is_ok());
        assert_eq!(limits.in_flight(), 1, "the guards give their counts back");
    }

    #[tokio::test]
    async fn http1_requests_wait_for_a_connection() {
        let limits = limits(ConnectionPool {
            max_connections: Some(1),
            max_pending_requests: Some(1),
            ..Default::default()
        });
        let first = limits.admit(true).await.expect("a connection");
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.admit(true).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the second waits");
        assert_eq!(limits.admit(true).await.err(), Some(Overflow::Pending));
        // HTTP/2 requests do not hold HTTP/1.1 connections.
        assert!(limits.admit(false).await.is_ok());
        drop(first);
        assert_eq!(waiting.await.expect("task"), Ok(()));
    }

    #[test]
    fn retries_beyond_the_limit_are_not_made() {
        let limits = limits(ConnectionPool {
            max_retries: Some(1),
            ..Default::default()
        });
        let one = limits.retry().expect("a retry");
        assert_eq!(limits.retry().err(), Some(Overflow::Retries));
        drop(one);
        assert!(limits.retry().is_ok());
    }
}
