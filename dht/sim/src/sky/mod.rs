//! skymesh in the simulator: visors and full nodes driving the real pure operations.
//!
//! | what | real code driven | modelled here |
//! |---|---|---|
//! | visor put | `dhtnode::node::put::Put` (full-node leg to every reachable full node, closest leg) | the kad closest-peers query: a delay of three visor round trips; its copies are not stored |
//! | visor read | `dhtnode::node::read::Read` (fanout 3, connected full nodes first, every answer awaited) | the fallback kad lookup: three round trips, finds the latest version while its publisher is online |
//! | full-node table | `dhtnode::node::full_nodes::FullNodeTable` on every visor and full node (adverts, identify, 60 s backoff) | adverts are delivered as messages every 5 min; a visor fetches them from 3 full nodes every 5 min |
//! | acceptance | `dht::rules::decide` (the seq rule) on every copy received | signatures are not checked (honest nodes); their cost is a delay on pulled pages |
//! | push | `dhtnode::node::push::Pusher` (queues, batches, one in flight per peer, retry and failure backoff) and the forwarder rule (`push::forwards`: a visor's write is pushed by the 3 full nodes closest to its target) | — |
//! | repair, join | `itemsync::Puller` (paging, cursors); pages cut like `itemsync::serve::page` from a per-node change log | verification: 40,000 new items/s (2 cores) delays the next page |
//! | `tp` publishing | `tp::publish::PublishPolicy` (90 min refresh, 200 ms coalescing) | transport changes: exponential, mean [`crate::Scenario::tp_change_every_min`] |
//! | `dmsg` publishing | — | every 30 min (`overlay::entries::CLIENT_REPUBLISH`) and at every (re)start |
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dht::Item;
use dhtnode::node::push::PushEnd;
use itemsync::wire::{GetItems, Page};
use libp2p::PeerId;

use crate::Scenario;
use crate::catalog::{Catalog, CatchUp};
use crate::net::{Endpoint, Net};
use crate::queue::{Micros, Queue, SEC};
use crate::report::{Dist, Reads, Report, Traffic};
use crate::rng::Rng;

mod full;
mod push;
mod visor;

use full::Full;
use visor::{VPut, VRead, Visor};

/// Unix ms at virtual time 0 (adverts' seqs are Unix ms).
const T0_MS: u64 = 1_800_000_000_000;

/// A request that gets no answer fails after the driver's timeout: reads
/// (`DEFAULT_REQUEST_TIMEOUT`), puts (`DEFAULT_QUERY_TIMEOUT`), sync pages and pushes
/// (`DEFAULT_SYNC_TIMEOUT`).
fn micros(d: Duration) -> Micros {
    d.as_micros() as Micros
}

/// The events of the skymesh world.
pub(crate) enum Ev {
    Dmsg {
        v: u32,
        e: u32,
    },
    TpWake {
        v: u32,
        e: u32,
    },
    TpChange {
        v: u32,
        e: u32,
    },
    Read {
        v: u32,
        e: u32,
    },
    Adverts {
        v: u32,
        e: u32,
    },
    AdvertsAns {
        v: u32,
        e: u32,
        f: u16,
    },
    Leave {
        v: u32,
    },
    Join {
        v: u32,
    },
    PutAt {
        op: u32,
        f: u16,
        item: Arc<Item>,
    },
    PutAck {
        op: u32,
        f: u16,
    },
    PutTimeout {
        op: u32,
    },
    Closest {
        op: u32,
    },
    ReadAt {
        op: u32,
        f: u16,
    },
    ReadAns {
        op: u32,
        copy: Option<Arc<Item>>,
    },
    ReadFail {
        op: u32,
        f: u16,
    },
    Lookup {
        op: u32,
    },
    FullAdvert {
        f: u16,
    },
    AdvertAt {
        to: u16,
        from: u16,
        seq_ms: u64,
    },
    PushAt {
        from: u16,
        to: u16,
        id: u64,
        sent: Micros,
        items: Vec<Arc<Item>>,
    },
    PushEnd {
        f: u16,
        id: u64,
        end: PushEnd,
    },
    PushTick {
        f: u16,
    },
    SyncTick {
        f: u16,
    },
    PageAt {
        f: u16,
        g: u16,
        sess: u32,
        sent: Micros,
        req: GetItems,
    },
    PageAns {
        f: u16,
        sess: u32,
        page: Box<(Page, Vec<Arc<Item>>)>,
    },
    PageFail {
        f: u16,
        sess: u32,
    },
    PageNext {
        f: u16,
        sess: u32,
    },
    PartitionStart,
    PartitionNoticed,
    PartitionEnd,
    Reconnected,
    NewFullNode,
}

