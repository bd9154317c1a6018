//! The pulling side: a sans-io state machine that pages through a remote store.
//!
//! Call order (one request in flight at a time):
//!
//! 1. [`Puller::poll_request`] → `Some(GetItems)`: send it (the driver owns the socket and the
//!    30 s page timeout).
//! 2. The answer arrives: [`Puller::handle_page`] checks the page against the request and returns
//!    its items, **unverified**: the driver must put every one through the acceptance rules
//!    (`dht::Store::put`) and report the verdicts with [`Puller::record_ingest`]. A refusal or a
//!    transport failure goes to [`Puller::handle_refused`] / [`Puller::handle_failure`].
//! 3. Repeat until [`Puller::is_done`]; [`Puller::outcome`] says how it ended.
//!
//! The puller stops, and reports the page as a protocol violation (the driver penalises the
//! peer), when a page makes no progress (`has_more` without items), goes backwards, carries more
//! items than asked for, or would take the session beyond its item budget
//! ([`PullConfig::max_items`]). A page from another epoch (the server restarted) is accepted: the
//! server has served it from the start, and the cursor follows.
//!
//! The cursor after each accepted page ([`Puller::cursor`]) is where a later session resumes, so
//! an interrupted sync transfers nothing twice.
use dht::{Item, Salt};

use crate::wire::{GetItems, MAX_PAGE_ITEMS, Page, RefuseReason};

/// Items one session may receive unless configured otherwise: 4 × the default store capacity
/// (1 M items), far above any honest store, small enough that a server replaying valid items
/// with ever-growing cursors cannot keep a puller busy forever.
pub const DEFAULT_MAX_SESSION_ITEMS: u64 = 4_000_000;

/// A position in a serving store's change sequence (see [`crate::wire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SyncCursor {
    /// Incarnation of the serving store's change sequence (0: none known).
    pub epoch: u64,
    /// Last change number received.
    pub change: u64,
}

/// What a session pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullConfig {
    /// Only this salt (`None`: everything).
    pub salt: Option<Salt>,
    /// Where to start ([`SyncCursor::default`]: from the beginning).
    pub start: SyncCursor,
    /// Items asked per page (clamped to 1..=[`MAX_PAGE_ITEMS`]).
    pub page_limit: u16,
    /// Most items the session accepts from the server (see [`DEFAULT_MAX_SESSION_ITEMS`]).
    pub max_items: u64,
}

impl PullConfig {
    /// Everything from `start`, full pages.
    pub fn new(start: SyncCursor) -> PullConfig {
        PullConfig {
            salt: None,
            start,
            page_limit: MAX_PAGE_ITEMS,
            max_items: DEFAULT_MAX_SESSION_ITEMS,
        }
    }
}

/// Counters of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Pages received.
    pub pages: u64,
    /// Items received.
    pub items: u64,
    /// Encoded bytes of the items received.
    pub bytes: u64,
    /// Items the acceptance rules stored (new or replacing).
    pub accepted: u64,
    /// Items already held identically (no change).
    pub unchanged: u64,
    /// Items the acceptance rules refused.
    pub refused: u64,
    /// The server's last change number at the latest page (progress display).
    pub remote_last_change: u64,
}

/// Why a session stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// The server said `has_more` but sent no items.
    #[error("page made no progress")]
    NoProgress,
    /// The page's cursor went backwards or did not move past its items.
    #[error("page cursor {next} does not follow {previous}")]
    CursorBackwards {
        /// Cursor of the request.
        previous: u64,
        /// Cursor of the page.
        next: u64,
    },
    /// The page carried more items than asked for.
    #[error("page of {got} items for a limit of {limit}")]
    TooManyItems {
        /// Items in the page.
        got: usize,
        /// Limit asked.
        limit: u16,
    },
    /// The session reached [`PullConfig::max_items`].
    #[error("session item budget of {max} exhausted")]
    Budget {
        /// The budget.
        max: u64,
    },
    /// The page carried items that failed the acceptance rules in themselves (bad signature,
    /// value or size), reported by the driver through [`Puller::abort`].
    #[error("{count} invalid items in a page")]
    InvalidItems {
        /// How many.
        count: u64,
    },
    /// The session was cancelled by its owner.
    #[error("cancelled")]
    Cancelled,
    /// A page arrived while none was asked for.
    #[error("unexpected page")]
    Unexpected,
    /// The server refused.
    #[error("refused by the server: {0:?}")]
    Refused(RefuseReason),
    /// The request failed (timeout, connection, malformed answer): described by the driver.
    #[error("request failed: {0}")]
    Failed(String),
}

