//! Visors: publishing `dmsg` and `tp` items through the real `Put`, reading through the real
//! `Read`, a real `FullNodeTable` each, churn.
use std::sync::Arc;
use std::time::Duration;

use dht::Item;
use dhtnode::config::{
    DEFAULT_ADVERT_FRESH, DEFAULT_ADVERT_INTERVAL, DEFAULT_LOOKUP_QUORUM, DEFAULT_QUERY_TIMEOUT,
    DEFAULT_READ_FANOUT, DEFAULT_REQUEST_TIMEOUT,
};
use dhtnode::node::full_nodes::FullNodeTable;
use dhtnode::node::put::{Leg, Put, PutAction, PutState};
use dhtnode::node::read::{Read, ReadState};
use dhtnode::{PutReport, ReadMode};
use libp2p::PeerId;
use tp::defaults::{DEFAULT_MIN_PUBLISH_INTERVAL, DEFAULT_PUBLISH_RETRY, DEFAULT_REFRESH_AFTER};
use tp::publish::{Decision, PublishPolicy};

use super::full::Took;
use super::{Ev, World, micros};
use crate::catalog::{DMSG, TP, idx};
use crate::net::Endpoint;
use crate::queue::{Micros, SEC};

/// A visor re-publishes its `dmsg` entry this often (`overlay::entries::CLIENT_REPUBLISH`).
const DMSG_REPUBLISH: Micros = 30 * 60 * SEC;

/// Bytes of a read request or an ack.
const SMALL: usize = 64;

/// Rounds of a modelled kad query (closest peers, fallback lookup).
const KAD_ROUNDS: u64 = 3;

fn policy() -> PublishPolicy {
    PublishPolicy::new(
        DEFAULT_REFRESH_AFTER,
        DEFAULT_MIN_PUBLISH_INTERVAL,
        DEFAULT_PUBLISH_RETRY,
    )
}

/// One visor.
pub(crate) struct Visor {
    pub(super) ep: Endpoint,
    pub(super) online: bool,
    /// Incarnation: timers of an earlier one are ignored.
    e: u32,
    /// Full nodes it holds connections to (its DMSG servers).
    pub(super) connected: Vec<u16>,
    pub(super) table: FullNodeTable,
    tp: PublishPolicy,
    tp_rev: u64,
    tp_busy: bool,
    tp_wake: Micros,
}

impl Visor {
    pub(super) fn placeholder(ep: Endpoint, local: PeerId) -> Visor {
        Visor {
            ep,
            online: false,
            e: 0,
            connected: Vec::new(),
            table: FullNodeTable::new(local, DEFAULT_ADVERT_FRESH),
            tp: policy(),
            tp_rev: 0,
            tp_busy: false,
            tp_wake: Micros::MAX,
        }
    }

    fn tp_value(&self) -> Vec<u8> {
        self.tp_rev.to_le_bytes().to_vec()
    }
}

/// A visor's put in progress.
pub(crate) struct VPut {
    v: u32,
    e: u32,
    kind: usize,
    put: Put,
    /// Full-node leg: acks awaited, peers that acked, still open.
    awaited: usize,
    ok: Vec<PeerId>,
    open: bool,
    started: Micros,
    tp_value: Option<Vec<u8>>,
}

/// A visor's read in progress.
pub(crate) struct VRead {
    v: u32,
    i: usize,
    read: Read,
    expect: u64,
    started: Micros,
    partition: bool,
}

