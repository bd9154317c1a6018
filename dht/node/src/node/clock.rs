//! The actor's clock: read once per turn of the actor loop ([`Now::read`]) and passed to the
//! operations, which never read it themselves (tests pass made-up instants).
use std::time::{Instant, SystemTime};

use dht::Timestamp;

/// One reading of both clocks the node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Monotonic time: timeouts, backoffs, penalties, elapsed times.
    pub mono: Instant,
    /// Wall-clock time: store TTLs, seq clocks, advert freshness (adverts carry Unix ms).
    pub wall: Timestamp,
}

impl Now {
    /// Reads both clocks (the actor does this once per loop turn).
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: Timestamp::from_system_time(SystemTime::now()),
        }
    }

    /// Wall-clock Unix milliseconds.
    pub fn unix_ms(&self) -> u64 {
        self.wall.as_unix_millis()
    }
}
