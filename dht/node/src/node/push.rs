//! Full-node push as a state machine: every write a full node accepts from a local put or a
//! non-full peer is queued for each other known full node and sent in batches over
//! `/skymesh/sync/1`. Pure: the actor queues items, sends the batches [`Pusher::poll_batch`]
//! hands out (keyed by our own [`PushId`]) and reports how each ended with `now`.
//!
//! - One push in flight per peer; items queued meanwhile are batched (up to
//!   [`wire::MAX_PUSH_ITEMS`] and the message size limit).
//! - Each peer's queue is bounded (`Config::push_queue`); an item over the bound is dropped
//!   and counted (the periodic repair pull catches it up).
//! - A refused push (the receiver had not yet identified us as a full node, or its per-peer
//!   limit was reached) is put back in front and retried after [`PUSH_RETRY`]; a failed one
//!   (unreachable, timed out, connection lost) is dropped and the peer waits
//!   [`PUSH_FAILURE_BACKOFF`].
//! - A write from a non-full peer (a visor's put, which already went to every full node the
//!   visor reaches) is pushed only by the [`FORWARDERS`] full nodes closest to its target
//!   ([`is_forwarder`]): each write costs about `FORWARDERS × (full nodes − 1)` pushed copies,
//!   not `full nodes × (full nodes − 1)` (quadratic: 9,900 copies per write at 100 full nodes,
//!   see `docs/scale.md`). Our own writes are pushed by us to every full node.
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use dht::Item;
use itemsync::wire;
use libp2p::PeerId;
use libp2p::kad::KBucketKey;

/// How many full nodes push a write received from a non-full peer: the closest to its target
/// (by kad's XOR distance) among the full nodes each one knows. A visor's put misses all of
/// them only if its copies to each are lost (~10⁻⁶ at 1 % loss); the periodic pull repairs that.
pub const FORWARDERS: usize = 3;

/// Whether a full node with `known_closer` known full nodes closer to a write's target than
/// itself (counting may stop at [`FORWARDERS`]) pushes that write from a non-full peer.
pub fn forwards(known_closer: usize) -> bool {
    known_closer < FORWARDERS
}

/// Whether `local` pushes a write of record key `key` received from a non-full peer: fewer than
/// [`FORWARDERS`] of the `known` full nodes are closer to `key` than `local`.
pub fn is_forwarder(key: &[u8], local: &PeerId, known: &[PeerId]) -> bool {
    let target = KBucketKey::new(key.to_vec());
    let own = KBucketKey::from(*local).distance(&target);
    let closer = known
        .iter()
        .filter(|p| *p != local && KBucketKey::from(**p).distance(&target) < own)
        .take(FORWARDERS)
        .count();
    forwards(closer)
}

/// How often queued pushes waiting for a retry are looked at.
pub const PUSH_TICK: Duration = Duration::from_millis(50);

/// Wait before retrying a push the receiver refused; the batch is kept.
pub const PUSH_RETRY: Duration = Duration::from_millis(500);

/// Wait before pushing again to a full node whose push failed; the failed batch is dropped and
/// counted, the periodic pull repairs it.
pub const PUSH_FAILURE_BACKOFF: Duration = Duration::from_secs(10);

/// Our id of one push in flight.
pub type PushId = u64;

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushEnd {
    /// Acknowledged (or answered wrongly: nothing to retry).
    Done,
    /// Refused by the receiver: keep the batch, retry after [`PUSH_RETRY`].
    Refused,
    /// Transport failure: drop the batch, back off [`PUSH_FAILURE_BACKOFF`].
    Failed,
}

/// What a push queue holds: an item, or a shared handle to one (the simulator's `Arc<Item>`).
pub trait PushItem: Clone {
    /// Bytes of the item on the wire ([`Item::encoded_len`]).
    fn encoded_len(&self) -> usize;
}

impl PushItem for Item {
    fn encoded_len(&self) -> usize {
        Item::encoded_len(self)
    }
}

impl PushItem for std::sync::Arc<Item> {
    fn encoded_len(&self) -> usize {
        Item::encoded_len(self)
    }
}

