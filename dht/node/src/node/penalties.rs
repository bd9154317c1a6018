//! Sync penalties: peers that broke `/skymesh/sync/1` (a malformed or oversized message, a
//! paging violation, an item invalid in itself) are refused for [`PENALTY`]. Pure: the actor
//! passes `now`, and on a new penalty disconnects the peer and ends its sessions and pushes.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a penalised peer is disconnected from sync and refused.
pub const PENALTY: Duration = Duration::from_secs(10 * 60);

/// Penalised peers remembered (same bound as the per-peer limiters).
const MAX_PENALISED: usize = crate::limits::MAX_TRACKED_PEERS;

/// Peers refused until a time.
#[derive(Debug, Default)]
pub(crate) struct Penalties {
    until: HashMap<PeerId, Instant>,
}

impl Penalties {
    /// Refuses `peer` from `now` for [`PENALTY`]. Past [`MAX_PENALISED`] peers, expired ones go
    /// first; if none has, the record is cleared (a flood of fresh peer ids costs them their
    /// record, never our memory).
    pub fn penalise(&mut self, peer: PeerId, now: Instant) {
        if !self.until.contains_key(&peer) && self.until.len() >= MAX_PENALISED {
            self.until.retain(|_, until| *until > now);
            if self.until.len() >= MAX_PENALISED {
                self.until.clear();
            }
        }
        self.until.insert(peer, now + PENALTY);
    }

    /// Whether `peer` is refused at `now`.
    pub fn is_penalised(&self, peer: &PeerId, now: Instant) -> bool {
        self.until.get(peer).is_some_and(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_penalty_lasts_ten_minutes() {
        let mut p = Penalties::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        p.penalise(a, t0);
        assert!(p.is_penalised(&a, t0));
        assert!(p.is_penalised(&a, t0 + PENALTY - Duration::from_millis(1)));
        assert!(!p.is_penalised(&a, t0 + PENALTY));
        assert!(!p.is_penalised(&b, t0));
        // A second offence restarts it.
        p.penalise(a, t0 + PENALTY);
        assert!(p.is_penalised(&a, t0 + PENALTY + Duration::from_secs(1)));
    }

    #[test]
    fn the_record_is_bounded() {
        let mut p = Penalties::default();
        let t0 = Instant::now();
        let old: Vec<PeerId> = (0..MAX_PENALISED).map(|_| PeerId::random()).collect();
        for peer in &old {
            p.penalise(*peer, t0);
        }
        // Expired ones make room.
        let later = t0 + PENALTY;
        let fresh = PeerId::random();
        p.penalise(fresh, later);
        assert_eq!(p.until.len(), 1);
        assert!(p.is_penalised(&fresh, later));
        // Full of live penalties: cleared rather than grown.
        for _ in 1..MAX_PENALISED {
            p.penalise(PeerId::random(), later);
        }
        p.penalise(PeerId::random(), later);
        assert_eq!(p.until.len(), 1);
        assert!(p.until.len() <= MAX_PENALISED);
    }
}
