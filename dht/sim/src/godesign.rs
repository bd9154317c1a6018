//! The Go design (`../shared/spec/go-dht-reference.md`) on the same network, churn and loss:
//!
//! - every visor re-puts its `dmsg` entry and its `tp` list every 60 s (§5: publish loops),
//!   each put an iterative FindNode then PutValue to the K = 20 closest online nodes (visors and
//!   full nodes alike; no distance check on store, §1); a version is stored where it lands;
//! - reads: the local store first, else an iterative GetValue that queries every shortlist
//!   member (no early stop, α = 3, 10 s per RPC, §2) and takes the highest seq of the K
//!   closest online nodes;
//! - full nodes reconcile hourly with every other full node (pull everything from cursor 0,
//!   then PutBatch what the peer lacks, §4.3, §6); a new full node reconciles 5 s after start.
//!
//! Modelled, not executed (there is no pure Go code to drive): the K closest online nodes are
//! found exactly (by XOR among the ids next to the target in sorted order, an approximation
//! exact for uniform ids in practice); a lookup costs [`LOOKUP_ROUNDS`] rounds, each the
//! slowest of α round trips to random visors, or 10 s when one of its messages is lost. Wire
//! sizes are the binary item sizes × [`JSON_FACTOR`] (hex keys and signatures, base64 values).
//! Items overwritable by anyone (§10.1) make no difference with honest nodes and are not
//! exercised.
use std::collections::{BTreeSet, HashMap};

use crate::Scenario;
use crate::catalog::{Catalog, CatchUp};
use crate::net::{Endpoint, Net};
use crate::queue::{Micros, Queue, SEC};
use crate::report::{Dist, Reads, Report, Traffic};
use crate::rng::Rng;

/// Bucket size / replication (Go `K`).
const K: usize = 20;
/// Lookup parallelism (Go `Alpha`).
const ALPHA: usize = 3;
/// Rounds of an iterative lookup: ~4 to reach the target's neighbourhood among 100,000 ids,
/// then the rest of the 20-member shortlist at 3 per round (every member is queried).
const LOOKUP_ROUNDS: usize = 8;
/// Per-RPC timeout.
const RPC_TIMEOUT: Micros = 10 * SEC;
/// Publish period of `dmsg` and `tp` on visors.
const PUBLISH: Micros = 60 * SEC;
/// Reconcile period of full nodes.
const RECONCILE: Micros = 3600 * SEC;
/// JSON wire bytes per binary item byte.
const JSON_FACTOR: f64 = 1.6;
/// Items per GetItems page (limit 0 → 1000).
const PAGE: usize = 1000;
/// A dmsg refresh of the same content is tracked for convergence once per this many puts
/// (every 30 min, like skymesh's refresh), besides every content change.
const TRACK_EVERY: u64 = 30;

enum Ev {
    Put { v: u32, e: u32, kind: u8 },
    Land { i: u32, seq: u64 },
    Read { v: u32, e: u32 },
    TpChange { v: u32, e: u32 },
    Leave { v: u32 },
    Join { v: u32 },
    Reconcile { f: u16 },
    Exchange { f: u16, k: u16 },
    PartitionStart,
    PartitionEnd,
    NewFullNode,
}

struct Node {
    id: u64,
    ep: Endpoint,
    online: bool,
    e: u32,
    store: HashMap<u32, u64>,
    traffic: Traffic,
}

struct World {
    sc: Scenario,
    rng: Rng,
    net: Net,
    q: Queue<Ev>,
    now: Micros,
    cat: Catalog,
    /// Full nodes first (`nf`, the joining one last), then visors.
    nodes: Vec<Node>,
    nf: usize,
    ring: BTreeSet<(u64, u32)>,
    targets: Vec<u64>,
    /// Seq of the first put of each item's current content.
    content: Vec<u64>,
    changed: Vec<bool>,
    puts: Vec<u64>,
    partitioned: Option<usize>,
    reads: [(u64, u64, u64, Vec<Micros>); 2],
    heal: Option<CatchUp>,
    join: Option<CatchUp>,
}

/// Runs the Go design on `sc`.
pub fn run(sc: &Scenario) -> Report {
    let mut w = World::new(sc.clone());
    w.start();
    let end = sc.end();
    let mut progress = crate::Progress::new(sc, "Go design");
    while let Some((at, ev)) = w.q.pop(end) {
        progress.at(at);
        w.now = at;
        w.handle(ev);
    }
    w.now = end;
    w.report()
}

