//! Full nodes: store (a change log per node, cut into pages like `itemsync::serve::page`),
//! repair and join through the real `itemsync::Puller`, adverts,
//! the partition and a joining node.
use std::collections::HashMap;
use std::sync::Arc;

use dht::{Decision, Item, rules};
use dhtnode::config::{
    DEFAULT_ADVERT_FRESH, DEFAULT_ADVERT_INTERVAL, DEFAULT_PUSH_QUEUE, DEFAULT_SYNC_INTERVAL,
    DEFAULT_SYNC_TIMEOUT,
};
use dhtnode::node::full_nodes::FullNodeTable;
use dhtnode::node::push::Pusher;
use itemsync::wire::{self, GetItems, MAX_PAGE_ITEMS, Page};
use itemsync::{PullConfig, Puller, SyncCursor};
use libp2p::PeerId;

use super::{Ev, World, micros};
use crate::catalog::{Catalog, CatchUp};
use crate::net::Endpoint;
use crate::queue::{Micros, SEC};
use crate::report::Traffic;

/// New items a full node verifies per second on its verification stage (2 cores × ~20,000
/// secp256k1 checks; see `dht/node/benches/sync.rs`). Delays the next page of a pull.
const VERIFY_PER_SEC: f64 = 40_000.0;

/// Framing and header bytes of one request or response (length, tag, ids).
pub(super) const OVERHEAD: usize = 32;

/// Bytes of one advert item (key, seq, signature, listen addresses).
const ADVERT_BYTES: usize = 250;

/// Time until the peers of a cut-off node drop their connections (ping timeouts).
const NOTICE: Micros = 20 * SEC;

struct Session {
    id: u32,
    peer: u16,
    puller: Puller,
    join: bool,
}

/// One full node.
pub(crate) struct Full {
    pub(super) peer: PeerId,
    pub(super) ep: Endpoint,
    /// Online (a joining node is not until it joins).
    pub(super) up: bool,
    /// Counted for convergence (the original full nodes).
    counted: bool,
    /// The held version of every item.
    pub(super) store: Vec<Option<Arc<Item>>>,
    /// Item indices in change order (change number = position + 1).
    log: Vec<u32>,
    /// Change number of each item's latest change (0: none).
    change_of: Vec<u32>,
    epoch: u64,
    pub(super) table: FullNodeTable,
    pub(super) pusher: Pusher<Arc<Item>, u16>,
    repair_next: usize,
    cursors: HashMap<u16, SyncCursor>,
    session: Option<Session>,
    next_session: u32,
    joined: bool,
    advert_seq: u64,
    pub(super) traffic: Traffic,
}

impl Full {
    pub(super) fn new(peer: PeerId, ep: Endpoint, up: bool, items: usize, epoch: u64) -> Full {
        Full {
            peer,
            ep,
            up,
            counted: up,
            store: vec![None; items],
            log: Vec::new(),
            change_of: vec![0; items],
            epoch,
            table: FullNodeTable::new(peer, DEFAULT_ADVERT_FRESH),
            pusher: Pusher::new(DEFAULT_PUSH_QUEUE),
            repair_next: 0,
            cursors: HashMap::new(),
            session: None,
            next_session: 0,
            joined: up,
            advert_seq: 0,
            traffic: Traffic::default(),
        }
    }

    pub(super) fn preload(&mut self, i: usize, item: &Arc<Item>) {
        self.store[i] = Some(item.clone());
        self.log.push(i as u32);
        self.change_of[i] = self.log.len() as u32;
    }

    pub(super) fn seq(&self, i: usize) -> u64 {
        self.store[i].as_ref().map_or(0, |it| it.seq)
    }

    /// The page answering `req`, like `itemsync::serve::page`: change order, the limit clamped
    /// to 1..=`MAX_PAGE_ITEMS`, cut by `wire::fitting`, a foreign epoch served from the start.
    fn page(&self, req: &GetItems) -> (Page, Vec<Arc<Item>>) {
        let limit = usize::from(req.limit.clamp(1, MAX_PAGE_ITEMS));
        let start = if req.epoch == self.epoch {
            req.cursor
        } else {
            0
        };
        let mut out: Vec<Arc<Item>> = Vec::new();
        let mut next = start;
        let mut has_more = false;
        let mut pos = start as usize;
        while pos < self.log.len() {
            let i = self.log[pos] as usize;
            pos += 1;
            if self.change_of[i] as usize != pos {
                continue; // superseded by a later change
            }
            if out.len() == limit {
                has_more = true;
                break;
            }
            if let Some(item) = &self.store[i] {
                out.push(item.clone());
                next = pos as u64;
            }
        }
        let fit = wire::fitting(out.iter().map(|i| i.encoded_len()));
        if fit < out.len() {
            out.truncate(fit);
            let last = Catalog::index_of(out[fit - 1].as_ref());
            next = u64::from(self.change_of[last]);
            has_more = true;
        }
        let page = Page {
            epoch: self.epoch,
            next_cursor: next,
            last_change: self.log.len() as u64,
            has_more,
            items: out.iter().map(|a| Item::clone(a)).collect(),
        };
        (page, out)
    }
}

