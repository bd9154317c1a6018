//! Per-peer limits: a fixed-window counter per remote peer.
//!
//! Used twice by the node: inbound requests (kad PutRecord and `/skymesh/get/1`) and items
//! accepted into the store from one peer. The map itself is bounded: when it holds
//! [`MAX_TRACKED_PEERS`] entries, windows that have ended are dropped first and, if that frees
//! nothing, the whole map is reset (a flood of fresh peer ids then costs them their history, not
//! us our memory).
use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Most peers tracked at once (≈ 100 bytes each → ≈ 1 MB).
pub const MAX_TRACKED_PEERS: usize = 10_000;

/// Counts events per peer in fixed windows of `window`, allowing `max` per window.
#[derive(Debug)]
pub struct PeerLimiter {
    window: Duration,
    max: u32,
    peers: HashMap<PeerId, (Instant, u32)>,
}

impl PeerLimiter {
    /// A limiter allowing `max` events per peer per `window`.
    pub fn new(max: u32, window: Duration) -> PeerLimiter {
        PeerLimiter {
            window,
            max,
            peers: HashMap::new(),
        }
    }

    /// Records one event from `peer` at `now`; `false` when the peer is over its limit.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.peers.len() >= MAX_TRACKED_PEERS && !self.peers.contains_key(&peer) {
            let window = self.window;
            self.peers
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            if self.peers.len() >= MAX_TRACKED_PEERS {
                self.peers.clear();
            }
        }
        let entry = self.peers.entry(peer).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.max {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_then_resets() {
        let mut l = PeerLimiter::new(2, Duration::from_secs(10));
        let p = PeerId::random();
        let t = Instant::now();
        assert!(l.allow(p, t));
        assert!(l.allow(p, t));
        assert!(!l.allow(p, t));
        assert!(l.allow(PeerId::random(), t));
        assert!(l.allow(p, t + Duration::from_secs(10)));
    }
}
