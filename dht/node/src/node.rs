//! The node: a cloneable [`Node`] handle and the actor that owns the libp2p `Swarm`.
//!
//! The handle talks to the actor over a bounded command channel ([`Config::command_queue`]);
//! every command carries a oneshot for its answer. The actor is the only place where sockets are
//! touched and the only owner of the store, so there are no locks.
//!
//! # Structure
//!
//! The actor is a thin driver: it owns the swarm, the maps from libp2p's request and query ids
//! to its own operations, and the config; it reads the clock once per loop turn (`clock::Now`)
//! and turns what the operations decide into swarm calls. The operations are pure state
//! machines (time and events in, actions out), each unit-tested with made-up instants:
//!
//! | module | owns |
//! |---|---|
//! | `handle` | [`Node`], the commands and the answer types |
//! | `clock` | `Now`: the one clock reading per loop turn |
//! | `swarm` | building the swarm and binding the listeners |
//! | `events` | swarm events → operations (kad, identify, `/skymesh/get/1`, `/skymesh/sync/1`, inbound puts); serving get/1 and sync requests |
//! | `drive` | operations → swarm calls: reads, puts, adverts, republish |
//! | `syncing` | the same for bulk sync and push, plus the store inserts of received items |
//! | `verify` | the verification stage of pulled pages (off the actor, all cores) |
//! | `full_nodes` | pure: the full-node table (adverts, identify, backoff) |
//! | `read` | pure: one read (full nodes, fallback lookup, quorum, hops) |
//! | `put` | pure: one put (full-node leg, closest-peers query, closest leg, acks) |
//! | `republish` | pure: which own and delegated items are due |
//! | `reput` | pure: puts followed up after routing-table changes |
//! | `pull` | pure: sync sessions (paging pipeline, cursors, join and repair) |
//! | `push` | pure: push queues and batches in flight |
//! | `penalties` | pure: peers refused for breaking the sync protocol |
//!
//! `read`, `put`, `push` and `full_nodes` are public (hidden from the docs) so that the
//! deterministic simulator (`dht/sim`, `docs/scale.md`) drives the same code as the actor.
//!
//! # Flows
//!
//! - **put**: the item is admitted into the local store (acceptance rules), then sent with
//!   `put_record_to` to the known full nodes and, after a `get_closest_peers` query, to the k
//!   closest peers. Both put queries wait for every peer they send to (`Quorum::All`; kad
//!   drops copies still waiting for a dial once a smaller quorum is met), bounded by
//!   [`Config::query_timeout`]; a full node that fails a read or a put is skipped by both for
//!   `FULL_NODE_BACKOFF` (60 s). The answer counts acknowledgements (kad acks a PutRecord even
//!   when the receiver's filter drops the record, so this counts *deliveries*, not stores).
//!   A put of ours is followed up (`reput`): after 16 routing-table insertions and 15 s the
//!   closest-peers query runs again and the item goes to the peers newly in its closest set,
//!   until a round finds nobody new (items put while tables fill reach their true k closest).
//! - **get**: the known full nodes (up to [`Config::read_fanout`]) are asked directly over
//!   `/skymesh/get/1` (one round trip); every answer is checked against the target and verified;
//!   the first valid copy answers the read (the local copy wins with a higher seq). If no full
//!   node has a valid copy, an iterative kad `get_record`
//!   runs; records it returns are checked the same way and the query stops after
//!   [`Config::lookup_quorum`] valid remote copies.
//! - **inbound PutRecord** (`StoreInserts::FilterBoth`): per-peer request and item limits, then
//!   check + admit into the store. Nobody can overwrite another key's slot: the item's target is
//!   SHA-256 of its own subject key and the signature must verify for that key.
//! - **bootstrap**: dial the configured peers and run a kad bootstrap every
//!   [`Config::bootstrap_retry`] until one has answered, then every [`Config::bootstrap_interval`].
//! - **full nodes**: a full node advertises itself (salt `fullnode`, value with its listen
//!   addresses) every [`Config::advert_interval`]. Every node asks the full nodes it knows for the
//!   adverts they hold (`FullNodes` request) when it meets one and on the same interval; an
//!   advert is fresh while its seq (Unix ms, from the seq clock) is within
//!   [`Config::advert_fresh`] of now.
//! - **republish**: own items (any salt) and delegated items this node writes as a trusted
//!   writer, not put for a whole [`Config::republish_interval`], are re-signed with the next seq
//!   and re-put, except adverts (own timer), `dmsg` entries and the salts in
//!   [`Config::app_refreshed`] (their application refreshes them). After a restart the store
//!   reports which items our key signed.
use std::collections::{HashMap, HashSet};

