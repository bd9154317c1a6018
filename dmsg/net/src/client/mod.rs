//! The DMSG client: sessions to servers chosen from discovery, its client entry kept current,
//! `dial` and `listen` (spec §4.5, §5, §6.6).
//!
//! * A maintenance task keeps at least `min_sessions` sessions (servers from
//!   `available_servers`, in the returned order), reconnecting with exponential backoff and
//!   ±50 % jitter, and re-posts the client entry whenever the set of sessions changes.
//! * `dial(pk, port)` looks the target up (cached briefly) and tries, in order: sessions we
//!   hold with one of its delegated servers; any other session we hold (the server mesh may
//!   reach the target, spec §7); only then a new session with a delegated server (never with
//!   [`ClientConfig::servers`] set). Then it runs the request / KK exchange.
//! * With [`ClientConfig::servers`], the client holds sessions with exactly those servers and
//!   opens no others (`--server PK`).
//! * Every session is pinged at once and then every [`SESSION_PING_INTERVAL`] (yamux: a ping
//!   frame; smux: a `00 00` stream); the last RTT per server is kept ([`Client::server_rtts`]),
//!   and [`SESSION_PING_FAILURES`] failures in a row close the session (as skywire 2026). Which
//!   servers to hold and which held session a dial tries first follow those RTTs and the
//!   servers' load, near-ties at random ([`choose`]).
//! * Incoming streams: a malformed one is dropped alone (the 2023 reference closed the whole
//!   session, spec §4.8). No listener → a signed refusal with code 306.
//! * Ports: listeners and ephemeral ports live in one table; every stream and listener holds a
//!   [`PortGuard`], so any close path releases its port.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmsg_proto::noise::DH_LEN;
use keys::{PubKey, SecKey};
use tokio::sync::{Notify, mpsc};

use crate::backoff::Backoff;
use crate::defaults::*;
use crate::disc_client::DiscClient;
use crate::discovery::Discovery;
use crate::error::DialError;
use crate::mux::MuxConfig;
use crate::stream::{DmsgStream, PortGuard};
use crate::transport::{self, Established};
use crate::{AbortOnDrop, lock};

pub mod choose;
mod own_key;
mod servers;
mod streams;

pub use own_key::NewSession;
use own_key::open_session;
use servers::{announce_protocol, candidates, client_entry, ping_loop};
use streams::{accept_stream, delegated_servers, dial_on, reset_by_server};

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// The client's key.
    pub sk: SecKey,
    /// Where servers and peers are found and the client entry is published.
    pub discovery: Arc<dyn Discovery>,
    /// Sessions to keep to servers from discovery (0: only dial on demand).
    pub min_sessions: usize,
    /// Most sessions in total.
    pub max_sessions: usize,
    /// Per-session limits and the multiplexer (`mux.protocol`: yamux, or smux, which our
    /// client entry then announces as `"protocol":"smux"` before the first session).
    pub mux: MuxConfig,
    /// If not empty: hold sessions with these servers only (all of them), open no others.
    pub servers: Vec<PubKey>,
}

impl ClientConfig {
    /// Defaults for everything but the key and the discovery base URL.
    pub fn new(sk: SecKey, discovery: &str) -> ClientConfig {
        ClientConfig::with_discovery(sk, Arc::new(DiscClient::new(discovery)))
    }

    /// Defaults for everything but the key and the discovery (HTTP or the DHT).
    pub fn with_discovery(sk: SecKey, discovery: Arc<dyn Discovery>) -> ClientConfig {
        ClientConfig {
            sk,
            discovery,
            min_sessions: DEFAULT_MIN_SESSIONS,
            max_sessions: DEFAULT_MAX_CLIENT_SESSIONS,
            mux: MuxConfig::default(),
            servers: Vec::new(),
        }
    }
}

/// Reserved DMSG ports (listeners and ephemeral ports of dialed streams).
#[derive(Debug, Default)]
pub struct PortTable {
    used: HashSet<u16>,
    next_eph: u16,
}

impl PortTable {
    fn reserve(&mut self, port: u16) -> bool {
        port != 0 && self.used.insert(port)
    }

    fn reserve_ephemeral(&mut self) -> Option<u16> {
        let span = u32::from(u16::MAX - EPHEMERAL_PORT_MIN) + 1;
        for _ in 0..span {
            self.next_eph = if self.next_eph < EPHEMERAL_PORT_MIN || self.next_eph == u16::MAX {
                EPHEMERAL_PORT_MIN + 1
            } else {
                self.next_eph + 1
            };
            if self.used.insert(self.next_eph) {
                return Some(self.next_eph);
            }
        }
        None
    }