/// How the seq rule took a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Took {
    New,
    Unchanged,
    Refused,
}

impl World {
    pub(super) fn start_full(&mut self, f: u16) {
        let now_ms = self.now_ms();
        let others: Vec<u16> = (0..self.sc.full_nodes as u16).filter(|g| *g != f).collect();
        for g in others {
            let (peer, ms) = (self.peers[usize::from(g)], self.rng.below(300_000));
            let (epoch, log) = {
                let gf = &self.fulls[usize::from(g)];
                (gf.epoch, gf.log.len() as u64)
            };
            let full = &mut self.fulls[usize::from(f)];
            full.table.on_advert(peer, now_ms.saturating_sub(ms));
            full.table.on_identified(peer);
            full.cursors.insert(g, SyncCursor { epoch, change: log });
        }
        let a = self.rng.below(micros(DEFAULT_ADVERT_INTERVAL));
        let s = self.rng.below(micros(DEFAULT_SYNC_INTERVAL));
        self.q.at(self.now + a, Ev::FullAdvert { f });
        self.q.at(self.now + s, Ev::SyncTick { f });
    }

    /// Puts a received copy through the seq rule (`dht::rules::decide`) and stores it.
    pub(super) fn accept(&mut self, f: u16, item: &Arc<Item>) -> Took {
        let i = Catalog::index_of(item);
        let full = &mut self.fulls[usize::from(f)];
        let stored = &full.store[i];
        if stored.as_ref().is_some_and(|s| Arc::ptr_eq(s, item)) {
            return Took::Unchanged;
        }
        match rules::decide(stored.as_deref(), item) {
            Ok(Decision::Insert | Decision::Replace { .. }) => {
                let old = full.seq(i);
                full.store[i] = Some(item.clone());
                full.log.push(i as u32);
                full.change_of[i] = full.log.len() as u32;
                if full.counted {
                    self.cat.conv.held(i, old, item.seq, self.now);
                }
                if f == 0
                    && let Some(h) = &mut self.heal
                {
                    h.on_held(i as u32, item.seq, self.now);
                }
                if !full.counted
                    && let Some(j) = &mut self.join
                {
                    j.on_held(i as u32, item.seq, self.now);
                }
                Took::New
            }
            Ok(Decision::Unchanged) => Took::Unchanged,
            Err(_) => Took::Refused,
        }
    }

    pub(super) fn on_sync_tick(&mut self, f: u16) {
        self.q
            .at(self.now + micros(DEFAULT_SYNC_INTERVAL), Ev::SyncTick { f });
        let now_ms = self.now_ms();
        let full = &mut self.fulls[usize::from(f)];
        if !full.up || full.session.is_some() {
            return;
        }
        let peers = full.table.known(now_ms);
        if peers.is_empty() {
            return;
        }
        let peer = peers[full.repair_next % peers.len()];
        full.repair_next = full.repair_next.wrapping_add(1);
        let join = !full.joined;
        let g = self.index[&peer];
        self.start_session(f, g, join);
    }

    fn start_session(&mut self, f: u16, g: u16, join: bool) {
        let full = &mut self.fulls[usize::from(f)];
        let start = if join {
            SyncCursor::default()
        } else {
            full.cursors.get(&g).copied().unwrap_or_default()
        };
        full.next_session += 1;
        full.session = Some(Session {
            id: full.next_session,
            peer: g,
            puller: Puller::new(PullConfig::new(start)),
            join,
        });
        self.request_page(f);
    }

    fn request_page(&mut self, f: u16) {
        let full = &mut self.fulls[usize::from(f)];
        let Some(s) = &mut full.session else { return };
        let Some(req) = s.puller.poll_request() else {
            return;
        };
        let (g, sess) = (s.peer, s.id);
        full.traffic.repair += OVERHEAD as f64;
        let (a, b) = (full.ep, self.fulls[usize::from(g)].ep);
        let arrive = if self.reach(f) && self.reach(g) {
            self.send(a, b, OVERHEAD)
        } else {
            None
        };
        match arrive {
            Some(at) => self.q.at(
                at,
                Ev::PageAt {
                    f,
                    g,
                    sess,
                    sent: self.now,
                    req,
                },
            ),
            None => self.q.at(
                self.now + micros(DEFAULT_SYNC_TIMEOUT),
                Ev::PageFail { f, sess },
            ),
        }
    }

