//! The transport manager: one task per transport over DMSG, the accept side, the table the
//! `tp` item is built from, and the publish loop.
//!
//! - [`Manager::add`] configures a transport to a peer (we are its *initiator*): its task dials
//!   `peer:TP_PORT`, runs the Hello exchange ([`crate::wire`]), keeps the link alive, and after
//!   a drop redials with [`Backoff`] (bounded, jittered) until the transport is removed.
//! - The accept task takes incoming streams on [`TP_PORT`](crate::defaults::TP_PORT), reads the
//!   Hello (bounded number in flight, time-limited), checks the id against the two keys, and
//!   hands the stream to the transport's task (creating an *accepted* transport when needed,
//!   up to the configured maximum). An accepted transport that stays down for
//!   [`ManagerConfig::accepted_down_ttl`] is forgotten.
//! - When both ends configured the same transport, both dial; a second stream replaces a live
//!   one only when it comes from the lower key, so exactly one stream survives.
//! - [`Manager::remove`] sends `Close(Removed)`; the peer drops the transport from its own list.
//! - Every state change wakes the publish loop, which follows [`PublishPolicy`]: a put when the
//!   list changed, a refresh before expiry, nothing otherwise.
//!
//! A misbehaving peer (bad frame, wrong id, silence) only closes its own link.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dht::value::{TransportEntries, TransportEntry, TransportState, ValueFormat};
use dmsg::{AbortOnDrop, DmsgStream};
use keys::PubKey;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::defaults::*;
use crate::error::{AddError, LinkError, RemoveError};
use crate::id::{TransportId, TransportKind};
use crate::metrics::Metrics;
use crate::publish::{Decision, PublishPolicy};
use crate::wire::{CloseReason, Frame, MAX_PAYLOAD};

/// Manager settings; [`ManagerConfig::default`] uses the `DEFAULT_*` constants.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// DMSG port of the link protocol. Default [`TP_PORT`].
    pub port: u16,
    /// Most transports. Default [`DEFAULT_MAX_TRANSPORTS`].
    pub max_transports: usize,
    /// Keepalive interval. Default [`DEFAULT_KEEPALIVE`].
    pub keepalive: Duration,
    /// Silence after which a link is dead. Default [`DEFAULT_DEAD_AFTER`].
    pub dead_after: Duration,
    /// Dial + Hello time limit. Default [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// First reconnect delay. Default [`DEFAULT_BACKOFF_BASE`].
    pub backoff_base: Duration,
    /// Longest reconnect delay. Default [`DEFAULT_BACKOFF_MAX`].
    pub backoff_max: Duration,
    /// Forget an accepted transport down this long. Default [`DEFAULT_ACCEPTED_DOWN_TTL`].
    pub accepted_down_ttl: Duration,
    /// Refresh an unchanged `tp` item after this. Default [`DEFAULT_REFRESH_AFTER`].
    pub refresh_after: Duration,
    /// Least time between puts of changed lists. Default [`DEFAULT_MIN_PUBLISH_INTERVAL`].
    pub min_publish_interval: Duration,
    /// Retry a failed put after this. Default [`DEFAULT_PUBLISH_RETRY`].
    pub publish_retry: Duration,
}

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig {
            port: TP_PORT,
            max_transports: DEFAULT_MAX_TRANSPORTS,
            keepalive: DEFAULT_KEEPALIVE,
            dead_after: DEFAULT_DEAD_AFTER,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            accepted_down_ttl: DEFAULT_ACCEPTED_DOWN_TTL,
            refresh_after: DEFAULT_REFRESH_AFTER,
            min_publish_interval: DEFAULT_MIN_PUBLISH_INTERVAL,
            publish_retry: DEFAULT_PUBLISH_RETRY,
        }
    }
}

impl ManagerConfig {
    fn policy(&self) -> PublishPolicy {
        PublishPolicy::new(
            self.refresh_after,
            self.min_publish_interval,
            self.publish_retry,
        )
    }
}

/// A put of the `tp` item failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishFailed;

