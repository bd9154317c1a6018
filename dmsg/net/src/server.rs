//! The DMSG server: accepts sessions, keeps its discovery entry current, relays stream requests
//! to the destination client's session and splices the two streams (spec §4.5, §7).
//!
//! Differences from the 2023 reference (all on the safe side): `max_sessions` is enforced;
//! handshakes in progress are capped; a duplicate session for a key replaces the old one (newest
//! wins, as in 2026) instead of orphaning it; every refusal closes the dialer's stream at once
//! (RST) and is counted by code; one misbehaving peer only ever loses its own stream or session.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmsg_proto::ErrorCode;
use dmsg_proto::disc::Entry;
use dmsg_proto::stream::{RequestContext, RequestPolicy, verify_request, verify_response};
use keys::{PubKey, SecKey};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::defaults::*;
use crate::disc_client::DiscClient;
use crate::discovery::Discovery;
use crate::error::{ServeError, SessionError, StreamError};
use crate::metrics::ServerMetrics;
use crate::mux::{MuxConfig, MuxStream, RecvHalf, SendHalf};
use crate::stream::{read_object, write_object};
use crate::transport::{self, Established};
use crate::{AbortOnDrop, lock};

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
        }
    }

    /// Registers with the HTTP discovery at `url`.
    pub fn discovery_url(&mut self, url: &str) {
        self.discovery = Some(Arc::new(DiscClient::new(url)));
    }
}

struct ServerSession {
    id: u64,
    est: Established,
}

struct Inner {
    cfg: ServerConfig,
    pk: PubKey,
    sessions: Mutex<HashMap<PubKey, Arc<ServerSession>>>,
    next_id: AtomicU64,
    metrics: ServerMetrics,
    handshakes: Arc<Semaphore>,
    changed: Notify,
    public_addr: String,
}

/// A running server. Dropping it stops every task and closes every session.
pub struct Server {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    _tasks: Vec<AbortOnDrop>,
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
            local_addr.to_string()
        } else {
            cfg.public_addr.clone()
        };
        let inner = Arc::new(Inner {
            pk: cfg.sk.pubkey(),
            cfg,
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

    /// Deletes the server's discovery entry (best effort), for a clean shutdown.
    pub async fn deregister(&self) {
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
            let est = transport::accept(
                tcp,
                &inner.cfg.sk,
                inner.cfg.handshake_timeout,
                inner.cfg.mux,
            )
            .await;
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
                    tracing::debug!(%addr, reason, error = %e, "session handshake failed");
                }
            }
        });
    }
}