impl World {
    fn new(sc: Scenario) -> World {
        let mut rng = Rng::new(sc.seed ^ 0x60);
        let net = Net::new(sc.loss, rng.next_u64());
        let nf = sc.full_nodes + usize::from(sc.join_at_min.is_some());
        let nodes = (0..nf + sc.visors)
            .map(|n| Node {
                id: rng.next_u64(),
                ep: Net::endpoint(&mut rng, n as u64, if n < nf { 1.0 } else { 15.0 }),
                online: n < sc.full_nodes || n >= nf,
                e: 0,
                store: HashMap::new(),
                traffic: Traffic::default(),
            })
            .collect();
        let items = 2 * sc.visors;
        let targets = (0..items).map(|_| rng.next_u64()).collect();
        World {
            cat: Catalog::new(sc.seed, sc.visors, sc.value_lens, sc.full_nodes as u16),
            rng,
            net,
            q: Queue::default(),
            now: 0,
            nodes,
            nf,
            ring: BTreeSet::new(),
            targets,
            content: vec![1; items],
            changed: vec![false; items],
            puts: vec![0; items],
            partitioned: None,
            reads: Default::default(),
            heal: None,
            join: None,
            sc,
        }
    }

    fn reach(&self, n: usize) -> bool {
        self.nodes[n].online && self.partitioned != Some(n)
    }

    fn start(&mut self) {
        for (n, node) in self.nodes.iter().enumerate() {
            if node.online {
                self.ring.insert((node.id, n as u32));
            }
        }
        // Steady state: the first version of every item on its K closest, full nodes
        // reconciled with each other.
        for i in 0..self.targets.len() {
            let item = self.cat.next_version(i);
            self.land(i as u32, item.seq, false);
        }
        self.cat.conv.track_until = self.sc.track_until();
        let mut union: HashMap<u32, u64> = HashMap::new();
        for f in 0..self.sc.full_nodes {
            for (i, s) in &self.nodes[f].store {
                union.insert(*i, *s);
            }
        }
        for f in 0..self.sc.full_nodes {
            self.nodes[f].store = union.clone();
            let at = self.rng.below(RECONCILE);
            self.q.at(at, Ev::Reconcile { f: f as u16 });
        }
        for v in 0..self.sc.visors {
            self.start_visor(v as u32);
        }
        if let Some((at, end)) = self.sc.partition_window() {
            self.q.at(at, Ev::PartitionStart);
            self.q.at(end, Ev::PartitionEnd);
        }
        if let Some(m) = self.sc.join_at_min {
            self.q.at(m * 60 * SEC, Ev::NewFullNode);
        }
    }

    fn start_visor(&mut self, v: u32) {
        let n = self.nf + v as usize;
        let node = &mut self.nodes[n];
        node.online = true;
        node.e += 1;
        let e = node.e;
        self.ring.insert((node.id, n as u32));
        for kind in 0..2u8 {
            let at = self.now + self.rng.below(PUBLISH);
            self.q.at(at, Ev::Put { v, e, kind });
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
        let n = &self.nodes[self.nf + v as usize];
        n.online && n.e == e
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Put { v, e, kind } => self.on_put(v, e, kind),
            Ev::Land { i, seq } => self.land(i, seq, true),
            Ev::Read { v, e } => self.on_read(v, e),
            Ev::TpChange { v, e } => {
                if self.live(v, e) {
                    self.changed[2 * v as usize + 1] = true;
                    let c = self.rng.exp(self.sc.tp_change_every_min * 60e6) as Micros;
                    self.q.at(self.now + c, Ev::TpChange { v, e });
                }
            }
            Ev::Leave { v } => {
                let n = self.nf + v as usize;
                if self.nodes[n].online {
                    self.nodes[n].online = false;
                    self.nodes[n].e += 1;
                    self.ring.remove(&(self.nodes[n].id, n as u32));
                    let back = self.rng.exp(self.sc.offline_mean_min * 60e6) as Micros;
                    self.q.at(self.now + back, Ev::Join { v });
                }
            }
            Ev::Join { v } => {
                // A restarted visor publishes new content (new sessions, transports).
                self.changed[2 * v as usize] = true;
                self.changed[2 * v as usize + 1] = true;
                self.start_visor(v);
            }
            Ev::Reconcile { f } => {
                self.q.at(self.now + RECONCILE, Ev::Reconcile { f });
                self.q.at(self.now, Ev::Exchange { f, k: 0 });
            }
            Ev::Exchange { f, k } => self.exchange(f, k),
            Ev::PartitionStart => self.partitioned = Some(0),
            Ev::PartitionEnd => {
                self.partitioned = None;
                let target = self.full_union(0);
                let held: HashMap<u32, u64> = self.nodes[0].store.clone();
                let h = move |i: u32| held.get(&i).copied().unwrap_or(0);
                self.heal = Some(CatchUp::new(target, self.now, h));
            }
            Ev::NewFullNode => {
                let f = self.sc.full_nodes;
                self.nodes[f].online = true;
                self.ring.insert((self.nodes[f].id, f as u32));
                let target = self.full_union(f);
                self.join = Some(CatchUp::new(target, self.now, |_| 0));
                self.q.at(self.now + 5 * SEC, Ev::Reconcile { f: f as u16 });
            }
        }
    }

