//! Sync pulls as a state machine: the table of GetItems sessions (admin requests, a full node's
//! join, periodic repair), each a [`Puller`] (sans-io paging, from [`itemsync`]) plus the
//! pipeline of pages it holds: *waiting* for the verification stage, being *verified*, and a
//! *backlog* of verified items the actor stores [`INGEST_CHUNK`] at a time. Pure: the actor
//! passes `now`, sends the requests [`Pulls::step`] returns (keyed by our own session ids),
//! runs the verification stage and the store, and reports back.
//!
//! - At most [`MAX_ACTIVE_SESSIONS`] sessions run; each holds at most [`MAX_HELD_PAGES`] pages
//!   (the next page is requested while it holds fewer), of which at most [`MAX_VERIFYING`] are
//!   in the verification stage at once; results are taken back in page order.
//! - The cursor is saved once a page is fully ingested (one per (peer, salt filter), at most
//!   [`MAX_CURSORS`]); a later session resumes from it.
//! - A cancelled session still verifies and ingests what it received; a finished one (done,
//!   failed or penalised) drops it, late verification results included. What is stored stays
//!   and a dropped page's cursor is not saved, so a later session fetches it again (a paging
//!   violation found on arrival may finish a session while the page before is still held).
//! - Finished sessions stay for status queries ([`MAX_FINISHED_SESSIONS`], oldest dropped).
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use dht::{Item, Salt};
use itemsync::wire::{self, GetItems, Page, RefuseReason};
use itemsync::{PullConfig, PullError, Puller, SyncCursor};
use libp2p::PeerId;

use super::full_nodes::MAX_FULL_NODES;
use super::verify::{Checked, VerifiedPage};
use super::{SyncRequest, SyncStatus};
use crate::error::SyncError;

/// Sync sessions running at once (admin requests, join, repair); further requests get
/// [`SyncError::Busy`]. Each holds at most [`MAX_HELD_PAGES`] pages (≤ 4 MiB of items each).
pub const MAX_ACTIVE_SESSIONS: usize = 4;

/// Finished sessions kept for status queries (oldest dropped first).
pub const MAX_FINISHED_SESSIONS: usize = 32;

/// Saved cursors, one per (full node, salt filter); bounded like the full-node table.
const MAX_CURSORS: usize = MAX_FULL_NODES;

/// Pages a session holds at most (received, in the verification stage, being ingested): the
/// next page is requested only while it holds fewer.
const MAX_HELD_PAGES: usize = 3;

/// Pages of a session in the verification stage at once: while one is checked the next is
/// queued there already, so the verifier threads never wait for the actor between pages.
pub(crate) const MAX_VERIFYING: usize = 2;

/// Salt filters whose last completed sync is remembered (for [`crate::Node::holds_dataset`]).
const MAX_COMPLETE_FILTERS: usize = 16;

/// Items of a received page put through the acceptance rules per turn of the actor loop: at
/// ~50 µs per signature check a turn costs ~25 ms, so reads, pushes and the next page's transfer
/// proceed while a big sync is ingested. (128 per turn measured 0.83× the node's admission rate
/// in the sync bench, 512 measured 0.95×.)
pub(crate) const INGEST_CHUNK: usize = 512;

/// Why a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Requested through [`crate::Node::sync`].
    Request,
    /// A full node's first full pull.
    Join,
    /// Periodic incremental pull.
    Repair,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Join => "join",
            Kind::Repair => "repair",
        }
    }
}

struct Session {
    peer: PeerId,
    kind: Kind,
    puller: Puller,
    started: Instant,
    finished: Option<Instant>,
    /// A page request is in flight.
    requesting: bool,
    /// Pages received so far; numbers the page sent to the verification stage.
    page_no: u64,
    /// Received pages waiting for the verification stage (which takes [`MAX_VERIFYING`] pages
    /// of a session at a time), with their cursors, in arrival order.
    waiting: VecDeque<(Vec<Item>, SyncCursor)>,
    /// The pages in the verification stage, in page order: number, cursor and, once back (in
    /// any order), the stage's result (`None` inside: verification itself failed).
    verifying: VecDeque<InStage>,
    /// Verified items not yet put into the store. With `waiting` and `verifying`, at most
    /// [`MAX_HELD_PAGES`] pages are held ([`Session::held`]).
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
        self.waiting.len() + self.verifying.len() + self.backlog_pages
    }
}

/// A page in the verification stage.
struct InStage {
    page: u64,
    cursor: SyncCursor,
    /// The stage's answer once back: `Some(None)` when verification itself failed.
    result: Option<Option<Vec<Checked>>>,
}

/// Verdicts of the store on a chunk of received items.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub accepted: u64,
    pub unchanged: u64,
    pub refused: u64,
    /// Refused because the item is invalid in itself (bad signature, value, size).
    pub invalid: u64,
}