#[derive(Default)]
struct ReadAcc {
    n: u64,
    found: u64,
    current: u64,
    lat: Vec<Micros>,
}

impl ReadAcc {
    fn report(&mut self) -> Reads {
        Reads {
            n: self.n,
            found: self.found,
            current: self.current,
            latency: Dist::of(std::mem::take(&mut self.lat)),
        }
    }
}

/// The skymesh world.
pub(crate) struct World {
    sc: Scenario,
    rng: Rng,
    net: Net,
    q: Queue<Ev>,
    now: Micros,
    base: Instant,
    cat: Catalog,
    fulls: Vec<Full>,
    peers: Vec<PeerId>,
    index: HashMap<PeerId, u16>,
    visors: Vec<Visor>,
    puts: HashMap<u32, VPut>,
    reads: HashMap<u32, VRead>,
    next_op: u32,
    /// Per item, the full nodes closest to its target ([`push::closeness`]).
    order: Vec<[u16; push::ORDER_LEN]>,
    /// Stand-ins for the k closest peers the modelled kad query returns.
    closest: Vec<PeerId>,
    /// The local `PeerId` of every visor's table (a visor is never a full node).
    visor_peer: PeerId,
    partitioned: Option<u16>,
    reads_acc: [ReadAcc; 2],
    heal: Option<CatchUp>,
    join: Option<CatchUp>,
    push_dropped: u64,
}

/// Runs skymesh on `sc`.
pub fn run(sc: &Scenario) -> Report {
    let mut w = World::new(sc.clone());
    w.start();
    let end = sc.end();
    let mut progress = crate::Progress::new(sc, "skymesh");
    while let Some((at, ev)) = w.q.pop(end) {
        progress.at(at);
        w.now = at;
        w.handle(ev);
    }
    w.now = end;
    w.report()
}

fn peer_of(seed: u64, what: &str, n: usize) -> PeerId {
    let sk = keys::SecKey::from_seed(format!("dhtsim-{seed}-{what}-{n}").as_bytes());
    dhtnode::identity::peer_id(&sk.pubkey()).unwrap_or_else(|_| unreachable!())
}

