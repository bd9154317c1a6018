//! Hop counting for iterative lookups, from the order of requests and answers.
//!
//! libp2p-kad reports how many requests a query sent but not how deep they went: a lookup that
//! finds nothing closer after its first α answers sends to all k closest at once (one round in
//! Kademlia's terms), which `requests / α` counts as about eight. [`HopTracker`] bounds the
//! depth instead. Every request gets a hop one more than the deepest answer taken in so far
//! (requests sent before any answer are hop 1), and a found record's hop is the hop of the
//! request it answered.
//!
//! This is an **upper bound** on the real depth (the length of the shortest chain of answers
//! that led to the peer): the answer that named a peer always arrives before the request to
//! it, so by induction every request's hop is at least one more than that answer's real depth.
//! Failures and timeouts carry no peers and move nothing. It overcounts when a slow shallow
//! answer arrives after a deeper one, never undercounts.
//!
//! The tracker is node-wide, so the bound holds for a node running one query at a time
//! (benchmarks, diagnostics); overlapping queries mix their answers. It is off unless
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
    /// Deepest answer taken in so far (0 before any).
    deepest: u32,
}

impl HopTracker {
    /// Forgets the previous lookup: the next requests are hop 1.
    pub fn start(&mut self) {
        self.hop_of.clear();
        self.deepest = 0;
    }

    /// A request went to `peer` (or a dial for one): one hop deeper than the deepest answer.
    /// A later request to the same peer replaces the hop (it can only be deeper), so a dial
    /// that was not a lookup's (a routing-table probe) cannot leave a too-shallow hop behind.
    pub fn sent(&mut self, peer: PeerId) {
        let hop = self.deepest + 1;
        if let Some(h) = self.hop_of.get_mut(&peer) {
            *h = hop;
        } else if self.hop_of.len() < MAX_TRACKED_PEERS {
            self.hop_of.insert(peer, hop);
        }
    }

    /// `peer` answered with peers or a record.
    pub fn answered(&mut self, peer: &PeerId) {
        if let Some(h) = self.hop_of.get(peer) {
            self.deepest = self.deepest.max(*h);
        }
    }

    /// The hop of the request last sent to `peer` in this lookup.
    pub fn hop_of(&self, peer: &PeerId) -> Option<u32> {
        self.hop_of.get(peer).copied()
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
        // everything left of the k closest at once: hop 2 as well.
        t.answered(&p[1]);
        t.answered(&p[2]);
        for q in &p[4..24] {
            t.sent(*q);
        }
        // The record arrives from one of the burst: 2 hops, not 24/3.
        t.answered(&p[10]);
        assert_eq!(t.hop_of(&p[10]), Some(2));
        assert_eq!(t.hop_of(&p[0]), Some(1));
        assert_eq!(t.hop_of(&p[29]), None);
    }

    #[test]
    fn a_late_shallow_answer_never_lowers_the_bound() {
        let p: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let mut t = HopTracker::default();
        t.start();
        t.sent(p[0]);
        t.sent(p[1]);
        t.answered(&p[0]); // hop 1 names p2
        t.sent(p[2]);
        t.answered(&p[2]); // hop 2 names p3
        t.sent(p[3]);
        // A slow hop-1 answer arrives now; the next request may be p3's discovery: still
        // counted after the deepest answer (2), so hop 3, never 2.
        t.answered(&p[1]);
        t.sent(p[4]);
        assert_eq!(t.hop_of(&p[4]), Some(3));
        // Answers from peers never asked (or asked before start) change nothing.
        t.answered(&PeerId::random());
        t.sent(p[5]);
        assert_eq!(t.hop_of(&p[5]), Some(3));
        // A second request to a peer takes the later, deeper hop.
        t.answered(&p[3]);
        t.sent(p[0]);
        assert_eq!(t.hop_of(&p[0]), Some(4));
        t.start();
        assert_eq!(t.hop_of(&p[0]), None);
    }
}
