//! When certificates are renewed: pure functions of their validity and the clock.

use std::time::{Duration, SystemTime};

/// The moment a certificate valid from `not_before` to `not_after` is due
/// for renewal: once `fraction` of its life has passed (two thirds by
/// default). A fraction outside (0, 1) is clamped into it.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, fraction: f64) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.01, 0.99)
    } else {
        2.0 / 3.0
    };
    not_before + life.mul_f64(fraction)
}

/// Whether the certificate is due for renewal at `now`.
pub fn needs_rotation(
    not_before: SystemTime,
    not_after: SystemTime,
    fraction: f64,
    now: SystemTime,
) -> bool {
    now >= renewal_time(not_before, not_after, fraction)
}

/// How long until the certificate is due for renewal; zero when it already is.
pub fn refresh_in(
    not_before: SystemTime,
    not_after: SystemTime,
    fraction: f64,
    now: SystemTime,
) -> Duration {
    renewal_time(not_before, not_after, fraction)
        .duration_since(now)
        .unwrap_or_default()
}

/// Whether the certificate expires within `window` of `now` (the
/// `CertificateExpiringSoon` condition), or has expired.
pub fn expires_within(not_after: SystemTime, window: Duration, now: SystemTime) -> bool {
    not_after
        .duration_since(now)
        .map_or(true, |left| left <= window)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(hours: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + HOUR * hours as u32 + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn renews_after_two_thirds_of_a_day() {
        let (start, end) = (at(0), at(24));
        assert_eq!(renewal_time(start, end, 2.0 / 3.0), at(16));
        assert!(!needs_rotation(start, end, 2.0 / 3.0, at(15)));
        assert!(needs_rotation(start, end, 2.0 / 3.0, at(16)));
        assert!(
            needs_rotation(start, end, 2.0 / 3.0, at(30)),
            "expired certificates are due"
        );
        assert_eq!(refresh_in(start, end, 2.0 / 3.0, at(10)), 6 * HOUR);
        assert_eq!(refresh_in(start, end, 2.0 / 3.0, at(20)), Duration::ZERO);
    }

    #[test]
    fn short_lifetimes_and_other_fractions() {
        let start = at(0);
        let end = start + Duration::from_secs(120);
        assert_eq!(
            renewal_time(start, end, 0.5),
            start + Duration::from_secs(60)
        );
        assert_eq!(
            refresh_in(start, end, 0.5, start + Duration::from_secs(45)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn out_of_range_fractions_are_clamped() {
        let (start, end) = (at(0), at(100));
        assert_eq!(renewal_time(start, end, 1.5), at(99));
        assert_eq!(renewal_time(start, end, -1.0), at(1));
        assert_eq!(
            renewal_time(start, end, f64::NAN),
            renewal_time(start, end, 2.0 / 3.0)
        );
    }

    #[test]
    fn a_certificate_whose_end_precedes_its_start_is_due_at_once() {
        assert!(needs_rotation(at(10), at(5), 2.0 / 3.0, at(10)));
    }

    #[test]
    fn expiring_soon() {
        assert!(!expires_within(at(48), 24 * HOUR, at(0)));
        assert!(expires_within(at(24), 24 * HOUR, at(0)));
        assert!(expires_within(at(1), 24 * HOUR, at(5)), "already expired");
    }
}