impl World {
    /// Brings visor `v` online: at the start of the run (`steady`: its items are already out,
    /// timers at random phases) or when it comes back (a fresh process: publishes at once).
    pub(super) fn start_visor(&mut self, v: u32, steady: bool) {
        let ep = self.visors[v as usize].ep;
        let connected = self.pick_full(&ep, &[], 3);
        let now_ms = self.now_ms();
        let mut table = FullNodeTable::new(self.visor_peer, DEFAULT_ADVERT_FRESH);
        for g in &connected {
            table.on_identified(self.peers[usize::from(*g)]);
        }
        if steady {
            for g in 0..self.sc.full_nodes {
                let age = self.rng.below(300_000);
                table.on_advert(self.peers[g], now_ms.saturating_sub(age));
            }
        }
        let vis = &mut self.visors[v as usize];
        vis.online = true;
        vis.e += 1;
        vis.connected = connected;
        vis.table = table;
        vis.tp = policy();
        vis.tp_busy = false;
        vis.tp_wake = Micros::MAX;
        let e = vis.e;
        if steady {
            let age = Duration::from_micros(self.rng.below(micros(DEFAULT_REFRESH_AFTER)));
            let at = self.inst() - age;
            let value = self.visors[v as usize].tp_value();
            self.visors[v as usize].tp.record(at, value, true);
            let d = self.rng.below(DMSG_REPUBLISH);
            self.q.at(self.now + d, Ev::Dmsg { v, e });
            let a = self.rng.below(micros(DEFAULT_ADVERT_INTERVAL));
            self.q.at(self.now + a, Ev::Adverts { v, e });
            self.tp_wake(v);
        } else {
            self.q.at(self.now + SEC, Ev::Dmsg { v, e });
            self.q.at(self.now + SEC, Ev::TpWake { v, e });
            self.q.at(self.now, Ev::Adverts { v, e });
        }
        let r = self.rng.exp(self.sc.read_every_min * 60e6) as Micros;
        self.q.at(self.now + r, Ev::Read { v, e });
        let c = self.rng.exp(self.sc.tp_change_every_min * 60e6) as Micros;
        self.q.at(self.now + c, Ev::TpChange { v, e });
        if self.sc.churn_per_hour > 0.0 {
            let l = self.rng.exp(3600e6 / self.sc.churn_per_hour) as Micros;
            self.q.at(self.now + l, Ev::Leave { v });
        }
    }

    fn live(&self, v: u32, e: u32) -> bool {
        let vis = &self.visors[v as usize];
        vis.online && vis.e == e
    }

    pub(super) fn on_leave(&mut self, v: u32) {
        let vis = &mut self.visors[v as usize];
        if !vis.online {
            return;
        }
        vis.online = false;
        vis.e += 1;
        let back = self.rng.exp(self.sc.offline_mean_min * 60e6) as Micros;
        self.q.at(self.now + back, Ev::Join { v });
    }

    pub(super) fn on_dmsg(&mut self, v: u32, e: u32) {
        if !self.live(v, e) {
            return;
        }
        self.q.at(self.now + DMSG_REPUBLISH, Ev::Dmsg { v, e });
        self.visor_put(v, DMSG, None);
    }

    pub(super) fn on_tp_change(&mut self, v: u32, e: u32) {
        if !self.live(v, e) {
            return;
        }
        self.visors[v as usize].tp_rev += 1;
        let c = self.rng.exp(self.sc.tp_change_every_min * 60e6) as Micros;
        self.q.at(self.now + c, Ev::TpChange { v, e });
        self.tp_wake(v);
    }

    pub(super) fn on_tp_wake(&mut self, v: u32, e: u32) {
        if !self.live(v, e) {
            return;
        }
        if self.visors[v as usize].tp_wake <= self.now {
            self.visors[v as usize].tp_wake = Micros::MAX;
        }
        self.tp_wake(v);
    }

    /// Asks the real publish policy what to do with the current `tp` value.
    fn tp_wake(&mut self, v: u32) {
        let inst = self.inst();
        let vis = &self.visors[v as usize];
        if vis.tp_busy {
            return;
        }
        let value = vis.tp_value();
        match vis.tp.decide(inst, &value) {
            Decision::Publish => {
                self.visors[v as usize].tp_busy = true;
                self.visor_put(v, TP, Some(value));
            }
            Decision::WaitUntil(t) => {
                let at = self.now + micros(t.saturating_duration_since(inst)) + 1;
                let vis = &mut self.visors[v as usize];
                if at < vis.tp_wake {
                    vis.tp_wake = at;
                    let e = vis.e;
                    self.q.at(at, Ev::TpWake { v, e });
                }
            }
        }
    }

