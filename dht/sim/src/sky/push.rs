//! Full-node push in the simulator: the real `Pusher` (keyed by full-node index) and the real
//! forwarder rule (`push::forwards`: a visor's write is pushed by the `FORWARDERS` full nodes
//! closest to its target among those each knows).
use std::sync::Arc;

use dht::Item;
use dhtnode::config::DEFAULT_SYNC_TIMEOUT;
use dhtnode::node::push::{self, PUSH_FAILURE_BACKOFF, PUSH_RETRY, PushEnd};
use libp2p::PeerId;
use libp2p::kad::KBucketKey;

use super::full::OVERHEAD;
use super::{Ev, World, micros};
use crate::catalog::Catalog;
use crate::queue::Micros;

/// Full nodes kept per item in closeness order: enough to find the forwarders among those a
/// node knows (a node knowing fewer than `FORWARDERS` of them falls back to the full rule).
pub(super) const ORDER_LEN: usize = 8;

/// The [`ORDER_LEN`] full nodes closest to each item's target (kad XOR distance of the record
/// key), closest first.
pub(crate) fn closeness(peers: &[PeerId], items: &[Option<Arc<Item>>]) -> Vec<[u16; ORDER_LEN]> {
    let keys: Vec<KBucketKey<PeerId>> = peers.iter().map(|p| KBucketKey::from(*p)).collect();
    items
        .iter()
        .map(|it| {
            let mut out = [u16::MAX; ORDER_LEN];
            let Some(it) = it else { return out };
            let key = dhtnode::store::record_key(&it.target());
            let target = KBucketKey::new(key.to_vec());
            let mut d: Vec<_> = keys
                .iter()
                .enumerate()
                .map(|(f, k)| (k.distance(&target), f as u16))
                .collect();
            let n = ORDER_LEN.min(d.len());
            if n < d.len() {
                d.select_nth_unstable(n);
            }
            d[..n].sort_unstable();
            for (o, (_, f)) in out.iter_mut().zip(&d[..n]) {
                *o = *f;
            }
            out
        })
        .collect()
}

impl World {
    /// Whether full node `f` pushes item `i` received from a visor: fewer than `FORWARDERS`
    /// full nodes it knows are closer to the target (`push::forwards`).
    fn forwards(&self, f: u16, item: &Item, now_ms: u64) -> bool {
        let full = &self.fulls[usize::from(f)];
        let i = Catalog::index_of(item);
        let mut closer = 0;
        for g in self.order[i] {
            if g == f {
                return push::forwards(closer);
            }
            if g == u16::MAX {
                break;
            }
            if full.table.knows(&self.peers[usize::from(g)], now_ms) {
                closer += 1;
                if !push::forwards(closer) {
                    return false;
                }
            }
        }
        // Not among the closest kept: the rule on everything it knows.
        let key = dhtnode::store::record_key(&item.target());
        push::is_forwarder(key.as_ref(), &full.peer, &full.table.known(now_ms))
    }

    /// A write accepted from a visor: queued for every other known full node if `f` is one of
    /// its forwarders.
    pub(super) fn forward(&mut self, f: u16, item: &Arc<Item>) {
        let now_ms = self.now_ms();
        if !self.forwards(f, item, now_ms) {
            return;
        }
        for g in 0..self.fulls.len() as u16 {
            let full = &mut self.fulls[usize::from(f)];
            if g == f || !full.table.knows(&self.peers[usize::from(g)], now_ms) {
                continue;
            }
            if !full.pusher.queue(g, item.clone()) {
                self.push_dropped += 1;
                continue;
            }
            self.flush(f, g);
        }
    }

    fn flush(&mut self, f: u16, g: u16) {
        let inst = self.inst();
        let Some(batch) = self.fulls[usize::from(f)].pusher.poll_batch(g, inst) else {
            return;
        };
        let bytes: usize = OVERHEAD + batch.items.iter().map(|i| i.encoded_len()).sum::<usize>();
        self.fulls[usize::from(f)].traffic.push += bytes as f64;
        let (a, b) = (self.fulls[usize::from(f)].ep, self.fulls[usize::from(g)].ep);
        let arrive = if self.reach(f) && self.reach(g) {
            self.send(a, b, bytes)
        } else {
            None
        };
        match arrive {
            Some(at) => self.q.at(
                at,
                Ev::PushAt {
                    from: f,
                    to: g,
                    id: batch.id,
                    sent: self.now,
                    items: batch.items,
                },
            ),
            None => self.q.at(
                self.now + micros(DEFAULT_SYNC_TIMEOUT),
                Ev::PushEnd {
                    f,
                    id: batch.id,
                    end: PushEnd::Failed,
                },
            ),
        }
    }

    pub(super) fn on_push_at(
        &mut self,
        from: u16,
        to: u16,
        id: u64,
        sent: Micros,
        items: Vec<Arc<Item>>,
    ) {
        let fail = Ev::PushEnd {
            f: from,
            id,
            end: PushEnd::Failed,
        };
        if !self.reach(to) || !self.reach(from) {
            self.q.at(sent + micros(DEFAULT_SYNC_TIMEOUT), fail);
            return;
        }
        let bytes: usize = OVERHEAD + items.iter().map(|i| i.encoded_len()).sum::<usize>();
        self.fulls[usize::from(to)].traffic.push += (bytes + OVERHEAD) as f64;
        for item in &items {
            self.accept(to, item);
        }
        let (a, b) = (
            self.fulls[usize::from(to)].ep,
            self.fulls[usize::from(from)].ep,
        );
        match self.send(a, b, OVERHEAD) {
            Some(at) => self.q.at(
                at,
                Ev::PushEnd {
                    f: from,
                    id,
                    end: PushEnd::Done,
                },
            ),
            None => self.q.at(sent + micros(DEFAULT_SYNC_TIMEOUT), fail),
        }
    }

    pub(super) fn on_push_end(&mut self, f: u16, id: u64, end: PushEnd) {
        let inst = self.inst();
        let full = &mut self.fulls[usize::from(f)];
        let Some((g, dropped)) = full.pusher.on_done(id, end, |_| false, inst) else {
            return;
        };
        self.push_dropped += dropped;
        self.flush(f, g);
        let pause = match end {
            PushEnd::Done => return,
            PushEnd::Refused => PUSH_RETRY,
            PushEnd::Failed => PUSH_FAILURE_BACKOFF,
        };
        self.q.at(self.now + micros(pause) + 1, Ev::PushTick { f });
    }

    pub(super) fn on_push_tick(&mut self, f: u16) {
        let inst = self.inst();
        let mut due = self.fulls[usize::from(f)].pusher.due(inst);
        due.sort_unstable();
        for g in due {
            self.flush(f, g);
        }
    }
}