/// Puts the visor's `tp` value (signed with the visor key by the implementation; in `bin` a
/// `dhtnode::Node::put` under salt `tp`).
pub trait Publish: Send + Sync + 'static {
    /// Puts `value` (a canonical `tp` value).
    fn publish(&self, value: Vec<u8>) -> impl Future<Output = Result<(), PublishFailed>> + Send;
}

/// A transport as shown by `skymesh tp ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransportInfo {
    /// Transport id.
    pub id: String,
    /// The other edge.
    pub remote: PubKey,
    /// Kind.
    pub kind: String,
    /// We configured it (we dial and redial); `false`: the peer did.
    pub initiator: bool,
    /// Up or down.
    pub state: TransportState,
    /// Seconds since the link came up (0 when down).
    pub uptime_secs: u64,
    /// Link bytes sent.
    pub bytes_sent: u64,
    /// Link bytes received.
    pub bytes_received: u64,
    /// Times the link was re-established.
    pub reconnects: u64,
    /// Why the link last ended or failed.
    pub last_error: Option<String>,
}

struct Record {
    remote: PubKey,
    kind: TransportKind,
    initiator: bool,
    state: TransportState,
    up_since: Option<Instant>,
    bytes_sent: u64,
    bytes_received: u64,
    reconnects: u64,
    last_error: Option<String>,
    /// Streams whose Hello was read, for this transport's task (capacity 1).
    incoming: mpsc::Sender<DmsgStream>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<AbortOnDrop>,
    /// Distinguishes this record from a later one with the same id.
    generation: u64,
}

impl Record {
    fn info(&self, id: &TransportId) -> TransportInfo {
        TransportInfo {
            id: id.to_string(),
            remote: self.remote,
            kind: self.kind.to_string(),
            initiator: self.initiator,
            state: self.state,
            uptime_secs: self.up_since.map_or(0, |t| t.elapsed().as_secs()),
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            reconnects: self.reconnects,
            last_error: self.last_error.clone(),
        }
    }
}

struct Shared {
    local: PubKey,
    cfg: ManagerConfig,
    client: Arc<dmsg::Client>,
    table: Mutex<BTreeMap<TransportId, Record>>,
    changed: Notify,
    metrics: Metrics,
    next_generation: std::sync::atomic::AtomicU64,
    /// Set (under the table lock) when the [`Manager`] is dropped: no record is created after
    /// it, so a stream accepted while the tasks are being aborted cannot leave a task behind.
    closed: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, BTreeMap<TransportId, Record>> {
        lock(&self.table)
    }

    /// The `tp` value for the current table.
    fn value(&self) -> TransportEntries {
        let t = self.table();
        let (mut up, mut down) = (0, 0);
        let list = t
            .iter()
            .map(|(id, r)| {
                match r.state {
                    TransportState::Up => up += 1,
                    TransportState::Down => down += 1,
                }
                let mut edges = [self.local, r.remote];
                edges.sort();
                TransportEntry {
                    id: id.to_string(),
                    edges,
                    kind: r.kind.to_string(),
                    label: String::new(),
                    state: Some(r.state),
                }
            })
            .collect();
        self.metrics.set_states(up, down);
        TransportEntries::v2(list)
    }

    /// Applies `f` to the record of `id` if it is still generation `generation`.
    fn update<T>(
        &self,
        id: &TransportId,
        generation: u64,
        f: impl FnOnce(&mut Record) -> T,
    ) -> Option<T> {
        let mut t = self.table();
        let r = t.get_mut(id).filter(|r| r.generation == generation)?;
        Some(f(r))
    }

    fn set_up(&self, id: &TransportId, generation: u64, again: bool) {
        self.update(id, generation, |r| {
            r.state = TransportState::Up;
            r.up_since = Some(Instant::now());
            if again {
                r.reconnects += 1;
            }
        });
        if again {
            self.metrics.reconnects.inc();
        }
        self.changed.notify_one();
    }

    fn set_down(&self, id: &TransportId, generation: u64, err: &LinkError) {
        let changed = self
            .update(id, generation, |r| {
                r.last_error = Some(err.to_string());
                r.up_since = None;
                std::mem::replace(&mut r.state, TransportState::Down) != TransportState::Down
            })
            .unwrap_or(false);
        if changed {
            self.changed.notify_one();
        }
    }