/// A cursor to save: (peer, salt filter) → cursor.
pub(crate) type SaveCursor = (PeerId, Option<Salt>, SyncCursor);

/// What the driver does next for a session.
#[derive(Debug)]
pub(crate) enum Step {
    /// Nothing now (a request in flight, pages held, or the session is over).
    Idle,
    /// Send this page request to `peer`.
    Request { peer: PeerId, req: GetItems },
    /// The session just finished.
    Finished(Finished),
}

/// A session that just finished, for the log and the metrics.
#[derive(Debug)]
pub(crate) struct Finished {
    pub id: u64,
    pub peer: PeerId,
    pub kind: Kind,
    /// The puller completed without error.
    pub ok: bool,
    /// Why it failed, if the puller says so.
    pub error: Option<String>,
    pub items: u64,
    pub accepted: u64,
}

/// What became of a page back from the verification stage.
#[derive(Debug)]
pub(crate) enum Verified {
    /// The session no longer waits for it: dropped.
    Dropped,
    /// Verification itself failed: the session failed (finish it).
    Failed,
    /// Queued for ingestion (or, empty, done at once: save this cursor).
    Queued(Option<SaveCursor>),
}

/// What an ingested chunk means for its session.
#[derive(Debug)]
pub(crate) enum Ingested {
    /// Items invalid in themselves: the session is aborted; penalise the peer, then finish it.
    Invalid(PeerId),
    /// The backlog is empty: save this cursor (if any) and step the session.
    Drained(Option<SaveCursor>),
    /// More items wait.
    More,
}

/// The sync sessions, saved cursors and completed syncs.
#[derive(Default)]
pub(crate) struct Pulls {
    next_id: u64,
    sessions: HashMap<u64, Session>,
    finished: VecDeque<u64>,
    cursors: HashMap<(PeerId, Option<Salt>), SyncCursor>,
    /// A join completed.
    joined: bool,
    repair_next: usize,
    /// When a requested or join sync last completed, by its salt filter (`None`: everything).
    /// At most [`MAX_COMPLETE_FILTERS`] filters (the oldest goes).
    complete: HashMap<Option<Salt>, Instant>,
}

impl Pulls {
    /// Whether session `id` is known (running or kept for status).
    pub fn has(&self, id: u64) -> bool {
        self.sessions.contains_key(&id)
    }

