//! The server mesh (spec §7): links to peer servers and the peer table.
//!
//! * Each peer gets one task that holds an ordinary client session to it (XK initiator + yamux
//!   client, [`transport::connect`]) and redials with [`Backoff`] (5 s, ×1.5, ≤ 60 s, jitter).
//!   Streams the peer opens on that link are served like streams on any session, marked as
//!   coming from a peer.
//! * A session a peer opened to us is a peer session too; either link carries forwarded
//!   requests in both directions.
//! * With `dht_allow`, the published servers are re-read every `refresh_interval` (sooner at
//!   start, and when an allowed unknown key opens a session) and peers are added and removed.
//! * A peer that sends garbage or floods is cut and backed off for [`MeshConfig::penalty`];
//!   sessions it opens meanwhile are closed.
//!
//! The decisions (who is a peer, forwarding order, misses, floods) are pure and live in
//! [`super::mesh_policy`].
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use keys::PubKey;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::mesh_policy::{
    FloodGuard, MeshAllow, MissCache, PeerAddr, PeerSource, UpPeer, forward_order, wanted_peers,
};
use super::{Inner, ServerSession, serve_streams};
use crate::backoff::Backoff;
use crate::metrics::MeshMetrics;
use crate::{AbortOnDrop, lock, transport};

/// Relayed streams (forwarded to peers plus received from peers) a server carries at once (the
/// reference's DefaultMaxRelayedStreams).
pub const DEFAULT_MAX_RELAYED: usize = 4096;
/// Relayed streams on one peer link at once (the reference's peer-link bound).
pub const DEFAULT_MAX_RELAYED_PER_LINK: usize = 512;
/// First redial delay of a peer link (the reference: 5 s).
pub const DEFAULT_LINK_BACKOFF_MIN: Duration = Duration::from_secs(5);
/// Largest redial delay of a peer link (the reference: 1 min).
pub const DEFAULT_LINK_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Growth of the redial delay per failed attempt (the reference: ×1.5).
pub const LINK_BACKOFF_FACTOR: f64 = 1.5;
/// How long a misbehaving peer is kept away (garbage or a flood).
pub const DEFAULT_PENALTY: Duration = Duration::from_secs(60);
/// How often a link's RTT is measured (a yamux ping).
pub const RTT_INTERVAL: Duration = Duration::from_secs(10);
/// Destinations whose delegated servers are remembered (bounded; cleared when full).
const ENTRY_CACHE_MAX: usize = 4096;
/// How long a destination's delegated servers are reused.
const ENTRY_CACHE_TTL: Duration = Duration::from_secs(10);
/// Longest wait for a destination's entry before falling back to every peer.
const ENTRY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Mesh settings of a server. The default is no mesh (no peers, no DHT peering).
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Static peers (the config file's `peers`, `--mesh-peer`).
    pub peers: Vec<PeerAddr>,
    /// Peer with published servers allowed by this (`--mesh-dht --mesh-allow`); `None`: only
    /// static peers.
    pub dht_allow: Option<MeshAllow>,
    /// How often published servers are re-read (one publication interval).
    pub refresh_interval: Duration,
    /// Relayed streams at once, server-wide.
    pub max_relayed: usize,
    /// Relayed streams at once per peer.
    pub max_relayed_per_link: usize,
    /// Redial backoff of a peer link: first delay.
    pub backoff_min: Duration,
    /// Redial backoff of a peer link: largest delay.
    pub backoff_max: Duration,
    /// How long a misbehaving peer is kept away.
    pub penalty: Duration,
    /// Refusals at the per-link bound within 10 s after which a peer is cut as a flooder.
    pub flood_refusals: u32,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            peers: Vec::new(),
            dht_allow: None,
            refresh_interval: crate::defaults::DEFAULT_UPDATE_INTERVAL,
            max_relayed: DEFAULT_MAX_RELAYED,
            max_relayed_per_link: DEFAULT_MAX_RELAYED_PER_LINK,
            backoff_min: DEFAULT_LINK_BACKOFF_MIN,
            backoff_max: DEFAULT_LINK_BACKOFF_MAX,
            penalty: DEFAULT_PENALTY,
            flood_refusals: super::mesh_policy::FLOOD_REFUSALS,
        }
    }
}

