//! The full-node table: which peers are full nodes (fresh adverts, identify), which are
//! connected, and which are backed off after a failed request. Pure: time goes in as
//! parameters; the actor turns its answers into requests.
//!
//! - A peer is a **known** full node while its freshest advert's seq (Unix ms, from the seq
//!   clock) is within `advert_fresh` of now, or while it is connected and identified as a full
//!   node (identify agent `role=full`).
//! - A full node whose read or put failed is **backed off** for [`FULL_NODE_BACKOFF`]: skipped by
//!   reads and puts (a dead node's advert stays fresh for up to 30 min; without this every read
//!   would wait for its dial to fail). A new connection ends the backoff.
//! - At most [`MAX_FULL_NODES`] peers are tracked; beyond this new ones are ignored until old
//!   ones go.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Most full nodes tracked; beyond this new ones are ignored until old ones go stale.
pub const MAX_FULL_NODES: usize = 1024;

/// How long a full node whose read request (or put) failed is skipped by reads and puts.
pub const FULL_NODE_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct FullNode {
    /// Seq (Unix ms) of the freshest advert seen.
    advert_seq: Option<u64>,
    /// Connected and identified as a full node.
    identified: bool,
    connected: bool,
    /// Skipped by reads and puts until then.
    down_until: Option<Instant>,
}

/// The full nodes this node knows of.
#[derive(Debug)]
pub struct FullNodeTable {
    nodes: HashMap<PeerId, FullNode>,
    /// This node (never listed, even when it advertises itself).
    local: PeerId,
    /// How long an advert counts as fresh, in ms.
    fresh_ms: u64,
}

