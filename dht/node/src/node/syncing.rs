//! Bulk sync (`/skymesh/sync/1` GetItems pages) and full-node push, driven by the actor.
//!
//! The paging logic is [`itemsync`]'s (sans-io `Puller`, [`itemsync::serve::page`]); the
//! decisions are the pure state machines [`super::pull`] (sessions), [`super::push`] (push
//! queues) and [`super::penalties`]. This file turns them into swarm calls, runs the
//! verification stage ([`super::verify`]) and puts every received item
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
//!      ([`super::verify::VERIFIED_QUEUE`]) that the actor loop polls. Two pages per session are
//!      in the stage at once ([`super::pull::MAX_VERIFYING`]), so the verifier threads go on to
//!      the next page without waiting for the actor; results are taken back in page order;
//!   2. *ingest*: the actor puts the verified backlog into the store [`super::pull::INGEST_CHUNK`] items per
//!      loop turn through [`ItemStore::insert_verified`] (`dht::rules::admit_verified`: seq,
//!      quota, capacity; value and signature are not checked twice), so the swarm keeps serving.
//!      An item that failed verification goes through the full [`ItemStore::insert`] instead,
//!      which refuses it exactly as before (the same error, counted `invalid` when the item is
//!      invalid in itself): the peer is penalised and the session aborted after that chunk;
//!   3. the next page is requested as soon as the session holds fewer than three pages
//!      (received, being verified or being ingested): at most three pages held per session, at
//!      most [`super::pull::MAX_ACTIVE_SESSIONS`] sessions.
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
//!   [`super::penalties::PENALTY`]; the store keeps only what passed the rules.
use std::collections::HashMap;
use std::sync::Arc;

use dht::{Item, PutOutcome, Salt};
use itemsync::PullError;
use itemsync::wire::{Page, Request};
use libp2p::PeerId;
use libp2p::request_response::OutboundRequestId;
use tokio::sync::mpsc;

use super::Actor;
use super::penalties::Penalties;
use super::pull::{Counts, Ingested, Kind, Pulls, Step, Verified};
use super::push::{self, PushEnd, PushId, Pusher};
use super::verify::{Checked, VERIFIED_QUEUE, VerifiedPage, verify_page};
use crate::cursor_file::SavedCursor;
use crate::error::SyncError;
use crate::role::Role;

use super::{SyncRequest, SyncStatus};

/// The encoding of a full-node advert (learned once stored), `None` for other items.
fn advert_bytes(item: &Item) -> Option<Vec<u8>> {
    (item.salt.kind() == Some(dht::SaltKind::Fullnode)).then(|| item.encode())
}

/// Sync state owned by the actor: the pure state machines and the maps from libp2p's request
/// ids to our own ids.
pub(super) struct SyncState {
    /// This process's epoch of its store's change sequence (see [`itemsync::wire`]).
    pub(super) epoch: u64,
    /// Pull sessions, cursors, completed syncs.
    pub(super) pulls: Pulls,
    /// Page requests in flight → session ids.
    pub(super) requests: HashMap<OutboundRequestId, u64>,
    /// Push queues and batches in flight.
    pub(super) push: Pusher,
    /// Push requests in flight → our push ids.
    pub(super) push_requests: HashMap<OutboundRequestId, PushId>,
    /// Peers refused for breaking the protocol.
    pub(super) penalties: Penalties,
    /// The store's acceptance configuration, for the verification stage.
    pub(super) verify_cfg: Arc<dht::Config>,
    /// Verifier threads per page (`Config::verify_threads`; 0: one per core).
    pub(super) verify_threads: usize,
    /// Where the verification stage sends pages back (bounded: [`VERIFIED_QUEUE`]).
    pub(super) verified_tx: mpsc::Sender<VerifiedPage>,
    pub(super) verified_rx: mpsc::Receiver<VerifiedPage>,
}

impl SyncState {
    pub(super) fn new(
        epoch: u64,
        store_cfg: dht::Config,
        push_queue: usize,
        verify_threads: usize,
    ) -> SyncState {
        let (verified_tx, verified_rx) = mpsc::channel(VERIFIED_QUEUE);
        SyncState {
            epoch,
            pulls: Pulls::default(),
            requests: HashMap::new(),
            push: Pusher::new(push_queue),
            push_requests: HashMap::new(),
            penalties: Penalties::default(),
            verify_cfg: Arc::new(store_cfg),
            verify_threads,
            verified_tx,
            verified_rx,
        }
    }

    /// The next page back from the verification stage (never ends: the state holds a sender).
    pub(super) async fn next_verified(&mut self) -> Option<VerifiedPage> {
        self.verified_rx.recv().await
    }