impl PullError {
    /// True when the server broke the protocol (the driver penalises it).
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            PullError::NoProgress
                | PullError::CursorBackwards { .. }
                | PullError::TooManyItems { .. }
                | PullError::Budget { .. }
                | PullError::InvalidItems { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ready,
    Waiting(GetItems),
    Done(Result<(), PullError>),
}

/// The pulling state machine (see the module doc).
#[derive(Debug, Clone)]
pub struct Puller {
    cfg: PullConfig,
    cursor: SyncCursor,
    state: State,
    progress: Progress,
}

impl Puller {
    /// A session that starts at `cfg.start`.
    pub fn new(cfg: PullConfig) -> Puller {
        Puller {
            cursor: cfg.start,
            cfg,
            state: State::Ready,
            progress: Progress::default(),
        }
    }

    /// The next request to send, if the session is ready for one.
    pub fn poll_request(&mut self) -> Option<GetItems> {
        if self.state != State::Ready {
            return None;
        }
        let req = GetItems {
            salt: self.cfg.salt.clone(),
            epoch: self.cursor.epoch,
            cursor: self.cursor.change,
            limit: self.cfg.page_limit.clamp(1, MAX_PAGE_ITEMS),
        };
        self.state = State::Waiting(req.clone());
        Some(req)
    }

    /// Checks a page against the outstanding request; returns its items for the driver to put
    /// through the acceptance rules. On a violation the session is done with that error.
    pub fn handle_page(&mut self, page: Page) -> Result<Vec<Item>, PullError> {
        let State::Waiting(req) = &self.state else {
            return Err(PullError::Unexpected);
        };
        match check_page(req, &page, &self.progress, self.cfg.max_items) {
            Ok(()) => {}
            Err(e) => {
                self.state = State::Done(Err(e.clone()));
                return Err(e);
            }
        }
        self.progress.pages += 1;
        self.progress.items += page.items.len() as u64;
        self.progress.bytes += page
            .items
            .iter()
            .map(|i| i.encoded_len() as u64)
            .sum::<u64>();
        self.progress.remote_last_change = page.last_change;
        self.cursor = SyncCursor {
            epoch: page.epoch,
            change: page.next_cursor,
        };
        self.state = if page.has_more {
            State::Ready
        } else {
            State::Done(Ok(()))
        };
        Ok(page.items)
    }

    /// Records what the acceptance rules did with a page's items.
    pub fn record_ingest(&mut self, accepted: u64, unchanged: u64, refused: u64) {
        self.progress.accepted += accepted;
        self.progress.unchanged += unchanged;
        self.progress.refused += refused;
    }

    /// The server refused the outstanding request: the session ends.
    pub fn handle_refused(&mut self, reason: RefuseReason) {
        self.state = State::Done(Err(PullError::Refused(reason)));
    }

    /// The outstanding request failed: the session ends; [`Puller::cursor`] is where a new
    /// session resumes.
    pub fn handle_failure(&mut self, why: impl Into<String>) {
        self.state = State::Done(Err(PullError::Failed(why.into())));
    }

    /// Ends the session with `err` (e.g. the driver found invalid items in a page).
    pub fn abort(&mut self, err: PullError) {
        self.state = State::Done(Err(err));
    }

    /// True once the session has ended.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// How the session ended (`None` while it runs).
    pub fn outcome(&self) -> Option<&Result<(), PullError>> {
        match &self.state {
            State::Done(r) => Some(r),
            _ => None,
        }
    }

    /// Where the session is: resume a later session from here.
    pub fn cursor(&self) -> SyncCursor {
        self.cursor
    }