    pub(super) fn on_page_at(&mut self, f: u16, g: u16, sess: u32, sent: Micros, req: GetItems) {
        let fail = Ev::PageFail { f, sess };
        if !self.reach(f) || !self.reach(g) {
            self.q.at(sent + micros(DEFAULT_SYNC_TIMEOUT), fail);
            return;
        }
        let (page, arcs) = self.fulls[usize::from(g)].page(&req);
        let bytes = OVERHEAD + arcs.iter().map(|i| i.encoded_len()).sum::<usize>();
        self.fulls[usize::from(g)].traffic.repair += (bytes + OVERHEAD) as f64;
        let (a, b) = (self.fulls[usize::from(g)].ep, self.fulls[usize::from(f)].ep);
        match self.send(a, b, bytes) {
            Some(at) => self.q.at(
                at,
                Ev::PageAns {
                    f,
                    sess,
                    page: Box::new((page, arcs)),
                },
            ),
            None => self.q.at(sent + micros(DEFAULT_SYNC_TIMEOUT), fail),
        }
    }

    pub(super) fn on_page_answer(
        &mut self,
        f: u16,
        sess: u32,
        (page, arcs): (Page, Vec<Arc<Item>>),
    ) {
        let bytes = OVERHEAD + arcs.iter().map(|i| i.encoded_len()).sum::<usize>();
        let full = &mut self.fulls[usize::from(f)];
        full.traffic.repair += bytes as f64;
        let Some(s) = &mut full.session else { return };
        if s.id != sess {
            return;
        }
        if s.puller.handle_page(page).is_err() {
            self.fulls[usize::from(f)].session = None;
            return;
        }
        let (mut new, mut same, mut refused) = (0u64, 0u64, 0u64);
        for item in &arcs {
            match self.accept(f, item) {
                Took::New => new += 1,
                Took::Unchanged => same += 1,
                Took::Refused => refused += 1,
            }
        }
        let full = &mut self.fulls[usize::from(f)];
        if let Some(s) = &mut full.session {
            s.puller.record_ingest(new, same, refused);
            let cursor = s.puller.cursor();
            full.cursors.insert(s.peer, cursor);
        }
        let verify = ((new + refused) as f64 / VERIFY_PER_SEC * 1e6) as Micros;
        self.q.at(self.now + verify, Ev::PageNext { f, sess });
    }

    pub(super) fn on_page_next(&mut self, f: u16, sess: u32) {
        let full = &mut self.fulls[usize::from(f)];
        let Some(s) = &full.session else { return };
        if s.id != sess {
            return;
        }
        if s.puller.is_done() {
            if s.join && matches!(s.puller.outcome(), Some(Ok(()))) {
                full.joined = true;
            }
            full.session = None;
            return;
        }
        self.request_page(f);
    }

    pub(super) fn on_page_fail(&mut self, f: u16, sess: u32) {
        let full = &mut self.fulls[usize::from(f)];
        if full.session.as_ref().is_some_and(|s| s.id == sess) {
            full.session = None;
        }
    }

    pub(super) fn on_full_advert(&mut self, f: u16) {
        self.q.at(
            self.now + micros(DEFAULT_ADVERT_INTERVAL),
            Ev::FullAdvert { f },
        );
        if !self.fulls[usize::from(f)].up {
            return;
        }
        let seq_ms = self.now_ms();
        self.fulls[usize::from(f)].advert_seq = seq_ms;
        for g in 0..self.fulls.len() as u16 {
            if g == f || !self.fulls[usize::from(g)].up {
                continue;
            }
            self.fulls[usize::from(f)].traffic.reads += (ADVERT_BYTES + OVERHEAD) as f64;
            if !self.reach(f) || !self.reach(g) {
                continue;
            }
            let (a, b) = (self.fulls[usize::from(f)].ep, self.fulls[usize::from(g)].ep);
            if let Some(at) = self.send(a, b, ADVERT_BYTES) {
                self.q.at(
                    at,
                    Ev::AdvertAt {
                        to: g,
                        from: f,
                        seq_ms,
                    },
                );
            }
        }
    }

    pub(super) fn on_advert_at(&mut self, to: u16, from: u16, seq_ms: u64) {
        if !self.reach(to) {
            return;
        }
        let peer = self.peers[usize::from(from)];
        let full = &mut self.fulls[usize::from(to)];
        full.traffic.reads += (ADVERT_BYTES + OVERHEAD) as f64;
        full.table.on_advert(peer, seq_ms);
    }