    fn count(&self, id: &TransportId, generation: u64, sent: usize, received: usize) {
        if sent > 0 {
            self.metrics.bytes("sent", sent);
        }
        if received > 0 {
            self.metrics.bytes("received", received);
        }
        self.update(id, generation, |r| {
            r.bytes_sent += sent as u64;
            r.bytes_received += received as u64;
        });
    }

    fn forget(&self, id: &TransportId, generation: u64) {
        let gone = {
            let mut t = self.table();
            match t.get(id) {
                Some(r) if r.generation == generation => t.remove(id),
                _ => None,
            }
        };
        if let Some(mut r) = gone {
            // Our own task: let it return instead of aborting it mid-call.
            if let Some(task) = r.task.take() {
                std::mem::forget(task);
            }
            self.changed.notify_one();
        }
    }

    /// Creates a record and its task in `t` (the locked table); nothing once the manager is
    /// dropped.
    fn spawn_record(
        self: &Arc<Self>,
        t: &mut BTreeMap<TransportId, Record>,
        id: TransportId,
        remote: PubKey,
        initiator: bool,
        first: Option<DmsgStream>,
    ) {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let (tx, rx) = mpsc::channel(1);
        let (stop_tx, stop_rx) = oneshot::channel();
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = AbortOnDrop(tokio::spawn(drive(
            self.clone(),
            id,
            remote,
            generation,
            first,
            rx,
            stop_rx,
        )));
        t.insert(
            id,
            Record {
                remote,
                kind: TransportKind::dmsg(),
                initiator,
                state: TransportState::Down,
                up_since: None,
                bytes_sent: 0,
                bytes_received: 0,
                reconnects: 0,
                last_error: None,
                incoming: tx,
                stop: Some(stop_tx),
                task: Some(task),
                generation,
            },
        );
        self.changed.notify_one();
    }
}

/// The running manager. Dropping it closes every link and stops every task.
pub struct Manager {
    shared: Arc<Shared>,
    _accept: AbortOnDrop,
    _publish: AbortOnDrop,
}

impl Drop for Manager {
    fn drop(&mut self) {
        // Records hold their tasks, and the tasks hold `shared`: break the cycle here. The
        // accept task may still be running on another thread for a moment, so new records are
        // refused first (under the same lock `spawn_record`'s callers hold).
        let records = {
            let mut t = self.shared.table();
            self.shared
                .closed
                .store(true, std::sync::atomic::Ordering::Release);
            std::mem::take(&mut *t)
        };
        drop(records);
    }
}

