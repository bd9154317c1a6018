//! Capped exponential backoff with jitter for Redis reconnects (writer and feed).
//!
//! Starts at [`INITIAL`], doubles up to [`crate::writer::MAX_BACKOFF`], and waits a random
//! 75–100 % of the current step, so that many full nodes sharing one Redis do not reconnect in
//! lockstep after it restarts.
use std::time::Duration;

use crate::writer::MAX_BACKOFF;

/// First wait after a failure.
pub const INITIAL: Duration = Duration::from_millis(50);

/// Backoff state of one reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Backoff {
            step: INITIAL,
            rng: u64::from(seed) | 1,
        }
    }
}

impl Backoff {
    /// After a success: the next failure waits [`INITIAL`] again.
    pub fn reset(&mut self) {
        self.step = INITIAL;
    }

    /// The next wait (75–100 % of the current step), advancing the step.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: jitter only, not security.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = 0.75 + 0.25 * (self.rng % 1000) as f64 / 1000.0;
        let d = self.step.mul_f64(frac);
        self.step = (self.step * 2).min(MAX_BACKOFF);
        d
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first <= INITIAL && first >= INITIAL.mul_f64(0.75));
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
        }
        assert!(last <= MAX_BACKOFF && last >= MAX_BACKOFF.mul_f64(0.75));
        b.reset();
        assert!(b.next_delay() <= INITIAL);
    }
}