    /// A new version of visor `v`'s item `kind`, put through the real `Put`.
    fn visor_put(&mut self, v: u32, kind: usize, tp_value: Option<Vec<u8>>) {
        let i = idx(v as usize, kind);
        let item = self.cat.next_version(i);
        let part = self.in_partition();
        self.cat.conv.published(i, item.seq, self.now, part);
        let (inst, now_ms) = (self.inst(), self.now_ms());
        let (reachable, e, ep) = {
            let vis = &self.visors[v as usize];
            (vis.table.reachable(inst, now_ms), vis.e, vis.ep)
        };
        let report = PutReport::new(String::new(), item.seq);
        let (put, actions) = Put::new(report, reachable);
        let op = self.op_id();
        let mut p = VPut {
            v,
            e,
            kind,
            put,
            awaited: 0,
            ok: Vec::new(),
            open: false,
            started: self.now,
            tp_value,
        };
        let bytes = item.encoded_len() + SMALL;
        for action in actions {
            match action {
                PutAction::PutTo { peers, .. } => {
                    p.open = true;
                    p.awaited = peers.len();
                    let mut lost = false;
                    for peer in peers {
                        let g = self.index[&peer];
                        let fe = self.fulls[usize::from(g)].ep;
                        match self.send(ep, fe, bytes) {
                            Some(at) if self.reach(g) => self.q.at(
                                at,
                                Ev::PutAt {
                                    op,
                                    f: g,
                                    item: item.clone(),
                                },
                            ),
                            _ => lost = true,
                        }
                    }
                    if lost {
                        let t = self.now + micros(DEFAULT_QUERY_TIMEOUT);
                        self.q.at(t, Ev::PutTimeout { op });
                    }
                }
                PutAction::FindClosest => {
                    let d = self.kad_delay(ep);
                    self.q.at(self.now + d, Ev::Closest { op });
                }
            }
        }
        self.puts.insert(op, p);
    }

    /// A modelled kad query from `ep`: [`KAD_ROUNDS`] round trips to random visors.
    fn kad_delay(&mut self, ep: Endpoint) -> Micros {
        let mut d = 0;
        for _ in 0..KAD_ROUNDS {
            let u = self.rng.below(self.visors.len() as u64) as usize;
            let other = self.visors[u].ep;
            d += 2 * self.net.latency(&mut self.rng, &ep, &other, SMALL);
        }
        d
    }

    pub(super) fn on_put_at(&mut self, op: u32, f: u16, item: Arc<Item>) {
        if !self.reach(f) {
            return;
        }
        let bytes = item.encoded_len() + SMALL;
        self.fulls[usize::from(f)].traffic.puts += (bytes + SMALL) as f64;
        if self.accept(f, &item) == Took::New {
            self.forward(f, &item);
        }
        let Some(p) = self.puts.get(&op) else { return };
        let ve = self.visors[p.v as usize].ep;
        let fe = self.fulls[usize::from(f)].ep;
        if let Some(at) = self.send(fe, ve, SMALL) {
            self.q.at(at, Ev::PutAck { op, f });
        }
    }

    pub(super) fn on_put_ack(&mut self, op: u32, f: u16) {
        let peer = self.peers[usize::from(f)];
        let Some(p) = self.puts.get_mut(&op) else {
            return;
        };
        if !p.open {
            return;
        }
        p.ok.push(peer);
        if p.ok.len() == p.awaited {
            p.open = false;
            let acks = p.ok.len() as u32;
            p.put.on_leg_done(Leg::FullNodes, acks, None);
            self.put_next(op);
        }
    }

