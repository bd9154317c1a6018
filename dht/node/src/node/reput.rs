//! Re-puts after the routing table changed: the fix, at its root, for items put while routing
//! tables still fill.
//!
//! A put sends the item to the k closest peers its `get_closest_peers` query found. When the
//! tables that query walked were still filling (a node that just joined, a network that just
//! formed), those are not the item's true k closest, and a later lookup, walking settled tables,
//! ends at nodes that never got it (the 5,000-node bench in `docs/scale.md`: items with 0 of
//! their true 20 closest holding a copy, 1 % of reads missing).
//!
//! So every put of ours is followed for a while. Once [`REPUT_CHANGES`] peers have entered our
//! routing table since the put (or the last round) and at least [`REPUT_GAP`] has passed, the
//! closest-peers query runs again and the item goes to the peers it finds that were not sent
//! it yet. A round that finds nobody new ends the follow-up (the item's closest set has
//! settled), as do [`MAX_ROUNDS`] rounds and [`REPUT_WINDOW`] after the put. A settled network
//! changes its tables slowly, so there a put costs no extra query at all; while tables fill, a
//! few extra queries per put move the item to where lookups will look.
//!
//! Pure: the driver reports puts, routing-table insertions and query results, and starts the
//! queries and puts [`Reputs::due`] and [`Reputs::on_closest`] ask for.
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use dht::Target;
use libp2p::PeerId;

/// Routing-table insertions since a put (or its last round) that make it due again.
pub const REPUT_CHANGES: u64 = 16;
/// Least time between two rounds of one item.
pub const REPUT_GAP: Duration = Duration::from_secs(15);
/// How long after its put an item is followed.
pub const REPUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How often the driver asks [`Reputs::due`] (while anything is followed).
pub const REPUT_TICK: Duration = Duration::from_secs(5);
/// Most rounds per put.
pub const MAX_ROUNDS: u32 = 6;
/// Most items followed at once (the oldest put is dropped first). Each holds its target and
/// the peers it was sent to (at most `MAX_SENT`): ~1.5 KiB, so ~1.5 MiB at most.
pub const MAX_TRACKED: usize = 1024;
/// Most peers remembered per item (k = 20 per round plus the full nodes).
const MAX_SENT: usize = 64;

/// One followed put.
#[derive(Debug)]
struct Followed {
    /// Peers the item went to (either leg, every round).
    sent: HashSet<PeerId>,
    put_at: Instant,
    last_round: Instant,
    /// [`Reputs::changes`] when the put or the last round started.
    changes_at: u64,
    rounds: u32,
    /// A round's closest-peers query is running.
    querying: bool,
    /// Generation in [`Reputs::order`], to tell a re-put apart from an older entry.
    generation: u64,
}

/// The puts being followed.
#[derive(Debug, Default)]
pub struct Reputs {
    items: HashMap<Target, Followed>,
    /// Put order for eviction: (target, generation); stale pairs are skipped.
    order: VecDeque<(Target, u64)>,
    next_generation: u64,
    /// Routing-table insertions seen so far.
    changes: u64,
}

impl Reputs {
    /// Nothing followed.
    pub fn new() -> Reputs {
        Reputs::default()
    }

