//! Reconnect backoff: exponential, bounded, with jitter. Pure: the random draw is passed in.
use std::time::Duration;

/// Exponential backoff `base · 2^attempt`, capped at `max`, then scaled by a jitter factor in
/// `[0.5, 1.5)` and capped at `max` again, so the delay never exceeds `max` and peers that lost
/// their links at the same moment do not redial in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never above `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The next delay; `unit` is a uniform random number in `[0, 1)` (clamped).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        exp.mul_f64(0.5 + unit.clamp(0.0, 1.0)).min(self.max)
    }

    /// Attempts since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` (after a link came up).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay(0.5)).collect();
        assert_eq!(d[0], Duration::from_millis(100));
        assert_eq!(d[1], Duration::from_millis(200));
        assert_eq!(d[4], Duration::from_millis(1600));
        assert_eq!(d[7], Duration::from_secs(2));
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
    }

    proptest! {
        #[test]
        fn always_within_bounds(units in proptest::collection::vec(-1.0f64..2.0, 1..60)) {
            let base = Duration::from_millis(100);
            let max = Duration::from_secs(30);
            let mut b = Backoff::new(base, max);
            for u in units {
                let d = b.next_delay(u);
                prop_assert!(d >= base / 2 && d <= max);
            }
        }
    }
}