    fn active(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.finished.is_none())
            .count()
    }

    /// Starts a session pulling from `peer` at `now` (the driver has checked the peer is not
    /// us and not penalised), from the saved cursor unless `req.from_start`. Call
    /// [`Pulls::step`] next.
    pub fn start(
        &mut self,
        peer: PeerId,
        req: SyncRequest,
        kind: Kind,
        now: Instant,
    ) -> Result<u64, SyncError> {
        if self.active() >= MAX_ACTIVE_SESSIONS {
            return Err(SyncError::Busy {
                max: MAX_ACTIVE_SESSIONS,
            });
        }
        let start = if req.from_start {
            SyncCursor::default()
        } else {
            self.cursors
                .get(&(peer, req.salt.clone()))
                .copied()
                .unwrap_or_default()
        };
        let mut cfg = PullConfig::new(start);
        cfg.salt = req.salt;
        if let Some(limit) = req.page_limit {
            cfg.page_limit = limit.clamp(1, wire::MAX_PAGE_ITEMS);
        }
        self.next_id += 1;
        let id = self.next_id;
        tracing::debug!(%peer, id, kind = kind.as_str(), cursor = start.change, "sync session started");
        self.sessions.insert(
            id,
            Session {
                peer,
                kind,
                puller: Puller::new(cfg),
                started: now,
                finished: None,
                requesting: false,
                page_no: 0,
                waiting: VecDeque::new(),
                verifying: VecDeque::new(),
                backlog: VecDeque::new(),
                backlog_pages: 0,
                backlog_cursor: None,
                saved: start,
            },
        );
        Ok(id)
    }

    /// The session's next page request if the puller is ready for one and the session holds
    /// at most one page, or its end once the puller is done and everything received is
    /// ingested.
    pub fn step(&mut self, id: u64, now: Instant) -> Step {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Step::Idle;
        };
        if s.finished.is_some() {
            return Step::Idle;
        }
        if s.puller.is_done() {
            if s.held() == 0 {
                return self.finish(id, now).map_or(Step::Idle, Step::Finished);
            }
            return Step::Idle;
        }
        if s.held() >= MAX_HELD_PAGES {
            return Step::Idle;
        }
        // `None`: a request is in flight already.
        match s.puller.poll_request() {
            Some(req) => {
                s.requesting = true;
                Step::Request { peer: s.peer, req }
            }
            None => Step::Idle,
        }
    }

    /// Ends session `id` at `now` (whatever its puller's state) and drops what it holds.
    pub fn finish(&mut self, id: u64, now: Instant) -> Option<Finished> {
        let s = self.sessions.get_mut(&id)?;
        if s.finished.is_some() {
            return None;
        }
        s.finished = Some(now);
        // Late verification results find `verifying` empty and are dropped.
        s.waiting.clear();
        s.verifying.clear();
        s.backlog.clear();
        s.backlog_pages = 0;
        s.requesting = false;
        let ok = matches!(s.puller.outcome(), Some(Ok(())));
        let error = match s.puller.outcome() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        };
        let progress = s.puller.progress();
        let done = Finished {
            id,
            peer: s.peer,
            kind: s.kind,
            ok,
            error,
            items: progress.items,
            accepted: progress.accepted,
        };
        if ok && done.kind == Kind::Join {
            self.joined = true;
        }
        if ok && done.kind != Kind::Repair {
            let salt = s.puller.salt().cloned();
            let complete = &mut self.complete;
            if !complete.contains_key(&salt) && complete.len() >= MAX_COMPLETE_FILTERS {
                let oldest = complete
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    complete.remove(&k);
                }
            }
            complete.insert(salt, now);
        }
        self.finished.push_back(id);
        while self.finished.len() > MAX_FINISHED_SESSIONS {
            if let Some(old) = self.finished.pop_front() {
                self.sessions.remove(&old);
            }
        }
        Some(done)
    }

    /// A sync of everything or of `salt` completed less than `within` before `now`.
    pub fn synced_within(&self, salt: &Salt, within: Duration, now: Instant) -> bool {
        let c = &self.complete;
        [c.get(&None), c.get(&Some(salt.clone()))]
            .into_iter()
            .flatten()
            .any(|t| now.saturating_duration_since(*t) < within)
    }

    /// Stops fetching: what was received is still ingested (then the cursor is saved and the
    /// session finishes), so a later session resumes exactly after it. `true` when it was
    /// running; step it next.
    pub fn cancel(&mut self, id: u64) -> bool {
        match self.sessions.get_mut(&id) {
            Some(s) if s.finished.is_none() => {
                if !s.puller.is_done() {
                    s.puller.abort(PullError::Cancelled);
                }
                s.requesting = false;
                true
            }
            _ => false,
        }
    }

    /// Saves a cursor; past [`MAX_CURSORS`], cursors of peers that are not in `known` (the
    /// known full nodes, asked for only then) are forgotten first.
    pub fn save_cursor(&mut self, save: SaveCursor, known: impl FnOnce() -> Vec<PeerId>) {
        let (peer, salt, cursor) = save;
        let key = (peer, salt);
        if !self.cursors.contains_key(&key) && self.cursors.len() >= MAX_CURSORS {
            let known: std::collections::HashSet<PeerId> = known().into_iter().collect();
            self.cursors.retain(|(p, _), _| known.contains(p));
            if self.cursors.len() >= MAX_CURSORS {
                return;
            }
        }
        self.cursors.insert(key, cursor);
    }

    /// Every saved cursor: (peer, salt filter) → cursor.
    pub fn cursors(&self) -> impl Iterator<Item = (&(PeerId, Option<Salt>), &SyncCursor)> {
        self.cursors.iter()
    }

    /// Restores a cursor saved by an earlier run (at most [`MAX_CURSORS`]).
    pub fn restore_cursor(&mut self, peer: PeerId, salt: Option<Salt>, cursor: SyncCursor) {
        if self.cursors.len() < MAX_CURSORS {
            self.cursors.insert((peer, salt), cursor);
        }
    }

    /// Whether a full node should join now (no join completed and none running).
    pub fn wants_join(&self) -> bool {
        !self.joined
            && !self
                .sessions
                .values()
                .any(|s| s.kind == Kind::Join && s.finished.is_none())
    }

    /// The sync timer: unless a join or repair runs, the next of `peers` (known full nodes not
    /// penalised) to pull from, round robin, and why (a join until one completed).
    pub fn next_auto(&mut self, peers: &[PeerId]) -> Option<(PeerId, Kind)> {
        let auto_running = self
            .sessions
            .values()
            .any(|s| s.kind != Kind::Request && s.finished.is_none());
        if auto_running || peers.is_empty() {
            return None;
        }
        let peer = peers[self.repair_next % peers.len()];
        self.repair_next = self.repair_next.wrapping_add(1);
        let kind = if self.joined {
            Kind::Repair
        } else {
            Kind::Join
        };
        Some((peer, kind))
    }

    /// The page answering session `id`'s request: queued for verification. `Err` (a paging
    /// violation, with the peer): penalise it and finish the session.
    pub fn on_page(&mut self, id: u64, page: Page) -> Result<usize, (PeerId, PullError)> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Ok(0);
        };
        s.requesting = false;
        let items = s.puller.handle_page(page).map_err(|e| (s.peer, e))?;
        let n = items.len();
        let cursor = s.puller.cursor();
        s.waiting.push_back((items, cursor));
        Ok(n)
    }

    /// Session `id`'s request was refused by the peer; finish it next.
    pub fn on_refused(&mut self, id: u64, reason: RefuseReason) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.requesting = false;
            s.puller.handle_refused(reason);
        }
    }

    /// Session `id`'s request failed (`why`), or the session must stop: finish it next.
    pub fn on_failure(&mut self, id: u64, why: String) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.requesting = false;
            s.puller.handle_failure(why);
        }
    }

    /// Aborts session `id` with `err` unless its puller is done already; finish it next.
    pub fn abort(&mut self, id: u64, err: PullError) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.requesting = false;
            if !s.puller.is_done() {
                s.puller.abort(err);
            }
        }
    }

    /// Running sessions pulling from `peer`.
    pub fn running_with(&self, peer: &PeerId) -> Vec<u64> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.peer == *peer && s.finished.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The next page of session `id` for the verification stage (its number and items),
    /// unless `in_stage` (at most [`MAX_VERIFYING`]) are there already.
    pub fn next_to_verify(&mut self, id: u64, in_stage: usize) -> Option<(u64, Vec<Item>)> {
        let s = self.sessions.get_mut(&id)?;
        if s.verifying.len() >= in_stage.min(MAX_VERIFYING) || s.finished.is_some() {
            return None;
        }
        let (items, cursor) = s.waiting.pop_front()?;
        s.page_no += 1;
        s.verifying.push_back(InStage {
            page: s.page_no,
            cursor,
            result: None,
        });
        Some((s.page_no, items))
    }

    /// A page back from the verification stage: kept until the pages before it are back too,
    /// then (in page order) into the session's backlog, if the session still waits for it.
    /// After [`Verified::Queued`], verify the next pages and step.
    pub fn on_verified(&mut self, v: VerifiedPage) -> Verified {
        let Some(s) = self.sessions.get_mut(&v.session) else {
            return Verified::Dropped;
        };
        // A finished session's, or a page it no longer waits for: dropped.
        let slot = s
            .verifying
            .iter_mut()
            .find(|x| x.page == v.page && x.result.is_none());
        let Some(slot) = slot.filter(|_| s.finished.is_none()) else {
            return Verified::Dropped;
        };
        slot.result = Some(v.items);
        let mut save = None;
        while s.verifying.front().is_some_and(|x| x.result.is_some()) {
            let Some(InStage {
                cursor,
                result: Some(items),
                ..
            }) = s.verifying.pop_front()
            else {
                break;
            };
            let Some(items) = items else {
                s.puller.handle_failure("verifying a page failed");
                return Verified::Failed;
            };
            if items.is_empty() && s.backlog.is_empty() {
                // Nothing to ingest: the page is done now.
                s.saved = cursor;
                save = Some((s.peer, s.puller.salt().cloned(), cursor));
            } else {
                s.backlog.extend(items);
                s.backlog_pages += 1;
                s.backlog_cursor = Some(cursor);
            }
        }
        Verified::Queued(save)
    }

    /// Sessions with verified items waiting for the store.
    pub fn ingesting(&self) -> Vec<u64> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.finished.is_none() && !s.backlog.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// True when some session has verified items waiting for the store.
    pub fn ingest_pending(&self) -> bool {
        self.sessions
            .values()
            .any(|s| s.finished.is_none() && !s.backlog.is_empty())
    }

    /// Up to [`INGEST_CHUNK`] items of session `id`'s backlog for the store.
    pub fn take_chunk(&mut self, id: u64) -> Option<Vec<Checked>> {
        let s = self.sessions.get_mut(&id)?;
        let n = s.backlog.len().min(INGEST_CHUNK);
        Some(s.backlog.drain(..n).collect())
    }

    /// The store's verdicts on a chunk of session `id`.
    pub fn on_ingested(&mut self, id: u64, c: Counts) -> Ingested {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Ingested::More;
        };
        s.puller.record_ingest(c.accepted, c.unchanged, c.refused);
        if c.invalid > 0 {
            s.puller.abort(PullError::InvalidItems { count: c.invalid });
            return Ingested::Invalid(s.peer);
        }
        if !s.backlog.is_empty() {
            return Ingested::More;
        }
        s.backlog_pages = 0;
        let save = s.backlog_cursor.take().map(|cursor| {
            s.saved = cursor;
            (s.peer, s.puller.salt().cloned(), cursor)
        });
        Ingested::Drained(save)
    }

    /// The state of session `id` at `now` (`None` when unknown or long finished).
    pub fn status(&self, id: u64, now: Instant) -> Option<SyncStatus> {
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

#[cfg(test)]
mod tests;
