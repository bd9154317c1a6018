//! Time as the library sees it: passed in by the caller, never read inside.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A wall-clock instant in Unix milliseconds. Stores and the seq clock take it as a parameter,
/// so tests drive time explicitly and nothing in the crate calls the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From Unix milliseconds.
    pub const fn from_unix_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    /// Unix milliseconds.
    pub const fn as_unix_millis(self) -> u64 {
        self.0
    }

    /// From a `SystemTime` (times before 1970 become 0). For callers; the crate never reads the
    /// clock itself.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// `self - d`, saturating at 0.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}