    pub(super) fn on_put_timeout(&mut self, op: u32) {
        let inst = self.inst();
        let Some(p) = self.puts.get_mut(&op) else {
            return;
        };
        if !p.open {
            return;
        }
        p.open = false;
        let acks = p.ok.len() as u32;
        let back = p.put.on_leg_done(Leg::FullNodes, acks, Some(&p.ok));
        let (v, e) = (p.v, p.e);
        if self.live(v, e) {
            for peer in back {
                self.visors[v as usize].table.back_off(&peer, inst);
            }
        }
        self.put_next(op);
    }

    pub(super) fn on_closest(&mut self, op: u32) {
        let Some(p) = self.puts.get_mut(&op) else {
            return;
        };
        if let Some(PutAction::PutTo { leg, peers }) = p
            .put
            .on_closest_peers(self.closest.clone(), self.visor_peer)
        {
            p.put.on_leg_done(leg, peers.len() as u32, None);
        }
        self.put_next(op);
    }

    fn put_next(&mut self, op: u32) {
        let Some(p) = self.puts.get_mut(&op) else {
            return;
        };
        let PutState::Done(report) = p.put.next() else {
            return;
        };
        let Some(p) = self.puts.remove(&op) else {
            return;
        };
        if p.kind == TP && self.live(p.v, p.e) {
            let at = self.inst_at(p.started);
            let vis = &mut self.visors[p.v as usize];
            vis.tp
                .record(at, p.tp_value.unwrap_or_default(), report.acks > 0);
            vis.tp_busy = false;
            self.tp_wake(p.v);
        }
    }

    pub(super) fn on_read(&mut self, v: u32, e: u32) {
        if !self.live(v, e) {
            return;
        }
        let r = self.rng.exp(self.sc.read_every_min * 60e6) as Micros;
        self.q.at(self.now + r, Ev::Read { v, e });
        // A random online peer's item.
        let mut u = None;
        for _ in 0..8 {
            let c = self.rng.below(self.visors.len() as u64) as u32;
            if c != v && self.visors[c as usize].online {
                u = Some(c);
                break;
            }
        }
        let Some(u) = u else { return };
        let i = idx(u as usize, self.rng.below(2) as usize);
        let Some(latest) = self.cat.latest[i].clone() else {
            return;
        };
        let (inst, now_ms) = (self.inst(), self.now_ms());
        let mut read = Read::new(
            latest.target(),
            ReadMode::Auto,
            None,
            DEFAULT_LOOKUP_QUORUM,
            inst,
        );
        let vis = &self.visors[v as usize];
        let asked = read.ask_full_nodes(vis.table.read_targets(inst, now_ms, DEFAULT_READ_FANOUT));
        let ep = vis.ep;
        let op = self.op_id();
        self.reads.insert(
            op,
            VRead {
                v,
                i,
                read,
                expect: latest.seq,
                started: self.now,
                partition: self.in_partition(),
            },
        );
        for peer in asked {
            let g = self.index[&peer];
            let fe = self.fulls[usize::from(g)].ep;
            match self.send(ep, fe, SMALL) {
                Some(at) if self.reach(g) => self.q.at(at, Ev::ReadAt { op, f: g }),
                _ => self.q.at(
                    self.now + micros(DEFAULT_REQUEST_TIMEOUT),
                    Ev::ReadFail { op, f: g },
                ),
            }
        }
        self.drive_read(op);
    }

    pub(super) fn on_read_at(&mut self, op: u32, f: u16) {
        let Some(r) = self.reads.get(&op) else { return };
        let (i, v, started) = (r.i, r.v, r.started);
        let fail = Ev::ReadFail { op, f };
        if !self.reach(f) {
            self.q.at(started + micros(DEFAULT_REQUEST_TIMEOUT), fail);
            return;
        }
        let copy = self.fulls[usize::from(f)].store[i].clone();
        let bytes = SMALL + copy.as_ref().map_or(0, |c| c.encoded_len());
        self.fulls[usize::from(f)].traffic.reads += (bytes + SMALL) as f64;
        let (fe, ve) = (self.fulls[usize::from(f)].ep, self.visors[v as usize].ep);
        match self.send(fe, ve, bytes) {
            Some(at) => self.q.at(at, Ev::ReadAns { op, copy }),
            None => self.q.at(started + micros(DEFAULT_REQUEST_TIMEOUT), fail),
        }
    }

