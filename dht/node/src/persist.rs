//! Write-behind persistence: the swarm loop never waits on the disk.
//!
//! The kad `RecordStore` is synchronous and called from the swarm task, and a redb put is an
//! fsync'd transaction. So the node serves from a [`dht::MemoryStore`] (every item passes
//! [`dht::rules::admit`] there) and hands each accepted write to a dedicated thread that owns the
//! [`dht::RedbStore`] and commits in batches ([`dht::Store::put_batch`], one fsync per batch).
//!
//! - At open, every persisted item is read back and re-admitted into memory (signatures are
//!   checked again, so a damaged or foreign file cannot inject items).
//! - The queue to the thread is bounded ([`PERSIST_QUEUE`]); when it is full the write is skipped
//!   and counted (the item stays served from memory and is persisted on its next refresh — owners
//!   republish every 30 min), so a slow disk costs durability of a burst, never the swarm loop.
//! - Expiry runs on both stores with the same `now` and TTL.
//! - Sync cursors ([`crate::cursor_file`]) go through the same queue: the thread writes the
//!   cursor file only after committing every item queued before it, and stops saving cursors
//!   (until the next start) once any write was skipped or failed, so a saved cursor never points
//!   past an item missing from the disk. A sync's ingestion waits for room in the queue
//!   ([`Persister::room`]) instead of having its writes skipped.
//! - Dropping the [`Persister`] closes the queue and joins the thread after it has drained, so
//!   a restarted node (same process or not) finds everything that was queued.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use dht::{Cursor, Item, MemoryStore, RedbStore, Store, Timestamp, VerifiedItem};

use crate::cursor_file::{self, SavedCursor};

/// Writes queued for the disk thread: 4096 items × ≤ 64 KiB values bounds the queue at 256 MiB
/// in the worst case, a few MiB for real items; at ~1 ms per batch fsync the thread drains it in
/// well under a second.
pub const PERSIST_QUEUE: usize = 4096;

/// Most items committed in one redb transaction.
const MAX_BATCH: usize = 256;

enum Op {
    Put(Item, Timestamp),
    /// An item [`dht::rules::verify`] checked: committed through
    /// [`Store::put_batch_verified`], without a second signature check.
    PutVerified(VerifiedItem, Timestamp),
    Expire(Timestamp),
    /// Every sync cursor, to write once what was queued before is committed.
    Cursors(Vec<SavedCursor>),
}

/// What the node side and the disk thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Operations queued and not yet taken by the thread.
    queued: AtomicUsize,
    /// A write was skipped or failed: cursors are no longer saved in this process.
    unsaved: AtomicBool,
}

impl Shared {
    fn mark_unsaved(&self, why: &str) {
        if !self.unsaved.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                why,
                "sync cursors are no longer saved until restart; the next start pulls again from the last saved cursor"
            );
        }
    }
}

/// Handle to the disk thread.
#[derive(Debug)]
pub struct Persister {
    tx: Option<SyncSender<Op>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Writes skipped because the queue was full.
    pub dropped: u64,
}

/// What [`open`] returns: the loaded memory store, the disk thread's handle, and the sync
/// cursors saved next to the store (none for a new store file).
pub type Opened = (MemoryStore, Persister, Vec<SavedCursor>);

