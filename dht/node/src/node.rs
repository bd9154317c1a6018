//! The node: a cloneable [`Node`] handle and the actor that owns the libp2p `Swarm`.
//!
//! The handle talks to the actor over a bounded command channel ([`Config::command_queue`]);
//! every command carries a oneshot for its answer. The actor is the only place where sockets are
//! touched and the only owner of the store, so there are no locks.
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
//! - **get**: the known full nodes (up to [`Config::read_fanout`]) are asked directly over
//!   `/skymesh/get/1` (one round trip); every answer is checked against the target and verified;
//!   the highest valid seq wins. If no full node has a valid copy, an iterative kad `get_record`
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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dht::value::{
    FORMAT_VERSION, FullnodeAdvert, MAX_ADDR_LEN, MAX_ADDRS, Role as ValueRole, ValueFormat,
};
use dht::{Item, Salt, SeqClock, Target};
use futures::StreamExt;
use keys::{PubKey, SecKey};
use libp2p::kad::{self, GetClosestPeersError, GetRecordOk, QueryId, QueryResult, Quorum, Record};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::codec::{self, GetCodec, Request, Response};
use crate::config::{Config, KAD_PROTOCOL};
use crate::error::SyncError;
use crate::error::{GetError, PutError, SpawnError};
use crate::identity;
use crate::limits::PeerLimiter;
use crate::metrics::Metrics;
use crate::role::{self, Role};
use crate::store::StoreDigest;
use crate::store::{self as istore, ItemStore};
use crate::sync_codec::{self, SyncCodec};

mod syncing;

pub use syncing::{MAX_ACTIVE_SESSIONS, MAX_FINISHED_SESSIONS, PENALTY, SyncRequest, SyncStatus};

/// Identify protocol version announced by skymesh nodes.
const IDENTIFY_PROTOCOL: &str = "/skymesh/id/1.0.0";

/// Most pending reads and puts at once; further commands wait in the command channel.
const MAX_PENDING_OPS: usize = 1024;

/// Most fullnode adverts kept and served (see [`codec::MAX_ITEMS_PER_RESPONSE`]).
const MAX_ADVERTS: usize = codec::MAX_ITEMS_PER_RESPONSE;

/// Most full nodes tracked; beyond this new ones are ignored until old ones go stale.
const MAX_FULL_NODES: usize = 1024;

#[derive(NetworkBehaviour)]
struct Behaviour {
    kad: crate::kad_limit::PeerLimited<kad::Behaviour<ItemStore>>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    get: request_response::Behaviour<GetCodec>,
    sync: request_response::Behaviour<SyncCodec>,
}

/// Where a read should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadMode {
    /// Full nodes first (one round trip), then an iterative lookup.
    #[default]
    Auto,
    /// Only the known full nodes.
    FullNodesOnly,
    /// Only an iterative Kademlia lookup (benchmarks, diagnostics).
    LookupOnly,
    /// Only the local store (diagnostics, tests: "what does this node hold").
    LocalOnly,
}

/// Where a read found its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReadPath {
    /// A full node answered directly.
    FullNode,
    /// An iterative lookup.
    Lookup,
    /// Only the local store had it.
    Local,
    /// Not found.
    NotFound,
}

/// The result of a read with its diagnostics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadOutcome {
    /// The verified item with the highest seq seen, if any.
    pub item: Option<Item>,
    /// Where it came from.
    pub path: ReadPath,
    /// Requests the iterative lookup sent (0 when none ran).
    pub lookup_requests: u32,
    /// Estimated lookup rounds: `ceil(requests / α)` with α = kad parallelism (3). A rough
    /// figure: a lookup that sends to all k closest at once counts that burst as k/α rounds.
    pub lookup_rounds: u32,
    /// Measured hops of the lookup, an upper bound on its depth: the hop of the request whose
    /// answer completed it (the quorum-th valid copy, else the last valid one). `None` unless
    /// [`Config::measure_lookup_hops`] is set or when no remote copy was found (see
    /// [`crate::hops`]).
    pub lookup_hops: Option<u32>,
    /// Time from start to answer.
    pub elapsed: Duration,
}

/// What a put achieved.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct PutReport {
    /// Target of the item.
    pub target: String,
    /// Seq of the item.
    pub seq: u64,
    /// Peers that acknowledged the record (full nodes and k closest).
    pub acks: u32,
}

/// A snapshot of the node for `info` and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// `full` or `regular`.
    pub role: Role,
    /// The node's public key (hex).
    pub public_key: String,
    /// The node's libp2p peer id.
    pub peer_id: String,
    /// Addresses the node listens on, with `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Peers in the routing table.
    pub routing_table: usize,
    /// Kad mode: `server` or `client`.
    pub kad_mode: String,
    /// Full nodes known (peer ids).
    pub full_nodes: Vec<String>,
    /// Items stored, by salt.
    pub items: BTreeMap<String, u64>,
    /// Last successful bootstrap, Unix ms.
    pub last_bootstrap: Option<u64>,
}

/// Most items one [`Node::local_items`] call returns (bounds one swarm-loop turn).
pub const MAX_LOCAL_LIST: usize = 100_000;

enum Command {
    PutItem {
        item: Item,
        reply: oneshot::Sender<Result<PutReport, PutError>>,
    },
    PutValue {
        salt: Salt,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<PutReport, PutError>>,
    },
    RawPut {
        target: Target,
        bytes: Vec<u8>,
        reply: oneshot::Sender<u32>,
    },
    StoreLocal {
        items: Vec<Item>,
        reply: oneshot::Sender<LocalStoreReport>,
    },
    Get {
        target: Target,
        mode: ReadMode,
        reply: oneshot::Sender<ReadOutcome>,
    },
    Info {
        reply: oneshot::Sender<NodeInfo>,
    },
    FullNodes {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    ListLocal {
        salt: Salt,
        max: usize,
        reply: oneshot::Sender<Vec<Item>>,
    },
    Sync {
        req: SyncRequest,
        reply: oneshot::Sender<Result<u64, SyncError>>,
    },
    SyncStatus {
        id: u64,
        reply: oneshot::Sender<Option<SyncStatus>>,
    },
    SyncCancel {
        id: u64,
        reply: oneshot::Sender<bool>,
    },
    HoldsDataset {
        salt: Salt,
        reply: oneshot::Sender<bool>,
    },
    Digest {
        reply: oneshot::Sender<StoreDigest>,
    },
    Shutdown,
}

/// Verdicts of [`Node::store_local`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalStoreReport {
    /// Items stored or refreshed.
    pub accepted: u32,
    /// Items the acceptance rules refused (stale, invalid, over quota).
    pub refused: u32,
}