use dht::{Item, Salt, SeqClock, Target, Timestamp};
use futures::StreamExt;
use keys::SecKey;
use libp2p::kad::{QueryId, Record};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::config::Config;
use crate::error::{PutError, SpawnError};
use crate::identity;
use crate::limits::PeerLimiter;
use crate::metrics::Metrics;
use crate::role::Role;
use crate::store::ItemStore;

mod clock;
mod drive;
mod events;
#[doc(hidden)]
pub mod full_nodes;
mod handle;
mod penalties;
mod pull;
#[doc(hidden)]
pub mod push;
#[doc(hidden)]
pub mod put;
#[doc(hidden)]
pub mod read;
mod republish;
mod reput;
mod swarm;
mod syncing;
mod verify;

use clock::Now;
use full_nodes::FullNodeTable;
use handle::Command;
use put::Put;
use read::Read;
use republish::Republisher;
use reput::Reputs;
use swarm::{Behaviour, BehaviourEvent, strip_p2p};

pub use handle::{
    LocalStoreReport, MAX_LOCAL_LIST, Node, NodeInfo, PutReport, ReadMode, ReadOutcome, ReadPath,
    SyncRequest, SyncStatus,
};
pub use penalties::PENALTY;
pub use pull::{MAX_ACTIVE_SESSIONS, MAX_FINISHED_SESSIONS};

/// Most pending reads and puts at once; further commands wait in the command channel.
const MAX_PENDING_OPS: usize = 1024;

/// How long ingestion waits before looking again when the store's disk queue has no room.
const INGEST_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// Most fullnode adverts kept and served (see [`codec::MAX_ITEMS_PER_RESPONSE`]).
const MAX_ADVERTS: usize = codec::MAX_ITEMS_PER_RESPONSE;

/// Where a put's answer goes.
enum PutReply {
    /// A client's [`Node::put`] or [`Node::put_item`].
    Client(oneshot::Sender<Result<PutReport, PutError>>),
    /// [`Node::put_raw_unchecked`]: the acks.
    Raw(oneshot::Sender<u32>),
    /// Our own (adverts, republish): nobody waits.
    None,
}

/// A put in progress: the operation, the record its legs send, where its answer goes.
struct PendingPut {
    put: Put,
    record: Record,
    reply: PutReply,
}

struct Actor {
    swarm: Swarm<Behaviour>,
    cfg: Config,
    sk: SecKey,
    local_peer: PeerId,
    metrics: Metrics,
    /// The clock as read at the start of this loop turn.
    now: Now,
    next_op: u64,
    /// Puts in progress, by our own id (client puts are capped by [`MAX_PENDING_OPS`],
    /// republished ones by the own and delegated items).
    puts: HashMap<u64, PendingPut>,
    /// kad put queries → (put, leg).
    put_queries: HashMap<QueryId, (u64, put::Leg)>,
    /// kad closest-peers queries → put.
    closest_queries: HashMap<QueryId, u64>,
    /// Own puts followed until the routing table settles (see `reput`).
    reputs: Reputs,
    /// kad closest-peers queries of re-put rounds → item.
    reput_queries: HashMap<QueryId, Target>,
    /// Reads in progress, by our own id, with where their answer goes.
    reads: HashMap<u64, (Read, oneshot::Sender<ReadOutcome>)>,
    read_requests: HashMap<OutboundRequestId, u64>,
    read_queries: HashMap<QueryId, u64>,
    advert_requests: HashSet<OutboundRequestId>,
    full_nodes: FullNodeTable,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    bootstrapped: bool,
    last_bootstrap: Option<Timestamp>,
    request_limiter: PeerLimiter,
    item_limiter: PeerLimiter,
    sync_limiter: PeerLimiter,
    sync: syncing::SyncState,
    clocks: HashMap<Salt, SeqClock>,
    /// Own and delegated items and when each was last put.
    republisher: Republisher,
    listen_addrs: Vec<Multiaddr>,
    started_ms: u64,
}