impl MeshConfig {
    /// Whether the server meshes at all.
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty() || self.dht_allow.is_some()
    }
}

/// One peer as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// The peer's key (hex).
    pub pk: String,
    /// Where we dial it.
    pub address: String,
    /// `static` or `dht`.
    pub source: &'static str,
    /// Whether a link (ours or theirs) is up.
    pub up: bool,
    /// Whether our link to it is up.
    pub outbound: bool,
    /// Whether its link to us is up.
    pub inbound: bool,
    /// Last measured RTT in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Streams we forwarded to it.
    pub forwarded_streams: u64,
    /// Payload bytes of those streams, both directions.
    pub forwarded_bytes: u64,
    /// Streams it relayed to our clients.
    pub relayed_in_streams: u64,
    /// Seconds until a penalty ends (garbage or flood), if any.
    pub penalty_secs: Option<u64>,
}

/// Per-peer counters shared with the streams that use the link.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) forwarded_streams: AtomicU64,
    pub(crate) forwarded_bytes: AtomicU64,
    pub(crate) relayed_in: AtomicU64,
}

struct Peer {
    addr: PeerAddr,
    source: PeerSource,
    out: Option<Arc<ServerSession>>,
    inb: Option<Arc<ServerSession>>,
    rtt: Option<Duration>,
    permits: Arc<Semaphore>,
    counters: Arc<PeerCounters>,
    flood: FloodGuard,
    banned_until: Option<Instant>,
    _task: Option<AbortOnDrop>,
}

impl Peer {
    fn link(&self) -> Option<&Arc<ServerSession>> {
        let live = |s: &&Arc<ServerSession>| !s.est.session.is_closed();
        self.out
            .as_ref()
            .filter(live)
            .or(self.inb.as_ref().filter(live))
    }
}

/// A link chosen for one forwarded or received stream, holding its slot on the link.
pub(crate) struct LinkUse {
    pub(crate) sess: Arc<ServerSession>,
    pub(crate) counters: Arc<PeerCounters>,
    _permit: OwnedSemaphorePermit,
}

/// Why a peer link could not take one more stream.
pub(crate) enum LinkRefusal {
    /// No live link to the peer.
    Down,
    /// The per-link bound is reached.
    Full,
}

/// The mesh state of a server.
pub(crate) struct Mesh {
    pub(crate) cfg: MeshConfig,
    peers: Mutex<HashMap<PubKey, Peer>>,
    misses: Mutex<MissCache>,
    relayed: Arc<Semaphore>,
    entries: Mutex<HashMap<PubKey, (Instant, Vec<PubKey>)>>,
    refresh: Notify,
    pub(crate) metrics: MeshMetrics,
}

impl Mesh {
    pub(crate) fn new(cfg: MeshConfig, metrics: MeshMetrics) -> Mesh {
        Mesh {
            relayed: Arc::new(Semaphore::new(cfg.max_relayed.max(1))),
            cfg,
            peers: Mutex::new(HashMap::new()),
            misses: Mutex::new(MissCache::default()),
            entries: Mutex::new(HashMap::new()),
            refresh: Notify::new(),
            metrics,
        }
    }

    /// Whether `pk` is one of our peers (static or allowed and published).
    pub(crate) fn is_peer(&self, pk: &PubKey) -> bool {
        lock(&self.peers).contains_key(pk)
    }

    /// A session from an allowed key we do not know yet: look at the published servers again.
    pub(crate) fn maybe_new_peer(&self, pk: &PubKey) {
        if self.cfg.dht_allow.as_ref().is_some_and(|a| a.allows(pk)) {
            self.refresh.notify_one();
        }
    }

    /// A server-wide relayed-stream slot, or `None` at [`MeshConfig::max_relayed`].
    pub(crate) fn relay_slot(&self) -> Option<OwnedSemaphorePermit> {
        let p = self.relayed.clone().try_acquire_owned().ok();
        if p.is_none() {
            self.metrics.refused("relay_capacity");
        }
        p
    }