/// A batch to send.
#[derive(Debug)]
pub struct Batch<I = Item, P = PeerId> {
    /// Our id of this push.
    pub id: PushId,
    /// The full node it goes to.
    pub peer: P,
    /// The items, in queue order.
    pub items: Vec<I>,
}

/// Push queues and the pushes in flight, per peer `P` (a `PeerId`; the simulator numbers its
/// full nodes).
#[derive(Debug)]
pub struct Pusher<I = Item, P = PeerId> {
    /// Items queued per peer at most.
    bound: usize,
    next_id: PushId,
    queues: HashMap<P, VecDeque<I>>,
    in_flight: HashMap<PushId, (P, Vec<I>)>,
    busy: HashSet<P>,
    retry_at: HashMap<P, Instant>,
}

impl<I: PushItem, P: Copy + Eq + Hash> Pusher<I, P> {
    /// Queues hold at most `bound` items per peer (at least 1).
    pub fn new(bound: usize) -> Pusher<I, P> {
        Pusher {
            bound: bound.max(1),
            next_id: 0,
            queues: HashMap::new(),
            in_flight: HashMap::new(),
            busy: HashSet::new(),
            retry_at: HashMap::new(),
        }
    }

    /// Queues `item` for `peer`; `false` when its queue is full (the item is dropped).
    pub fn queue(&mut self, peer: P, item: I) -> bool {
        let q = self.queues.entry(peer).or_default();
        if q.len() >= self.bound {
            return false;
        }
        q.push_back(item);
        true
    }