    /// The adverts full node `f` serves: every full node it knows, with its latest advert.
    pub(super) fn adverts_of(&self, f: u16) -> Vec<(PeerId, u64)> {
        let full = &self.fulls[usize::from(f)];
        let mut out: Vec<(PeerId, u64)> = full
            .table
            .known(self.now_ms())
            .into_iter()
            .map(|p| (p, self.fulls[usize::from(self.index[&p])].advert_seq))
            .collect();
        if full.advert_seq > 0 {
            out.push((full.peer, full.advert_seq));
        }
        out
    }

    pub(super) fn serve_adverts(&mut self, f: u16, n: usize) {
        self.fulls[usize::from(f)].traffic.reads += (n * ADVERT_BYTES + OVERHEAD) as f64;
    }

    pub(super) fn on_heal(&mut self) {
        self.partitioned = None;
        let held: Vec<u64> = (0..self.cat.latest.len())
            .map(|i| self.fulls[0].seq(i))
            .collect();
        self.heal = Some(CatchUp::new(self.cat.snapshot(), self.now, |i| {
            held[i as usize]
        }));
        self.q.at(self.now + SEC, Ev::Reconnected);
    }

    /// The cut-off node's peers drop it ([`NOTICE`] after the cut); visors move to another
    /// full node.
    pub(super) fn on_partition(&mut self) {
        self.partitioned = Some(0);
        self.q.at(self.now + NOTICE, Ev::PartitionNoticed);
    }

    pub(super) fn on_partition_noticed(&mut self) {
        let p0 = self.peers[0];
        for f in 1..self.fulls.len() {
            self.fulls[f].table.on_disconnected(&p0);
        }
        for v in 0..self.visors.len() {
            if self.visors[v].online && self.visors[v].connected.contains(&0) {
                self.visors[v].table.on_disconnected(&p0);
                let ep = self.visors[v].ep;
                let mut exclude = self.visors[v].connected.clone();
                exclude.push(0);
                if let Some(g) = self.pick_full(&ep, &exclude, 1).first().copied() {
                    let vis = &mut self.visors[v];
                    vis.connected.retain(|c| *c != 0);
                    vis.connected.push(g);
                    vis.table.on_identified(self.peers[usize::from(g)]);
                }
            }
        }
    }

    pub(super) fn on_reconnected(&mut self) {
        let p0 = self.peers[0];
        for f in 1..self.fulls.len() {
            if self.fulls[f].up {
                self.fulls[f].table.on_identified(p0);
                let pf = self.peers[f];
                self.fulls[0].table.on_identified(pf);
            }
        }
    }

    pub(super) fn on_new_full_node(&mut self) {
        let f = self.sc.full_nodes as u16;
        self.fulls[usize::from(f)].up = true;
        for g in 0..f {
            let adverts = self.fulls[usize::from(g)].advert_seq;
            let pg = self.peers[usize::from(g)];
            if adverts > 0 {
                self.fulls[usize::from(f)].table.on_advert(pg, adverts);
            }
        }
        let ep = self.fulls[usize::from(f)].ep;
        let bootstrap = self.pick_full(&ep, &[f], 3);
        let pf = self.peers[usize::from(f)];
        for g in &bootstrap {
            let pg = self.peers[usize::from(*g)];
            self.fulls[usize::from(f)].table.on_identified(pg);
            self.fulls[usize::from(*g)].table.on_identified(pf);
        }
        let held = |_| 0;
        self.join = Some(CatchUp::new(self.cat.snapshot(), self.now, held));
        self.on_full_advert(f);
        self.q
            .at(self.now + micros(DEFAULT_SYNC_INTERVAL), Ev::SyncTick { f });
        if let Some(g) = bootstrap.first() {
            self.start_session(f, *g, true);
        }
    }

    /// Up to `n` reachable full nodes near `ep` (by base latency, then a random tie-break),
    /// none in `exclude`.
    pub(super) fn pick_full(&mut self, ep: &Endpoint, exclude: &[u16], n: usize) -> Vec<u16> {
        let ok: Vec<u16> = (0..self.fulls.len() as u16)
            .filter(|g| self.reach(*g) && !exclude.contains(g))
            .collect();
        let mut c: Vec<(u64, u16)> = ok
            .into_iter()
            .map(|g| {
                let fe = self.fulls[usize::from(g)].ep;
                let lat = crate::net::base_micros(ep.region, fe.region);
                (lat * 4 + self.rng.below(lat.max(1) * 2), g)
            })
            .collect();
        c.sort_unstable();
        c.into_iter().take(n).map(|(_, g)| g).collect()
    }
}
