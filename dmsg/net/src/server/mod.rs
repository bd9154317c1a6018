//! The DMSG server: accepts sessions, keeps its discovery entry current, relays stream requests
//! to the destination client's session and splices the two streams (spec §4.5, §7).
//!
//! Differences from the 2023 reference (all on the safe side): `max_sessions` is enforced;
//! handshakes in progress are capped; a duplicate session for a key replaces the old one (newest
//! wins, as in 2026) instead of orphaning it; every refusal closes the dialer's stream at once
//! (RST) and is counted by code; one misbehaving peer only ever loses its own stream or session.
//!
//! With a [`MeshConfig`], the server also peers with other servers and forwards requests for
//! destinations it does not hold, one hop at most ([`mesh`], `docs/dmsg-mesh.md`).
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | this one | config, accept loop, session table, discovery registration | TCP accept |
//! | `relay` | one stream: check, deliver locally or forward to a peer, splice | streams |
//! | [`own`] | requests to the server's own key: `dmsg://SERVER_PK:80/health` | streams |
//! | [`mesh`] | peer links (dial, redial, RTT), the peer table, bounds | TCP connect |
//! | [`mesh_policy`] | who is a peer, forwarding order, misses, floods | none (pure) |
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmsg_proto::disc::Entry;
use keys::{PubKey, SecKey};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::defaults::*;
use crate::disc_client::DiscClient;
use crate::discovery::Discovery;
use crate::error::{ServeError, SessionError};
use crate::metrics::ServerMetrics;
use crate::mux::MuxConfig;
use crate::transport::{self, Established};
use crate::{AbortOnDrop, lock};

pub mod mesh;
pub mod mesh_policy;
pub mod own;
mod refusal;
mod relay;

pub use mesh::{MeshConfig, PeerStatus};
pub use mesh_policy::{MeshAllow, PeerAddr};

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// The server's key.
    pub sk: SecKey,
    /// Listen address.
    pub local_addr: String,
    /// Address advertised in discovery (`host:port`); empty = the bound address.
    pub public_addr: String,
    /// Where the server registers its entry (`None`: do not register).
    pub discovery: Option<Arc<dyn Discovery>>,
    /// Most sessions held.
    pub max_sessions: usize,
    /// Discovery entry refresh interval.
    pub update_interval: Duration,
    /// XK handshake deadline.
    pub handshake_timeout: Duration,
    /// Per-session yamux limits.
    pub mux: MuxConfig,
    /// Peering with other servers (default: none).
    pub mesh: MeshConfig,
    /// PROXY protocol headers before the handshake (default: used when present, as the
    /// reference's go-proxyproto listener does).
    pub proxy: crate::proxy::ProxyMode,
    /// The store-and-forward service on the server's own key, port 44 (default: none).
    pub mailbox: Option<Arc<crate::mailbox::MailboxService>>,
}

impl ServerConfig {
    /// Defaults for everything but the key and the listen address.
    pub fn new(sk: SecKey, local_addr: &str) -> ServerConfig {
        ServerConfig {
            sk,
            local_addr: local_addr.to_string(),
            public_addr: String::new(),
            discovery: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            update_interval: DEFAULT_UPDATE_INTERVAL,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            mux: MuxConfig::default(),
            mesh: MeshConfig::default(),
            proxy: crate::proxy::ProxyMode::default(),
            mailbox: None,
        }
    }

    /// Registers with the HTTP discovery at `url`.
    pub fn discovery_url(&mut self, url: &str) {
        self.discovery = Some(Arc::new(DiscClient::new(url)));
    }
}

/// A session held by the server: a client's, or a link with a peer server.
pub(crate) struct ServerSession {
    id: u64,
    est: Established,
    /// A link with a peer server (ours or theirs): it may carry relayed requests.
    peer: bool,
}

pub(crate) struct Inner {
    cfg: ServerConfig,
    pk: PubKey,
    /// Client sessions by key (peer links live in the mesh table).
    sessions: Mutex<HashMap<PubKey, Arc<ServerSession>>>,
    next_id: AtomicU64,
    metrics: ServerMetrics,
    handshakes: Arc<Semaphore>,
    changed: Notify,
    public_addr: String,
    mesh: mesh::Mesh,
    /// When the server started (uptime in its own `/health`).
    started: std::time::Instant,
    /// Slots for streams to the server's own services ([`own`]).
    own_slots: Arc<Semaphore>,
    /// Set when the [`Server`] is dropped: sessions whose handshake finishes afterwards are
    /// closed at once instead of being served by a server nobody holds.
    closing: std::sync::atomic::AtomicBool,
    /// Set by [`Server::deregister`]: the entry is withdrawn and never published again.
    withdrawn: std::sync::atomic::AtomicBool,
}