/// What woke the actor loop up. Lives on the stack for one turn; boxing the swarm event would
/// cost an allocation per turn, hence the allowed size difference.
#[allow(clippy::large_enum_variant)]
enum Input {
    Command(Option<Command>),
    Swarm(SwarmEvent<BehaviourEvent>),
    Bootstrap,
    Advert,
    Republish,
    Reput,
    Verified(verify::VerifiedPage),
    Ingest,
    /// Ingestion waited for room in the store's disk queue; look again.
    IngestWait,
    SyncTimer,
    PushTimer,
    Metrics,
    Expire,
}

impl Actor {
    async fn new(cfg: Config) -> Result<(Actor, Vec<Multiaddr>), SpawnError> {
        let keypair = identity::keypair(&cfg.secret_key)?;
        let local_peer = keypair.public().to_peer_id();
        if let Some(dir) = &cfg.data_dir {
            std::fs::create_dir_all(dir).map_err(|source| SpawnError::DataDir {
                dir: dir.clone(),
                source,
            })?;
        }
        let store = ItemStore::open(
            cfg.data_dir.as_deref(),
            cfg.store.clone(),
            &cfg.secret_key.pubkey(),
        )
        .map_err(|source| SpawnError::Store {
            dir: cfg.data_dir.clone().unwrap_or_default(),
            source,
        })?;

        let mut bootstrap = Vec::new();
        for addr in &cfg.bootstrap {
            match addr.iter().last() {
                Some(Protocol::P2p(peer)) => bootstrap.push((peer, addr.clone())),
                _ => return Err(SpawnError::BootstrapAddr { addr: addr.clone() }),
            }
        }
        let (swarm, listen_addrs) = swarm::build(&cfg, keypair, store).await?;
        let now = Now::read();
        let sk = cfg.secret_key.clone();
        let republisher = Republisher::new(
            sk.pubkey(),
            cfg.republish_interval,
            cfg.app_refreshed.clone(),
        );
        let actor = Actor {
            swarm,
            metrics: cfg.metrics.clone(),
            request_limiter: PeerLimiter::new(cfg.max_requests_per_peer, cfg.limit_window),
            item_limiter: PeerLimiter::new(cfg.max_items_per_peer, cfg.limit_window),
            sync_limiter: PeerLimiter::new(cfg.max_sync_requests_per_peer, cfg.limit_window),
            sync: syncing::SyncState::new(
                syncing::new_epoch(),
                cfg.store.clone(),
                cfg.push_queue,
                cfg.verify_threads,
            ),
            full_nodes: FullNodeTable::new(local_peer, cfg.advert_fresh),
            cfg,
            sk,
            local_peer,
            now,
            next_op: 0,
            puts: HashMap::new(),
            put_queries: HashMap::new(),
            closest_queries: HashMap::new(),
            reputs: Reputs::new(),
            reput_queries: HashMap::new(),
            reads: HashMap::new(),
            read_requests: HashMap::new(),
            read_queries: HashMap::new(),
            advert_requests: HashSet::new(),
            bootstrap,
            bootstrapped: false,
            last_bootstrap: None,
            clocks: HashMap::new(),
            republisher,
            listen_addrs: listen_addrs.clone(),
            started_ms: now.unix_ms(),
        };
        Ok((actor, listen_addrs))
    }

    fn store(&mut self) -> &mut ItemStore {
        self.swarm.behaviour_mut().kad.store_mut()
    }