    pub(super) fn is_penalised(&self, peer: &PeerId, now: std::time::Instant) -> bool {
        self.penalties.is_penalised(peer, now)
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
        addr: Option<libp2p::Multiaddr>,
        req: SyncRequest,
        kind: Kind,
    ) -> Result<u64, SyncError> {
        if peer == self.local_peer {
            return Err(SyncError::SelfSync);
        }
        if self.sync.is_penalised(&peer, self.now.mono) {
            return Err(SyncError::Penalised { peer });
        }
        let id = self.sync.pulls.start(peer, req, kind, self.now.mono)?;
        if let Some(a) = addr {
            self.swarm.add_peer_address(peer, a);
        }
        self.session_step(id);
        Ok(id)
    }

    /// Sends the session's next request, or logs its end, as the pull table decides.
    fn session_step(&mut self, id: u64) {
        match self.sync.pulls.step(id, self.now.mono) {
            Step::Idle => {}
            Step::Request { peer, req } => {
                let rid = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, Request::GetItems(req));
                self.sync.requests.insert(rid, id);
            }
            Step::Finished(done) => self.session_finished(done),
        }
    }

    pub(super) fn finish_session(&mut self, id: u64) {
        if let Some(done) = self.sync.pulls.finish(id, self.now.mono) {
            self.session_finished(done);
        }
    }

    fn session_finished(&mut self, done: super::pull::Finished) {
        // A request still in flight is answered into the void.
        self.sync.requests.retain(|_, s| *s != done.id);
        let (peer, id, kind) = (done.peer, done.id, done.kind.as_str());
        self.metrics
            .sync
            .session(if done.ok { "ok" } else { "failed" });
        match &done.error {
            Some(e) => {
                tracing::info!(%peer, id, kind, error = %e, items = done.items, "sync session failed")
            }
            None => {
                tracing::info!(%peer, id, kind, items = done.items, accepted = done.accepted, "sync session done")
            }
        }
    }

    /// A sync of everything or of `salt` completed less than `within` ago.
    pub(super) fn synced_within(&self, salt: &Salt, within: std::time::Duration) -> bool {
        self.sync.pulls.synced_within(salt, within, self.now.mono)
    }

    pub(super) fn sync_status(&self, id: u64) -> Option<SyncStatus> {
        self.sync.pulls.status(id, self.now.mono)
    }

    /// Stops fetching; what was received is still ingested (then the cursor is saved and the
    /// session finishes), so a later session resumes exactly after it.
    pub(super) fn sync_cancel(&mut self, id: u64) -> bool {
        if !self.sync.pulls.cancel(id) {
            return false;
        }
        self.sync.requests.retain(|_, s| *s != id);
        self.session_step(id);
        true
    }

    /// Saves a cursor in the pull table and, with a data directory, on disk once the items
    /// before it are (see [`crate::cursor_file`]).
    fn save_cursor(&mut self, save: super::pull::SaveCursor) {
        let (table, now_ms) = (&self.full_nodes, self.now.unix_ms());
        self.sync.pulls.save_cursor(save, || table.known(now_ms));
        let all = self
            .sync
            .pulls
            .cursors()
            .map(|((peer, salt), c)| SavedCursor::new(peer, salt.as_ref(), *c))
            .collect();
        self.store().save_cursors(all);
    }

    /// Resumes from the cursors the last run saved (a restart does not pull everything again).
    pub(super) fn restore_cursors(&mut self) {
        let saved = self.store().take_cursors_at_open();
        let mut bad = 0;
        for s in saved {
            match s.parse() {
                Some((peer, salt, cursor)) => self.sync.pulls.restore_cursor(peer, salt, cursor),
                None => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!(bad, "saved sync cursors that do not parse were ignored");
        }
    }

    /// A full node we just identified: pull everything from it if we never completed a join.
    pub(super) fn maybe_join(&mut self, peer: PeerId) {
        if self.cfg.role != Role::Full || !self.sync.pulls.wants_join() {
            return;
        }
        let _ = self.start_session(peer, None, SyncRequest::default(), Kind::Join);
    }

    /// The sync timer: a join if none completed yet, else an incremental pull from the next
    /// known full node.
    pub(super) fn sync_tick(&mut self) {
        if self.cfg.role != Role::Full {
            return;
        }
        let now = self.now.mono;
        let mut peers = self.find_full_nodes();
        peers.retain(|p| !self.sync.is_penalised(p, now));
        if let Some((peer, kind)) = self.sync.pulls.next_auto(&peers) {
            let _ = self.start_session(peer, None, SyncRequest::default(), kind);
        }
    }

    pub(super) fn on_page(&mut self, id: u64, page: Page) {
        if !self.sync.pulls.has(id) {
            return;
        }
        self.metrics.sync.pages_pulled.inc();
        match self.sync.pulls.on_page(id, page) {
            Ok(n) => {
                self.metrics
                    .sync
                    .items_received
                    .get_or_create(&crate::metrics::SourceLabel {
                        source: "pull".into(),
                    })
                    .inc_by(n as u64);
                self.start_verify(id);
                // Fetch the next page while this one is verified and ingested (at most two held).
                self.session_step(id);
            }
            Err((peer, e)) => {
                self.penalise(peer, &e.to_string());
                self.finish_session(id);
            }
        }
    }

    /// Sends the session's waiting pages to the verification stage while it has room for them:
    /// [`super::pull::MAX_VERIFYING`] pages, or one when `Config::verify_threads` is 1 (so
    /// verification never takes more than the one thread the operator allowed).
    fn start_verify(&mut self, id: u64) {
        let in_stage = if self.sync.verify_threads == 1 {
            1
        } else {
            super::pull::MAX_VERIFYING
        };
        while let Some((page, items)) = self.sync.pulls.next_to_verify(id, in_stage) {
            self.verify_one(id, page, items);
        }
    }

    /// Sends page `page` of session `id` to the verification stage. An empty page skips it.
    fn verify_one(&mut self, id: u64, page: u64, items: Vec<Item>) {
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
        let threads = self.sync.verify_threads;
        tokio::task::spawn_blocking(move || {
            let items = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                verify_page(&cfg, items, threads)
            }))
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
        match self.sync.pulls.on_verified(v) {
            Verified::Dropped => {}
            Verified::Failed => self.finish_session(id),
            Verified::Queued(save) => {
                if let Some(save) = save {
                    self.save_cursor(save);
                }
                self.start_verify(id);
                self.session_step(id);
            }
        }
    }

    /// Whether to ingest this turn, and whether received items wait for room in the store's
    /// disk queue (a turn ingests up to [`super::pull::INGEST_CHUNK`] items of each session, so
    /// it needs that much room per session: a sync's writes are never skipped on their way to
    /// disk, which its saved cursor relies on).
    pub(super) fn ingest_state(&mut self) -> (bool, bool) {
        if !self.sync.pulls.ingest_pending() {
            return (false, false);
        }
        let need = super::pull::INGEST_CHUNK * super::pull::MAX_ACTIVE_SESSIONS;
        let room = self.store().room() >= need;
        (room, !room)
    }

    /// One turn of ingestion: up to [`super::pull::INGEST_CHUNK`] backlog items of each session
    /// through the acceptance rules.
    pub(super) fn ingest_tick(&mut self) {
        for id in self.sync.pulls.ingesting() {
            let Some(chunk) = self.sync.pulls.take_chunk(id) else {
                continue;
            };
            let c = self.ingest_checked(chunk);
            let l = crate::metrics::SourceLabel {
                source: "pull".into(),
            };
            let m = &self.metrics.sync;
            m.items_accepted.get_or_create(&l).inc_by(c.accepted);
            m.items_deduplicated.get_or_create(&l).inc_by(c.unchanged);
            m.items_refused.get_or_create(&l).inc_by(c.refused);
            match self.sync.pulls.on_ingested(id, c) {
                Ingested::Invalid(peer) => {
                    self.penalise(peer, "invalid items in a page");
                    self.finish_session(id);
                }
                Ingested::Drained(save) => {
                    if let Some(save) = save {
                        self.save_cursor(save);
                    }
                    self.session_step(id);
                }
                Ingested::More => {}
            }
        }
    }

    /// Puts received items through the acceptance rules.
    pub(super) fn ingest(&mut self, items: Vec<Item>) -> Counts {
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

    /// Disconnects `peer`, refuses its sync traffic for [`super::penalties::PENALTY`], drops
    /// its push queue and ends its sessions.
    pub(super) fn penalise(&mut self, peer: PeerId, why: &str) {
        tracing::warn!(%peer, reason = why, "peer penalised");
        self.metrics.sync.peers_penalised.inc();
        self.sync.penalties.penalise(peer, self.now.mono);
        self.sync.push.forget(&peer);
        for id in self.sync.pulls.running_with(&peer) {
            self.sync
                .pulls
                .abort(id, PullError::Failed(format!("peer penalised: {why}")));
            self.finish_session(id);
        }
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// Queues an accepted write for every other known full node (full nodes only). `source` is
    /// the non-full peer it came from, if any (never sent back to it): such a write is pushed
    /// only if this node is one of its [`push::FORWARDERS`] (the putter sent it to every full
    /// node it reaches already).
    pub(super) fn forward(&mut self, item: &Item, source: Option<PeerId>) {
        if self.cfg.role != Role::Full {
            return;
        }
        let now = self.now.mono;
        let full = self.find_full_nodes();
        if source.is_some() {
            let key = crate::store::record_key(&item.target());
            if !push::is_forwarder(key.as_ref(), &self.local_peer, &full) {
                return;
            }
        }
        for peer in full {
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

    pub(super) fn push_done(&mut self, rid: OutboundRequestId, end: PushEnd) {
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
}
