//! Fault injection: whether a request is delayed, aborted, or both, drawn
//! with the randomness the caller gives (tests draw what they like).

use std::time::Duration;

use plexus_config::Fault;

/// What a route's faults do to one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Then answer with this status instead of forwarding.
    pub abort: Option<u16>,
}

/// Decides with `percent` draws in [0, 100) from `draw`.
pub fn decide(fault: Option<&Fault>, mut draw: impl FnMut() -> f64) -> Decision {
    let Some(fault) = fault else {
        return Decision::default();
    };
    Decision {
        delay: fault
            .delay
            .as_ref()
            .filter(|d| draw() < d.percent)
            .map(|d| Duration::from_millis(d.delay_ms)),
        abort: fault
            .abort
            .as_ref()
            .filter(|a| draw() < a.percent)
            .map(|a| a.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_config::{FaultAbort, FaultDelay};

    #[test]
    fn percentages_decide() {
        let fault = Fault {
            delay: Some(FaultDelay {
                delay_ms: 300,
                percent: 10.0,
            }),
            abort: Some(FaultAbort {
                status: 503,
                percent: 50.0,
            }),
        };
        let mut draws = [5.0, 60.0].into_iter();
        assert_eq!(
            decide(Some(&fault), || draws.next().unwrap_or(0.0)),
            Decision {
                delay: Some(Duration::from_millis(300)),
                abort: None
            }
        );
        let mut draws = [10.0, 49.9].into_iter();
        assert_eq!(
            decide(Some(&fault), || draws.next().unwrap_or(0.0)),
            Decision {
                delay: None,
                abort: Some(503)
            }
        );
        assert_eq!(decide(None, || 0.0), Decision::default());
    }
}