impl FullNodeTable {
    /// An empty table for the node `local`; adverts are fresh for `advert_fresh`.
    pub fn new(local: PeerId, advert_fresh: Duration) -> FullNodeTable {
        FullNodeTable {
            nodes: HashMap::new(),
            local,
            fresh_ms: u64::try_from(advert_fresh.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// How long an advert counts as fresh, in ms.
    pub fn fresh_ms(&self) -> u64 {
        self.fresh_ms
    }

    /// A valid advert of `peer` with seq `seq` was seen. `false` when the table is full and
    /// `peer` is not in it (the advert is then ignored: its addresses are not learned either).
    pub fn on_advert(&mut self, peer: PeerId, seq: u64) -> bool {
        if !self.nodes.contains_key(&peer) && self.nodes.len() >= MAX_FULL_NODES {
            return false;
        }
        let entry = self.nodes.entry(peer).or_default();
        entry.advert_seq = Some(entry.advert_seq.map_or(seq, |s| s.max(seq)));
        true
    }

    /// `peer` identified as a full node on a connection. `true` the first time since it
    /// connected: the actor then asks it for its adverts (and a full node may join from it).
    pub fn on_identified(&mut self, peer: PeerId) -> bool {
        if !self.nodes.contains_key(&peer) && self.nodes.len() >= MAX_FULL_NODES {
            return false;
        }
        let f = self.nodes.entry(peer).or_default();
        let first = !f.identified;
        f.identified = true;
        f.connected = true;
        first
    }

    /// A connection to `peer` was established: ends its backoff.
    pub fn on_connected(&mut self, peer: &PeerId) {
        if let Some(f) = self.nodes.get_mut(peer) {
            f.connected = true;
            f.down_until = None;
        }
    }

    /// The last connection to `peer` closed: it counts by its adverts only.
    pub fn on_disconnected(&mut self, peer: &PeerId) {
        if let Some(f) = self.nodes.get_mut(peer) {
            f.connected = false;
            f.identified = false;
        }
    }

    /// Skips `peer` (if it is a known full node) for reads and puts during
    /// [`FULL_NODE_BACKOFF`], after it failed one.
    pub fn back_off(&mut self, peer: &PeerId, now: Instant) {
        if let Some(f) = self.nodes.get_mut(peer) {
            f.down_until = Some(now + FULL_NODE_BACKOFF);
        }
    }

    /// Full nodes known at `now_ms` (Unix ms): fresh adverts and identified peers, sorted.
    pub fn known(&self, now_ms: u64) -> Vec<PeerId> {
        let mut out: Vec<PeerId> = self
            .nodes
            .iter()
            .filter(|(p, f)| self.counts(p, f, now_ms))
            .map(|(p, _)| *p)
            .collect();
        out.sort();
        out
    }

    /// Whether `peer` is in [`FullNodeTable::known`] at `now_ms`.
    pub fn knows(&self, peer: &PeerId, now_ms: u64) -> bool {
        self.nodes
            .get(peer)
            .is_some_and(|f| self.counts(peer, f, now_ms))
    }

    fn counts(&self, peer: &PeerId, f: &FullNode, now_ms: u64) -> bool {
        let fresh = self.fresh_ms;
        *peer != self.local
            && (f.identified
                || f.advert_seq
                    .is_some_and(|s| s.saturating_add(fresh) >= now_ms && s <= now_ms + fresh))
    }

    /// [`FullNodeTable::known`] without those in their backoff after a failed request.
    pub fn reachable(&self, now: Instant, now_ms: u64) -> Vec<PeerId> {
        let mut full = self.known(now_ms);
        full.retain(|p| {
            self.nodes
                .get(p)
                .and_then(|f| f.down_until)
                .is_none_or(|t| t <= now)
        });
        full
    }

    /// The full nodes a read asks: reachable ones, connected ones first (their answer is one
    /// round trip away), at most `fanout`.
    pub fn read_targets(&self, now: Instant, now_ms: u64, fanout: usize) -> Vec<PeerId> {
        let mut full = self.reachable(now, now_ms);
        full.sort_by_key(|p| !self.nodes.get(p).is_some_and(|f| f.connected));
        full.truncate(fanout);
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Duration = Duration::from_secs(30 * 60);
    const T0_MS: u64 = 1_800_000_000_000;

    fn table() -> (FullNodeTable, PeerId) {
        let local = PeerId::random();
        (FullNodeTable::new(local, FRESH), local)
    }

    #[test]
    fn adverts_are_known_while_fresh() {
        let (mut t, local) = table();
        let a = PeerId::random();
        assert!(t.on_advert(a, T0_MS));
        // Our own advert never lists us.
        assert!(t.on_advert(local, T0_MS));
        assert_eq!(t.known(T0_MS), vec![a]);
        assert_eq!(t.known(T0_MS + 30 * 60 * 1000), vec![a]);
        assert!(t.known(T0_MS + 30 * 60 * 1000 + 1).is_empty());
        // An advert from too far in the future does not count either.
        assert!(t.known(T0_MS - 30 * 60 * 1000 - 1).is_empty());
        // An older advert never lowers the freshest seq.
        assert!(t.on_advert(a, T0_MS - 10));
        assert_eq!(t.known(T0_MS + 30 * 60 * 1000), vec![a]);
    }

    #[test]
    fn identified_peers_are_known_until_they_disconnect() {
        let (mut t, _) = table();
        let a = PeerId::random();
        assert!(t.on_identified(a));
        assert!(!t.on_identified(a), "only the first identify is news");
        assert_eq!(t.known(0), vec![a]);
        t.on_disconnected(&a);
        assert!(t.known(0).is_empty());
        assert!(t.on_identified(a), "news again after a reconnect");
    }

    #[test]
    fn back_off_skips_reads_and_puts_for_a_minute() {
        let (mut t, _) = table();
        let now = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        t.on_advert(a, T0_MS);
        t.on_advert(b, T0_MS);
        t.back_off(&a, now);
        assert_eq!(t.reachable(now, T0_MS), vec![b]);
        assert_eq!(t.known(T0_MS).len(), 2, "still known, only skipped");
        let later = now + FULL_NODE_BACKOFF;
        assert_eq!(t.reachable(later, T0_MS).len(), 2);
        // A new connection ends the backoff at once.
        t.back_off(&b, now);
        t.on_connected(&b);
        assert_eq!(t.reachable(now, T0_MS), vec![b]);
        // Unknown peers are not added by a backoff.
        t.back_off(&PeerId::random(), now);
        assert_eq!(t.known(T0_MS).len(), 2);
    }

    #[test]
    fn reads_ask_connected_full_nodes_first() {
        let (mut t, _) = table();
        let now = Instant::now();
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for p in &peers {
            t.on_advert(*p, T0_MS);
        }
        t.on_identified(peers[3]);
        let asked = t.read_targets(now, T0_MS, 3);
        assert_eq!(asked.len(), 3);
        assert_eq!(asked[0], peers[3]);
        assert_eq!(t.read_targets(now, T0_MS, 10).len(), 5);
    }

    #[test]
    fn the_table_is_bounded() {
        let (mut t, _) = table();
        for _ in 0..MAX_FULL_NODES {
            assert!(t.on_advert(PeerId::random(), T0_MS));
        }
        let late = PeerId::random();
        assert!(!t.on_advert(late, T0_MS));
        assert!(!t.on_identified(late));
        assert_eq!(t.known(T0_MS).len(), MAX_FULL_NODES);
    }
}
