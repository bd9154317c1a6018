//! Bulk sync (`/skymesh/sync/1` GetItems pages) and full-node push, driven by the actor.
//!
//! The paging logic is [`itemsync`]'s (sans-io [`Puller`], [`itemsync::serve::page`]); this
//! file owns the sessions, the push queues and the penalties, and puts every received item
//! through the store's acceptance rules before anything is stored: [`ItemStore::insert`] →
//! `dht::rules::admit`, or for pulled pages `dht::rules::verify` off the actor then
//! [`ItemStore::insert_verified`] → `dht::rules::admit_verified` (signature included either way).
//!
//! - **Ingest** is a pipeline of three stages per session, so the page transfer, the signature
//!   checks and the store inserts overlap:
//!   1. *verify*: a received page goes to the verification stage ([`super::verify`] on tokio's
//!      blocking pool), which runs [`dht::rules::verify`] (sizes, writer, value, signature) on
//!      every item, split over all cores, and hands back one [`dht::VerifiedItem`] or
//!      [`dht::Unverified`] per item, in page order (an item the store holds
//!      identically is skipped, as `admit` skips `Unchanged` ones), through a bounded channel
//!      ([`VERIFIED_QUEUE`]) that the actor loop polls. One page per session is verified at a
//!      time (a page that arrives meanwhile waits, unverified, for its turn), so results come
//!      back in page order;
//!   2. *ingest*: the actor puts the verified backlog into the store [`INGEST_CHUNK`] items per
//!      loop turn through [`ItemStore::insert_verified`] (`dht::rules::admit_verified`: seq,
//!      quota, capacity; value and signature are not checked twice), so the swarm keeps serving.
//!      An item that failed verification goes through the full [`ItemStore::insert`] instead,
//!      which refuses it exactly as before (the same error, counted `invalid` when the item is
//!      invalid in itself): the peer is penalised and the session aborted after that chunk;
//!   3. the next page is requested as soon as the session holds at most one page (received,
//!      being verified or being ingested): at most two pages held per session, at most
//!      [`MAX_ACTIVE_SESSIONS`] sessions.
//!
//!   The cursor is saved once a page is fully ingested; a cancelled session still verifies and
//!   ingests what it received first, a finished (failed, penalised) one drops it, late
//!   verification results included.
//! - **Serve**: every node answers GetItems from its in-memory store (epoch = this process's
//!   start, since change numbers restart with the process), subject to the per-peer sync limit.
//! - **Join**: a full node that has not completed a full pull yet pulls everything from the
//!   first full node it identifies (and retries on the sync timer with another one).
//! - **Push**: every write a full node accepts from a local put or from a non-full peer's kad
//!   PutRecord is queued for each other known full node (bounded per peer, one push in flight per
//!   peer, batched while one is in flight). Pushed items are never forwarded again (the origin
//!   fans out; nothing is echoed back), and an item already held identically is only counted.
//! - **Repair**: every [`crate::Config::sync_interval`] a full node pulls incrementally from the
//!   next known full node, from the cursor it saved for it.
//! - **Penalties**: a malformed or oversized message, a paging violation or an item that fails
//!   the rules in itself (bad signature, value, size) gets the peer disconnected and refused for
//!   [`PENALTY`]; the store keeps only what passed the rules.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dht::{Item, PutOutcome, Salt};
use itemsync::wire::{self, GetItems, Page, RefuseReason, Request, Response};
use itemsync::{PullConfig, PullError, Puller, SyncCursor};
use libp2p::request_response::{self, InboundFailure, OutboundFailure, OutboundRequestId};
use libp2p::{Multiaddr, PeerId};

use super::penalties::Penalties;
use super::push::{PushEnd, PushId, Pusher};
use super::verify::{Checked, VERIFIED_QUEUE, VerifiedPage, verify_page};
use super::{Actor, MAX_FULL_NODES};
use crate::error::SyncError;
use crate::role::Role;
use crate::sync_codec;
use tokio::sync::mpsc;

/// The encoding of a full-node advert (learned once stored), `None` for other items.
fn advert_bytes(item: &Item) -> Option<Vec<u8>> {
    (item.salt.kind() == Some(dht::SaltKind::Fullnode)).then(|| item.encode())
}