    /// Items followed now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is followed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// We put `target` (a new put starts a new follow-up).
    pub fn on_put(&mut self, target: Target, now: Instant) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.items.insert(
            target,
            Followed {
                sent: HashSet::new(),
                put_at: now,
                last_round: now,
                changes_at: self.changes,
                rounds: 0,
                querying: false,
                generation,
            },
        );
        self.order.push_back((target, generation));
        while self.items.len() > MAX_TRACKED {
            let Some((t, g)) = self.order.pop_front() else {
                break;
            };
            if self.items.get(&t).is_some_and(|f| f.generation == g) {
                self.items.remove(&t);
            }
        }
        // Stale pairs of re-put targets: keep the queue bounded by the map.
        if self.order.len() > 2 * MAX_TRACKED {
            let items = &self.items;
            self.order
                .retain(|(t, g)| items.get(t).is_some_and(|f| f.generation == *g));
        }
    }

    /// A leg of a put (or a round) of `target` went to `peers`.
    pub fn on_sent(&mut self, target: &Target, peers: &[PeerId]) {
        if let Some(f) = self.items.get_mut(target) {
            for p in peers {
                if f.sent.len() >= MAX_SENT {
                    break;
                }
                f.sent.insert(*p);
            }
        }
    }

    /// A peer entered the routing table.
    pub fn on_table_change(&mut self) {
        self.changes += 1;
    }

    /// The items whose closest-peers query should run again now (marked as querying); drops
    /// the follow-ups that are over.
    pub fn due(&mut self, now: Instant) -> Vec<Target> {
        let changes = self.changes;
        self.items.retain(|_, f| {
            f.querying
                || (f.rounds < MAX_ROUNDS && now.saturating_duration_since(f.put_at) < REPUT_WINDOW)
        });
        let mut out = Vec::new();
        for (t, f) in &mut self.items {
            if !f.querying
                && changes.saturating_sub(f.changes_at) >= REPUT_CHANGES
                && now.saturating_duration_since(f.last_round) >= REPUT_GAP
            {
                f.querying = true;
                f.rounds += 1;
                f.last_round = now;
                f.changes_at = changes;
                out.push(*t);
            }
        }
        out
    }

    /// A round's query for `target` found `peers` (`local`, this node, left out): the peers
    /// to put it to, or `None` when there is nobody new (the follow-up ends).
    pub fn on_closest(
        &mut self,
        target: &Target,
        peers: &[PeerId],
        local: PeerId,
    ) -> Option<Vec<PeerId>> {
        let f = self.items.get_mut(target)?;
        f.querying = false;
        let new: Vec<PeerId> = peers
            .iter()
            .filter(|p| **p != local && !f.sent.contains(p))
            .copied()
            .collect();
        if new.is_empty() {
            self.items.remove(target);
            return None;
        }
        self.on_sent(target, &new);
        Some(new)
    }

    /// Stops following `target` (e.g. it is no longer in the store).
    pub fn forget(&mut self, target: &Target) {
        self.items.remove(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(i: u8) -> Target {
        Target::from_bytes([i; 32])
    }

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn a_put_is_due_again_only_after_the_table_changed_and_the_gap() {
        let t0 = Instant::now();
        let mut r = Reputs::new();
        r.on_put(target(1), t0);
        r.on_sent(&target(1), &peers(20));
        // Time alone does nothing: a settled table costs no query.
        assert!(r.due(t0 + REPUT_GAP * 4).is_empty());
        for _ in 0..REPUT_CHANGES - 1 {
            r.on_table_change();
        }
        assert!(r.due(t0 + REPUT_GAP * 4).is_empty());
        r.on_table_change();
        // Changes alone do nothing before the gap.
        assert!(r.due(t0 + REPUT_GAP / 2).is_empty());
        assert_eq!(r.due(t0 + REPUT_GAP), vec![target(1)]);
        // Querying: not due twice.
        for _ in 0..REPUT_CHANGES * 2 {
            r.on_table_change();
        }
        assert!(r.due(t0 + REPUT_GAP * 3).is_empty());
    }

    #[test]
    fn a_round_sends_to_new_peers_only_and_ends_when_nobody_is_new() {
        let t0 = Instant::now();
        let local = PeerId::random();
        let first = peers(20);
        let mut r = Reputs::new();
        r.on_put(target(2), t0);
        r.on_sent(&target(2), &first);
        for _ in 0..REPUT_CHANGES {
            r.on_table_change();
        }
        assert_eq!(r.due(t0 + REPUT_GAP).len(), 1);
        let newer = peers(5);
        let mut found: Vec<PeerId> = first[..15].to_vec();
        found.extend(&newer);
        found.push(local);
        let send = r.on_closest(&target(2), &found, local).unwrap();
        assert_eq!(send, newer);
        assert_eq!(r.len(), 1);
        // Next round finds the same set: settled, the follow-up ends.
        for _ in 0..REPUT_CHANGES {
            r.on_table_change();
        }
        assert_eq!(r.due(t0 + REPUT_GAP * 2).len(), 1);
        assert_eq!(r.on_closest(&target(2), &found, local), None);
        assert!(r.is_empty());
        // A late answer for a forgotten item asks for nothing.
        assert_eq!(r.on_closest(&target(2), &newer, local), None);
    }

    #[test]
    fn follow_ups_end_after_the_window_or_max_rounds() {
        let t0 = Instant::now();
        let local = PeerId::random();
        let mut r = Reputs::new();
        r.on_put(target(3), t0);
        r.on_put(target(4), t0);
        let mut now = t0;
        for round in 0..MAX_ROUNDS {
            for _ in 0..REPUT_CHANGES {
                r.on_table_change();
            }
            now += REPUT_GAP;
            let due = r.due(now);
            assert_eq!(due.len(), 2, "round {round}");
            for t in due {
                // Always someone new: only MAX_ROUNDS stops it.
                assert!(r.on_closest(&t, &peers(3), local).is_some());
            }
        }
        for _ in 0..REPUT_CHANGES {
            r.on_table_change();
        }
        assert!(r.due(now + REPUT_GAP).is_empty());
        assert!(r.is_empty());
        r.on_put(target(5), t0);
        for _ in 0..REPUT_CHANGES {
            r.on_table_change();
        }
        assert!(r.due(t0 + REPUT_WINDOW).is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn the_oldest_put_is_dropped_beyond_the_bound_and_a_re_put_restarts() {
        let t0 = Instant::now();
        let mut r = Reputs::new();
        for i in 0..MAX_TRACKED + 10 {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            r.on_put(Target::from_bytes(b), t0);
            // Put again: a second entry in the order queue, one in the map.
            r.on_put(Target::from_bytes(b), t0);
        }
        assert_eq!(r.len(), MAX_TRACKED);
        assert!(r.order.len() <= 2 * MAX_TRACKED + 1);
        let oldest = Target::from_bytes([0; 32]);
        r.on_sent(&oldest, &peers(1));
        assert!(!r.items.contains_key(&oldest));
    }

    #[test]
    fn sent_peers_are_bounded() {
        let t0 = Instant::now();
        let mut r = Reputs::new();
        r.on_put(target(6), t0);
        r.on_sent(&target(6), &peers(MAX_SENT * 2));
        assert_eq!(r.items[&target(6)].sent.len(), MAX_SENT);
    }
}
