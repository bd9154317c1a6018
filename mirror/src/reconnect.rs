//! Reconnect waits for Redis (writer and feed): the shared pure
//! [`dmsg_proto::backoff::Backoff`] from [`INITIAL`] doubling up to
//! [`crate::writer::MAX_BACKOFF`], each wait a random 75–100 % of the current step, so that many
//! full nodes sharing one Redis do not reconnect in lockstep after it restarts.
use std::time::Duration;

use dmsg_proto::backoff::Backoff;

use crate::writer::MAX_BACKOFF;

/// First wait after a failure.
pub const INITIAL: Duration = Duration::from_millis(50);

/// The backoff of one reconnect loop, with its own jitter source.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Backoff,
    /// xorshift64 state: jitter only, not security.
    rng: u64,
}

impl Default for Reconnect {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Reconnect {
            backoff: Backoff::new(INITIAL, MAX_BACKOFF),
            rng: u64::from(seed) | 1,
        }
    }
}

impl Reconnect {
    /// After a success: the next failure waits [`INITIAL`] again.
    pub fn reset(&mut self) {
        self.backoff.reset();
    }

    /// The next wait (75–100 % of the current step), advancing the step.
    pub fn next_delay(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // `Backoff` scales by 0.5 + unit: a unit in [0.25, 0.5) gives 75–100 %.
        let unit = 0.25 + 0.25 * (self.rng % 1000) as f64 / 1000.0;
        self.backoff.next_delay(unit)
    }

    /// Sleeps for [`Reconnect::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Reconnect::default();
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