impl Manager {
    /// Starts listening on the configured DMSG port, the accept task and the publish loop.
    /// The first publish (even of an empty list) happens at once.
    pub fn spawn<P: Publish>(
        cfg: ManagerConfig,
        client: Arc<dmsg::Client>,
        publisher: P,
        metrics: Metrics,
    ) -> Result<Manager, dmsg::error::DialError> {
        let listener = client.listen(cfg.port)?;
        let shared = Arc::new(Shared {
            local: client.pk(),
            cfg,
            client,
            table: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            metrics,
            next_generation: std::sync::atomic::AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let accept = AbortOnDrop(tokio::spawn(accept_loop(shared.clone(), listener)));
        let s = shared.clone();
        let publish = AbortOnDrop(tokio::spawn(async move {
            let policy = s.cfg.policy();
            let metrics = s.metrics.clone();
            publish_loop(
                || Some(s.value().encode()),
                &s.changed,
                &publisher,
                policy,
                &metrics,
            )
            .await;
        }));
        Ok(Manager {
            shared,
            _accept: accept,
            _publish: publish,
        })
    }

    /// Our key.
    pub fn local_pk(&self) -> PubKey {
        self.shared.local
    }

    /// Configures a DMSG transport to `remote` (idempotent: an existing one is returned, and
    /// an accepted one becomes ours to redial).
    pub fn add(&self, remote: PubKey) -> Result<TransportInfo, AddError> {
        if remote == self.shared.local {
            return Err(AddError::SelfTransport);
        }
        let id = TransportId::derive(&self.shared.local, &remote, &TransportKind::dmsg());
        let mut t = self.shared.table();
        if let Some(r) = t.get_mut(&id) {
            r.initiator = true;
            return Ok(r.info(&id));
        }
        if t.len() >= self.shared.cfg.max_transports {
            return Err(AddError::Full {
                max: self.shared.cfg.max_transports,
            });
        }
        self.shared.spawn_record(&mut t, id, remote, true, None);
        t.get(&id).map(|r| r.info(&id)).ok_or(AddError::Stopped)
    }

    /// Removes a transport: the link is closed with `Close(Removed)` (the peer removes it too)
    /// and the list is republished.
    pub fn remove(&self, id: &TransportId) -> Result<(), RemoveError> {
        let Some(mut r) = self.shared.table().remove(id) else {
            return Err(RemoveError::NotFound { id: id.to_string() });
        };
        if let Some(stop) = r.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = r.task.take() {
            // Give the task a moment to send its Close, then abort it.
            tokio::spawn(async move {
                tokio::time::sleep(CLOSE_GRACE).await;
                drop(task);
            });
        }
        self.shared.changed.notify_one();
        Ok(())
    }

    /// Every transport, sorted by id.
    pub fn list(&self) -> Vec<TransportInfo> {
        self.shared
            .table()
            .iter()
            .map(|(id, r)| r.info(id))
            .collect()
    }

    /// The `tp` value the table corresponds to now.
    pub fn value(&self) -> TransportEntries {
        self.shared.value()
    }
}

/// Time a removed transport's task gets to send its `Close`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The publish loop: reads the current value with `current` (`None` ends the loop), asks the
/// policy, puts, and sleeps until the policy's deadline or a change. Time is tokio's, so tests
/// drive it with a paused clock.
pub(crate) async fn publish_loop<P: Publish>(
    current: impl Fn() -> Option<Vec<u8>>,
    changed: &Notify,
    publisher: &P,
    mut policy: PublishPolicy,
    metrics: &Metrics,
) {
    loop {
        let Some(value) = current() else { return };
        let now = Instant::now();
        match policy.decide(now.into_std(), &value) {
            Decision::Publish => {
                let ok = publisher.publish(value.clone()).await.is_ok();
                metrics.publish(if ok { "ok" } else { "error" });
                if !ok {
                    tracing::warn!("tp publish failed; retrying");
                }
                policy.record(now.into_std(), value, ok);
            }
            Decision::WaitUntil(t) => {
                tokio::select! {
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep_until(Instant::from_std(t)) => {}
                }
            }
        }
    }
}

/// Reads exactly one frame (header, then the declared payload), so no byte behind it is
/// consumed.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<(Frame, usize), LinkError> {
    let mut buf = [0u8; 2 + MAX_PAYLOAD];
    r.read_exact(&mut buf[..2]).await?;
    // Validates type and length before reading the payload.
    if let Err(e) = Frame::decode(&buf[..2]) {
        return Err(e.into());
    }
    let len = usize::from(buf[1]);
    r.read_exact(&mut buf[2..2 + len]).await?;
    match Frame::decode(&buf[..2 + len])? {
        Some((f, used)) => Ok((f, used)),
        None => Err(LinkError::Protocol("short frame")),
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> Result<usize, LinkError> {
    let b = f.to_bytes();
    w.write_all(&b).await?;
    w.flush().await?;
    Ok(b.len())
}

/// Dials and runs the Hello exchange as the initiator.
async fn dial(
    sh: &Shared,
    id: TransportId,
    generation: u64,
    remote: PubKey,
) -> Result<DmsgStream, LinkError> {
    let fut = async {
        let mut s = sh
            .client
            .dial(remote, sh.cfg.port)
            .await
            .map_err(|source| LinkError::Dial { pk: remote, source })?;
        let hello = Frame::Hello {
            id,
            kind: TransportKind::dmsg(),
        };
        let sent = write_frame(&mut s, &hello).await?;
        let (answer, got) = read_frame(&mut s).await?;
        sh.count(&id, generation, sent, got);
        match answer {
            Frame::Hello { id: aid, .. } if aid == id => Ok(s),
            Frame::Close(r) => Err(LinkError::Closed(r)),
            _ => Err(LinkError::Protocol("unexpected answer to hello")),
        }
    };
    tokio::time::timeout(sh.cfg.handshake_timeout, fut)
        .await
        .unwrap_or(Err(LinkError::Timeout("dial and hello")))
}

enum LinkEnd {
    /// The link failed; the transport stays.
    Failed(LinkError),
    /// The peer removed the transport.
    PeerRemoved,
    /// A newer stream from the peer replaces this one.
    Replaced(Box<DmsgStream>),
    /// Removed here, or the record is gone.
    Stopped,
}

/// The task of one transport.
async fn drive(
    sh: Arc<Shared>,
    id: TransportId,
    remote: PubKey,
    generation: u64,
    mut accepted: Option<DmsgStream>,
    mut incoming: mpsc::Receiver<DmsgStream>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = Backoff::new(sh.cfg.backoff_base, sh.cfg.backoff_max);
    let mut was_up = false;
    loop {
        let stream = if let Some(mut s) = accepted.take() {
            // Accepted: answer the Hello.
            let hello = Frame::Hello {
                id,
                kind: TransportKind::dmsg(),
            };
            match tokio::time::timeout(sh.cfg.handshake_timeout, write_frame(&mut s, &hello))
                .await
                .unwrap_or(Err(LinkError::Timeout("hello answer")))
            {
                Ok(n) => {
                    sh.count(&id, generation, n, 0);
                    s
                }
                Err(e) => {
                    sh.set_down(&id, generation, &e);
                    continue;
                }
            }
        } else {
            let Some(initiator) = sh.update(&id, generation, |r| r.initiator) else {
                return;
            };
            if initiator {
                tokio::select! {
                    r = dial(&sh, id, generation, remote) => match r {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(tp = %id, peer = %remote, error = %e, "dial failed");
                            sh.set_down(&id, generation, &e);
                            let delay = backoff.next_delay(rand::random::<f64>());
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                s = incoming.recv() => match s {
                                    Some(s) => accepted = Some(s),
                                    None => return,
                                },
                                _ = &mut stop => return,
                            }
                            continue;
                        }
                    },
                    s = incoming.recv() => match s {
                        Some(s) => { accepted = Some(s); continue; }
                        None => return,
                    },
                    _ = &mut stop => return,
                }
            } else {
                tokio::select! {
                    s = incoming.recv() => match s {
                        Some(s) => { accepted = Some(s); continue; }
                        None => return,
                    },
                    _ = tokio::time::sleep(sh.cfg.accepted_down_ttl) => {
                        if sh.update(&id, generation, |r| r.initiator) == Some(false) {
                            sh.forget(&id, generation);
                            return;
                        }
                        continue;
                    }
                    _ = &mut stop => return,
                }
            }
        };
        sh.set_up(&id, generation, was_up);
        was_up = true;
        backoff.reset();
        tracing::debug!(tp = %id, peer = %remote, "link up");
        match run_link(
            &sh,
            id,
            generation,
            remote,
            stream,
            &mut incoming,
            &mut stop,
        )
        .await
        {
            LinkEnd::Failed(e) => {
                tracing::debug!(tp = %id, peer = %remote, error = %e, "link down");
                sh.set_down(&id, generation, &e);
            }
            LinkEnd::PeerRemoved => {
                tracing::info!(tp = %id, peer = %remote, "transport removed by the peer");
                sh.forget(&id, generation);
                return;
            }
            LinkEnd::Replaced(s) => accepted = Some(*s),
            LinkEnd::Stopped => return,
        }
    }
}

/// Runs an established link until it ends.
async fn run_link(
    sh: &Shared,
    id: TransportId,
    generation: u64,
    remote: PubKey,
    stream: DmsgStream,
    incoming: &mut mpsc::Receiver<DmsgStream>,
    stop: &mut oneshot::Receiver<()>,
) -> LinkEnd {
    let (mut r, mut w) = tokio::io::split(stream);
    let mut buf: Vec<u8> = Vec::with_capacity(2 * (2 + MAX_PAYLOAD));
    let mut chunk = [0u8; 256];
    let mut keepalive = tokio::time::interval(sh.cfg.keepalive);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    let dead = tokio::time::sleep(sh.cfg.dead_after);
    tokio::pin!(dead);
    loop {
        tokio::select! {
            n = r.read(&mut chunk) => {
                let n = match n {
                    Ok(0) => return LinkEnd::Failed(LinkError::Io(std::io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => n,
                    Err(e) => return LinkEnd::Failed(e.into()),
                };
                sh.count(&id, generation, 0, n);
                dead.as_mut().reset(Instant::now() + sh.cfg.dead_after);
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match Frame::decode(&buf) {
                        Ok(None) => break,
                        Ok(Some((f, used))) => {
                            buf.drain(..used);
                            match f {
                                Frame::Keepalive => {}
                                Frame::Close(CloseReason::Removed) => return LinkEnd::PeerRemoved,
                                Frame::Close(reason) => return LinkEnd::Failed(LinkError::Closed(reason)),
                                Frame::Hello { .. } => {
                                    return LinkEnd::Failed(LinkError::Protocol("hello on an established link"));
                                }
                            }
                        }
                        Err(e) => return LinkEnd::Failed(e.into()),
                    }
                }
            }
            _ = keepalive.tick() => {
                let sent = tokio::time::timeout(sh.cfg.dead_after, write_frame(&mut w, &Frame::Keepalive)).await;
                match sent {
                    Ok(Ok(n)) => sh.count(&id, generation, n, 0),
                    Ok(Err(e)) => return LinkEnd::Failed(e),
                    Err(_) => return LinkEnd::Failed(LinkError::Timeout("keepalive write")),
                }
            }
            _ = &mut dead => return LinkEnd::Failed(LinkError::Timeout("no keepalive from the peer")),
            s = incoming.recv() => match s {
                // Both ends dialed: the stream from the lower key wins.
                Some(s) if remote < sh.local => return LinkEnd::Replaced(Box::new(s)),
                Some(_) => sh.metrics.refuse("duplicate"),
                // The record is gone. `remove` sends `stop` before dropping the record, so a
                // removal is visible here; otherwise the manager is shutting down and the peer
                // just sees the link drop (and keeps the transport, down).
                None => {
                    if stop.try_recv().is_ok() {
                        let _ = tokio::time::timeout(CLOSE_GRACE, write_frame(&mut w, &Frame::Close(CloseReason::Removed))).await;
                    }
                    return LinkEnd::Stopped;
                }
            },
            removed = &mut *stop => {
                if removed.is_ok() {
                    let _ = tokio::time::timeout(CLOSE_GRACE, write_frame(&mut w, &Frame::Close(CloseReason::Removed))).await;
                }
                return LinkEnd::Stopped;
            }
        }
    }
}

/// Takes incoming streams, reads their Hello (at most [`DEFAULT_MAX_PENDING_HELLOS`] at once,
/// each within the handshake timeout) and routes them.
async fn accept_loop(sh: Arc<Shared>, mut listener: dmsg::Listener) {
    let permits = Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_PENDING_HELLOS));
    let mut pending = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            s = listener.accept() => {
                let Some(s) = s else { return };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    sh.metrics.refuse("busy");
                    continue;
                };
                let sh = sh.clone();
                pending.spawn(async move {
                    let _permit = permit;
                    incoming(sh, s).await;
                });
            }
            Some(_) = pending.join_next(), if !pending.is_empty() => {}
        }
    }
}