    pub(crate) fn release(&mut self, port: u16) {
        self.used.remove(&port);
    }

    /// Ports in use.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    /// Whether no port is in use.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

/// A held session as [`Client::session_info`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The server.
    pub server: PubKey,
    /// Opened for one dial rather than held as one of `min_sessions`; closed when idle.
    pub on_demand: bool,
    /// Streams it carries now.
    pub streams: usize,
}

struct ClientSession {
    est: Established,
    /// Opened for one dial (the target's server, or a server's own services) rather than held
    /// as one of our `min_sessions`: used last by [`Client::dial_server`], closed first when idle.
    on_demand: bool,
    _task: Mutex<Option<AbortOnDrop>>,
    _pinger: Mutex<Option<AbortOnDrop>>,
}

struct Inner {
    cfg: ClientConfig,
    pk: PubKey,
    disc: Arc<dyn Discovery>,
    sessions: Mutex<HashMap<PubKey, Arc<ClientSession>>>,
    ports: Arc<Mutex<PortTable>>,
    listeners: Mutex<HashMap<u16, mpsc::Sender<DmsgStream>>>,
    changed: Notify,
    entry_cache: Mutex<HashMap<PubKey, (Instant, Vec<PubKey>)>>,
    /// KK static-static DH results by peer key (see [`static_dh`]).
    static_dh: Mutex<HashMap<PubKey, [u8; DH_LEN]>>,
    ready: Notify,
    is_ready: AtomicBool,
    dialing: tokio::sync::Mutex<()>,
    /// Our entry says `"protocol":"smux"` (posted before the first smux session).
    announced: AtomicBool,
    /// The last ping RTT per server (bounded: [`RTT_TABLE_MAX`], cleared when full).
    rtts: Mutex<HashMap<PubKey, Duration>>,
}

/// Most cached target entries (bounded; cleared when full).
const ENTRY_CACHE_MAX: usize = 1024;
/// Most cached static-static DH results (bounded; cleared when full). 34 bytes of value each.
const STATIC_DH_CACHE_MAX: usize = 1024;
/// How long a looked-up target entry is reused.
const ENTRY_CACHE_TTL: Duration = Duration::from_secs(30);
/// How often a session is pinged (skywire 2026 `pingSessionsLoop`: at start, then every 60 s).
pub const SESSION_PING_INTERVAL: Duration = Duration::from_secs(60);
/// Ping failures in a row that close a session (skywire 2026: two).
pub const SESSION_PING_FAILURES: u32 = 2;
/// Deadline of one session ping (the reference's 5 s).
pub const SESSION_PING_TIMEOUT: Duration = DEFAULT_SMUX_PING_TIMEOUT;
/// Most servers whose last RTT is kept (cleared when full).
pub(super) const RTT_TABLE_MAX: usize = 1024;

/// A DMSG client. Dropping it closes every session and stops its tasks.
pub struct Client {
    inner: Arc<Inner>,
    _task: AbortOnDrop,
}

/// Incoming streams on one port. Dropping it frees the port.
pub struct Listener {
    rx: mpsc::Receiver<DmsgStream>,
    port: u16,
    inner: std::sync::Weak<Inner>,
    _guard: PortGuard,
}

impl Listener {
    /// The next incoming stream; `None` when the client is gone.
    pub async fn accept(&mut self) -> Option<DmsgStream> {
        self.rx.recv().await
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            lock(&inner.listeners).remove(&self.port);
        }
    }
}

impl Client {
    /// Starts the client (sessions are set up in the background; see [`Client::ready`]).
    pub fn spawn(cfg: ClientConfig) -> Client {
        let inner = Arc::new(Inner {
            pk: cfg.sk.pubkey(),
            disc: cfg.discovery.clone(),
            cfg,
            sessions: Mutex::new(HashMap::new()),
            ports: Arc::new(Mutex::new(PortTable::default())),
            listeners: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            entry_cache: Mutex::new(HashMap::new()),
            static_dh: Mutex::new(HashMap::new()),
            ready: Notify::new(),
            is_ready: AtomicBool::new(false),
            dialing: tokio::sync::Mutex::new(()),
            announced: AtomicBool::new(false),
            rtts: Mutex::new(HashMap::new()),
        });
        let task = AbortOnDrop(tokio::spawn(maintain(inner.clone())));
        Client { inner, _task: task }
    }

    /// Our key.
    pub fn pk(&self) -> PubKey {
        self.inner.pk
    }