    /// The live link to `pk` with a slot on it. `from_peer`: the stream is the peer's (a
    /// refusal then counts toward its flood limit); otherwise it is one we forward.
    pub(crate) fn use_link(
        &self,
        pk: &PubKey,
        now: Instant,
        from_peer: bool,
    ) -> Result<LinkUse, LinkRefusal> {
        let mut peers = lock(&self.peers);
        let p = peers.get_mut(pk).ok_or(LinkRefusal::Down)?;
        let sess = p.link().cloned().ok_or(LinkRefusal::Down)?;
        match p.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(LinkUse {
                sess,
                counters: p.counters.clone(),
                _permit: permit,
            }),
            Err(_) => {
                self.metrics.refused("link_capacity");
                if from_peer && p.flood.on_refusal(now, self.cfg.flood_refusals) {
                    drop(peers);
                    self.misbehaved(pk, "flood", now);
                }
                Err(LinkRefusal::Full)
            }
        }
    }

    /// Cuts every link with `pk` and keeps it away for the penalty.
    pub(crate) fn misbehaved(&self, pk: &PubKey, why: &'static str, now: Instant) {
        let mut peers = lock(&self.peers);
        let Some(p) = peers.get_mut(pk) else { return };
        p.banned_until = Some(now + self.cfg.penalty);
        for s in [p.out.take(), p.inb.take()].into_iter().flatten() {
            s.est.session.close();
        }
        self.metrics.link_event(why);
        tracing::warn!(peer = %pk, why, penalty = ?self.cfg.penalty, "mesh peer cut");
    }

    /// The order in which peers are offered a request for `dst`.
    pub(crate) fn order(&self, dst: &PubKey, delegated: &[PubKey], now: Instant) -> Vec<PubKey> {
        let up: Vec<UpPeer> = lock(&self.peers)
            .iter()
            .filter(|(_, p)| p.link().is_some())
            .map(|(pk, p)| UpPeer {
                pk: *pk,
                rtt: p.rtt,
            })
            .collect();
        forward_order(dst, delegated, &up, &lock(&self.misses), now)
    }

    pub(crate) fn record_miss(&self, dst: PubKey, peer: PubKey, now: Instant) {
        self.metrics.misses.inc();
        lock(&self.misses).record(dst, peer, now);
    }

    pub(crate) fn reached(&self, dst: &PubKey) {
        lock(&self.misses).forget(dst);
    }

    /// The destination's delegated servers (cached briefly; empty when unknown).
    pub(crate) async fn delegated(&self, inner: &Inner, dst: PubKey) -> Vec<PubKey> {
        if let Some((t, v)) = lock(&self.entries).get(&dst)
            && t.elapsed() < ENTRY_CACHE_TTL
        {
            return v.clone();
        }
        let Some(disc) = &inner.cfg.discovery else {
            return Vec::new();
        };
        let found = tokio::time::timeout(ENTRY_LOOKUP_TIMEOUT, disc.entry(dst)).await;
        let v = match found {
            Ok(Ok(e)) => e
                .client
                .and_then(|c| c.delegated_servers)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut cache = lock(&self.entries);
        if cache.len() >= ENTRY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(dst, (Instant::now(), v.clone()));
        v
    }

    /// Registers a session the peer opened to us. `false`: the peer is serving a penalty.
    pub(crate) fn inbound_up(&self, sess: &Arc<ServerSession>, now: Instant) -> bool {
        let mut peers = lock(&self.peers);
        let Some(p) = peers.get_mut(&sess.est.remote) else {
            return false;
        };
        if p.banned_until.is_some_and(|t| t > now) {
            return false;
        }
        if let Some(old) = p.inb.replace(sess.clone()) {
            old.est.session.close();
        }
        self.update_gauges(&peers);
        true
    }

    pub(crate) fn inbound_down(&self, sess: &Arc<ServerSession>) {
        let mut peers = lock(&self.peers);
        if let Some(p) = peers.get_mut(&sess.est.remote)
            && p.inb.as_ref().is_some_and(|s| s.id == sess.id)
        {
            p.inb = None;
        }
        self.update_gauges(&peers);
    }

    fn update_gauges(&self, peers: &HashMap<PubKey, Peer>) {
        self.metrics.peers.set(peers.len() as i64);
        for (pk, p) in peers {
            self.metrics.peer_up(pk).set(i64::from(p.link().is_some()));
        }
    }

    /// The peer table for the API.
    pub(crate) fn status(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        let mut v: Vec<PeerStatus> = lock(&self.peers)
            .iter()
            .map(|(pk, p)| {
                let live = |s: &Option<Arc<ServerSession>>| {
                    s.as_ref().is_some_and(|s| !s.est.session.is_closed())
                };
                PeerStatus {
                    pk: pk.to_hex(),
                    address: p.addr.address.clone(),
                    source: p.source.as_str(),
                    up: p.link().is_some(),
                    outbound: live(&p.out),
                    inbound: live(&p.inb),
                    rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1e3),
                    forwarded_streams: p.counters.forwarded_streams.load(Ordering::Relaxed),
                    forwarded_bytes: p.counters.forwarded_bytes.load(Ordering::Relaxed),
                    relayed_in_streams: p.counters.relayed_in.load(Ordering::Relaxed),
                    penalty_secs: p
                        .banned_until
                        .filter(|t| *t > now)
                        .map(|t| t.duration_since(now).as_secs()),
                }
            })
            .collect();
        v.sort_by(|a, b| a.pk.cmp(&b.pk));
        v
    }

    /// Drops every peer (their link tasks end, their sessions close).
    pub(crate) fn stop(&self) {
        let mut peers = lock(&self.peers);
        for (_, p) in peers.drain() {
            for s in [p.out, p.inb].into_iter().flatten() {
                s.est.session.close();
            }
        }
    }
}

