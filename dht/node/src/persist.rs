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
//! - Dropping the [`Persister`] closes the queue and joins the thread after it has drained, so
//!   a restarted node (same process or not) finds everything that was queued.
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use dht::{Cursor, Item, MemoryStore, RedbStore, Store, Timestamp, VerifiedItem};

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
}

/// Handle to the disk thread.
#[derive(Debug)]
pub struct Persister {
    tx: Option<SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
    /// Writes skipped because the queue was full.
    pub dropped: u64,
}

/// Opens the redb store at `path`, loads it into a new memory store, and starts the disk thread.
pub fn open(
    path: &Path,
    cfg: dht::Config,
    now: Timestamp,
) -> Result<(MemoryStore, Persister), dht::BackendError> {
    let disk = RedbStore::open(path, cfg.clone())?;
    let reopen = (path.to_path_buf(), cfg.clone());
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
    tracing::info!(loaded, path = %path.display(), "store loaded");
    let (tx, rx) = sync_channel(PERSIST_QUEUE);
    let thread = std::thread::Builder::new()
        .name("dht-store".into())
        .spawn(move || run(disk, rx, reopen))
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
            thread,
            dropped: 0,
        },
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

    fn send(&mut self, op: Op) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        "store write queue full; write skipped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
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
fn run(disk: RedbStore, rx: Receiver<Op>, (path, cfg): (std::path::PathBuf, dht::Config)) {
    let mut disk = Some(disk);
    while let Ok(first) = rx.recv() {
        let mut batch = Batch::default();
        let mut expire_at = None;
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
        };
        push(first, &mut batch);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => push(op, &mut batch),
                Err(_) => break,
            }
        }
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
            disk = None;
        }
    }
}
