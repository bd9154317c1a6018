//! Hop counting for iterative lookups, from the order of requests and answers.
//!
//! libp2p-kad reports how many requests a query sent but not how deep they went: a lookup that
//! finds nothing closer after its first α answers sends to all k closest at once (one round in
//! Kademlia's terms), which `requests / α` counts as seven. [`HopTracker`] measures the depth
//! instead. A request's hop is one more than the hop of the answer kad had just taken in when
//! it sent it (kad only sends on an answer, a failure or at the start); the initial requests
//! are hop 1. The hop of a lookup's result is the hop of the answer that carried it.
//!
//! The tracker is node-wide: the attribution is exact while the node runs one query at a time
//! (benchmarks, diagnostics) and only an estimate when queries overlap. It is off unless
//! [`crate::Config::measure_lookup_hops`] is set; [`crate::kad_limit::PeerLimited`] feeds it.
use std::collections::HashMap;

use libp2p::PeerId;

/// Peers remembered per tracked lookup; requests beyond this are not tracked (a lookup sends
/// about k + a few α requests, far fewer).
pub const MAX_TRACKED_PEERS: usize = 4096;

/// Hops of the requests of the lookup in progress.
#[derive(Debug, Default)]
pub struct HopTracker {
    hop_of: HashMap<PeerId, u32>,
    /// Hop of the answer taken in last (0 before any).
    last: u32,
}

impl HopTracker {
    /// Forgets the previous lookup: the next requests are hop 1.
    pub fn start(&mut self) {
        self.hop_of.clear();
        self.last = 0;
    }

    /// A request went to `peer` (or a dial for one): one hop deeper than the last answer.
    pub fn sent(&mut self, peer: PeerId) {
        if self.hop_of.len() < MAX_TRACKED_PEERS {
            self.hop_of.entry(peer).or_insert(self.last + 1);
        }
    }

    /// `peer` answered (or failed): what kad sends next is caused by it.
    pub fn answered(&mut self, peer: &PeerId) {
        if let Some(h) = self.hop_of.get(peer) {
            self.last = *h;
        }
    }

    /// Hop of the answer taken in last.
    pub fn last(&self) -> u32 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_after_a_stall_is_one_hop() {
        let p: Vec<PeerId> = (0..30).map(|_| PeerId::random()).collect();
        let mut t = HopTracker::default();
        t.start();
        // α = 3 initial requests.
        for q in &p[..3] {
            t.sent(*q);
        }
        // The first answer brings a closer peer: hop 2.
        t.answered(&p[0]);
        t.sent(p[3]);
        // The other two answers bring nothing closer; then the stalled query sends to
        // everything left of the k closest at once: still hop 2 (after hop-1 answers).
        t.answered(&p[1]);
        t.answered(&p[2]);
        for q in &p[4..24] {
            t.sent(*q);
        }
        // The record arrives from one of the burst: the lookup took 2 hops, not 24/3.
        t.answered(&p[10]);
        assert_eq!(t.last(), 2);
        // The hop-2 request's answer makes the next request hop 3.
        t.answered(&p[3]);
        t.sent(p[25]);
        t.answered(&p[25]);
        assert_eq!(t.last(), 3);
        // A second request to a peer keeps its first hop; strangers do not move the clock.
        t.sent(p[0]);
        t.answered(&p[0]);
        assert_eq!(t.last(), 1);
        t.answered(&PeerId::random());
        assert_eq!(t.last(), 1);
        t.start();
        assert_eq!(t.last(), 0);
    }
}