    /// Full nodes known now: fresh adverts plus identified full-node peers.
    fn find_full_nodes(&self) -> Vec<PeerId> {
        self.full_nodes.known(self.now.unix_ms())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let span = tracing::info_span!("dht-node", peer = %self.local_peer, role = %self.cfg.role);
        let _enter = span.enter();
        tracing::info!(addrs = ?self.listen_addrs, "dht node started");
        self.signed_items_from_store();
        self.restore_cursors();
        self.do_bootstrap();
        let mut next_bootstrap = tokio::time::Instant::now() + self.cfg.bootstrap_retry;
        let mut advert = tokio::time::interval(self.cfg.advert_interval);
        let mut republish = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.republish_interval,
            self.cfg.republish_interval,
        );
        let mut metrics = tokio::time::interval(crate::config::DEFAULT_METRICS_INTERVAL);
        let mut expire = tokio::time::interval(crate::config::DEFAULT_EXPIRE_INTERVAL);
        let mut sync_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.sync_interval,
            self.cfg.sync_interval,
        );
        let mut push_timer = tokio::time::interval(push::PUSH_TICK);
        let mut reput_timer = tokio::time::interval(reput::REPUT_TICK);
        for t in [
            &mut reput_timer,
            &mut advert,
            &mut republish,
            &mut metrics,
            &mut expire,
            &mut sync_timer,
            &mut push_timer,
        ] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            let (ingest_now, ingest_wait) = self.ingest_state();
            let input = tokio::select! {
                cmd = rx.recv(), if self.puts.len() + self.reads.len() < MAX_PENDING_OPS => {
                    Input::Command(cmd)
                }
                ev = self.swarm.select_next_some() => Input::Swarm(ev),
                _ = tokio::time::sleep_until(next_bootstrap) => Input::Bootstrap,
                _ = advert.tick() => Input::Advert,
                _ = republish.tick() => Input::Republish,
                _ = reput_timer.tick(), if !self.reputs.is_empty() => Input::Reput,
                Some(page) = self.sync.next_verified() => Input::Verified(page),
                _ = std::future::ready(()), if ingest_now => Input::Ingest,
                _ = tokio::time::sleep(INGEST_WAIT), if ingest_wait => Input::IngestWait,
                _ = sync_timer.tick() => Input::SyncTimer,
                _ = push_timer.tick() => Input::PushTimer,
                _ = metrics.tick() => Input::Metrics,
                _ = expire.tick() => Input::Expire,
            };
            // The one clock reading of this turn: everything below uses `self.now`.
            self.now = Now::read();
            match input {
                Input::Command(None | Some(Command::Shutdown)) => break,
                Input::Command(Some(cmd)) => self.on_command(cmd),
                Input::Swarm(ev) => self.on_swarm_event(ev),
                Input::Bootstrap => {
                    self.do_bootstrap();
                    let wait = if self.bootstrapped {
                        self.cfg.bootstrap_interval
                    } else {
                        self.cfg.bootstrap_retry
                    };
                    next_bootstrap = tokio::time::Instant::from_std(self.now.mono) + wait;
                }
                Input::Advert => {
                    self.advertise();
                    self.fetch_adverts();
                }
                Input::Republish => self.republish(),
                Input::Reput => self.reput_tick(),
                Input::Verified(page) => self.page_verified(page),
                Input::Ingest => self.ingest_tick(),
                Input::IngestWait => {}
                Input::SyncTimer => self.sync_tick(),
                Input::PushTimer => self.push_tick(),
                Input::Metrics => self.refresh_metrics(),
                Input::Expire => {
                    let now = self.now.wall;
                    let n = self.store().expire(now);
                    if n > 0 {
                        tracing::debug!(expired = n, "store expiry");
                    }
                }
            }
        }
        tracing::info!("dht node stopped");
    }

    // ---- commands -------------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::PutItem { item, reply } => self.put_item(item, Some(reply)),
            Command::PutValue { salt, value, reply } => match self.sign_own(salt, value) {
                Ok(item) => self.put_item(item, Some(reply)),
                Err(e) => {
                    self.metrics.put("invalid");
                    let _ = reply.send(Err(e));
                }
            },
            Command::StoreLocal { items, reply } => {
                let mut report = LocalStoreReport::default();
                let now = self.now.wall;
                for item in items {
                    let target = item.target();
                    match self.store().insert(item, now) {
                        Ok(_) => report.accepted += 1,
                        Err(e) => {
                            tracing::debug!(%target, error = %e, "local store refused an item");
                            report.refused += 1;
                        }
                    }
                }
                let _ = reply.send(report);
            }
            Command::RawPut {
                target,
                bytes,
                reply,
            } => {
                let record = Record::new(crate::store::record_key(&target), bytes);
                let report = PutReport {
                    target: target.to_hex(),
                    seq: 0,
                    acks: 0,
                };
                self.start_put(record, report, PutReply::Raw(reply));
            }
            Command::Get {
                target,
                mode,
                reply,
            } => self.start_read(target, mode, reply),
            Command::Info { reply } => {
                let _ = reply.send(self.info());
            }
            Command::FullNodes { reply } => {
                let _ = reply.send(self.find_full_nodes());
            }
            Command::Sync { req, reply } => {
                let _ = reply.send(self.sync_request(req));
            }
            Command::SyncStatus { id, reply } => {
                let _ = reply.send(self.sync_status(id));
            }
            Command::SyncCancel { id, reply } => {
                let _ = reply.send(self.sync_cancel(id));
            }
            Command::HoldsDataset { salt, reply } => {
                let full = self.cfg.role == Role::Full;
                let _ = reply.send(full || self.synced_within(&salt, self.cfg.store.ttl));
            }
            Command::Digest { reply } => {
                let _ = reply.send(self.store().digest());
            }
            Command::ListLocal { salt, max, reply } => {
                let max = max.min(MAX_LOCAL_LIST);
                let _ = reply.send(self.store().with_salt(&salt, max));
            }
            Command::Shutdown => {}
        }
    }

    fn sign_own(&mut self, salt: Salt, value: Vec<u8>) -> Result<Item, PutError> {
        let target = Target::of(&self.sk.pubkey(), &salt);
        let stored = self.store().get(&target).map(|i| i.seq).unwrap_or(0);
        let clock = self
            .clocks
            .entry(salt.clone())
            .or_insert_with(|| SeqClock::new(stored));
        clock.observe(stored);
        let seq = clock.next(self.now.wall);
        let item = Item::sign(&self.sk, salt, seq, value)?;
        Ok(item)
    }
    // ---- bootstrap, republish, metrics ------------------------------------------------------

    fn do_bootstrap(&mut self) {
        let peers = self.bootstrap.clone();
        for (peer, addr) in peers {
            if peer == self.local_peer {
                continue;
            }
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, strip_p2p(addr.clone()));
            if !self.swarm.is_connected(&peer)
                && let Err(e) = self.swarm.dial(addr.clone())
            {
                tracing::debug!(%addr, error = %e, "bootstrap dial failed");
            }
        }
        if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!(error = %e, "kad bootstrap not started");
        }
    }
    fn routing_table_len(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    fn refresh_metrics(&mut self) {
        let peers = self.swarm.connected_peers().count();
        let rt = self.routing_table_len();
        self.metrics
            .peers
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
        self.metrics
            .routing_table
            .set(i64::try_from(rt).unwrap_or(i64::MAX));
        for (salt, n) in self.store().counts_by_salt() {
            self.metrics
                .items
                .get_or_create(&crate::metrics::SaltLabel { salt })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn info(&mut self) -> NodeInfo {
        let routing_table = self.routing_table_len();
        let kad_mode = self.swarm.behaviour().kad.mode().to_string();
        NodeInfo {
            role: self.cfg.role,
            public_key: self.sk.pubkey().to_hex(),
            peer_id: self.local_peer.to_string(),
            listen_addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            peers: self.swarm.connected_peers().count(),
            routing_table,
            kad_mode,
            full_nodes: self
                .find_full_nodes()
                .iter()
                .map(|p| p.to_string())
                .collect(),
            items: self.store().counts_by_salt(),
            last_bootstrap: self.last_bootstrap.map(Timestamp::as_unix_millis),
        }
    }
    fn mark_bootstrapped(&mut self) {
        let first = !self.bootstrapped;
        self.bootstrapped = true;
        self.last_bootstrap = Some(self.now.wall);
        if first {
            tracing::info!("bootstrapped");
            // Tell the network about us now rather than at the next advert tick.
            self.advertise();
        }
    }
}