/// Handle to a running node. Cheap to clone; the node stops on [`Node::shutdown`] or when every
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Node {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    public_key: PubKey,
    listen_addrs: Vec<Multiaddr>,
}

impl Node {
    /// Builds the swarm, starts listening and spawns the actor on the current tokio runtime.
    /// Returns once every listen address is bound.
    pub async fn spawn(config: Config) -> Result<(Node, JoinHandle<()>), SpawnError> {
        let (actor, listen_addrs) = Actor::new(config).await?;
        let (tx, rx) = mpsc::channel(actor.cfg.command_queue.max(1));
        let node = Node {
            tx,
            peer_id: actor.local_peer,
            public_key: actor.sk.pubkey(),
            listen_addrs,
        };
        let handle = tokio::spawn(actor.run(rx));
        Ok((node, handle))
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's public key.
    pub fn public_key(&self) -> PubKey {
        self.public_key
    }

    /// The bound listen addresses, each ending in `/p2p/<peer id>` (usable as `--bootstrap`).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Signs `value` under `salt` with the node's key (seq from the node's seq clock) and puts it.
    pub async fn put(&self, salt: Salt, value: Vec<u8>) -> Result<PutReport, PutError> {
        self.call(|reply| Command::PutValue { salt, value, reply })
            .await
            .ok_or(PutError::Shutdown)?
    }

    /// Puts an already signed item (it must pass the local acceptance rules first).
    pub async fn put_item(&self, item: Item) -> Result<PutReport, PutError> {
        self.call(|reply| Command::PutItem { item, reply })
            .await
            .ok_or(PutError::Shutdown)?
    }

    /// Stores items in this node's own store only (each through the acceptance rules), without
    /// sending them anywhere: for items a full node gets from a shared source every full node
    /// follows, such as the Redis mirror. `None` when the node has stopped.
    pub async fn store_local(&self, items: Vec<Item>) -> Option<LocalStoreReport> {
        self.call(|reply| Command::StoreLocal { items, reply })
            .await
    }

    /// Sends arbitrary bytes as a kad record under `target` to the full nodes and the k closest
    /// peers, *bypassing* the local checks; returns the acks. For tests that play a malicious
    /// peer; never used by the node itself.
    #[doc(hidden)]
    pub async fn put_raw_unchecked(&self, target: Target, bytes: Vec<u8>) -> u32 {
        self.call(|reply| Command::RawPut {
            target,
            bytes,
            reply,
        })
        .await
        .unwrap_or(0)
    }

    /// Reads the item of `(pk, salt)`: full nodes first, then an iterative lookup. `Ok(None)` when
    /// no valid copy exists.
    pub async fn get(&self, pk: &PubKey, salt: &Salt) -> Result<Option<Item>, GetError> {
        Ok(self.get_with(pk, salt, ReadMode::Auto).await?.item)
    }

    /// [`Node::get`] with an explicit read mode, returning diagnostics.
    pub async fn get_with(
        &self,
        pk: &PubKey,
        salt: &Salt,
        mode: ReadMode,
    ) -> Result<ReadOutcome, GetError> {
        let target = Target::of(pk, salt);
        self.call(|reply| Command::Get {
            target,
            mode,
            reply,
        })
        .await
        .ok_or(GetError::Shutdown)
    }

    /// A snapshot of the node's state.
    pub async fn info(&self) -> Option<NodeInfo> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Full nodes known now: fresh adverts plus connected peers that identified as full nodes
    /// (bootstrap peers included).
    pub async fn find_full_nodes(&self) -> Vec<PeerId> {
        self.call(|reply| Command::FullNodes { reply })
            .await
            .unwrap_or_default()
    }

    /// Items with `salt` held in this node's own store (at most `max`, capped at
    /// [`MAX_LOCAL_LIST`]), in the store's change order. On a full node this is the dataset
    /// (used by the legacy discovery API and `tp all`); on a regular node only its share.
    pub async fn local_items(&self, salt: Salt, max: usize) -> Vec<Item> {
        self.call(|reply| Command::ListLocal { salt, max, reply })
            .await
            .unwrap_or_default()
    }

    /// Starts a bulk sync (GetItems pages over `/skymesh/sync/1`) from `req.from` or a known
    /// full node, resuming from the cursor saved for that peer unless `req.from_start`; every
    /// item goes through the acceptance rules. Returns the session id for
    /// [`Node::sync_status`].
    pub async fn sync(&self, req: SyncRequest) -> Result<u64, SyncError> {
        self.call(|reply| Command::Sync { req, reply })
            .await
            .ok_or(SyncError::Shutdown)?
    }

    /// The state of sync session `id` (`None` when unknown or long finished).
    pub async fn sync_status(&self, id: u64) -> Option<SyncStatus> {
        self.call(|reply| Command::SyncStatus { id, reply })
            .await
            .flatten()
    }

    /// Whether this node holds every item under `salt` (so listing its store is as good as
    /// asking the network): always for a full node (it receives every write); for a regular
    /// node, after a completed `dht sync` of everything or of that salt, for as long as items
    /// from that sync live ([`dht::Config::ttl`]), since nothing keeps the copy current.
    pub async fn holds_dataset(&self, salt: &Salt) -> bool {
        let salt = salt.clone();
        self.call(|reply| Command::HoldsDataset { salt, reply })
            .await
            .unwrap_or(false)
    }

    /// Stops sync session `id`; its cursor stays saved, so the next sync resumes there. `true`
    /// when it was running.
    pub async fn sync_cancel(&self, id: u64) -> bool {
        self.call(|reply| Command::SyncCancel { id, reply })
            .await
            .unwrap_or(false)
    }

    /// Item count and an order-independent digest of the local store (two nodes holding the
    /// same items have the same digest). Walks the whole store: diagnostics and tests.
    pub async fn store_digest(&self) -> Option<StoreDigest> {
        self.call(|reply| Command::Digest { reply }).await
    }

    /// Asks the actor to stop; await the `JoinHandle` from [`Node::spawn`] to wait for it.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

#[derive(Debug, Default)]
struct FullNode {
    /// Seq (Unix ms) of the freshest advert seen.
    advert_seq: Option<u64>,
    /// Connected and identified as a full node.
    identified: bool,
    connected: bool,
    /// A read request to it failed: skip it for reads until then (a dead node's advert stays
    /// fresh for up to 30 min; without this every read would wait for its dial to fail).
    down_until: Option<Instant>,
}

/// How long a full node whose read request failed is skipped by reads.
const FULL_NODE_BACKOFF: Duration = Duration::from_secs(60);

struct PendingPut {
    reply: Option<oneshot::Sender<Result<PutReport, PutError>>>,
    raw_reply: Option<oneshot::Sender<u32>>,
    record: Record,
    report: PutReport,
    queries: usize,
}

struct PendingRead {
    target: Target,
    mode: ReadMode,
    reply: oneshot::Sender<ReadOutcome>,
    started: Instant,
    best: Option<Item>,
    best_path: ReadPath,
    local: Option<Item>,
    outstanding: usize,
    remote_valid: usize,
    lookup: Option<QueryId>,
    lookup_hops: Option<u32>,
}

struct Actor {
    swarm: Swarm<Behaviour>,
    cfg: Config,
    sk: SecKey,
    local_peer: PeerId,
    metrics: Metrics,
    next_op: u64,
    puts: HashMap<u64, PendingPut>,
    put_queries: HashMap<QueryId, u64>,
    /// The full nodes each full-node put query went to (one entry per put in flight: client
    /// puts are capped by [`MAX_PENDING_OPS`], republished ones by the own and delegated
    /// items); those that fail it go into the read/put backoff.
    full_put_targets: HashMap<QueryId, Vec<PeerId>>,
    closest_queries: HashMap<QueryId, u64>,
    reads: HashMap<u64, PendingRead>,
    read_requests: HashMap<OutboundRequestId, u64>,
    read_queries: HashMap<QueryId, u64>,
    advert_requests: HashSet<OutboundRequestId>,
    full_nodes: HashMap<PeerId, FullNode>,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    bootstrapped: bool,
    last_bootstrap: Option<SystemTime>,
    request_limiter: PeerLimiter,
    item_limiter: PeerLimiter,
    sync_limiter: PeerLimiter,
    sync: syncing::SyncState,
    clocks: HashMap<Salt, SeqClock>,
    /// Salts of our own items, with when we last put each (bounded by our own puts).
    own_salts: HashMap<Salt, tokio::time::Instant>,
    /// Delegated items we write as a trusted writer: target → (subject, salt, last put). Local
    /// input only (our own puts, and at most `store::MAX_SIGNED_AT_OPEN` found at start).
    delegated: HashMap<Target, (keys::PubKey, Salt, tokio::time::Instant)>,
    listen_addrs: Vec<Multiaddr>,
    started_ms: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn transport_err(e: impl std::fmt::Display) -> SpawnError {
    SpawnError::Transport {
        reason: e.to_string(),
    }
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

        let mut kcfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        kcfg.set_record_filtering(kad::StoreInserts::FilterBoth)
            .set_query_timeout(cfg.query_timeout)
            .set_max_packet_size(crate::config::DEFAULT_MAX_PACKET_SIZE)
            .set_caching(kad::Caching::Disabled)
            .set_replication_interval(None)
            .set_publication_interval(None)
            .set_record_ttl(None)
            .set_provider_publication_interval(None)
            .set_periodic_bootstrap_interval(Some(cfg.bootstrap_interval));
        if let Some(k) = NonZeroUsize::new(cfg.replication_factor) {
            kcfg.set_replication_factor(k);
        }
        let role = cfg.role;
        let mode = role.kad_mode(cfg.reachability);
        let req_timeout = cfg.request_timeout;
        let sync_timeout = cfg.sync_timeout;
        let idle = cfg.idle_connection_timeout;
        let (kad_max, limit_window) = (cfg.max_kad_requests_per_peer, cfg.limit_window);
        let kad_limited = cfg.metrics.kad_requests_limited.clone();
        let measure_hops = cfg.measure_lookup_hops;

        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(transport_err)?
            .with_dns()
            .map_err(transport_err)?
            .with_behaviour(|key| {
                let peer = key.public().to_peer_id();
                let mut kad = kad::Behaviour::with_config(peer, store, kcfg);
                kad.set_mode(mode);
                let mut kad = crate::kad_limit::PeerLimited::new(
                    kad,
                    crate::kad_limit::is_kad_inbound_request,
                    PeerLimiter::new(kad_max, limit_window),
                    kad_limited,
                );
                if measure_hops {
                    kad.measure_hops(
                        crate::kad_limit::is_kad_lookup_request,
                        crate::kad_limit::is_kad_lookup_answer,
                    );
                }
                Behaviour {
                    kad,
                    identify: identify::Behaviour::new(
                        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                            .with_agent_version(role::agent_version(role)),
                    ),
                    ping: ping::Behaviour::default(),
                    get: request_response::Behaviour::with_codec(
                        GetCodec,
                        [(codec::PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(req_timeout)
                            .with_max_concurrent_streams(
                                crate::config::DEFAULT_MAX_CONCURRENT_STREAMS,
                            ),
                    ),
                    sync: request_response::Behaviour::with_codec(
                        SyncCodec,
                        [(sync_codec::PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(sync_timeout)
                            .with_max_concurrent_streams(sync_codec::MAX_CONCURRENT_STREAMS),
                    ),
                }
            })
            .map_err(transport_err)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();

        for addr in &cfg.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| SpawnError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        // Wait until every listener reported its bound address (port 0 resolved).
        let mut listen_addrs = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while listen_addrs.len() < cfg.listen.len() {
            let ev = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
            match ev {
                Ok(SwarmEvent::NewListenAddr { address, .. }) => {
                    listen_addrs.push(address.with_p2p(local_peer).unwrap_or_else(|a| a));
                }
                Ok(SwarmEvent::ListenerError { error, .. }) => {
                    return Err(SpawnError::Listen {
                        addr: cfg.listen.first().cloned().unwrap_or_else(Multiaddr::empty),
                        reason: error.to_string(),
                    });
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if listen_addrs.is_empty() && !cfg.listen.is_empty() {
            return Err(SpawnError::NoListenAddr);
        }

        // A listen address on a public IP is dialable as it is: confirm it, so a regular node in
        // `Reachability::Auto` becomes a Kademlia server (kad switches on confirmed external
        // addresses). Private, loopback and unspecified addresses are never confirmed here.
        for a in &listen_addrs {
            if is_public_addr(a) {
                swarm.add_external_address(strip_p2p(a.clone()));
            }
        }
        let sk = cfg.secret_key.clone();
        let actor = Actor {
            swarm,
            metrics: cfg.metrics.clone(),
            request_limiter: PeerLimiter::new(cfg.max_requests_per_peer, cfg.limit_window),
            item_limiter: PeerLimiter::new(cfg.max_items_per_peer, cfg.limit_window),
            sync_limiter: PeerLimiter::new(cfg.max_sync_requests_per_peer, cfg.limit_window),
            sync: syncing::SyncState::new(syncing::new_epoch(), cfg.store.clone()),
            cfg,
            sk,
            local_peer,
            next_op: 0,
            puts: HashMap::new(),
            put_queries: HashMap::new(),
            full_put_targets: HashMap::new(),
            closest_queries: HashMap::new(),
            reads: HashMap::new(),
            read_requests: HashMap::new(),
            read_queries: HashMap::new(),
            advert_requests: HashSet::new(),
            full_nodes: HashMap::new(),
            bootstrap,
            bootstrapped: false,
            last_bootstrap: None,
            clocks: HashMap::new(),
            own_salts: HashMap::new(),
            delegated: HashMap::new(),
            listen_addrs: listen_addrs.clone(),
            started_ms: unix_ms(SystemTime::now()),
        };
        Ok((actor, listen_addrs))
    }

    fn store(&mut self) -> &mut ItemStore {
        self.swarm.behaviour_mut().kad.store_mut()
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let span = tracing::info_span!("dht-node", peer = %self.local_peer, role = %self.cfg.role);
        let _enter = span.enter();
        tracing::info!(addrs = ?self.listen_addrs, "dht node started");
        self.signed_items_from_store();
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
        let mut push_timer = tokio::time::interval(syncing::PUSH_TICK);
        for t in [
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
            tokio::select! {
                cmd = rx.recv(), if self.puts.len() + self.reads.len() < MAX_PENDING_OPS => {
                    match cmd {
                        None | Some(Command::Shutdown) => break,
                        Some(cmd) => self.on_command(cmd),
                    }
                }
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                _ = tokio::time::sleep_until(next_bootstrap) => {
                    self.do_bootstrap();
                    let wait = if self.bootstrapped {
                        self.cfg.bootstrap_interval
                    } else {
                        self.cfg.bootstrap_retry
                    };
                    next_bootstrap = tokio::time::Instant::now() + wait;
                }
                _ = advert.tick() => {
                    self.advertise();
                    self.fetch_adverts();
                }
                _ = republish.tick() => self.republish(),
                Some(page) = self.sync.next_verified() => self.page_verified(page),
                _ = std::future::ready(()), if self.ingest_pending() => self.ingest_tick(),
                _ = sync_timer.tick() => self.sync_tick(),
                _ = push_timer.tick() => self.push_tick(),
                _ = metrics.tick() => self.refresh_metrics(),
                _ = expire.tick() => {
                    let n = self.store().expire(istore::now());
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
                for item in items {
                    let target = item.target();
                    match self.store().insert(item, istore::now()) {
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
                let record = Record::new(istore::record_key(&target), bytes);
                let report = PutReport {
                    target: target.to_hex(),
                    seq: 0,
                    acks: 0,
                };
                self.start_replication(record, report, None, Some(reply));
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
        let seq = clock.next(istore::now());
        let item = Item::sign(&self.sk, salt, seq, value)?;
        Ok(item)
    }

    fn put_item(
        &mut self,
        item: Item,
        reply: Option<oneshot::Sender<Result<PutReport, PutError>>>,
    ) {
        let target = item.target();
        let seq = item.seq;
        let bytes = item.encode();
        let own = item.pk == self.sk.pubkey() && item.writer.is_none();
        let delegated = (item.writer == Some(self.sk.pubkey())).then_some(item.pk);
        let salt = item.salt.clone();
        let copy = (self.cfg.role == Role::Full).then(|| item.clone());
        match self.store().insert(item, istore::now()) {
            Err(e) => {
                // Our own slot with an equal or higher seq already stored is not news to the
                // network.
                tracing::debug!(%target, error = %e, "put refused locally");
                self.metrics.put("refused");
                if let Some(reply) = reply {
                    let _ = reply.send(Err(PutError::Refused(e)));
                }
                return;
            }
            Ok(dht::PutOutcome::Unchanged { .. }) => {}
            Ok(_) => {
                if let Some(item) = copy {
                    self.forward(&item, None);
                }
            }
        }
        if own {
            self.own_salts
                .insert(salt.clone(), tokio::time::Instant::now());
        }
        if let Some(subject) = delegated {
            self.delegated
                .insert(target, (subject, salt, tokio::time::Instant::now()));
        }
        let record = Record::new(istore::record_key(&target), bytes);
        let report = PutReport {
            target: target.to_hex(),
            seq,
            acks: 0,
        };
        self.start_replication(record, report, reply, None);
    }

    /// Sends `record` to the known full nodes now and to the k closest peers once a
    /// `get_closest_peers` query has found them.
    fn start_replication(
        &mut self,
        record: Record,
        report: PutReport,
        reply: Option<oneshot::Sender<Result<PutReport, PutError>>>,
        raw_reply: Option<oneshot::Sender<u32>>,
    ) {
        let op = self.next_op;
        self.next_op += 1;
        // Full nodes that just failed a request are skipped: the put waits for every peer.
        let full: Vec<PeerId> = self.reachable_full_nodes();
        let kad = &mut self.swarm.behaviour_mut().kad;
        let mut queries = 0;
        if !full.is_empty() {
            // `Quorum::All`: kad drops the copies still waiting for a dial once a put query
            // reaches its quorum, so a smaller quorum would lose copies to unconnected peers.
            let q = kad.put_record_to(record.clone(), full.iter().copied(), Quorum::All);
            self.put_queries.insert(q, op);
            self.full_put_targets.insert(q, full);
            queries += 1;
        }
        let q = kad.get_closest_peers(record.key.to_vec());
        self.closest_queries.insert(q, op);
        queries += 1;
        self.puts.insert(
            op,
            PendingPut {
                reply,
                raw_reply,
                record,
                report,
                queries,
            },
        );
    }

    fn on_closest_peers(&mut self, id: QueryId, peers: Vec<PeerId>) {
        let Some(op) = self.closest_queries.remove(&id) else {
            return;
        };
        let Some(put) = self.puts.get_mut(&op) else {
            return;
        };
        let peers: Vec<PeerId> = peers
            .into_iter()
            .filter(|p| *p != self.local_peer)
            .collect();
        if peers.is_empty() {
            put.queries -= 1;
        } else {
            let q = self.swarm.behaviour_mut().kad.put_record_to(
                put.record.clone(),
                peers.into_iter(),
                Quorum::All,
            );
            self.put_queries.insert(q, op);
        }
        self.maybe_finish_put(op);
    }

    fn on_put_done(&mut self, id: QueryId, acks: u32) {
        let Some(op) = self.put_queries.remove(&id) else {
            return;
        };
        if let Some(put) = self.puts.get_mut(&op) {
            put.report.acks += acks;
            put.queries -= 1;
        }
        self.maybe_finish_put(op);
    }

    fn maybe_finish_put(&mut self, op: u64) {
        if self.puts.get(&op).is_some_and(|p| p.queries == 0)
            && let Some(put) = self.puts.remove(&op)
        {
            self.metrics.put(if put.report.acks > 0 {
                "ok"
            } else {
                "no_peers"
            });
            if let Some(reply) = put.reply {
                let _ = reply.send(Ok(put.report));
            } else if let Some(reply) = put.raw_reply {
                let _ = reply.send(put.report.acks);
            }
        }
    }

    // ---- reads ----------------------------------------------------------------------------

    fn start_read(&mut self, target: Target, mode: ReadMode, reply: oneshot::Sender<ReadOutcome>) {
        let op = self.next_op;
        self.next_op += 1;
        let local = self.store().get(&target);
        let mut read = PendingRead {
            target,
            mode,
            reply,
            started: Instant::now(),
            best: None,
            best_path: ReadPath::NotFound,
            local,
            outstanding: 0,
            remote_valid: 0,
            lookup: None,
            lookup_hops: None,
        };
        if matches!(mode, ReadMode::Auto | ReadMode::FullNodesOnly) {
            let mut full = self.reachable_full_nodes();
            // Connected full nodes first: their answer is one round trip away.
            full.sort_by_key(|p| !self.full_nodes.get(p).is_some_and(|f| f.connected));
            for peer in full.into_iter().take(self.cfg.read_fanout) {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .get
                    .send_request(&peer, Request::Get(*target.as_bytes()));
                self.read_requests.insert(id, op);
                read.outstanding += 1;
            }
        }
        self.reads.insert(op, read);
        self.advance_read(op);
    }

    /// Moves a read on when its current phase has no outstanding answers.
    fn advance_read(&mut self, op: u64) {
        let Some(read) = self.reads.get_mut(&op) else {
            return;
        };
        if read.outstanding > 0 {
            return;
        }
        if read.lookup.is_none()
            && read.best.is_none()
            && matches!(read.mode, ReadMode::Auto | ReadMode::LookupOnly)
        {
            let kad = &mut self.swarm.behaviour_mut().kad;
            if let Some(h) = kad.hops() {
                h.start();
            }
            let q = kad.get_record(istore::record_key(&read.target));
            read.lookup = Some(q);
            read.outstanding = 1;
            self.read_queries.insert(q, op);
            return;
        }
        self.finish_read(op, 0);
    }

    fn finish_read(&mut self, op: u64, lookup_requests: u32) {
        let Some(mut read) = self.reads.remove(&op) else {
            return;
        };
        let mut path = read.best_path;
        if let Some(local) = read.local.take()
            && read.best.as_ref().is_none_or(|b| local.seq > b.seq)
        {
            read.best = Some(local);
            path = ReadPath::Local;
        }
        if read.best.is_none() {
            path = ReadPath::NotFound;
        }
        let elapsed = read.started.elapsed();
        match path {
            ReadPath::FullNode => self.metrics.latency("full_node", elapsed.as_secs_f64()),
            ReadPath::Lookup => self.metrics.latency("lookup", elapsed.as_secs_f64()),
            _ => {}
        }
        self.metrics.get(match path {
            ReadPath::NotFound => "not_found",
            ReadPath::Local => "local",
            ReadPath::FullNode => "full_node",
            ReadPath::Lookup => "lookup",
        });
        let _ = read.reply.send(ReadOutcome {
            item: read.best,
            path,
            lookup_requests,
            lookup_rounds: lookup_requests.div_ceil(kad::ALPHA_VALUE.get() as u32),
            lookup_hops: read.lookup_hops,
            elapsed,
        });
    }

    /// Offers a remote copy to a read; keeps it when it checks out and beats the best so far.
    fn offer(&mut self, op: u64, bytes: &[u8], path: ReadPath) -> bool {
        let Some(target) = self.reads.get(&op).map(|r| r.target) else {
            return false;
        };
        let item = match self.store().check(&target, bytes) {
            Ok(item) => item,
            Err(e) => {
                tracing::debug!(%target, error = %e, "remote copy refused");
                return false;
            }
        };
        if self.cfg.role == Role::Full {
            // A full node keeps every valid item it sees.
            let _ = self.store().insert(item.clone(), istore::now());
        }
        if let Some(read) = self.reads.get_mut(&op) {
            read.remote_valid += 1;
            if read.best.as_ref().is_none_or(|b| item.seq > b.seq) {
                read.best = Some(item);
                read.best_path = path;
            }
        }
        true
    }

    // ---- full nodes and adverts ------------------------------------------------------------

    /// Skips `peer` (if it is a known full node) for reads and puts during
    /// `FULL_NODE_BACKOFF`, after it failed one.
    fn back_off_full_node(&mut self, peer: &PeerId) {
        if let Some(f) = self.full_nodes.get_mut(peer) {
            f.down_until = Some(Instant::now() + FULL_NODE_BACKOFF);
        }
    }

    /// [`Actor::find_full_nodes`] without those in their backoff after a failed request.
    fn reachable_full_nodes(&self) -> Vec<PeerId> {
        let now = Instant::now();
        let mut full = self.find_full_nodes();
        full.retain(|p| {
            self.full_nodes
                .get(p)
                .and_then(|f| f.down_until)
                .is_none_or(|t| t <= now)
        });
        full
    }

    fn find_full_nodes(&self) -> Vec<PeerId> {
        let now = unix_ms(SystemTime::now());
        let fresh = u64::try_from(self.cfg.advert_fresh.as_millis()).unwrap_or(u64::MAX);
        let mut out: Vec<PeerId> = self
            .full_nodes
            .iter()
            .filter(|(p, f)| {
                **p != self.local_peer
                    && (f.identified
                        || f.advert_seq
                            .is_some_and(|s| s.saturating_add(fresh) >= now && s <= now + fresh))
            })
            .map(|(p, _)| *p)
            .collect();
        out.sort();
        out
    }

    fn advertise(&mut self) {
        if self.cfg.role != Role::Full {
            return;
        }
        let advert = FullnodeAdvert {
            v: FORMAT_VERSION,
            listen: self
                .listen_addrs
                .iter()
                .take(MAX_ADDRS)
                .map(|a| a.to_string())
                .filter(|a| a.len() <= MAX_ADDR_LEN)
                .collect(),
            role: ValueRole::Full,
            since: self.started_ms,
        };
        let salt = Salt::of_kind(dht::SaltKind::Fullnode);
        match self.sign_own(salt, advert.encode()) {
            Ok(item) => self.put_item(item, None),
            Err(e) => tracing::warn!(error = %e, "cannot sign fullnode advert"),
        }
    }

    fn fetch_adverts(&mut self) {
        let full = self.find_full_nodes();
        for peer in full.into_iter().take(self.cfg.read_fanout) {
            self.fetch_adverts_from(peer);
        }
    }

    fn fetch_adverts_from(&mut self, peer: PeerId) {
        let id = self
            .swarm
            .behaviour_mut()
            .get
            .send_request(&peer, Request::FullNodes);
        self.advert_requests.insert(id);
    }

    /// Checks and stores an advert; records the advertised node and its addresses.
    fn learn_advert(&mut self, bytes: &[u8]) {
        let Ok(item) = Item::decode(bytes) else {
            return;
        };
        let target = item.target();
        let Ok(item) = self.store().check(&target, bytes) else {
            return;
        };
        if item.salt.kind() != Some(dht::SaltKind::Fullnode) || item.pk == self.sk.pubkey() {
            return;
        }
        let Ok(advert) = FullnodeAdvert::decode(&item.value) else {
            return;
        };
        if advert.role != ValueRole::Full {
            return;
        }
        let Ok(peer) = identity::peer_id(&item.pk) else {
            return;
        };
        let seq = item.seq;
        let _ = self.store().insert(item, istore::now());
        if !self.full_nodes.contains_key(&peer) && self.full_nodes.len() >= MAX_FULL_NODES {
            return;
        }
        let entry = self.full_nodes.entry(peer).or_default();
        entry.advert_seq = Some(entry.advert_seq.map_or(seq, |s| s.max(seq)));
        for a in advert
            .listen
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
        {
            let a = strip_p2p(a);
            self.swarm.add_peer_address(peer, a.clone());
            self.swarm.behaviour_mut().kad.add_address(&peer, a);
        }
    }

    fn adverts_for_response(&mut self) -> Vec<Vec<u8>> {
        let salt = Salt::of_kind(dht::SaltKind::Fullnode);
        let now = unix_ms(SystemTime::now());
        let fresh = u64::try_from(self.cfg.advert_fresh.as_millis()).unwrap_or(u64::MAX);
        let mut items = self.store().with_salt(&salt, dht::store::MAX_LIST_LIMIT);
        items.retain(|i| i.seq.saturating_add(fresh) >= now);
        items.sort_by_key(|i| std::cmp::Reverse(i.seq));
        items.truncate(MAX_ADVERTS);
        items.iter().map(Item::encode).collect()
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

    fn signed_items_from_store(&mut self) {
        // Own and delegated items survive restarts in the persistent store; the store reports
        // the ones signed by our key (found by the walk it makes at open anyway), so they are
        // republished whatever their salt.
        let pk = self.sk.pubkey();
        // Age unknown: due at the first tick.
        let due = tokio::time::Instant::now()
            .checked_sub(self.cfg.republish_interval)
            .unwrap_or_else(tokio::time::Instant::now);
        for item in self.store().take_signed_at_open() {
            match item.writer {
                None if item.pk == pk => {
                    self.own_salts.insert(item.salt, due);
                }
                Some(w) if w == pk => {
                    self.delegated
                        .insert(item.target(), (item.pk, item.salt, due));
                }
                _ => {}
            }
        }
    }

    /// Re-signs and re-puts own items not put for a whole interval, except those refreshed by
    /// someone else: adverts (their own timer), `dmsg` entries (entry-signed, see
    /// [`Config::app_refreshed`]) and the configured application salts.
    fn republish(&mut self) {
        let pk = self.sk.pubkey();
        // A put less than an interval ago keeps the item alive past the next tick (a little
        // slack for timer jitter).
        let fresh_after = tokio::time::Instant::now()
            .checked_sub(self.cfg.republish_interval.mul_f64(0.9))
            .unwrap_or_else(tokio::time::Instant::now);
        let salts: Vec<Salt> = self
            .own_salts
            .iter()
            .filter(|(_, at)| **at <= fresh_after)
            .map(|(s, _)| s.clone())
            .collect();
        for salt in salts {
            if matches!(
                salt.kind(),
                Some(dht::SaltKind::Fullnode | dht::SaltKind::Dmsg)
            ) || self.cfg.app_refreshed.contains(&salt)
            {
                continue;
            }
            let Some(item) = self.store().get(&Target::of(&pk, &salt)) else {
                continue;
            };
            if item.writer.is_some() {
                continue;
            }
            match self.sign_own(salt, item.value) {
                Ok(item) => self.put_republished(item),
                Err(e) => tracing::warn!(error = %e, "republish failed"),
            }
        }
        let due: Vec<Target> = self
            .delegated
            .iter()
            .filter(|(_, (_, _, at))| *at <= fresh_after)
            .map(|(t, _)| *t)
            .collect();
        for target in due {
            let Some((subject, salt, _)) = self.delegated.get(&target).cloned() else {
                continue;
            };
            // Still ours to write? The subject (or another writer) may have taken it over.
            let Some(item) = self.store().get(&target).filter(|i| i.writer == Some(pk)) else {
                self.delegated.remove(&target);
                continue;
            };
            let seq = SeqClock::new(item.seq).next(istore::now());
            match Item::sign_for(&self.sk, subject, salt, seq, item.value) {
                Ok(item) => self.put_republished(item),
                Err(e) => tracing::warn!(error = %e, "republish of a delegated item failed"),
            }
        }
    }

    /// Puts an item the republish timer re-signed, counting it by salt.
    fn put_republished(&mut self, item: Item) {
        let label = crate::metrics::SaltLabel {
            salt: String::from_utf8_lossy(item.salt.as_bytes()).into_owned(),
        };
        self.metrics.republished.get_or_create(&label).inc();
        self.put_item(item, None);
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
            last_bootstrap: self.last_bootstrap.map(unix_ms),
        }
    }

    // ---- swarm events -----------------------------------------------------------------------

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => self.on_identify(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Get(ev)) => self.on_get(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::NewListenAddr { address, .. } => {
                let a = address.with_p2p(self.local_peer).unwrap_or_else(|a| a);
                if !self.listen_addrs.contains(&a) {
                    self.listen_addrs.push(a);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if self.bootstrap.iter().any(|(p, _)| *p == peer_id) {
                    self.mark_bootstrapped();
                }
                if let Some(f) = self.full_nodes.get_mut(&peer_id) {
                    f.connected = true;
                    f.down_until = None;
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(f) = self.full_nodes.get_mut(&peer_id) {
                    f.connected = false;
                    f.identified = false;
                }
            }
            _ => {}
        }
    }

    fn mark_bootstrapped(&mut self) {
        let first = !self.bootstrapped;
        self.bootstrapped = true;
        self.last_bootstrap = Some(SystemTime::now());
        if first {
            tracing::info!("bootstrapped");
            // Tell the network about us now rather than at the next advert tick.
            self.advertise();
        }
    }

    fn on_identify(&mut self, ev: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = ev else {
            return;
        };
        let kad_proto = StreamProtocol::new(KAD_PROTOCOL);
        if info.protocols.contains(&kad_proto) {
            for a in info.listen_addrs.iter().take(MAX_ADDRS) {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, a.clone());
            }
        }
        if role::role_from_agent(&info.agent_version) == Some(Role::Full) {
            let known = self.full_nodes.contains_key(&peer_id);
            if known || self.full_nodes.len() < MAX_FULL_NODES {
                let f = self.full_nodes.entry(peer_id).or_default();
                let first = !f.identified;
                f.identified = true;
                f.connected = true;
                if first {
                    self.fetch_adverts_from(peer_id);
                    self.maybe_join(peer_id);
                }
            }
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.on_inbound_put(source, record),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                stats,
                step,
            } => match result {
                QueryResult::GetClosestPeers(res) => {
                    let peers = match res {
                        Ok(ok) => ok.peers,
                        Err(GetClosestPeersError::Timeout { peers, .. }) => peers,
                    };
                    self.on_closest_peers(id, peers.into_iter().map(|p| p.peer_id).collect());
                }
                QueryResult::PutRecord(res) => {
                    if let Some(sent) = self.full_put_targets.remove(&id)
                        && let Err(
                            kad::PutRecordError::QuorumFailed { success, .. }
                            | kad::PutRecordError::Timeout { success, .. },
                        ) = &res
                    {
                        // A full node that did not take the put is skipped by reads and puts
                        // for a while, so one dead node does not hold every put up.
                        for peer in sent.iter().filter(|p| !success.contains(p)) {
                            self.back_off_full_node(peer);
                        }
                    }
                    self.on_put_done(id, stats.num_successes());
                }
                QueryResult::GetRecord(res) => {
                    let Some(&op) = self.read_queries.get(&id) else {
                        return;
                    };
                    if let Ok(GetRecordOk::FoundRecord(pr)) = res
                        && let Some(sender) = pr.peer
                    {
                        let ok = self.reads.get(&op).is_some_and(|r| {
                            istore::target_of(&pr.record.key).ok() == Some(r.target)
                        }) && self.offer(op, &pr.record.value, ReadPath::Lookup);
                        let quorum = self.cfg.lookup_quorum.max(1);
                        if ok
                            && let Some(read) = self.reads.get_mut(&op)
                            && read.remote_valid <= quorum
                        {
                            read.lookup_hops = self
                                .swarm
                                .behaviour_mut()
                                .kad
                                .hops()
                                .and_then(|h| h.hop_of(&sender));
                        }
                        if ok
                            && self
                                .reads
                                .get(&op)
                                .is_some_and(|r| r.remote_valid >= quorum)
                            && let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id)
                        {
                            q.finish();
                        }
                    }
                    if step.last {
                        self.read_queries.remove(&id);
                        self.finish_read(op, stats.num_requests());
                    }
                }
                // A bootstrap counts only when some peer answered (an unreachable bootstrap peer still
                // sits in the routing table, and kad reports the query as Ok).
                QueryResult::Bootstrap(Ok(_)) if stats.num_successes() > 0 => {
                    self.mark_bootstrapped();
                }
                _ => {}
            },
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!(mode = %new_mode, "kad mode changed");
            }
            _ => {}
        }
    }

    fn on_inbound_put(&mut self, source: PeerId, record: Record) {
        let now = Instant::now();
        if !self.request_limiter.allow(source, now) {
            self.metrics.inbound_put("rate_limited");
            return;
        }
        let item = match istore::target_of(&record.key)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                self.store()
                    .check(&t, &record.value)
                    .map_err(|e| e.to_string())
            }) {
            Ok(item) => item,
            Err(e) => {
                tracing::debug!(peer = %source, error = %e, "inbound record refused");
                self.metrics.inbound_put("invalid");
                return;
            }
        };
        if !self.item_limiter.allow(source, now) {
            self.metrics.inbound_put("peer_quota");
            return;
        }
        let is_advert = item.salt.kind() == Some(dht::SaltKind::Fullnode);
        // Writes from full nodes are pushed by them; writes from anyone else are forwarded.
        let copy = (self.cfg.role == Role::Full && !self.find_full_nodes().contains(&source))
            .then(|| item.clone());
        match self.store().insert(item, istore::now()) {
            Ok(outcome) => {
                self.metrics.inbound_put("stored");
                if is_advert {
                    self.learn_advert(&record.value);
                }
                if let (
                    Some(item),
                    dht::PutOutcome::Inserted { .. } | dht::PutOutcome::Replaced { .. },
                ) = (copy, outcome)
                {
                    self.forward(&item, Some(source));
                }
            }
            Err(e) => {
                tracing::debug!(peer = %source, error = %e, "inbound item not stored");
                self.metrics.inbound_put(if e.is_item_fault() {
                    "refused"
                } else {
                    "quota"
                });
            }
        }
    }

    fn on_get(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = if !self.request_limiter.allow(peer, Instant::now()) {
                        Response::Refused
                    } else {
                        match request {
                            Request::Get(t) => match self.store().get(&Target::from_bytes(t)) {
                                Some(item) => Response::Found(item.encode()),
                                None => Response::NotFound,
                            },
                            Request::FullNodes => Response::Items(self.adverts_for_response()),
                        }
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .get
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if self.advert_requests.remove(&request_id) {
                        if let Response::Items(items) = response {
                            for bytes in items {
                                self.learn_advert(&bytes);
                            }
                        }
                    } else if let Some(op) = self.read_requests.remove(&request_id) {
                        if let Response::Found(bytes) = response {
                            self.offer(op, &bytes, ReadPath::FullNode);
                        }
                        self.read_answered(op);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.advert_requests.remove(&request_id);
                self.back_off_full_node(&peer);
                if let Some(op) = self.read_requests.remove(&request_id) {
                    tracing::debug!(%error, "full node read failed");
                    self.read_answered(op);
                }
            }
            _ => {}
        }
    }

    fn read_answered(&mut self, op: u64) {
        if let Some(read) = self.reads.get_mut(&op) {
            read.outstanding = read.outstanding.saturating_sub(1);
        }
        self.advance_read(op);
    }
}

/// True when `addr` starts with a globally routable IP address.
fn is_public_addr(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => {
            let o = ip.octets();
            !(ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation()
                || ip.is_multicast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        Some(Protocol::Ip6(ip)) => {
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
        _ => false,
    }
}

/// `addr` without a trailing `/p2p/<peer id>`.
fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn public_addresses() {
        for (a, public) in [
            ("/ip4/8.8.8.8/tcp/1", true),
            ("/ip4/127.0.0.1/tcp/1", false),
            ("/ip4/10.1.2.3/tcp/1", false),
            ("/ip4/192.168.1.1/tcp/1", false),
            ("/ip4/100.64.0.1/tcp/1", false),
            ("/ip4/0.0.0.0/tcp/1", false),
            ("/ip6/2001:4860::1/tcp/1", true),
            ("/ip6/::1/tcp/1", false),
            ("/ip6/fd00::1/tcp/1", false),
            ("/dns4/example.com/tcp/1", false),
        ] {
            assert_eq!(is_public_addr(&a.parse().unwrap()), public, "{a}");
        }
    }
}