    /// Counters.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// The salt filter.
    pub fn salt(&self) -> Option<&Salt> {
        self.cfg.salt.as_ref()
    }
}

fn check_page(
    req: &GetItems,
    page: &Page,
    progress: &Progress,
    max_items: u64,
) -> Result<(), PullError> {
    if page.items.len() > usize::from(req.limit) {
        return Err(PullError::TooManyItems {
            got: page.items.len(),
            limit: req.limit,
        });
    }
    // Same epoch: the page continues after the request's cursor. Another epoch: the server
    // restarted its sequence and served from the start.
    let previous = if page.epoch == req.epoch {
        req.cursor
    } else {
        0
    };
    if page.items.is_empty() {
        if page.has_more {
            return Err(PullError::NoProgress);
        }
        if page.next_cursor != previous {
            return Err(PullError::CursorBackwards {
                previous,
                next: page.next_cursor,
            });
        }
    } else if page.next_cursor < previous.saturating_add(page.items.len() as u64) {
        // n items changed after `previous` have change numbers ≥ previous + 1 … previous + n.
        return Err(PullError::CursorBackwards {
            previous,
            next: page.next_cursor,
        });
    }
    if progress.items.saturating_add(page.items.len() as u64) > max_items {
        return Err(PullError::Budget { max: max_items });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::serve;
    use dht::{MemoryStore, Store, Timestamp};
    use keys::SecKey;

    fn items(store: &mut MemoryStore, from: u64, n: u64) {
        for i in from..from + n {
            let sk = SecKey::from_seed(format!("pull{i}").as_bytes());
            let it = Item::sign(&sk, Salt::new(&b"s"[..]).unwrap(), 1, vec![7; 8]).unwrap();
            store.put(it, Timestamp::from_unix_millis(1)).unwrap();
        }
    }

    /// Drives a puller against a store until done; returns items received.
    fn drive(p: &mut Puller, src: &MemoryStore, epoch: u64, dst: &mut MemoryStore) -> u64 {
        let mut n = 0;
        while let Some(req) = p.poll_request() {
            let page = serve::page(src, epoch, &req).unwrap();
            let got = p.handle_page(page).unwrap();
            n += got.len() as u64;
            let mut acc = 0;
            for it in got {
                if dst.put(it, Timestamp::from_unix_millis(2)).is_ok() {
                    acc += 1;
                }
            }
            p.record_ingest(acc, 0, 0);
        }
        n
    }

    #[test]
    fn pulls_everything_then_only_changes() {
        let mut src = MemoryStore::new(dht::Config::default());
        items(&mut src, 0, 250);
        let mut dst = MemoryStore::new(dht::Config::default());
        let mut cfg = PullConfig::new(SyncCursor::default());
        cfg.page_limit = 100;
        let mut p = Puller::new(cfg.clone());
        assert_eq!(drive(&mut p, &src, 9, &mut dst), 250);
        assert_eq!(p.outcome(), Some(&Ok(())));
        assert_eq!(p.progress().pages, 3);
        assert_eq!(dst.stats().items, 250);
        // 30 changes later, a session from the saved cursor gets exactly those.
        items(&mut src, 1000, 30);
        cfg.start = p.cursor();
        let mut p2 = Puller::new(cfg.clone());
        assert_eq!(drive(&mut p2, &src, 9, &mut dst), 30);
        assert_eq!(dst.stats().items, 280);
        // The server restarted (new epoch): the next session starts over.
        cfg.start = p2.cursor();
        let mut p3 = Puller::new(cfg);
        assert_eq!(drive(&mut p3, &src, 10, &mut dst), 280);
    }

    #[test]
    fn interrupted_session_resumes() {
        let mut src = MemoryStore::new(dht::Config::default());
        items(&mut src, 0, 100);
        let mut dst = MemoryStore::new(dht::Config::default());
        let mut cfg = PullConfig::new(SyncCursor::default());
        cfg.page_limit = 10;
        let mut p = Puller::new(cfg.clone());
        for _ in 0..4 {
            let req = p.poll_request().unwrap();
            for it in p.handle_page(serve::page(&src, 1, &req).unwrap()).unwrap() {
                dst.put(it, Timestamp::from_unix_millis(2)).unwrap();
            }
        }
        p.poll_request().unwrap();
        p.handle_failure("connection closed");
        assert!(p.is_done());
        assert_eq!(p.cursor().change, 40);
        cfg.start = p.cursor();
        let mut p2 = Puller::new(cfg);
        assert_eq!(drive(&mut p2, &src, 1, &mut dst), 60);
        assert_eq!(dst.stats().items, 100);
    }

    fn page(epoch: u64, next: u64, has_more: bool, n: usize) -> Page {
        let sk = SecKey::from_seed(b"x");
        let it = Item::sign(&sk, Salt::default(), 1, vec![]).unwrap();
        Page {
            epoch,
            next_cursor: next,
            last_change: next.max(100),
            has_more,
            items: vec![it; n],
        }
    }

    #[test]
    fn violations_stop_the_session() {
        let start = SyncCursor {
            epoch: 1,
            change: 50,
        };
        let cases = [
            (page(1, 50, true, 0), PullError::NoProgress),
            (
                page(1, 40, true, 1),
                PullError::CursorBackwards {
                    previous: 50,
                    next: 40,
                },
            ),
            (
                page(1, 51, true, 2),
                PullError::CursorBackwards {
                    previous: 50,
                    next: 51,
                },
            ),
            (
                page(1, 49, false, 0),
                PullError::CursorBackwards {
                    previous: 50,
                    next: 49,
                },
            ),
            (
                page(1, 200, true, 11),
                PullError::TooManyItems { got: 11, limit: 10 },
            ),
        ];
        for (pg, want) in cases {
            let mut cfg = PullConfig::new(start);
            cfg.page_limit = 10;
            let mut p = Puller::new(cfg);
            p.poll_request().unwrap();
            let err = p.handle_page(pg).unwrap_err();
            assert!(err.is_violation());
            assert_eq!(err, want);
            assert!(p.is_done());
            assert_eq!(p.cursor(), start, "cursor untouched by a bad page");
            assert_eq!(p.poll_request(), None);
        }
        // Budget.
        let mut cfg = PullConfig::new(start);
        cfg.max_items = 3;
        let mut p = Puller::new(cfg);
        p.poll_request().unwrap();
        assert!(p.handle_page(page(1, 52, true, 2)).is_ok());
        p.poll_request().unwrap();
        assert_eq!(
            p.handle_page(page(1, 54, true, 2)).unwrap_err(),
            PullError::Budget { max: 3 }
        );
        // A page nobody asked for.
        let mut p = Puller::new(PullConfig::new(start));
        assert_eq!(
            p.handle_page(page(1, 51, false, 1)).unwrap_err(),
            PullError::Unexpected
        );
        // Another epoch restarts from 0 (a fresh server with 1 item is fine).
        let mut p = Puller::new(PullConfig::new(start));
        p.poll_request().unwrap();
        assert_eq!(p.handle_page(page(2, 1, false, 1)).unwrap().len(), 1);
        assert_eq!(
            p.cursor(),
            SyncCursor {
                epoch: 2,
                change: 1
            }
        );
    }
}

#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Signed items for slots `0..8` of 3 keys, seqs 1..=4 (so later ones replace earlier).
    fn pool() -> Vec<Item> {
        let mut v = Vec::new();
        for k in 0..3u8 {
            let sk = keys::SecKey::from_seed(&[b'k', k]);
            for slot in 0..8u8 {
                for seq in 1..=4u64 {
                    let salt = Salt::new(vec![b's', slot]).unwrap();
                    v.push(Item::sign(&sk, salt, seq, vec![k, slot, seq as u8]).unwrap());
                }
            }
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// Writes interleaved with pulls that resume from the saved cursor (random page sizes,
        /// sometimes interrupted): at the end the puller's store equals the source, whatever
        /// the items' seqs — the cursor follows the source's changes, not the seqs.
        #[test]
        fn resumed_pulls_see_every_change(
            ops in proptest::collection::vec((0usize..96, any::<bool>(), 1u16..7, 0usize..4), 1..60)
        ) {
            use dht::{MemoryStore, Store, Timestamp};
            let pool = pool();
            let now = Timestamp::from_unix_millis(1);
            let mut src = MemoryStore::new(dht::Config::default());
            let mut dst = MemoryStore::new(dht::Config::default());
            let mut cursor = SyncCursor::default();
            let sync = |src: &MemoryStore, dst: &mut MemoryStore, cursor: &mut SyncCursor,
                        limit: u16, stop_after: Option<usize>| {
                let mut cfg = PullConfig::new(*cursor);
                cfg.page_limit = limit;
                let mut p = Puller::new(cfg);
                let mut pages = 0;
                while let Some(req) = p.poll_request() {
                    if stop_after == Some(pages) {
                        p.handle_failure("interrupted");
                        break;
                    }
                    let page = crate::serve::page(src, 1, &req).unwrap();
                    for item in p.handle_page(page).unwrap() {
                        let _ = dst.put(item, now);
                    }
                    pages += 1;
                }
                *cursor = p.cursor();
            };
            for (idx, pull, limit, stop) in ops {
                let _ = src.put(pool[idx].clone(), now);
                if pull {
                    sync(&src, &mut dst, &mut cursor, limit, Some(stop));
                }
            }
            sync(&src, &mut dst, &mut cursor, 5, None);
            let all = |s: &MemoryStore| {
                let mut v: Vec<Vec<u8>> = s
                    .list_since(None, dht::Cursor::START, 1000)
                    .unwrap()
                    .items
                    .iter()
                    .map(Item::encode)
                    .collect();
                v.sort();
                v
            };
            prop_assert_eq!(all(&src), all(&dst));
        }
    }

    proptest! {
        /// Whatever pages a server sends, the puller never panics, its cursor within one epoch
        /// never goes backwards, and it never asks again after it is done.
        #[test]
        fn never_panics_never_backwards(pages in proptest::collection::vec(
            (0u64..3, 0u64..2000, any::<bool>(), 0usize..5), 1..40)) {
            let sk = keys::SecKey::from_seed(b"p");
            let it = Item::sign(&sk, Salt::default(), 1, vec![]).unwrap();
            let mut cfg = PullConfig::new(SyncCursor::default());
            cfg.page_limit = 3;
            let mut p = Puller::new(cfg);
            for (epoch, next, more, n) in pages {
                let before = p.cursor();
                if p.poll_request().is_none() {
                    prop_assert!(p.is_done());
                    break;
                }
                let r = p.handle_page(Page { epoch, next_cursor: next, last_change: next,
                    has_more: more, items: vec![it.clone(); n] });
                let after = p.cursor();
                if r.is_err() {
                    prop_assert_eq!(before, after);
                    prop_assert!(p.is_done());
                } else if after.epoch == before.epoch {
                    prop_assert!(after.change >= before.change);
                }
            }
        }
    }
}