async fn serve_session(inner: Arc<Inner>, est: Established) {
    let pk = est.remote;
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let sess = Arc::new(ServerSession { id, est });
    {
        let mut map = lock(&inner.sessions);
        let replacing = map.contains_key(&pk);
        if !replacing && map.len() >= inner.cfg.max_sessions {
            drop(map);
            inner.metrics.handshake_failed("max_sessions");
            tracing::debug!(%pk, "max_sessions reached; closing new session");
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
    loop {
        let Some(ms) = sess.est.session.accept().await else {
            break;
        };
        let inner = inner.clone();
        let sess = sess.clone();
        tokio::spawn(async move {
            if let Err((code, e)) = relay(&inner, &sess, ms).await {
                inner.metrics.refused(code.as_u16());
                tracing::debug!(src = %sess.est.remote, code = code.as_u16(), error = %e, "stream refused");
            }
        });
    }
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

/// Handles one stream opened by a client: check the request, forward it to the destination's
/// session, relay the response, splice.
async fn relay(
    inner: &Arc<Inner>,
    src: &Arc<ServerSession>,
    mut a: MuxStream,
) -> Result<(), (ErrorCode, StreamError)> {
    let to = DEFAULT_STREAM_HANDSHAKE_TIMEOUT;
    let refuse = |code: ErrorCode| move |e: StreamError| (code, e);
    let (req_obj, _) = read_object(&mut a, &src.est.crypto, to)
        .await
        .map_err(|e| (e.code().unwrap_or(ErrorCode::ReqInvalidSig), e))?;
    let ctx = RequestContext {
        session_pk: Some(src.est.remote),
        local_pk: None,
    };
    let req = match verify_request(&req_obj, &RequestPolicy::at(crate::now_ns()), &ctx) {
        Ok(r) => r,
        Err(e) => {
            let e = StreamError::Object(e);
            let code = e.code().unwrap_or(ErrorCode::ReqInvalidSig);
            a.reset();
            return Err((code, e));
        }
    };
    let dst = lock(&inner.sessions).get(&req.dst.pk).cloned();
    let Some(dst) = dst else {
        a.reset();
        return Err((
            ErrorCode::ReqNoNextSession,
            StreamError::Refused {
                code: ErrorCode::ReqNoNextSession,
            },
        ));
    };
    let mut b = dst
        .est
        .session
        .open()
        .map_err(refuse(ErrorCode::ReqNoNextSession))?;
    write_object(&mut b, &dst.est.crypto, &req_obj)
        .await
        .map_err(refuse(ErrorCode::ReqNoNextSession))?;
    let (resp_obj, extra) = match read_object(&mut b, &dst.est.crypto, to).await {
        Ok(r) => r,
        Err(e) => {
            a.reset();
            b.reset();
            return Err((e.code().unwrap_or(ErrorCode::ReqNoListener), e));
        }
    };
    if let Err(e) = verify_response(&resp_obj, &req_obj, &req) {
        // Forward refusals signed by the destination so the dialer learns the reason.
        let e = StreamError::Object(e);
        let code = e.code().unwrap_or(ErrorCode::RespNotAccepted);
        if matches!(code, ErrorCode::RespInvalidHash | ErrorCode::RespInvalidSig) {
            a.reset();
        } else {
            let _ = write_object(&mut a, &src.est.crypto, &resp_obj).await;
        }
        b.reset();
        return Err((code, e));
    }
    write_object(&mut a, &src.est.crypto, &resp_obj)
        .await
        .map_err(refuse(ErrorCode::ReqNoNextSession))?;
    inner.metrics.streams.inc();
    inner.metrics.streams_active.inc();
    if !extra.is_empty() {
        let n = extra.len() as u64;
        if a.send_chunk(extra).await.is_ok() {
            inner.metrics.bytes_relayed.inc_by(n);
        }
    }
    splice(inner, a, b).await;
    inner.metrics.streams_active.dec();
    Ok(())
}

/// Copies chunks both ways until either side ends; then closes both (DMSG streams have no
/// half-close, spec §4.6).
async fn splice(inner: &Arc<Inner>, mut a: MuxStream, mut b: MuxStream) {
    let m = &inner.metrics;
    let (a_r, a_w) = a.halves();
    let (b_r, b_w) = b.halves();
    tokio::select! {
        _ = pump(a_r, b_w, m) => {}
        _ = pump(b_r, a_w, m) => {}
    }
}

async fn pump(mut from: RecvHalf<'_>, mut to: SendHalf<'_>, m: &ServerMetrics) {
    while let Ok(Some(chunk)) = from.recv_chunk().await {
        let n = chunk.len() as u64;
        if to.send_chunk(chunk).await.is_err() {
            return;
        }
        m.bytes_relayed.inc_by(n);
    }
}

async fn register_loop(inner: Arc<Inner>, disc: Arc<dyn Discovery>) {
    let mut seq: Option<u64> = None;
    let mut last_avail: Option<i64>;
    let mut backoff = DEFAULT_BACKOFF_MIN;
    loop {
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
                backoff = DEFAULT_BACKOFF_MIN;
                tracing::debug!(seq = e.sequence, avail, "server entry updated");
            }
            Err(err) => {
                tracing::warn!(error = %err, "discovery update failed");
                tokio::time::sleep(crate::jitter(backoff)).await;
                backoff = (backoff * 2).min(DEFAULT_BACKOFF_MAX);
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