    pub(super) fn on_read_answer(&mut self, op: u32, copy: Option<Arc<Item>>) {
        let Some(r) = self.reads.get_mut(&op) else {
            return;
        };
        r.read.on_full_node_answer(copy.map(|c| Item::clone(&c)));
        self.drive_read(op);
    }

    pub(super) fn on_read_fail(&mut self, op: u32, f: u16) {
        let inst = self.inst();
        let Some(r) = self.reads.get_mut(&op) else {
            return;
        };
        r.read.on_full_node_failure();
        let v = r.v as usize;
        self.visors[v]
            .table
            .back_off(&self.peers[usize::from(f)], inst);
        self.drive_read(op);
    }

    /// The fallback kad lookup (modelled): the k closest peers hold the latest version while
    /// its publisher is online (it re-puts on every restart and refresh).
    pub(super) fn on_lookup(&mut self, op: u32) {
        let Some(r) = self.reads.get_mut(&op) else {
            return;
        };
        let owner = r.i / 2;
        if self.visors[owner].online
            && let Some(latest) = &self.cat.latest[r.i]
        {
            for _ in 0..DEFAULT_LOOKUP_QUORUM {
                if r.read
                    .on_lookup_record(Item::clone(latest), Some(KAD_ROUNDS as u32))
                {
                    break;
                }
            }
        }
        r.read.on_lookup_finished(KAD_ROUNDS as u32 * 3);
        self.drive_read(op);
    }

    fn drive_read(&mut self, op: u32) {
        let inst = self.inst();
        let Some(r) = self.reads.get_mut(&op) else {
            return;
        };
        match r.read.next(inst) {
            ReadState::Waiting => {}
            ReadState::StartLookup => {
                let ep = self.visors[r.v as usize].ep;
                let d = self.kad_delay(ep);
                self.q.at(self.now + d, Ev::Lookup { op });
            }
            ReadState::Finished(outcome) => {
                let Some(r) = self.reads.remove(&op) else {
                    return;
                };
                let acc = &mut self.reads_acc[usize::from(r.partition)];
                acc.n += 1;
                if let Some(item) = &outcome.item {
                    acc.found += 1;
                    acc.current += u64::from(item.seq >= r.expect);
                }
                acc.lat.push(self.now - r.started);
            }
        }
    }

    pub(super) fn on_adverts(&mut self, v: u32, e: u32) {
        if !self.live(v, e) {
            return;
        }
        let next = self.now + micros(DEFAULT_ADVERT_INTERVAL);
        self.q.at(next, Ev::Adverts { v, e });
        let (inst, now_ms) = (self.inst(), self.now_ms());
        let vis = &self.visors[v as usize];
        let mut asked = vis.table.read_targets(inst, now_ms, DEFAULT_READ_FANOUT);
        if asked.is_empty() {
            asked = vis
                .connected
                .iter()
                .map(|g| self.peers[usize::from(*g)])
                .collect();
        }
        let ep = vis.ep;
        for peer in asked {
            let f = self.index[&peer];
            let fe = self.fulls[usize::from(f)].ep;
            if !self.reach(f) {
                continue;
            }
            if let Some(at) = self.send(ep, fe, SMALL) {
                let back = self.net.latency(&mut self.rng, &fe, &ep, 4096);
                self.q.at(at + back, Ev::AdvertsAns { v, e, f });
            }
        }
    }

    pub(super) fn on_adverts_answer(&mut self, v: u32, e: u32, f: u16) {
        if !self.live(v, e) || !self.reach(f) {
            return;
        }
        let adverts = self.adverts_of(f);
        self.serve_adverts(f, adverts.len());
        let vis = &mut self.visors[v as usize];
        for (peer, seq) in adverts {
            vis.table.on_advert(peer, seq);
        }
    }
}