    /// What the full nodes other than `except` hold (highest seq each).
    fn full_union(&self, except: usize) -> HashMap<u32, u64> {
        let mut u: HashMap<u32, u64> = HashMap::new();
        for f in 0..self.sc.full_nodes {
            if f == except {
                continue;
            }
            for (i, s) in &self.nodes[f].store {
                let e = u.entry(*i).or_default();
                *e = (*e).max(*s);
            }
        }
        u
    }

    fn on_put(&mut self, v: u32, e: u32, kind: u8) {
        if !self.live(v, e) {
            return;
        }
        self.q.at(self.now + PUBLISH, Ev::Put { v, e, kind });
        let i = 2 * v as usize + usize::from(kind);
        let item = self.cat.next_version(i);
        self.puts[i] += 1;
        let changed = std::mem::take(&mut self.changed[i]);
        if changed {
            self.content[i] = item.seq;
        }
        if changed || (kind == 0 && self.puts[i].is_multiple_of(TRACK_EVERY)) {
            let part = self.partitioned.is_some();
            self.cat.conv.published(i, item.seq, self.now, part);
        }
        let d = self.lookup_delay(self.nf + v as usize);
        self.q.at(
            self.now + d,
            Ev::Land {
                i: i as u32,
                seq: item.seq,
            },
        );
    }

    /// A lookup from node `n`: [`LOOKUP_ROUNDS`] rounds of α RPCs.
    fn lookup_delay(&mut self, n: usize) -> Micros {
        let ep = self.nodes[n].ep;
        let mut d = 0;
        for _ in 0..LOOKUP_ROUNDS {
            let mut round = 0;
            for _ in 0..ALPHA {
                let u = self.nf + self.rng.below(self.sc.visors as u64) as usize;
                let other = self.nodes[u].ep;
                let rtt = if self.net.lost(&mut self.rng) || self.net.lost(&mut self.rng) {
                    RPC_TIMEOUT
                } else {
                    2 * self.net.latency(&mut self.rng, &ep, &other, 200)
                };
                round = round.max(rtt);
            }
            d += round;
        }
        d
    }

    /// The K online nodes closest to `t` by XOR (among the 4K nearest in id order).
    fn closest(&self, t: u64) -> Vec<usize> {
        let mut c: Vec<(u64, usize)> = self
            .ring
            .range((t, 0)..)
            .take(2 * K)
            .chain(self.ring.range(..(t, 0)).rev().take(2 * K))
            .map(|(id, n)| (id ^ t, *n as usize))
            .collect();
        c.sort_unstable();
        c.into_iter().take(K).map(|(_, n)| n).collect()
    }

    /// Version `seq` of item `i` reaches its K closest online nodes (each message may be lost).
    fn land(&mut self, i: u32, seq: u64, lossy: bool) {
        let bytes = self.cat.latest[i as usize]
            .as_ref()
            .map_or(0.0, |it| it.encoded_len() as f64 * JSON_FACTOR);
        for n in self.closest(self.targets[i as usize]) {
            if lossy && (!self.reach(n) || self.net.lost(&mut self.rng)) {
                continue;
            }
            if n < self.nf {
                self.nodes[n].traffic.push += bytes;
            }
            self.store(n, i, seq);
        }
    }

    fn store(&mut self, n: usize, i: u32, seq: u64) {
        let old = self.nodes[n].store.get(&i).copied().unwrap_or(0);
        if seq <= old {
            return;
        }
        self.nodes[n].store.insert(i, seq);
        if n < self.sc.full_nodes {
            self.cat.conv.held(i as usize, old, seq, self.now);
        }
        if n == 0
            && let Some(h) = &mut self.heal
        {
            h.on_held(i, seq, self.now);
        }
        if n == self.sc.full_nodes
            && let Some(j) = &mut self.join
        {
            j.on_held(i, seq, self.now);
        }
    }