/// Opens the redb store at `path`, loads it into a new memory store, reads the saved sync
/// cursors, and starts the disk thread.
pub fn open(path: &Path, cfg: dht::Config, now: Timestamp) -> Result<Opened, dht::BackendError> {
    let cursors_path = cursor_file::path_next_to(path);
    let cursors = if path.exists() {
        cursor_file::load(&cursors_path)
    } else {
        // A new store holds nothing: cursors left from an old one would skip its items.
        cursor_file::remove(&cursors_path);
        Vec::new()
    };
    let disk = RedbStore::open(path, cfg.clone())?;
    let files = Files {
        store: path.to_path_buf(),
        cursors: cursors_path,
        cfg: cfg.clone(),
    };
    let mut mem = MemoryStore::new(cfg);
    let mut cursor = Cursor::START;
    let mut loaded = 0usize;
    loop {
        let page = disk.list_since(None, cursor, dht::store::MAX_LIST_LIMIT)?;
        let more = page.has_more && !page.items.is_empty();
        cursor = page.next_cursor;
        for r in mem.put_batch(page.items, now)? {
            if r.is_ok() {
                loaded += 1;
            }
        }
        if !more {
            break;
        }
    }
    tracing::info!(loaded, cursors = cursors.len(), path = %path.display(), "store loaded");
    let (tx, rx) = sync_channel(PERSIST_QUEUE);
    let shared = Arc::new(Shared::default());
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("dht-store".into())
        .spawn(move || run(disk, rx, files, &thread_shared))
        .map_err(|e| {
            tracing::error!(error = %e, "cannot start the store thread");
            e
        });
    // Without a thread nothing is persisted, but the node still serves from memory.
    let thread = thread.ok();
    Ok((
        mem,
        Persister {
            tx: thread.as_ref().map(|_| tx),
            shared,
            thread,
            dropped: 0,
        },
        cursors,
    ))
}

impl Persister {
    /// Queues an accepted item for the disk.
    pub fn put(&mut self, item: Item, now: Timestamp) {
        self.send(Op::Put(item, now));
    }

    /// Queues an accepted, verified item for the disk.
    pub fn put_verified(&mut self, item: VerifiedItem, now: Timestamp) {
        self.send(Op::PutVerified(item, now));
    }

    /// Queues an expiry sweep of the disk store.
    pub fn expire(&mut self, now: Timestamp) {
        self.send(Op::Expire(now));
    }

    /// Queues every sync cursor, written once the items queued before are on disk (a full
    /// queue skips this save only; the next one carries the cursors again).
    pub fn save_cursors(&mut self, cursors: Vec<SavedCursor>) {
        if self.shared.unsaved.load(Ordering::Acquire) {
            return;
        }
        if let Some(tx) = &self.tx {
            self.shared.queued.fetch_add(1, Ordering::AcqRel);
            if tx.try_send(Op::Cursors(cursors)).is_err() {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Writes the queue takes now without skipping any ([`PERSIST_QUEUE`] minus those queued).
    pub fn room(&self) -> usize {
        PERSIST_QUEUE.saturating_sub(self.shared.queued.load(Ordering::Acquire))
    }

    fn send(&mut self, op: Op) {
        let Some(tx) = &self.tx else {
            return;
        };
        // Counted before sending: the thread may take it (and count it down) at once.
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        match tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.shared
                    .mark_unsaved("a store write was skipped (queue full)");
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        "store write queue full; write skipped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.shared.mark_unsaved("the store thread is gone");
                tracing::error!("store thread gone; writes are no longer persisted");
                self.tx = None;
            }
        }
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Items of one disk batch, in queue order: received items (checked again by
/// [`Store::put_batch`]) and verified ones ([`Store::put_batch_verified`]) are committed in two
/// transactions, received first. Order between the two only matters for the same target, where
/// the seq rule keeps the higher seq whatever the order (the memory store admitted both).
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    verified: Vec<VerifiedItem>,
}

impl Batch {
    fn len(&self) -> usize {
        self.items.len() + self.verified.len()
    }
}

/// The disk thread. After a failed write (e.g. the disk is full) redb refuses every later one
/// until the database is reopened (`PreviousIo`), so the store is dropped and reopened before the
/// next batch: once space returns, writes are persisted again (tests/tests/chaos/disk_full.rs).
/// The failed batch stays served from memory only (persisted on its next refresh).
fn run(disk: RedbStore, rx: Receiver<Op>, files: Files, shared: &Shared) {
    let Files {
        store: path,
        cursors: cursors_path,
        cfg,
    } = files;
    let mut disk = Some(disk);
    while let Ok(first) = rx.recv() {
        let mut batch = Batch::default();
        let mut expire_at = None;
        let mut cursors = None;
        let mut batch_now = Timestamp::default();
        let mut push = |op: Op, batch: &mut Batch| match op {
            Op::Put(item, now) => {
                batch_now = batch_now.max(now);
                batch.items.push(item);
            }
            Op::PutVerified(item, now) => {
                batch_now = batch_now.max(now);
                batch.verified.push(item);
            }
            Op::Expire(now) => expire_at = Some(now),
            // The latest wins: it covers everything queued before it.
            Op::Cursors(c) => cursors = Some(c),
        };
        push(first, &mut batch);
        let mut taken = 1;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => {
                    push(op, &mut batch);
                    taken += 1;
                }
                Err(_) => break,
            }
        }
        shared.queued.fetch_sub(taken, Ordering::AcqRel);
        if disk.is_none() {
            disk = RedbStore::open(&path, cfg.clone())
                .inspect_err(|e| tracing::error!(error = %e, "reopening the store failed"))
                .ok();
        }
        let Some(store) = disk.as_mut() else {
            tracing::error!(
                writes = batch.len(),
                "store unavailable; batch not persisted"
            );
            if batch.len() > 0 {
                shared.mark_unsaved("the store is unavailable");
            }
            continue;
        };
        let mut failed = false;
        if !batch.items.is_empty()
            && let Err(e) = store.put_batch(batch.items, batch_now)
        {
            tracing::error!(error = %e, "store batch write failed");
            failed = true;
        }
        if !batch.verified.is_empty()
            && let Err(e) = store.put_batch_verified(batch.verified, batch_now)
        {
            tracing::error!(error = %e, "store batch write failed");
            failed = true;
        }
        if let Some(now) = expire_at
            && let Err(e) = store.expire(now)
        {
            tracing::error!(error = %e, "store expiry failed");
            failed = true;
        }
        if failed {
            shared.mark_unsaved("a store write failed");
            disk = None;
        }
        // Everything queued before these cursors is committed (this batch and the ones before).
        if let Some(c) = cursors
            && !shared.unsaved.load(Ordering::Acquire)
            && let Err(e) = cursor_file::save(&cursors_path, &c)
        {
            tracing::warn!(error = %e, "saving sync cursors failed");
        }
    }
}

/// The files the disk thread writes.
struct Files {
    store: PathBuf,
    cursors: PathBuf,
    cfg: dht::Config,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(change: u64) -> Vec<SavedCursor> {
        vec![SavedCursor {
            peer: "peer".into(),
            salt: None,
            epoch: 1,
            change,
        }]
    }

