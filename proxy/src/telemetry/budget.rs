//! A budget of log lines a second, so that a caller hammering a refused
//! path (or an overloaded destination) cannot flood the log: beyond
//! [`LOG_BUDGET`] lines in a second nothing is written, and the next line
//! says how many were left out.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Log lines a second, at most, per budget.
pub const LOG_BUDGET: u32 = 20;

/// One budget, shared by its clones.
#[derive(Clone, Debug, Default)]
pub struct LogBudget(Arc<Mutex<Window>>);

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    written: u32,
    dropped: u64,
}

impl LogBudget {
    /// Whether a line may be written now, and how many were left out
    /// before it.
    pub fn may_log(&self) -> Option<u64> {
        let mut window = self.0.lock().ok()?;
        let now = Instant::now();
        if window
            .started
            .is_none_or(|s| now.duration_since(s).as_secs() >= 1)
        {
            window.started = Some(now);
            window.written = 0;
        }
        if window.written >= LOG_BUDGET {
            window.dropped += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.dropped))
    }
}