async fn incoming(sh: Arc<Shared>, mut s: DmsgStream) {
    let remote = s.remote_addr().pk;
    let hello = tokio::time::timeout(sh.cfg.handshake_timeout, read_frame(&mut s))
        .await
        .unwrap_or(Err(LinkError::Timeout("hello")));
    let (id, kind) = match hello {
        Ok((Frame::Hello { id, kind }, _)) => (id, kind),
        Ok(_) | Err(_) => {
            sh.metrics.refuse("bad_hello");
            return;
        }
    };
    if kind.as_str() != TransportKind::DMSG
        || remote == sh.local
        || id != TransportId::derive(&sh.local, &remote, &kind)
    {
        sh.metrics.refuse("bad_hello");
        let _ = tokio::time::timeout(
            CLOSE_GRACE,
            write_frame(&mut s, &Frame::Close(CloseReason::BadHello)),
        )
        .await;
        return;
    }
    let full = {
        let mut t = sh.table();
        if let Some(r) = t.get(&id) {
            if r.incoming.try_send(s).is_err() {
                sh.metrics.refuse("busy");
            }
            return;
        }
        if t.len() >= sh.cfg.max_transports {
            true
        } else {
            sh.spawn_record(&mut t, id, remote, false, Some(s));
            return;
        }
    };
    if full {
        sh.metrics.refuse("full");
        let _ = tokio::time::timeout(
            CLOSE_GRACE,
            write_frame(&mut s, &Frame::Close(CloseReason::Full)),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Recorder {
        puts: Mutex<Vec<(Instant, Vec<u8>)>>,
        fail: AtomicBool,
    }

    impl Publish for Arc<Recorder> {
        async fn publish(&self, value: Vec<u8>) -> Result<(), PublishFailed> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(PublishFailed);
            }
            lock(&self.puts).push((Instant::now(), value));
            Ok(())
        }
    }

    /// The publish loop on a paused clock: one put at start, one per change (bursts
    /// coalesced), none while nothing changes for hours except the refresh before expiry.
    #[tokio::test(start_paused = true)]
    async fn publish_loop_puts_on_change_and_before_expiry_only() {
        let cfg = ManagerConfig::default();
        let rec = Arc::new(Recorder::default());
        let value = Arc::new(Mutex::new(b"v0".to_vec()));
        let changed = Arc::new(Notify::new());
        let metrics = Metrics::default();
        let task = {
            let (rec, value, changed, metrics) =
                (rec.clone(), value.clone(), changed.clone(), metrics.clone());
            tokio::spawn(async move {
                publish_loop(
                    || Some(lock(&value).clone()),
                    &changed,
                    &rec,
                    cfg.policy(),
                    &metrics,
                )
                .await;
            })
        };
        let t0 = Instant::now();
        let puts = |rec: &Recorder| lock(&rec.puts).len();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(puts(&rec), 1, "initial publish");
        // 89 minutes of nothing: no traffic.
        tokio::time::sleep(Duration::from_secs(89 * 60)).await;
        assert_eq!(puts(&rec), 1);
        // A burst of 5 changes within 50 ms: at most 2 puts (the first at once, the rest
        // coalesced after the minimum interval), the last value published.
        for i in 1..=5 {
            *lock(&value) = format!("v{i}").into_bytes();
            changed.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = puts(&rec);
        assert!((2..=3).contains(&n), "{n} puts");
        assert_eq!(lock(&rec.puts).last().unwrap().1, b"v5");
        let last_change = lock(&rec.puts).last().unwrap().0;
        // Unchanged again: the next put is the refresh, 90 min after the last put.
        tokio::time::sleep(Duration::from_secs(89 * 60)).await;
        assert_eq!(puts(&rec), n);
        tokio::time::sleep(Duration::from_secs(2 * 60)).await;
        assert_eq!(puts(&rec), n + 1);
        let refresh = lock(&rec.puts).last().unwrap().0;
        assert_eq!(refresh - last_change, DEFAULT_REFRESH_AFTER);
        // Failures are retried after the retry delay.
        rec.fail.store(true, Ordering::Relaxed);
        *lock(&value) = b"v6".to_vec();
        changed.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
        rec.fail.store(false, Ordering::Relaxed);
        tokio::time::sleep(DEFAULT_PUBLISH_RETRY).await;
        assert_eq!(lock(&rec.puts).last().unwrap().1, b"v6");
        let errors = metrics
            .publishes
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: "error".into(),
            })
            .get();
        assert_eq!(errors, 1);
        assert!(t0.elapsed() > Duration::from_secs(3 * 60 * 60 - 600));
        task.abort();
    }
}