impl World {
    fn new(sc: Scenario) -> World {
        let mut rng = Rng::new(sc.seed);
        let net = Net::new(sc.loss, rng.next_u64());
        let nf = sc.full_nodes + usize::from(sc.join_at_min.is_some());
        let peers: Vec<PeerId> = (0..nf).map(|f| peer_of(sc.seed, "full", f)).collect();
        let index = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u16))
            .collect();
        let cat = Catalog::new(sc.seed, sc.visors, sc.value_lens, sc.full_nodes as u16);
        let fulls = (0..nf)
            .map(|f| {
                let ep = Net::endpoint(&mut rng, f as u64, 1.0);
                Full::new(
                    peers[f],
                    ep,
                    f < sc.full_nodes,
                    2 * sc.visors,
                    rng.next_u64(),
                )
            })
            .collect();
        World {
            rng,
            net,
            q: Queue::default(),
            now: 0,
            base: Instant::now() + Duration::from_secs(3 * 3600),
            cat,
            fulls,
            peers,
            index,
            visors: Vec::new(),
            puts: HashMap::new(),
            reads: HashMap::new(),
            next_op: 0,
            order: Vec::new(),
            closest: (0..20).map(|i| peer_of(sc.seed, "closest", i)).collect(),
            visor_peer: peer_of(sc.seed, "visor", 0),
            partitioned: None,
            reads_acc: Default::default(),
            heal: None,
            join: None,
            push_dropped: 0,
            sc,
        }
    }

    /// The instant the pure operations see for virtual time `t`.
    fn inst_at(&self, t: Micros) -> Instant {
        self.base + Duration::from_micros(t)
    }

    fn inst(&self) -> Instant {
        self.inst_at(self.now)
    }

    fn now_ms(&self) -> u64 {
        T0_MS + self.now / 1000
    }

    fn in_partition(&self) -> bool {
        self.partitioned.is_some()
    }

    /// Full node `f` can exchange messages with the rest of the network.
    fn reach(&self, f: u16) -> bool {
        self.fulls[usize::from(f)].up && self.partitioned != Some(f)
    }

    /// When a message from `a` to `b` of `bytes` arrives, unless it is lost.
    fn send(&mut self, a: Endpoint, b: Endpoint, bytes: usize) -> Option<Micros> {
        if self.net.lost(&mut self.rng) {
            return None;
        }
        Some(self.now + self.net.latency(&mut self.rng, &a, &b, bytes))
    }

    fn op_id(&mut self) -> u32 {
        self.next_op = self.next_op.wrapping_add(1);
        self.next_op
    }

    fn start(&mut self) {
        // Steady state: every item's first version is on every original full node.
        for i in 0..2 * self.sc.visors {
            let item = self.cat.next_version(i);
            for f in 0..self.sc.full_nodes {
                self.fulls[f].preload(i, &item);
            }
        }
        self.order = push::closeness(&self.peers, &self.cat.latest);
        self.cat.conv.track_until = self.sc.track_until();
        for f in 0..self.sc.full_nodes {
            self.start_full(f as u16);
        }
        for v in 0..self.sc.visors {
            self.visors.push(Visor::placeholder(
                Net::endpoint(&mut self.rng, (1 << 32) + v as u64, 15.0),
                self.visor_peer,
            ));
            self.start_visor(v as u32, true);
        }
        if let Some((at, end)) = self.sc.partition_window() {
            self.q.at(at, Ev::PartitionStart);
            self.q.at(end, Ev::PartitionEnd);
        }
        if let Some(m) = self.sc.join_at_min {
            self.q.at(m * 60 * SEC, Ev::NewFullNode);
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Dmsg { v, e } => self.on_dmsg(v, e),
            Ev::TpWake { v, e } => self.on_tp_wake(v, e),
            Ev::TpChange { v, e } => self.on_tp_change(v, e),
            Ev::Read { v, e } => self.on_read(v, e),
            Ev::Adverts { v, e } => self.on_adverts(v, e),
            Ev::AdvertsAns { v, e, f } => self.on_adverts_answer(v, e, f),
            Ev::Leave { v } => self.on_leave(v),
            Ev::Join { v } => self.start_visor(v, false),
            Ev::PutAt { op, f, item } => self.on_put_at(op, f, item),
            Ev::PutAck { op, f } => self.on_put_ack(op, f),
            Ev::PutTimeout { op } => self.on_put_timeout(op),
            Ev::Closest { op } => self.on_closest(op),
            Ev::ReadAt { op, f } => self.on_read_at(op, f),
            Ev::ReadAns { op, copy } => self.on_read_answer(op, copy),
            Ev::ReadFail { op, f } => self.on_read_fail(op, f),
            Ev::Lookup { op } => self.on_lookup(op),
            Ev::FullAdvert { f } => self.on_full_advert(f),
            Ev::AdvertAt { to, from, seq_ms } => self.on_advert_at(to, from, seq_ms),
            Ev::PushAt {
                from,
                to,
                id,
                sent,
                items,
            } => self.on_push_at(from, to, id, sent, items),
            Ev::PushEnd { f, id, end } => self.on_push_end(f, id, end),
            Ev::PushTick { f } => self.on_push_tick(f),
            Ev::SyncTick { f } => self.on_sync_tick(f),
            Ev::PageAt {
                f,
                g,
                sess,
                sent,
                req,
            } => self.on_page_at(f, g, sess, sent, req),
            Ev::PageAns { f, sess, page } => self.on_page_answer(f, sess, *page),
            Ev::PageFail { f, sess } => self.on_page_fail(f, sess),
            Ev::PageNext { f, sess } => self.on_page_next(f, sess),
            Ev::PartitionStart => self.on_partition(),
            Ev::PartitionNoticed => self.on_partition_noticed(),
            Ev::PartitionEnd => self.on_heal(),
            Ev::Reconnected => self.on_reconnected(),
            Ev::NewFullNode => self.on_new_full_node(),
        }
    }

    fn report(&mut self) -> Report {
        let hours = self.now as f64 / 3600e6;
        let n = self.sc.full_nodes as f64;
        let mut t = Traffic::default();
        for f in &self.fulls[..self.sc.full_nodes] {
            t.push += f.traffic.push / n / hours;
            t.repair += f.traffic.repair / n / hours;
            t.puts += f.traffic.puts / n / hours;
            t.reads += f.traffic.reads / n / hours;
        }
        let conv = &mut self.cat.conv;
        let converged = (conv.samples.len() + conv.samples_partition.len()) as u64;
        let join_share = self.fulls.get(self.sc.full_nodes).map_or(0.0, |j| {
            let held = j.store.iter().filter(|s| s.is_some()).count();
            held as f64 / self.cat.latest.len() as f64
        });
        Report {
            design: "skymesh".into(),
            writes: conv.writes,
            converged,
            convergence: Dist::of(std::mem::take(&mut conv.samples)),
            convergence_partition: Dist::of(std::mem::take(&mut conv.samples_partition)),
            writes_partition: conv.writes_partition,
            reads: self.reads_acc[0].report(),
            reads_partition: self.reads_acc[1].report(),
            traffic: t,
            join_secs: self.join.as_ref().and_then(CatchUp::secs),
            join_share,
            heal_secs: self.heal.as_ref().and_then(CatchUp::secs),
            events: self.q.popped,
        }
    }
}