    /// Resolves once the client holds `min_sessions` sessions and has posted its entry.
    pub async fn ready(&self) {
        loop {
            let n = self.inner.ready.notified();
            if self.inner.is_ready.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }

    /// Keys of the servers we hold sessions with.
    pub fn servers(&self) -> Vec<PubKey> {
        lock(&self.inner.sessions).keys().copied().collect()
    }

    /// The servers we hold sessions with and the last ping RTT of each (`None` before the
    /// first answer), sorted by key.
    pub fn server_rtts(&self) -> Vec<(PubKey, Option<Duration>)> {
        let rtts = lock(&self.inner.rtts);
        let mut v: Vec<_> = lock(&self.inner.sessions)
            .keys()
            .map(|k| (*k, rtts.get(k).copied()))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// The servers we hold sessions with, sorted by key: whether each was opened on demand
    /// (for one dial, not one of our `min_sessions`) and how many streams it carries.
    pub fn session_info(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = lock(&self.inner.sessions)
            .iter()
            .map(|(k, s)| SessionInfo {
                server: *k,
                on_demand: s.on_demand,
                streams: s.est.session.num_streams(),
            })
            .collect();
        v.sort_by_key(|i| i.server);
        v
    }

    /// Ports in use (listeners and open dialed streams).
    pub fn ports_in_use(&self) -> usize {
        lock(&self.inner.ports).len()
    }

    /// Listens on `port`.
    pub fn listen(&self, port: u16) -> Result<Listener, DialError> {
        if !lock(&self.inner.ports).reserve(port) {
            return Err(DialError::PortInUse { port });
        }
        let guard = PortGuard {
            ports: Arc::downgrade(&self.inner.ports),
            port,
        };
        let (tx, rx) = mpsc::channel(DEFAULT_LISTENER_BACKLOG);
        lock(&self.inner.listeners).insert(port, tx);
        Ok(Listener {
            rx,
            port,
            inner: Arc::downgrade(&self.inner),
            _guard: guard,
        })
    }

    /// Dials `pk:port` and returns the end-to-end encrypted stream.
    pub async fn dial(&self, pk: PubKey, port: u16) -> Result<DmsgStream, DialError> {
        let inner = &self.inner;
        let pinned = !inner.cfg.servers.is_empty();
        // A server's own key (its /health, its mailbox): a server entry has no delegated
        // servers; the session with it (or the mesh) reaches it.
        if lock(&inner.sessions).contains_key(&pk) {
            return self.dial_server(pk, port).await;
        }
        let servers = match delegated_servers(inner, &pk).await {
            Err(DialError::NoDelegated { .. })
                if inner.disc.entry(pk).await.is_ok_and(|e| e.server.is_some()) =>
            {
                return self.dial_server(pk, port).await;
            }
            r => r?,
        };
        let mut last = None;
        let mut via = Vec::new();
        // 1. sessions with one of the target's servers; 2. any other session (mesh).
        let held: Vec<(PubKey, Arc<ClientSession>)> = {
            let map = lock(&inner.sessions);
            let rtts = lock(&inner.rtts);
            let theirs: Vec<_> = servers
                .iter()
                .filter_map(|s| map.get(s).map(|c| (*s, c.clone())))
                .collect();
            let others: Vec<_> = map
                .iter()
                .filter(|(k, _)| !servers.contains(k))
                .map(|(k, c)| (*k, c.clone()))
                .collect();
            let mut v = choose::order_sessions(theirs, &rtts, rand::random);
            v.extend(choose::order_sessions(others, &rtts, rand::random));
            v
        };
        for (srv, sess) in held {
            match dial_on(inner, &sess, pk, port).await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    via.push(srv);
                    last = Some(e);
                }
            }
            if last.as_ref().is_some_and(|e| !reset_by_server(e)) {
                // The destination itself answered (e.g. no listener): no other path helps.
                break;
            }
        }
        // 3. a new session with one of the target's servers.
        if !pinned && last.as_ref().is_none_or(reset_by_server) {
            for srv in &servers {
                if lock(&inner.sessions).contains_key(srv) {
                    continue;
                }
                let Ok(sess) = open_session(inner, *srv).await else {
                    continue;
                };
                match dial_on(inner, &sess, pk, port).await {
                    Ok(s) => return Ok(s),
                    Err(e) => {
                        via.push(*srv);
                        let stop = !reset_by_server(&e);
                        last = Some(e);
                        if stop {
                            break;
                        }
                    }
                }
            }
        }
        lock(&inner.entry_cache).remove(&pk);
        match last {
            Some(e) if reset_by_server(&e) => Err(DialError::Unreachable { pk, via, pinned }),
            Some(e) => Err(e),
            None if pinned => Err(DialError::Unreachable { pk, via, pinned }),
            None => Err(DialError::NoSession { pk }),
        }
    }