/// Sync sessions running at once (admin requests, join, repair); further requests get
/// [`SyncError::Busy`]. Each has one page (≤ ~8 MiB) in flight.
pub const MAX_ACTIVE_SESSIONS: usize = 4;

/// Finished sessions kept for status queries (oldest dropped first).
pub const MAX_FINISHED_SESSIONS: usize = 32;

/// Saved cursors, one per (full node, salt filter); bounded like the full-node table.
const MAX_CURSORS: usize = MAX_FULL_NODES;

/// Items of a received page put through the acceptance rules per turn of the actor loop: at
/// ~50 µs per signature check a turn costs ~25 ms, so reads, pushes and the next page's transfer
/// proceed while a big sync is ingested. (128 per turn measured 0.83× the node's admission rate
/// in the sync bench, 512 measured 0.95×.)
const INGEST_CHUNK: usize = 512;

/// What a caller asks [`crate::Node::sync`] for.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SyncRequest {
    /// The full node to pull from (ending in `/p2p/<peer id>`); `None`: a known full node.
    pub from: Option<Multiaddr>,
    /// Only this salt.
    pub salt: Option<Salt>,
    /// Ignore the saved cursor and pull everything.
    pub from_start: bool,
    /// Items per page (default and maximum [`wire::MAX_PAGE_ITEMS`]).
    pub page_limit: Option<u16>,
}

/// Why a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Requested through [`crate::Node::sync`].
    Request,
    /// A full node's first full pull.
    Join,
    /// Periodic incremental pull.
    Repair,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Join => "join",
            Kind::Repair => "repair",
        }
    }
}

/// The state of one sync session, for [`crate::Node::sync_status`] and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct SyncStatus {
    /// Session id.
    pub id: u64,
    /// Peer pulled from.
    pub peer: String,
    /// `request`, `join` or `repair`.
    pub kind: &'static str,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// Salt filter, if any (lossy UTF-8).
    pub salt: Option<String>,
    /// Pages received.
    pub pages: u64,
    /// Items received.
    pub items_received: u64,
    /// Items stored (new or replacing).
    pub accepted: u64,
    /// Items already held identically.
    pub unchanged: u64,
    /// Items refused by the acceptance rules.
    pub refused: u64,
    /// Encoded bytes received.
    pub bytes: u64,
    /// Time since the session started (until it finished).
    pub elapsed_ms: u64,
    /// Cursor reached in the peer's change sequence.
    pub cursor: u64,
    /// The peer's last change number at the latest page (progress: `cursor / remote_last_change`).
    pub remote_last_change: u64,
    /// Why it failed.
    pub error: Option<String>,
}

struct Session {
    peer: PeerId,
    kind: Kind,
    puller: Puller,
    started: Instant,
    finished: Option<Instant>,
    request: Option<OutboundRequestId>,
    /// Pages received so far; numbers the page sent to the verification stage.
    page_no: u64,
    /// Received pages waiting for the verification stage (which verifies one page of a session
    /// at a time), with their cursors, in arrival order. At most one by the held-pages bound.
    waiting: VecDeque<(Vec<Item>, SyncCursor)>,
    /// The page being verified: its number and cursor.
    verifying: Option<(u64, SyncCursor)>,
    /// Verified items not yet put into the store. With `waiting` and `verifying`, at most two
    /// pages are held ([`Session::held`]): the next page is requested only while one is.
    backlog: VecDeque<Checked>,
    /// Pages with items in `backlog`.
    backlog_pages: usize,
    /// The cursor to save once the backlog is empty (the last received page's).
    backlog_cursor: Option<SyncCursor>,
    /// The cursor saved after the last fully ingested page (what the status reports).
    saved: SyncCursor,
}

impl Session {
    /// Pages received and not fully ingested (waiting, being verified, in the backlog).
    fn held(&self) -> usize {
        self.waiting.len() + usize::from(self.verifying.is_some()) + self.backlog_pages
    }
}

/// Pages a session holds at most: the next page is requested only while it holds at most one.
const MAX_HELD_PAGES: usize = 2;

#[derive(Default)]
struct Counts {
    accepted: u64,
    unchanged: u64,
    refused: u64,
    invalid: u64,
}

