//! Metric counters a compiled policy keeps.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;

/// Counters a compiled policy resolves once, on first use: a metric
/// family's lookup hashes and allocates its labels, too much for every
/// request. Cleared with the compiled policy (a new configuration version
/// resolves them again: the family keeps the counts).
pub struct Counters<const N: usize>([OnceLock<Counter>; N]);

impl<const N: usize> Counters<N> {
    /// Counter `i`, made by `make` the first time.
    pub fn get(&self, i: usize, make: impl FnOnce() -> Counter) -> &Counter {
        self.0[i].get_or_init(make)
    }
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| OnceLock::new()))
    }
}

impl<const N: usize> std::fmt::Debug for Counters<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counters")
    }
}

/// The same counters: one compiled policy's.
impl<const N: usize> PartialEq for Counters<N> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