    /// Dials `pk:port` through the session with `server` (which must be held).
    pub async fn dial_via(
        &self,
        server: PubKey,
        pk: PubKey,
        port: u16,
    ) -> Result<DmsgStream, DialError> {
        let sess = lock(&self.inner.sessions).get(&server).cloned();
        let sess = sess.ok_or(DialError::NoSession { pk })?;
        dial_on(&self.inner, &sess, pk, port).await
    }
}

async fn connect_server(
    inner: &Arc<Inner>,
    server: PubKey,
    addr: &str,
    on_demand: bool,
) -> Result<Arc<ClientSession>, DialError> {
    announce_protocol(inner).await?;
    let est = transport::connect(addr, &inner.cfg.sk, server, inner.cfg.mux)
        .await
        .map_err(|e| {
            tracing::debug!(%server, addr, error = %e, "session failed");
            DialError::NoSession { pk: server }
        })?;
    let sess = Arc::new(ClientSession {
        est,
        on_demand,
        _task: Mutex::new(None),
        _pinger: Mutex::new(None),
    });
    let pinger = tokio::spawn(ping_loop(
        Arc::downgrade(inner),
        server,
        Arc::downgrade(&sess),
    ));
    *lock(&sess._pinger) = Some(AbortOnDrop(pinger));
    let task = {
        let inner = inner.clone();
        let sess2 = sess.clone();
        tokio::spawn(async move {
            while let Some(ms) = sess2.est.session.accept().await {
                tokio::spawn(accept_stream(inner.clone(), sess2.clone(), ms));
            }
            let mut map = lock(&inner.sessions);
            if map.get(&server).is_some_and(|s| Arc::ptr_eq(s, &sess2)) {
                map.remove(&server);
            }
            drop(map);
            inner.changed.notify_one();
        })
    };
    *lock(&sess._task) = Some(AbortOnDrop(task));
    lock(&inner.sessions).insert(server, sess.clone());
    inner.changed.notify_one();
    tracing::debug!(%server, addr, "client session up");
    Ok(sess)
}

async fn maintain(inner: Arc<Inner>) {
    let mut backoff = Backoff::new(DEFAULT_BACKOFF_MIN, DEFAULT_BACKOFF_MAX);
    let mut posted: Option<Vec<PubKey>> = None;
    let mut seq: u64 = 0;
    let mut next_balance = Instant::now() + servers::balance_delay(true);
    loop {
        let pinned = &inner.cfg.servers;
        let want = if pinned.is_empty() {
            inner.cfg.min_sessions
        } else {
            pinned.len()
        };
        let have = lock(&inner.sessions).len();
        let mut failed = false;
        if have < want {
            match candidates(&inner).await {
                Ok(list) => {
                    for (pk, address) in list {
                        if lock(&inner.sessions).len() >= want {
                            break;
                        }
                        if lock(&inner.sessions).contains_key(&pk) {
                            continue;
                        }
                        let _g = inner.dialing.lock().await;
                        // An on-demand dial may have opened it while we waited: a second
                        // session with one server makes it close the first (and its streams).
                        if lock(&inner.sessions).contains_key(&pk) {
                            continue;
                        }
                        if connect_server(&inner, pk, &address, false).await.is_err() {
                            failed = true;
                        }
                    }
                    if lock(&inner.sessions).len() < want {
                        failed = true;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "finding servers failed");
                    failed = true;
                }
            }
        }
        let mut servers: Vec<PubKey> = lock(&inner.sessions).keys().copied().collect();
        servers.sort();
        if servers.is_empty() {
            // Re-register after reconnecting, even to the same servers.
            posted = None;
        }
        if posted.as_ref() != Some(&servers) && !servers.is_empty() {
            let mut e = client_entry(&inner, servers.clone());
            e.sequence = seq;
            match inner.disc.put_entry(inner.cfg.sk.clone(), e).await {
                Ok(e) => {
                    seq = e.sequence + 1;
                    posted = Some(servers);
                    inner.is_ready.store(true, Ordering::Release);
                    inner.ready.notify_waiters();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "client entry update failed");
                    failed = true;
                }
            }
        } else if inner.cfg.min_sessions == 0 || !servers.is_empty() {
            inner.is_ready.store(true, Ordering::Release);
            inner.ready.notify_waiters();
        }
        if failed {
            tokio::time::sleep(crate::reconnect_delay(&mut backoff)).await;
            continue;
        }
        backoff.reset();
        if pinned.is_empty() && Instant::now() >= next_balance {
            next_balance = Instant::now() + servers::balance_delay(false);
            if servers::rebalance(&inner, want).await {
                continue;
            }
        }
        let wait = next_balance
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(30));
        let _ = tokio::time::timeout(wait, inner.changed.notified()).await;
    }
}