    /// The next batch for `peer` at `now`, unless a push to it is in flight or waiting for a
    /// retry, or nothing is queued.
    pub fn poll_batch(&mut self, peer: P, now: Instant) -> Option<Batch<I, P>> {
        if self.busy.contains(&peer) || self.retry_at.get(&peer).is_some_and(|t| *t > now) {
            return None;
        }
        self.retry_at.remove(&peer);
        let q = self.queues.get_mut(&peer)?;
        let n = wire::fitting(
            q.iter()
                .take(usize::from(wire::MAX_PUSH_ITEMS))
                .map(PushItem::encoded_len),
        );
        if n == 0 {
            self.queues.remove(&peer);
            return None;
        }
        let items: Vec<I> = q.drain(..n).collect();
        if q.is_empty() {
            self.queues.remove(&peer);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(id, (peer, items.clone()));
        self.busy.insert(peer);
        Some(Batch { id, peer, items })
    }

    /// Push `id` ended at `now` (`penalised` tells whether its peer is refused now: a refused
    /// batch is then not kept). Returns the peer (to poll its next batch) and how many items
    /// were dropped.
    pub fn on_done(
        &mut self,
        id: PushId,
        end: PushEnd,
        penalised: impl FnOnce(&P) -> bool,
        now: Instant,
    ) -> Option<(P, u64)> {
        let (peer, batch) = self.in_flight.remove(&id)?;
        self.busy.remove(&peer);
        let mut dropped = 0;
        if end == PushEnd::Failed {
            dropped = batch.len() as u64;
            self.retry_at.insert(peer, now + PUSH_FAILURE_BACKOFF);
        } else if end == PushEnd::Refused && !penalised(&peer) {
            // Put the batch back in front, within the queue bound; retry after a pause.
            let q = self.queues.entry(peer).or_default();
            for item in batch.into_iter().rev() {
                if q.len() >= self.bound {
                    dropped += 1;
                    continue;
                }
                q.push_front(item);
            }
            self.retry_at.insert(peer, now + PUSH_RETRY);
        }
        Some((peer, dropped))
    }

    /// Peers whose retry pause is over at `now`.
    pub fn due(&self, now: Instant) -> Vec<P> {
        self.retry_at
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Drops what is queued for `peer` (penalised).
    pub fn forget(&mut self, peer: &P) {
        self.queues.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn items(n: usize) -> Vec<Item> {
        crate::testing::signed_items("push-tests", n, 1, 16)
    }

    #[test]
    fn one_push_in_flight_per_peer_and_the_rest_batched() {
        let mut p = Pusher::new(100);
        let peer = PeerId::random();
        let t0 = Instant::now();
        let it = items(5);
        assert!(p.queue(peer, it[0].clone()));
        let first = p.poll_batch(peer, t0).unwrap();
        assert_eq!((first.peer, first.items.len()), (peer, 1));
        for item in &it[1..] {
            p.queue(peer, item.clone());
        }
        assert!(p.poll_batch(peer, t0).is_none(), "one in flight");
        assert_eq!(
            p.on_done(first.id, PushEnd::Done, |_| false, t0),
            Some((peer, 0))
        );
        let second = p.poll_batch(peer, t0).unwrap();
        assert_eq!(second.items, it[1..].to_vec());
        assert!(p.poll_batch(peer, t0).is_none());
        assert_eq!(
            p.on_done(second.id, PushEnd::Done, |_| false, t0),
            Some((peer, 0))
        );
        assert!(p.poll_batch(peer, t0).is_none(), "nothing queued");
        assert_eq!(p.on_done(second.id, PushEnd::Done, |_| false, t0), None);
    }

    #[test]
    fn a_refused_push_is_kept_and_retried_after_a_pause() {
        let mut p = Pusher::new(100);
        let peer = PeerId::random();
        let t0 = Instant::now();
        let it = items(3);
        for item in &it {
            p.queue(peer, item.clone());
        }
        let b = p.poll_batch(peer, t0).unwrap();
        assert_eq!(
            p.on_done(b.id, PushEnd::Refused, |_| false, t0),
            Some((peer, 0))
        );
        assert!(p.poll_batch(peer, t0).is_none(), "pausing");
        assert!(p.due(t0).is_empty());
        let later = t0 + PUSH_RETRY;
        assert_eq!(p.due(later), vec![peer]);
        assert_eq!(p.poll_batch(peer, later).unwrap().items, it);
    }

    #[test]
    fn a_failed_push_is_dropped_and_backs_off() {
        let mut p = Pusher::new(100);
        let peer = PeerId::random();
        let t0 = Instant::now();
        let it = items(2);
        p.queue(peer, it[0].clone());
        let b = p.poll_batch(peer, t0).unwrap();
        p.queue(peer, it[1].clone());
        assert_eq!(
            p.on_done(b.id, PushEnd::Failed, |_| false, t0),
            Some((peer, 1))
        );
        assert!(p.poll_batch(peer, t0 + PUSH_RETRY).is_none());
        let later = t0 + PUSH_FAILURE_BACKOFF;
        assert_eq!(
            p.poll_batch(peer, later).unwrap().items,
            vec![it[1].clone()]
        );
    }

    #[test]
    fn three_forwarders_per_target() {
        let peers: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        let key = b"some record key";
        let forwarders: Vec<&PeerId> = peers
            .iter()
            .filter(|p| is_forwarder(key, p, &peers))
            .collect();
        assert_eq!(forwarders.len(), FORWARDERS);
        // A node that knows fewer full nodes forwards more readily; alone it always does.
        let me = peers[0];
        assert!(is_forwarder(key, &me, &[]));
        assert!(is_forwarder(key, &me, &peers[..3]));
        assert!(forwards(2) && !forwards(3));
    }

    #[test]
    fn queues_are_bounded() {
        let mut p = Pusher::new(2);
        let peer = PeerId::random();
        let t0 = Instant::now();
        let it = items(4);
        assert!(p.queue(peer, it[0].clone()));
        assert!(p.queue(peer, it[1].clone()));
        assert!(!p.queue(peer, it[2].clone()));
        let b = p.poll_batch(peer, t0).unwrap();
        assert_eq!(b.items.len(), 2);
        // Refused while one new item waits: only one of the two fits back.
        assert!(p.queue(peer, it[3].clone()));
        assert_eq!(
            p.on_done(b.id, PushEnd::Refused, |_| false, t0),
            Some((peer, 1))
        );
        // A penalised peer's refused batch is not kept; forget drops the queue.
        let b = p.poll_batch(peer, t0 + PUSH_RETRY).unwrap();
        assert_eq!(
            p.on_done(b.id, PushEnd::Refused, |_| true, t0),
            Some((peer, 0))
        );
        p.queue(peer, it[0].clone());
        p.forget(&peer);
        assert!(p.poll_batch(peer, t0 + PUSH_RETRY).is_none());
    }
}