    /// Full node `f` reconciles with the `k`-th other full node: pulls everything it holds
    /// (pages of 1000; a lost page ends the pull), then PutBatches what the peer lacks.
    fn exchange(&mut self, f: u16, k: u16) {
        let f = usize::from(f);
        let peers: Vec<usize> = (0..self.nf).filter(|g| *g != f).collect();
        let Some(&g) = peers.get(usize::from(k)) else {
            return;
        };
        let mut took = self.now;
        if self.reach(f) && self.reach(g) {
            let theirs: Vec<(u32, u64)> = {
                let mut v: Vec<(u32, u64)> =
                    self.nodes[g].store.iter().map(|(i, s)| (*i, *s)).collect();
                v.sort_unstable();
                v
            };
            let size = |w: &World, i: u32| {
                w.cat.latest[i as usize]
                    .as_ref()
                    .map_or(0.0, |it| it.encoded_len() as f64 * JSON_FACTOR)
            };
            let (fe, ge) = (self.nodes[f].ep, self.nodes[g].ep);
            let mut got = 0;
            for page in theirs.chunks(PAGE) {
                if self.net.lost(&mut self.rng) || self.net.lost(&mut self.rng) {
                    took += RPC_TIMEOUT * 3;
                    break;
                }
                let bytes: f64 = page.iter().map(|(i, _)| size(self, *i)).sum();
                self.nodes[f].traffic.repair += bytes;
                self.nodes[g].traffic.repair += bytes;
                took += 2 * self.net.latency(&mut self.rng, &fe, &ge, bytes as usize);
                for (i, s) in page {
                    self.store(f, *i, *s);
                }
                got += page.len();
            }
            if got == theirs.len() {
                let lacking: Vec<(u32, u64)> = {
                    let mut v: Vec<(u32, u64)> = self.nodes[f]
                        .store
                        .iter()
                        .filter(|(i, _)| !self.nodes[g].store.contains_key(i))
                        .map(|(i, s)| (*i, *s))
                        .collect();
                    v.sort_unstable();
                    v
                };
                for (i, s) in lacking {
                    let b = size(self, i);
                    self.nodes[f].traffic.repair += b;
                    self.nodes[g].traffic.repair += b;
                    self.store(g, i, s);
                }
            }
        } else {
            took += RPC_TIMEOUT;
        }
        self.q.at(
            took.max(self.now + 1),
            Ev::Exchange {
                f: f as u16,
                k: k + 1,
            },
        );
    }

    fn on_read(&mut self, v: u32, e: u32) {
        if !self.live(v, e) {
            return;
        }
        let r = self.rng.exp(self.sc.read_every_min * 60e6) as Micros;
        self.q.at(self.now + r, Ev::Read { v, e });
        let mut u = None;
        for _ in 0..8 {
            let c = self.rng.below(self.sc.visors as u64) as u32;
            if c != v && self.nodes[self.nf + c as usize].online {
                u = Some(c);
                break;
            }
        }
        let Some(u) = u else { return };
        let i = 2 * u as usize + self.rng.below(2) as usize;
        let expect = self.content[i];
        let reader = self.nf + v as usize;
        let (got, lat) = if let Some(s) = self.nodes[reader].store.get(&(i as u32)) {
            (Some(*s), 0)
        } else {
            let best = self
                .closest(self.targets[i])
                .into_iter()
                .filter(|n| self.reach(*n))
                .filter_map(|n| self.nodes[n].store.get(&(i as u32)).copied())
                .max();
            (best, self.lookup_delay(reader))
        };
        let acc = &mut self.reads[usize::from(self.partitioned.is_some())];
        acc.0 += 1;
        if let Some(s) = got {
            acc.1 += 1;
            acc.2 += u64::from(s >= expect);
        }
        acc.3.push(lat);
    }

    fn report(&mut self) -> Report {
        let hours = self.now as f64 / 3600e6;
        let n = self.sc.full_nodes as f64;
        let mut t = Traffic::default();
        for f in &self.nodes[..self.sc.full_nodes] {
            t.push += f.traffic.push / n / hours;
            t.repair += f.traffic.repair / n / hours;
        }
        let conv = &mut self.cat.conv;
        let converged = (conv.samples.len() + conv.samples_partition.len()) as u64;
        let join_share = if self.sc.join_at_min.is_some() {
            self.nodes[self.sc.full_nodes].store.len() as f64 / self.targets.len() as f64
        } else {
            0.0
        };
        let mut reads = |k: usize| {
            let (n, found, current, lat) = &mut self.reads[k];
            Reads {
                n: *n,
                found: *found,
                current: *current,
                latency: Dist::of(std::mem::take(lat)),
            }
        };
        let (r0, r1) = (reads(0), reads(1));
        Report {
            design: "Go design".into(),
            writes: conv.writes,
            converged,
            convergence: Dist::of(std::mem::take(&mut conv.samples)),
            convergence_partition: Dist::of(std::mem::take(&mut conv.samples_partition)),
            writes_partition: conv.writes_partition,
            reads: r0,
            reads_partition: r1,
            traffic: t,
            join_secs: self.join.as_ref().and_then(CatchUp::secs),
            join_share,
            heal_secs: self.heal.as_ref().and_then(CatchUp::secs),
            events: self.q.popped,
        }
    }
}