/// Sync state owned by the actor.
pub(super) struct SyncState {
    /// This process's epoch of its store's change sequence (see [`itemsync::wire`]).
    epoch: u64,
    next_id: u64,
    sessions: HashMap<u64, Session>,
    finished: VecDeque<u64>,
    requests: HashMap<OutboundRequestId, u64>,
    cursors: HashMap<(PeerId, Option<Salt>), SyncCursor>,
    joined: bool,
    repair_next: usize,
    /// Push queues and batches in flight.
    pub(super) push: Pusher,
    /// Push requests in flight → our push ids.
    push_requests: HashMap<OutboundRequestId, PushId>,
    /// Peers refused for breaking the protocol.
    penalties: Penalties,
    /// The store's acceptance configuration, for the verification stage.
    verify_cfg: Arc<dht::Config>,
    /// Where the verification stage sends pages back (bounded: [`VERIFIED_QUEUE`]).
    verified_tx: mpsc::Sender<VerifiedPage>,
    verified_rx: mpsc::Receiver<VerifiedPage>,
    /// When a requested or join sync last completed, by its salt filter (`None`: everything).
    /// At most [`MAX_COMPLETE_FILTERS`] filters (the oldest goes).
    complete: HashMap<Option<Salt>, Instant>,
}

/// Salt filters whose last completed sync is remembered (for [`crate::Node::holds_dataset`]).
const MAX_COMPLETE_FILTERS: usize = 16;

impl SyncState {
    pub(super) fn new(epoch: u64, store_cfg: dht::Config, push_queue: usize) -> SyncState {
        let (verified_tx, verified_rx) = mpsc::channel(VERIFIED_QUEUE);
        SyncState {
            verify_cfg: Arc::new(store_cfg),
            verified_tx,
            verified_rx,
            epoch,
            next_id: 1,
            sessions: HashMap::new(),
            finished: VecDeque::new(),
            requests: HashMap::new(),
            cursors: HashMap::new(),
            joined: false,
            repair_next: 0,
            push: Pusher::new(push_queue),
            push_requests: HashMap::new(),
            penalties: Penalties::default(),
            complete: HashMap::new(),
        }
    }

    /// The next page back from the verification stage (never ends: the state holds a sender).
    pub(super) async fn next_verified(&mut self) -> Option<VerifiedPage> {
        self.verified_rx.recv().await
    }

    fn active(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.finished.is_none())
            .count()
    }

    fn is_penalised(&self, peer: &PeerId, now: Instant) -> bool {
        self.penalties.is_penalised(peer, now)
    }

    fn status(&self, id: u64, now: Instant) -> Option<SyncStatus> {
        let s = self.sessions.get(&id)?;
        let p = s.puller.progress();
        let (state, error) = match (s.finished, s.puller.outcome()) {
            (None, _) | (_, None) => ("running", None),
            (_, Some(Ok(()))) => ("done", None),
            (_, Some(Err(e))) => ("failed", Some(e.to_string())),
        };
        let end = s.finished.unwrap_or(now);
        Some(SyncStatus {
            id,
            peer: s.peer.to_string(),
            kind: s.kind.as_str(),
            state,
            salt: s
                .puller
                .salt()
                .map(|x| String::from_utf8_lossy(x.as_bytes()).into_owned()),
            pages: p.pages,
            items_received: p.items,
            accepted: p.accepted,
            unchanged: p.unchanged,
            refused: p.refused,
            bytes: p.bytes,
            elapsed_ms: u64::try_from(end.duration_since(s.started).as_millis())
                .unwrap_or(u64::MAX),
            cursor: s.saved.change,
            remote_last_change: p.remote_last_change,
            error,
        })
    }
}

/// A fresh epoch: this process's start time in ns (never 0, which means "no cursor").
pub(super) fn new_epoch() -> u64 {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    ns.max(1)
}

impl Actor {
    // ---- sessions ---------------------------------------------------------------------------