/// A running server. Dropping it stops every task and closes every session and peer link.
pub struct Server {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    _tasks: Vec<AbortOnDrop>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stop accepting first, so no client gets a session with a server that is going away
        // (a client reconnecting within a millisecond would otherwise keep a dead session).
        self.inner.closing.store(true, Ordering::Release);
        self._tasks.clear();
        self.inner.mesh.stop();
        for s in lock(&self.inner.sessions).drain().map(|(_, s)| s) {
            s.est.session.close();
        }
    }
}

impl Server {
    /// Binds and starts the server.
    pub async fn spawn(cfg: ServerConfig, metrics: ServerMetrics) -> Result<Server, ServeError> {
        let listener =
            TcpListener::bind(&cfg.local_addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: cfg.local_addr.clone(),
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: cfg.local_addr.clone(),
            source,
        })?;
        let public_addr = if cfg.public_addr.is_empty() {
            // Bound to 0.0.0.0/::: advertise a host address (docs/dmsg-operations.md).
            let (addr, source) = crate::lan::advertised(local_addr);
            if source == crate::lan::Source::Loopback {
                tracing::warn!(%addr, "no usable network interface: advertising loopback; set a public address");
            } else if source == crate::lan::Source::Interface {
                tracing::info!(%addr, "advertising a detected interface address");
            }
            addr.to_string()
        } else {
            cfg.public_addr.clone()
        };
        let mesh = mesh::Mesh::new(cfg.mesh.clone(), metrics.mesh.clone());
        let inner = Arc::new(Inner {
            pk: cfg.sk.pubkey(),
            cfg,
            mesh,
            started: std::time::Instant::now(),
            own_slots: Arc::new(Semaphore::new(own::MAX_OWN_STREAMS)),
            closing: std::sync::atomic::AtomicBool::new(false),
            withdrawn: std::sync::atomic::AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
            handshakes: Arc::new(Semaphore::new(DEFAULT_MAX_PENDING_HANDSHAKES)),
            changed: Notify::new(),
            public_addr,
        });
        let mut tasks = vec![AbortOnDrop(tokio::spawn(accept_loop(
            inner.clone(),
            listener,
        )))];
        if let Some(disc) = inner.cfg.discovery.clone() {
            tasks.push(AbortOnDrop(tokio::spawn(register_loop(
                inner.clone(),
                disc,
            ))));
        }
        tasks.extend(mesh::start(&inner));
        tracing::info!(pk = %inner.pk, addr = %local_addr, "dmsg server listening");
        Ok(Server {
            inner,
            local_addr,
            _tasks: tasks,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address advertised in discovery.
    pub fn public_addr(&self) -> &str {
        &self.inner.public_addr
    }

    /// The server's key.
    pub fn pk(&self) -> PubKey {
        self.inner.pk
    }

    /// Sessions currently held.
    pub fn num_sessions(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// The metrics.
    pub fn metrics(&self) -> &ServerMetrics {
        &self.inner.metrics
    }

    /// Client sessions: key and the client's address (the one a PROXY header carried, if any).
    pub fn session_addrs(&self) -> Vec<(PubKey, SocketAddr)> {
        lock(&self.inner.sessions)
            .iter()
            .map(|(pk, s)| (*pk, s.est.addr))
            .collect()
    }

    /// The mesh peers and their links (empty without a mesh).
    pub fn mesh_peers(&self) -> Vec<PeerStatus> {
        self.inner.mesh.status()
    }

    /// Whether the server meshes with other servers.
    pub fn mesh_enabled(&self) -> bool {
        self.inner.mesh.cfg.enabled()
    }

    /// Deletes the server's discovery entry (best effort), for a clean shutdown.
    pub async fn deregister(&self) {
        // The registration loop stops publishing: a session change after this must not
        // re-announce a server that is shutting down.
        self.inner.withdrawn.store(true, Ordering::Release);
        if let Some(disc) = &self.inner.cfg.discovery {
            let _ = disc.withdraw(self.inner.cfg.sk.clone()).await;
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = inner.handshakes.clone().try_acquire_owned() else {
            inner.metrics.handshake_failed("overload");
            drop(tcp);
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let mut tcp = tcp;
            // A load balancer's PROXY header carries the client's own address.
            let client = match crate::proxy::read_header(&mut tcp, inner.cfg.proxy).await {
                Ok(source) => source.unwrap_or(addr),
                Err(e) => {
                    inner.metrics.handshake_failed("proxy_header");
                    tracing::debug!(%addr, error = %e, "PROXY header refused");
                    return;
                }
            };
            // The client's discovery entry decides yamux or smux (peer servers: yamux).
            let inner2 = inner.clone();
            let choose = move |pk| async move {
                let inner = inner2;
                match &inner.cfg.discovery {
                    Some(disc) if !inner.mesh.is_peer(&pk) => {
                        transport::entry_protocol(disc.as_ref(), pk).await
                    }
                    _ => inner.cfg.mux.protocol,
                }
            };
            let est = transport::accept_choosing(
                tcp,
                &inner.cfg.sk,
                inner.cfg.handshake_timeout,
                inner.cfg.mux,
                choose,
            )
            .await
            .map(|mut est| {
                est.addr = client;
                est
            });
            drop(permit);
            match est {
                Ok(est) => serve_session(inner, est).await,
                Err(e) => {
                    let reason = match &e {
                        SessionError::HandshakeTimeout { .. } => "timeout",
                        SessionError::Handshake { .. } => "handshake",
                        SessionError::BadFrame { .. } => "bad_frame",
                        SessionError::ExtraBytes { .. } => "extra_bytes",
                        _ => "io",
                    };
                    inner.metrics.handshake_failed(reason);
                    tracing::debug!(%client, reason, error = %e, "session handshake failed");
                }
            }
        });
    }
}

async fn serve_session(inner: Arc<Inner>, est: Established) {
    if inner.closing.load(Ordering::Acquire) {
        return;
    }
    let pk = est.remote;
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let now = std::time::Instant::now();
    let peer = inner.mesh.is_peer(&pk);
    let sess = Arc::new(ServerSession { id, est, peer });
    if peer {
        // A peer server's link: kept in the mesh table, not counted as a client session.
        if !inner.mesh.inbound_up(&sess, now) {
            tracing::debug!(%pk, "mesh peer under penalty; closing its session");
            return;
        }
        inner.mesh.metrics.link_event("inbound_up");
        tracing::info!(%pk, addr = %sess.est.addr, "mesh peer session up");
        serve_streams(inner.clone(), sess.clone()).await;
        inner.mesh.inbound_down(&sess);
        inner.mesh.metrics.link_event("inbound_down");
        tracing::info!(%pk, "mesh peer session down");
        return;
    }
    inner.mesh.maybe_new_peer(&pk);
    {
        let mut map = lock(&inner.sessions);
        let replacing = map.contains_key(&pk);
        if !replacing && map.len() >= inner.cfg.max_sessions {
            drop(map);
            inner.metrics.handshake_failed("max_sessions");
            tracing::debug!(%pk, "max_sessions reached; closing new session");
            return;
        }
        if inner.closing.load(Ordering::Acquire) {
            // Dropped while this handshake finished: the drop has already closed the others.
            return;
        }
        if let Some(old) = map.insert(pk, sess.clone()) {
            old.est.session.close();
        }
        inner.metrics.sessions.set(map.len() as i64);
    }
    inner.metrics.sessions_accepted.inc();
    inner.changed.notify_one();
    tracing::debug!(%pk, addr = %sess.est.addr, "session up");
    serve_streams(inner.clone(), sess.clone()).await;
    {
        let mut map = lock(&inner.sessions);
        if map.get(&pk).is_some_and(|s| s.id == id) {
            map.remove(&pk);
        }
        inner.metrics.sessions.set(map.len() as i64);
    }
    inner.changed.notify_one();
    tracing::debug!(%pk, reason = ?sess.est.session.close_reason(), "session down");
}

/// Serves the streams a session's remote opens, each in its own task, until the session ends.
async fn serve_streams(inner: Arc<Inner>, sess: Arc<ServerSession>) {
    while let Some(ms) = sess.est.session.accept().await {
        let inner = inner.clone();
        let sess = sess.clone();
        tokio::spawn(async move {
            if let Err(r) = relay::relay(&inner, &sess, ms).await {
                inner.metrics.refused(r.code.as_u16());
                tracing::debug!(src = %sess.est.remote, code = r.code.as_u16(), error = %r, "stream refused");
            }
        });
    }
}

async fn register_loop(inner: Arc<Inner>, disc: Arc<dyn Discovery>) {
    use crate::backoff::Backoff;
    let mut seq: Option<u64> = None;
    let mut last_avail: Option<i64>;
    let mut backoff = Backoff::new(DEFAULT_BACKOFF_MIN, DEFAULT_BACKOFF_MAX);
    loop {
        if inner.withdrawn.load(Ordering::Acquire) {
            return;
        }
        let avail = inner.cfg.max_sessions as i64 - lock(&inner.sessions).len() as i64;
        let e = Entry::new_server(
            inner.pk,
            seq.map_or(0, |s| s + 1),
            crate::now_ns(),
            inner.public_addr.clone(),
            avail,
        );
        match disc.put_entry(inner.cfg.sk.clone(), e).await {
            Ok(e) => {
                seq = Some(e.sequence);
                last_avail = Some(avail);
                backoff.reset();
                tracing::debug!(seq = e.sequence, avail, "server entry updated");
            }
            Err(err) => {
                tracing::warn!(error = %err, "discovery update failed");
                tokio::time::sleep(crate::reconnect_delay(&mut backoff)).await;
                continue;
            }
        }
        // Wait for the next interval, or a session change (rate-limited to 1/s).
        let _ = tokio::time::timeout(inner.cfg.update_interval, async {
            loop {
                inner.changed.notified().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = inner.cfg.max_sessions as i64 - lock(&inner.sessions).len() as i64;
                if Some(now) != last_avail {
                    return;
                }
            }
        })
        .await;
    }
}