/// Starts the mesh: static peers at once, then the DHT refresh loop when enabled.
pub(crate) fn start(inner: &Arc<Inner>) -> Option<AbortOnDrop> {
    let mesh = &inner.mesh;
    if !mesh.cfg.enabled() {
        return None;
    }
    let wanted = wanted_peers(&inner.pk, &mesh.cfg.peers, &[], None);
    set_peers(inner, wanted, false);
    tracing::info!(
        peers = mesh.cfg.peers.len(),
        dht = mesh.cfg.dht_allow.is_some(),
        "dmsg server mesh on"
    );
    mesh.cfg
        .dht_allow
        .is_some()
        .then(|| AbortOnDrop(tokio::spawn(refresh_loop(Arc::downgrade(inner)))))
}

/// Makes the peer table hold `wanted`: new peers get a link task; DHT peers no longer wanted
/// are dropped when `prune` (static peers always stay).
fn set_peers(inner: &Arc<Inner>, wanted: Vec<(PeerAddr, PeerSource)>, prune: bool) {
    let mesh = &inner.mesh;
    let mut peers = lock(&mesh.peers);
    if prune {
        peers.retain(|pk, p| {
            let keep = p.source == PeerSource::Static || wanted.iter().any(|(w, _)| w.pk == *pk);
            if !keep {
                tracing::info!(peer = %pk, "mesh peer left");
                for s in [p.out.take(), p.inb.take()].into_iter().flatten() {
                    s.est.session.close();
                }
                mesh.metrics.forget_peer(pk);
            }
            keep
        });
    }
    for (addr, source) in wanted {
        if let Some(p) = peers.get_mut(&addr.pk) {
            p.addr.address = addr.address;
            continue;
        }
        tracing::info!(peer = %addr.pk, address = %addr.address, source = source.as_str(), "mesh peer added");
        let task = AbortOnDrop(tokio::spawn(link_loop(Arc::downgrade(inner), addr.pk)));
        peers.insert(
            addr.pk,
            Peer {
                addr,
                source,
                out: None,
                inb: None,
                rtt: None,
                permits: Arc::new(Semaphore::new(mesh.cfg.max_relayed_per_link.max(1))),
                counters: Arc::default(),
                flood: FloodGuard::default(),
                banned_until: None,
                _task: Some(task),
            },
        );
    }
    mesh.update_gauges(&peers);
}