    /// Starts a session asked for through the handle.
    pub(super) fn sync_request(&mut self, req: SyncRequest) -> Result<u64, SyncError> {
        let (peer, addr) = match &req.from {
            Some(addr) => match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(peer)) => {
                    (peer, Some(super::strip_p2p(addr.clone())))
                }
                _ => return Err(SyncError::Addr { addr: addr.clone() }),
            },
            None => {
                let now = self.now.mono;
                let mut full = self.find_full_nodes();
                full.retain(|p| !self.sync.is_penalised(p, now));
                // Connected ones first.
                full.sort_by_key(|p| !self.swarm.is_connected(p));
                match full.first() {
                    Some(p) => (*p, None),
                    None => return Err(SyncError::NoFullNode),
                }
            }
        };
        self.start_session(peer, addr, req, Kind::Request)
    }

    fn start_session(
        &mut self,
        peer: PeerId,
        addr: Option<Multiaddr>,
        req: SyncRequest,
        kind: Kind,
    ) -> Result<u64, SyncError> {
        if peer == self.local_peer {
            return Err(SyncError::SelfSync);
        }
        if self.sync.is_penalised(&peer, self.now.mono) {
            return Err(SyncError::Penalised { peer });
        }
        if self.sync.active() >= MAX_ACTIVE_SESSIONS {
            return Err(SyncError::Busy {
                max: MAX_ACTIVE_SESSIONS,
            });
        }
        if let Some(a) = addr {
            self.swarm.add_peer_address(peer, a);
        }
        let start = if req.from_start {
            SyncCursor::default()
        } else {
            self.sync
                .cursors
                .get(&(peer, req.salt.clone()))
                .copied()
                .unwrap_or_default()
        };
        let mut cfg = PullConfig::new(start);
        cfg.salt = req.salt;
        if let Some(limit) = req.page_limit {
            cfg.page_limit = limit.clamp(1, wire::MAX_PAGE_ITEMS);
        }
        let id = self.sync.next_id;
        self.sync.next_id += 1;
        tracing::debug!(%peer, id, kind = kind.as_str(), cursor = start.change, "sync session started");
        self.sync.sessions.insert(
            id,
            Session {
                peer,
                kind,
                puller: Puller::new(cfg),
                started: self.now.mono,
                finished: None,
                request: None,
                page_no: 0,
                waiting: VecDeque::new(),
                verifying: None,
                backlog: VecDeque::new(),
                backlog_pages: 0,
                backlog_cursor: None,
                saved: start,
            },
        );
        self.session_step(id);
        Ok(id)
    }

    /// Sends the session's next request if the puller is ready for one, or finishes the
    /// session once the puller is done and everything received is ingested.
    fn session_step(&mut self, id: u64) {
        let Some(s) = self.sync.sessions.get_mut(&id) else {
            return;
        };
        if s.finished.is_some() {
            return;
        }
        if s.puller.is_done() {
            if s.held() == 0 {
                self.finish_session(id);
            }
            return;
        }
        if s.held() >= MAX_HELD_PAGES {
            return;
        }
        // `None`: a request is in flight already.
        if let Some(req) = s.puller.poll_request() {
            let peer = s.peer;
            let rid = self
                .swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, Request::GetItems(req));
            if let Some(s) = self.sync.sessions.get_mut(&id) {
                s.request = Some(rid);
            }
            self.sync.requests.insert(rid, id);
        }
    }

    fn finish_session(&mut self, id: u64) {
        let Some(s) = self.sync.sessions.get_mut(&id) else {
            return;
        };
        if s.finished.is_some() {
            return;
        }
        s.finished = Some(self.now.mono);
        // Late verification results find `verifying` empty and are dropped.
        s.waiting.clear();
        s.verifying = None;
        s.backlog.clear();
        s.backlog_pages = 0;
        if let Some(rid) = s.request.take() {
            self.sync.requests.remove(&rid);
        }
        let ok = matches!(s.puller.outcome(), Some(Ok(())));
        let (peer, kind, progress) = (s.peer, s.kind, s.puller.progress());
        if ok && kind == Kind::Join {
            self.sync.joined = true;
        }
        if ok && kind != Kind::Repair {
            let salt = s.puller.salt().cloned();
            let complete = &mut self.sync.complete;
            if !complete.contains_key(&salt) && complete.len() >= MAX_COMPLETE_FILTERS {
                let oldest = complete
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    complete.remove(&k);
                }
            }
            complete.insert(salt, self.now.mono);
        }
        self.metrics.sync.session(if ok { "ok" } else { "failed" });
        match s.puller.outcome() {
            Some(Err(e)) => {
                tracing::info!(%peer, id, kind = kind.as_str(), error = %e, items = progress.items, "sync session failed")
            }
            _ => {
                tracing::info!(%peer, id, kind = kind.as_str(), items = progress.items, accepted = progress.accepted, "sync session done")
            }
        }
        self.sync.finished.push_back(id);
        while self.sync.finished.len() > MAX_FINISHED_SESSIONS {
            if let Some(old) = self.sync.finished.pop_front() {
                self.sync.sessions.remove(&old);
            }
        }
    }

    /// A sync of everything or of `salt` completed less than `within` ago.
    pub(super) fn synced_within(&self, salt: &Salt, within: Duration) -> bool {
        let c = &self.sync.complete;
        [c.get(&None), c.get(&Some(salt.clone()))]
            .into_iter()
            .flatten()
            .any(|t| self.now.mono.saturating_duration_since(*t) < within)
    }

    pub(super) fn sync_status(&self, id: u64) -> Option<SyncStatus> {
        self.sync.status(id, self.now.mono)
    }

    /// Stops fetching; what was received is still ingested (then the cursor is saved and the
    /// session finishes), so a later session resumes exactly after it.
    pub(super) fn sync_cancel(&mut self, id: u64) -> bool {
        match self.sync.sessions.get_mut(&id) {
            Some(s) if s.finished.is_none() => {
                if !s.puller.is_done() {
                    s.puller.abort(PullError::Cancelled);
                }
                if let Some(rid) = s.request.take() {
                    self.sync.requests.remove(&rid);
                }
                self.session_step(id);
                true
            }
            _ => false,
        }
    }

    fn save_cursor(&mut self, peer: PeerId, salt: Option<Salt>, cursor: SyncCursor) {
        let key = (peer, salt);
        if !self.sync.cursors.contains_key(&key) && self.sync.cursors.len() >= MAX_CURSORS {
            // Forget cursors of peers that are no longer known full nodes first.
            let known: HashSet<PeerId> = self.find_full_nodes().into_iter().collect();
            self.sync.cursors.retain(|(p, _), _| known.contains(p));
            if self.sync.cursors.len() >= MAX_CURSORS {
                return;
            }
        }
        self.sync.cursors.insert(key, cursor);
    }

    /// A full node we just identified: pull everything from it if we never completed a join.
    pub(super) fn maybe_join(&mut self, peer: PeerId) {
        if self.cfg.role != Role::Full || self.sync.joined {
            return;
        }
        let joining = self
            .sync
            .sessions
            .values()
            .any(|s| s.kind == Kind::Join && s.finished.is_none());
        if !joining {
            let _ = self.start_session(peer, None, SyncRequest::default(), Kind::Join);
        }
    }

    /// The sync timer: a join if none completed yet, else an incremental pull from the next
    /// known full node.
    pub(super) fn sync_tick(&mut self) {
        if self.cfg.role != Role::Full {
            return;
        }
        let auto_running = self
            .sync
            .sessions
            .values()
            .any(|s| s.kind != Kind::Request && s.finished.is_none());
        if auto_running {
            return;
        }
        let now = self.now.mono;
        let mut peers = self.find_full_nodes();
        peers.retain(|p| !self.sync.is_penalised(p, now));
        if peers.is_empty() {
            return;
        }
        let peer = peers[self.sync.repair_next % peers.len()];
        self.sync.repair_next = self.sync.repair_next.wrapping_add(1);
        let kind = if self.sync.joined {
            Kind::Repair
        } else {
            Kind::Join
        };
        let _ = self.start_session(peer, None, SyncRequest::default(), kind);
    }

    fn on_page(&mut self, id: u64, page: Page) {
        let Some(s) = self.sync.sessions.get_mut(&id) else {
            return;
        };
        s.request = None;
        let peer = s.peer;
        self.metrics.sync.pages_pulled.inc();
        let items = match s.puller.handle_page(page) {
            Ok(items) => items,
            Err(e) => {
                self.penalise(peer, &e.to_string());
                self.finish_session(id);
                return;
            }
        };
        self.metrics
            .sync
            .items_received
            .get_or_create(&crate::metrics::SourceLabel {
                source: "pull".into(),
            })
            .inc_by(items.len() as u64);
        let cursor = s.puller.cursor();
        s.waiting.push_back((items, cursor));
        self.start_verify(id);
        // Fetch the next page while this one is verified and ingested (at most two held).
        self.session_step(id);
    }

    /// Sends the session's waiting page to the verification stage unless one is there already.
    /// An empty page skips the stage.
    fn start_verify(&mut self, id: u64) {
        let Some(s) = self.sync.sessions.get_mut(&id) else {
            return;
        };
        if s.verifying.is_some() || s.finished.is_some() {
            return;
        }
        let Some((items, cursor)) = s.waiting.pop_front() else {
            return;
        };
        s.page_no += 1;
        let page = s.page_no;
        s.verifying = Some((page, cursor));
        if items.is_empty() {
            self.page_verified(VerifiedPage {
                session: id,
                page,
                items: Some(Vec::new()),
            });
            return;
        }
        // Items we hold identically need no verification (as in `admit`): a hash-map lookup
        // each, on the actor.
        let items: Vec<(Item, bool)> = items
            .into_iter()
            .map(|item| {
                let held = self.store().get(&item.target()).as_ref() == Some(&item);
                (item, held)
            })
            .collect();
        let cfg = Arc::clone(&self.sync.verify_cfg);
        let tx = self.sync.verified_tx.clone();
        tokio::task::spawn_blocking(move || {
            let items =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_page(&cfg, items)))
                    .ok();
            // Fails only when the actor is gone; nothing left to deliver to then.
            let _ = tx.blocking_send(VerifiedPage {
                session: id,
                page,
                items,
            });
        });
    }

    /// A page back from the verification stage: into the session's backlog, if the session
    /// still waits for it.
    pub(super) fn page_verified(&mut self, v: VerifiedPage) {
        let id = v.session;
        let Some(s) = self.sync.sessions.get_mut(&id) else {
            return;
        };
        let cursor = match s.verifying {
            Some((page, cursor)) if page == v.page && s.finished.is_none() => cursor,
            // A finished session's, or a page it no longer waits for: dropped.
            _ => return,
        };
        s.verifying = None;
        let Some(items) = v.items else {
            s.puller.handle_failure("verifying a page failed");
            self.finish_session(id);
            return;
        };
        if items.is_empty() && s.backlog.is_empty() {
            // Nothing to ingest: the page is done now.
            s.saved = cursor;
            let (peer, salt) = (s.peer, s.puller.salt().cloned());
            self.save_cursor(peer, salt, cursor);
        } else {
            s.backlog.extend(items);
            s.backlog_pages += 1;
            s.backlog_cursor = Some(cursor);
        }
        self.start_verify(id);
        self.session_step(id);
    }

    /// True when some session has received items waiting for the acceptance rules.
    pub(super) fn ingest_pending(&self) -> bool {
        self.sync
            .sessions
            .values()
            .any(|s| s.finished.is_none() && !s.backlog.is_empty())
    }

    /// One turn of ingestion: up to [`INGEST_CHUNK`] backlog items of each session through the
    /// acceptance rules.
    pub(super) fn ingest_tick(&mut self) {
        let ids: Vec<u64> = self
            .sync
            .sessions
            .iter()
            .filter(|(_, s)| s.finished.is_none() && !s.backlog.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(s) = self.sync.sessions.get_mut(&id) else {
                continue;
            };
            let n = s.backlog.len().min(INGEST_CHUNK);
            let chunk: Vec<Checked> = s.backlog.drain(..n).collect();
            let peer = s.peer;
            let c = self.ingest_checked(chunk);
            let l = crate::metrics::SourceLabel {
                source: "pull".into(),
            };
            let m = &self.metrics.sync;
            m.items_accepted.get_or_create(&l).inc_by(c.accepted);
            m.items_deduplicated.get_or_create(&l).inc_by(c.unchanged);
            m.items_refused.get_or_create(&l).inc_by(c.refused);
            let Some(s) = self.sync.sessions.get_mut(&id) else {
                continue;
            };
            s.puller.record_ingest(c.accepted, c.unchanged, c.refused);
            if c.invalid > 0 {
                s.puller.abort(PullError::InvalidItems { count: c.invalid });
                self.penalise(peer, "invalid items in a page");
                self.finish_session(id);
                continue;
            }
            if s.backlog.is_empty() {
                s.backlog_pages = 0;
                if let Some(cursor) = s.backlog_cursor.take() {
                    s.saved = cursor;
                    let salt = s.puller.salt().cloned();
                    self.save_cursor(peer, salt, cursor);
                }
                self.session_step(id);
            }
        }
    }

    /// Puts received items through the acceptance rules.
    fn ingest(&mut self, items: Vec<Item>) -> Counts {
        let now = self.now.wall;
        let mut c = Counts::default();
        for item in items {
            let advert = advert_bytes(&item);
            let r = self.store().insert(item, now);
            self.count_ingested(&mut c, r, advert);
        }
        c
    }

    /// Puts items back from the verification stage into the store: a verified item through
    /// [`ItemStore::insert_verified`], any other through the full [`ItemStore::insert`] (which
    /// refuses one that failed verification as it refuses any received item).
    fn ingest_checked(&mut self, items: Vec<Checked>) -> Counts {
        let now = self.now.wall;
        let mut c = Counts::default();
        for checked in items {
            let (advert, r) = match checked {
                Checked::Verified(item) => (
                    advert_bytes(item.item()),
                    self.store().insert_verified(item, now),
                ),
                Checked::Failed(bad) => {
                    let item = bad.item;
                    (advert_bytes(&item), self.store().insert(item, now))
                }
                Checked::Held(item) => (advert_bytes(&item), self.store().insert(item, now)),
            };
            self.count_ingested(&mut c, r, advert);
        }
        c
    }

    fn count_ingested(
        &mut self,
        c: &mut Counts,
        r: Result<PutOutcome, dht::PutError>,
        advert: Option<Vec<u8>>,
    ) {
        match r {
            Ok(PutOutcome::Unchanged { .. }) => c.unchanged += 1,
            Ok(_) => {
                c.accepted += 1;
                if let Some(bytes) = advert {
                    self.learn_advert(&bytes);
                }
            }
            Err(e) => {
                c.refused += 1;
                if matches!(e, dht::PutError::Invalid { .. }) {
                    c.invalid += 1;
                }
            }
        }
    }

    // ---- penalties --------------------------------------------------------------------------

    /// Disconnects `peer` and refuses its sync traffic for [`PENALTY`].
    pub(super) fn penalise(&mut self, peer: PeerId, why: &str) {
        tracing::warn!(%peer, reason = why, "peer penalised");
        self.metrics.sync.peers_penalised.inc();
        self.sync.penalties.penalise(peer, self.now.mono);
        self.sync.push.forget(&peer);
        let running: Vec<u64> = self
            .sync
            .sessions
            .iter()
            .filter(|(_, s)| s.peer == peer && s.finished.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in running {
            if let Some(s) = self.sync.sessions.get_mut(&id)
                && !s.puller.is_done()
            {
                s.puller
                    .abort(PullError::Failed(format!("peer penalised: {why}")));
            }
            self.finish_session(id);
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    // ---- push -------------------------------------------------------------------------------

    /// Queues an accepted write for every other known full node (full nodes only). `source` is
    /// the peer it came from, if any (never sent back to it).
    pub(super) fn forward(&mut self, item: &Item, source: Option<PeerId>) {
        if self.cfg.role != Role::Full {
            return;
        }
        let now = self.now.mono;
        for peer in self.find_full_nodes() {
            if Some(peer) == source || self.sync.is_penalised(&peer, now) {
                continue;
            }
            if !self.sync.push.queue(peer, item.clone()) {
                self.metrics.sync.push_items_dropped.inc();
                continue;
            }
            self.push_flush(peer);
        }
    }

    /// Sends the next batch the pusher has for `peer`, if any.
    fn push_flush(&mut self, peer: PeerId) {
        let Some(batch) = self.sync.push.poll_batch(peer, self.now.mono) else {
            return;
        };
        self.metrics.sync.pushes_sent.inc();
        self.metrics
            .sync
            .push_items_sent
            .inc_by(batch.items.len() as u64);
        let rid = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&batch.peer, Request::Push(batch.items));
        self.sync.push_requests.insert(rid, batch.id);
    }

    fn push_done(&mut self, rid: OutboundRequestId, end: PushEnd) {
        let Some(id) = self.sync.push_requests.remove(&rid) else {
            return;
        };
        let now = self.now.mono;
        let penalties = &self.sync.penalties;
        let Some((peer, dropped)) =
            self.sync
                .push
                .on_done(id, end, |p| penalties.is_penalised(p, now), now)
        else {
            return;
        };
        if dropped > 0 {
            self.metrics.sync.push_items_dropped.inc_by(dropped);
        }
        self.push_flush(peer);
    }

    /// Retries pushes whose pause is over.
    pub(super) fn push_tick(&mut self) {
        for peer in self.sync.push.due(self.now.mono) {
            self.push_flush(peer);
        }
    }

    // ---- events -----------------------------------------------------------------------------

    pub(super) fn on_sync(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = self.serve_sync(peer, request);
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_sync_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let malformed =
                    matches!(&error, OutboundFailure::Io(e) if sync_codec::is_malformed(e));
                if let Some(id) = self.sync.requests.remove(&request_id) {
                    if let Some(s) = self.sync.sessions.get_mut(&id) {
                        s.request = None;
                        s.puller.handle_failure(error.to_string());
                    }
                    self.finish_session(id);
                }
                if malformed {
                    self.penalise(peer, &error.to_string());
                }
                self.push_done(request_id, PushEnd::Failed);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if matches!(&error, InboundFailure::Io(e) if sync_codec::is_malformed(e)) {
                    self.penalise(peer, &error.to_string());
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_sync_response(&mut self, peer: PeerId, rid: OutboundRequestId, response: Response) {
        if let Some(id) = self.sync.requests.remove(&rid) {
            match response {
                Response::Page(page) => self.on_page(id, page),
                Response::Refused(reason) => {
                    if let Some(s) = self.sync.sessions.get_mut(&id) {
                        s.request = None;
                        s.puller.handle_refused(reason);
                    }
                    self.finish_session(id);
                }
                Response::Ack { .. } => {
                    if let Some(s) = self.sync.sessions.get_mut(&id) {
                        s.request = None;
                        s.puller
                            .abort(PullError::Failed("ack for a page request".into()));
                    }
                    self.penalise(peer, "ack for a page request");
                    self.finish_session(id);
                }
            }
            return;
        }
        if !self.sync.push_requests.contains_key(&rid) {
            // The answer to a page request of a cancelled session: dropped unread.
            return;
        }
        match response {
            Response::Ack { .. } => self.push_done(rid, PushEnd::Done),
            Response::Refused(_) => self.push_done(rid, PushEnd::Refused),
            Response::Page(_) => {
                self.push_done(rid, PushEnd::Done);
                self.penalise(peer, "page for a push");
            }
        }
    }

    fn serve_sync(&mut self, peer: PeerId, request: Request) -> Response {
        let now = self.now.mono;
        if self.sync.is_penalised(&peer, now) {
            return Response::Refused(RefuseReason::NotAllowed);
        }
        if !self.sync_limiter.allow(peer, now) {
            return Response::Refused(RefuseReason::RateLimited);
        }
        match request {
            Request::GetItems(g) => self.serve_page(&g),
            Request::Push(items) => {
                if self.cfg.role != Role::Full || !self.find_full_nodes().contains(&peer) {
                    return Response::Refused(RefuseReason::NotAllowed);
                }
                self.metrics.sync.pushes_received.inc();
                let received = items.len() as u64;
                let c = self.ingest(items);
                self.metrics
                    .sync
                    .items("push", received, c.accepted, c.unchanged, c.refused);
                if c.invalid > 0 {
                    self.penalise(peer, "invalid items in a push");
                    return Response::Refused(RefuseReason::NotAllowed);
                }
                let n = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
                Response::Ack {
                    stored: n(c.accepted),
                    duplicate: n(c.unchanged),
                    refused: n(c.refused),
                }
            }
        }
    }

    fn serve_page(&mut self, g: &GetItems) -> Response {
        let epoch = self.sync.epoch;
        match itemsync::serve::page(self.store().backend(), epoch, g) {
            Ok(page) => {
                self.metrics.sync.pages_served.inc();
                Response::Page(page)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the store for a sync page");
                Response::Refused(RefuseReason::BadRequest)
            }
        }
    }
}