    fn now() -> Timestamp {
        crate::store::now()
    }

    #[test]
    fn cursors_are_saved_behind_the_items_and_read_back_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.redb");
        let items = crate::testing::signed_items("persist", 50, 1, 16);
        {
            let (_, mut p, c) = open(&path, dht::Config::default(), now()).unwrap();
            assert!(c.is_empty());
            assert_eq!(p.room(), PERSIST_QUEUE);
            for i in &items {
                p.put(i.clone(), now());
            }
            p.save_cursors(cursor(50));
        }
        let (mem, _p, c) = open(&path, dht::Config::default(), now()).unwrap();
        assert_eq!(mem.stats().items, 50);
        assert_eq!(c, cursor(50));
    }

    #[test]
    fn no_cursor_is_saved_after_a_skipped_write_nor_kept_for_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.redb");
        {
            let (_, mut p, _) = open(&path, dht::Config::default(), now()).unwrap();
            p.save_cursors(cursor(10));
        }
        {
            let (_, mut p, c) = open(&path, dht::Config::default(), now()).unwrap();
            assert_eq!(c, cursor(10));
            // As when the queue was full: a later cursor could point past the skipped item.
            p.shared.mark_unsaved("test");
            p.save_cursors(cursor(20));
        }
        let (_, p, c) = open(&path, dht::Config::default(), now()).unwrap();
        assert_eq!(c, cursor(10), "the cursor saved before the skip stays");
        drop(p);
        // The store file is gone (a new data directory, a wiped store): its cursors go too.
        std::fs::remove_file(&path).unwrap();
        let (_, _p, c) = open(&path, dht::Config::default(), now()).unwrap();
        assert!(c.is_empty());
        assert!(!cursor_file::path_next_to(&path).exists());
    }
}