/// Re-reads the published servers: 1 s after start, then doubling up to the refresh interval,
/// and whenever an allowed unknown server opens a session.
async fn refresh_loop(inner: Weak<Inner>) {
    let mut wait = Duration::from_secs(1);
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            let limit = inner.mesh.cfg.refresh_interval;
            let _ = tokio::time::timeout(wait, inner.mesh.refresh.notified()).await;
            wait = (wait * 2).min(limit);
        }
        let Some(inner) = inner.upgrade() else { return };
        let Some(disc) = inner.cfg.discovery.clone() else {
            return;
        };
        match disc.all_servers().await {
            Ok(list) => {
                let wanted = wanted_peers(
                    &inner.pk,
                    &inner.mesh.cfg.peers,
                    &list,
                    inner.mesh.cfg.dht_allow.as_ref(),
                );
                set_peers(&inner, wanted, true);
            }
            Err(e) => tracing::debug!(error = %e, "mesh: listing servers failed"),
        }
    }
}

/// Holds our link to one peer: dial, serve its streams, measure RTT, redial with backoff.
async fn link_loop(inner: Weak<Inner>, pk: PubKey) {
    let mut backoff = {
        let Some(i) = inner.upgrade() else { return };
        Backoff::new(i.mesh.cfg.backoff_min, i.mesh.cfg.backoff_max)
            .with_factor(LINK_BACKOFF_FACTOR)
    };
    loop {
        let Some(i) = inner.upgrade() else { return };
        let banned = lock(&i.mesh.peers).get(&pk).and_then(|p| p.banned_until);
        if let Some(until) = banned.filter(|t| *t > Instant::now()) {
            drop(i);
            tokio::time::sleep_until(until.into()).await;
            continue;
        }
        let Some(addr) = lock(&i.mesh.peers).get(&pk).map(|p| p.addr.address.clone()) else {
            return;
        };
        match transport::connect(&addr, &i.cfg.sk, pk, i.cfg.mux).await {
            Ok(est) => {
                backoff.reset();
                let sess = Arc::new(ServerSession {
                    id: i.next_id.fetch_add(1, Ordering::Relaxed),
                    est,
                    peer: true,
                });
                let registered = {
                    let mut peers = lock(&i.mesh.peers);
                    let ok = peers.get_mut(&pk).is_some_and(|p| {
                        p.out = Some(sess.clone());
                        true
                    });
                    i.mesh.update_gauges(&peers);
                    ok
                };
                if !registered {
                    return;
                }
                i.mesh.metrics.link_event("up");
                tracing::info!(peer = %pk, %addr, "mesh link up");
                tokio::select! {
                    _ = serve_streams(i.clone(), sess.clone()) => {}
                    _ = measure_rtt(&i, &sess) => {}
                }
                sess.est.session.close();
                {
                    let mut peers = lock(&i.mesh.peers);
                    if let Some(p) = peers.get_mut(&pk)
                        && p.out.as_ref().is_some_and(|s| s.id == sess.id)
                    {
                        p.out = None;
                    }
                    i.mesh.update_gauges(&peers);
                }
                i.mesh.metrics.link_event("down");
                tracing::info!(peer = %pk, reason = ?sess.est.session.close_reason(), "mesh link down");
            }
            Err(e) => {
                i.mesh.metrics.link_event("dial_failed");
                tracing::debug!(peer = %pk, %addr, error = %e, "mesh link dial failed");
            }
        }
        drop(i);
        tokio::time::sleep(backoff.next_delay(rand::random::<f64>())).await;
    }
}

/// Pings the link every [`RTT_INTERVAL`] and records the round trip; returns when the link
/// closes.
async fn measure_rtt(inner: &Arc<Inner>, sess: &Arc<ServerSession>) {
    loop {
        let rtt = tokio::select! {
            r = tokio::time::timeout(RTT_INTERVAL, sess.est.session.ping()) => r,
            _ = sess.est.session.closed() => return,
        };
        if let Ok(Ok(rtt)) = rtt {
            if let Some(p) = lock(&inner.mesh.peers).get_mut(&sess.est.remote) {
                p.rtt = Some(rtt);
            }
            inner
                .mesh
                .metrics
                .peer_rtt(&sess.est.remote)
                .set(rtt.as_secs_f64());
        }
        tokio::select! {
            _ = tokio::time::sleep(RTT_INTERVAL) => {}
            _ = sess.est.session.closed() => return,
        }
    }
}
