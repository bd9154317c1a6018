//! Reconnect backoff: exponential, bounded, with jitter. Pure: the random draw is passed in.
//! Used by DMSG transports (`skymesh-tp`) and the server mesh's peer links (spec §7: 5 s, ×1.5,
//! ≤ 1 min); re-exported as `dmsg::backoff`.
use std::time::Duration;

/// Exponential backoff `base · factor^attempt` (factor 2 unless set), capped at `max`, then
/// scaled by a jitter factor in `[0.5, 1.5)` and capped at `max` again, so the delay never
/// exceeds `max` and peers that lost their links at the same moment do not redial in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    factor: f64,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, doubling, and never above `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            factor: 2.0,
            attempt: 0,
        }
    }

    /// Grows by `factor` (clamped to 1..=16) per attempt instead of 2 (the reference mesh: 1.5).
    pub fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = if factor.is_finite() {
            factor.clamp(1.0, 16.0)
        } else {
            2.0
        };
        self
    }

    /// The next delay; `unit` is a uniform random number in `[0, 1)` (clamped).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let grow = self.factor.powi(self.attempt.min(64) as i32);
        let exp = if grow.is_finite() && grow < 1e6 {
            self.base.mul_f64(grow).min(self.max)
        } else {
            self.max
        };
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

    #[test]
    fn mesh_schedule_5s_times_1_5_up_to_60s() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(60)).with_factor(1.5);
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay(0.5)).collect();
        assert_eq!(d[0], Duration::from_secs(5));
        assert_eq!(d[1], Duration::from_millis(7500));
        assert_eq!(d[2], Duration::from_millis(11250));
        assert_eq!(d[9], Duration::from_secs(60));
    }

    proptest! {
        #[test]
        fn always_within_bounds(
            units in proptest::collection::vec(-1.0f64..2.0, 1..80),
            factor in 0.5f64..20.0,
        ) {
            let base = Duration::from_millis(100);
            let max = Duration::from_secs(30);
            let mut b = Backoff::new(base, max).with_factor(factor);
            for u in units {
                let d = b.next_delay(u);
                prop_assert!(d >= base / 2 && d <= max);
            }
        }
    }
}
