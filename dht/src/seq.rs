//! Seq numbers for our own items that never go backwards, across restarts included.
//!
//! The Go node restarted `fullnode` and `dmsg-server` seqs at 1 on every start, so peers (and its
//! own persisted copy) ignored it for up to the 2 h TTL. [`SeqClock`] combines two sources:
//!
//! - the wall clock in Unix milliseconds, passed in: after a restart `now` is (almost always)
//!   past anything published before, even if the store was lost;
//! - a high-water mark: the highest seq seen for the slot, from our persisted store at startup
//!   ([`SeqClock::new`]) and from any copy found on the network ([`SeqClock::observe`]), so a
//!   clock that jumped backwards, or a key migrated from a Go visor (which used Unix
//!   *nanoseconds*), still yields a higher seq.
//!
//! `next(now) = max(now_ms, last + 1)`: strictly increasing within a run, and above whatever
//! survived from before it. Nothing else needs persisting: the item itself (kept by the redb
//! store) is the high-water mark.

use crate::time::Timestamp;

/// Issues seqs for one of our own slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqClock {
    last: u64,
}

impl SeqClock {
    /// A clock whose next seq is above `high_water` (the seq of our stored copy, or 0).
    pub fn new(high_water: u64) -> SeqClock {
        SeqClock { last: high_water }
    }

    /// Raises the high-water mark to `seq` (e.g. a network copy of our item). Never lowers it.
    pub fn observe(&mut self, seq: u64) {
        self.last = self.last.max(seq);
    }

    /// The last seq issued or observed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The next seq: `max(now in ms, last + 1)`. Saturates at `u64::MAX` (then every later call
    /// returns `u64::MAX`, which stores refuse as not higher; unreachable with real clocks).
    pub fn next(&mut self, now: Timestamp) -> u64 {
        let seq = now.as_unix_millis().max(self.last.saturating_add(1));
        self.last = seq;
        seq
    }
}
