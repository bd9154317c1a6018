//! The store abstraction: put (through [`crate::rules::admit`], or
//! [`crate::rules::admit_verified`] for a [`VerifiedItem`]), get by target, list in change
//! order from a cursor, expiry, quotas and capacity. Backends: [`MemoryStore`] and
//! [`RedbStore`] (the persistent default).
//!
//! # Synchronous on purpose
//!
//! The API is synchronous: libp2p kad's `RecordStore` is synchronous and is called from inside
//! the swarm's poll loop, so a store must answer from local state without awaiting. The later
//! Redis backend will therefore be a *sync cache fed from outside*: a task subscribes to Redis
//! (keyspace notifications / a change stream written by the mirror) and pushes items into a
//! local store through a bounded channel via the same `put`, so every item still passes
//! [`crate::rules::admit`] and the swarm never blocks on the network. An async trait would force
//! a second copy of the rules on the kad side or block the swarm.
//!
//! # Change sequence and cursors
//!
//! Every accepted write (insert or replace; not a refresh) gets the store's next change number,
//! strictly increasing and never reused. [`Store::list_since`] returns items in change order
//! after a cursor; an item replaced later moves to its new position. A reader that pages until
//! `has_more == false` and later resumes from its last `next_cursor` sees every item written
//! since, whatever its seq (a new publisher's item with a tiny seq included): the cursor orders
//! *this store's writes*, not publishers' seqs. Cursors are per store; they mean nothing to
//! another store.
//!
//! # Events
//!
//! [`Store::put`] returns a [`PutOutcome`] and [`Store::expire`] the list of expired items; each
//! converts into a [`StoreEvent`] for sync, mirror and metrics consumers.

mod memory;
mod redb_store;

pub use memory::MemoryStore;
pub use redb_store::RedbStore;

use keys::PubKey;

use crate::config::Config;
use crate::error::{BackendError, PutError};
use crate::item::{Item, Target};
use crate::rules::VerifiedItem;
use crate::salt::Salt;
use crate::time::Timestamp;

/// Largest page [`Store::list_since`] returns; larger limits are clamped, 0 counts as 1. 1000 is
/// the Go `GetItems` default; at up to 64 KiB per item the sync layer must add its own byte
/// budget per page on top of this count.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Position in a store's change sequence. [`Cursor::START`] lists from the beginning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor(u64);

impl Cursor {
    /// Before the first change.
    pub const START: Cursor = Cursor(0);

    /// From its wire form.
    pub const fn from_u64(v: u64) -> Cursor {
        Cursor(v)
    }

    /// Its wire form.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// One page of [`Store::list_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items in change order.
    pub items: Vec<Item>,
    /// Resume from here (the change number of the last item, or the request cursor when empty).
    pub next_cursor: Cursor,
    /// More matching items exist after `next_cursor`.
    pub has_more: bool,
}

/// What an accepted put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new target was stored.
    Inserted {
        /// The target.
        target: Target,
        /// Its change number.
        change: Cursor,
    },
    /// A higher seq replaced the stored item.
    Replaced {
        /// The target.
        target: Target,
        /// Its new change number.
        change: Cursor,
        /// Seq of the replaced item.
        previous_seq: u64,
    },
    /// The identical item was stored; only its TTL was refreshed.
    Unchanged {
        /// The target.
        target: Target,
    },
}

impl PutOutcome {
    /// The event to publish, `None` for a refresh.
    pub fn event(&self, item: &Item) -> Option<StoreEvent> {
        match *self {
            PutOutcome::Inserted { target, change } => Some(StoreEvent::Accepted {
                target,
                change,
                pk: item.pk,
                salt: item.salt.clone(),
                seq: item.seq,
            }),
            PutOutcome::Replaced {
                target,
                change,
                previous_seq,
            } => Some(StoreEvent::Replaced {
                target,
                change,
                pk: item.pk,
                salt: item.salt.clone(),
                seq: item.seq,
                previous_seq,
            }),
            PutOutcome::Unchanged { .. } => None,
        }
    }
}

/// An item removed by [`Store::expire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Its target.
    pub target: Target,
    /// Its subject key.
    pub pk: PubKey,
    /// Its salt.
    pub salt: Salt,
    /// Its seq.
    pub seq: u64,
}

/// A change to a store, for sync, mirror and metrics consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// A new target was stored.
    Accepted {
        /// Target.
        target: Target,
        /// Change number.
        change: Cursor,
        /// Subject key.
        pk: PubKey,
        /// Salt.
        salt: Salt,
        /// Seq.
        seq: u64,
    },
    /// A stored item was replaced by a higher seq.
    Replaced {
        /// Target.
        target: Target,
        /// New change number.
        change: Cursor,
        /// Subject key.
        pk: PubKey,
        /// Salt.
        salt: Salt,
        /// New seq.
        seq: u64,
        /// Replaced seq.
        previous_seq: u64,
    },
    /// An item expired.
    Expired {
        /// Target.
        target: Target,
        /// Subject key.
        pk: PubKey,
        /// Salt.
        salt: Salt,
        /// Seq.
        seq: u64,
    },
}

impl From<Expired> for StoreEvent {
    fn from(e: Expired) -> StoreEvent {
        StoreEvent::Expired {
            target: e.target,
            pk: e.pk,
            salt: e.salt,
            seq: e.seq,
        }
    }
}

/// Counters of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Items stored.
    pub items: u64,
    /// Encoded bytes stored.
    pub bytes: u64,
    /// Last change number issued.
    pub last_change: Cursor,
}

/// The batch puts' default: `put` each item in turn; a backend failure ends the batch with
/// that error, any other verdict is the item's.
fn one_by_one<T>(
    items: Vec<T>,
    mut put: impl FnMut(T) -> Result<PutOutcome, PutError>,
) -> Result<Vec<Result<PutOutcome, PutError>>, BackendError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match put(item) {
            Err(PutError::Backend(e)) => return Err(e),
            r => out.push(r),
        }
    }
    Ok(out)
}

/// A store of signed items. Synchronous by design (see the module doc). Object safe.
pub trait Store {
    /// The configuration the store applies.
    fn config(&self) -> &Config;

    /// Stores `item` if [`crate::rules::admit`] accepts it; `now` becomes its refresh time.
    /// When this returns `Ok`, the write is as durable as the backend promises (fsync'd for
    /// [`RedbStore`]).
    fn put(&mut self, item: Item, now: Timestamp) -> Result<PutOutcome, PutError>;

    /// [`Store::put`] for an item [`crate::rules::verify`] already checked: the same decision
    /// through [`crate::rules::admit_verified`] (value and signature not checked again), the same
    /// writes and durability.
    fn put_verified(&mut self, item: VerifiedItem, now: Timestamp) -> Result<PutOutcome, PutError>;

    /// [`Store::put_batch`] for verified items ([`Store::put_verified`] each).
    fn put_batch_verified(
        &mut self,
        items: Vec<VerifiedItem>,
        now: Timestamp,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, BackendError> {
        one_by_one(items, |item| self.put_verified(item, now))
    }

    /// Puts several items; each gets its own verdict. Backends may commit them together (one
    /// fsync for the batch in [`RedbStore`]); an `Err` means nothing of the batch is durable.
    fn put_batch(
        &mut self,
        items: Vec<Item>,
        now: Timestamp,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, BackendError> {
        one_by_one(items, |item| self.put(item, now))
    }

    /// The item at `target`, if any (expired items are visible until [`Store::expire`] runs).
    fn get(&self, target: &Target) -> Result<Option<Item>, BackendError>;

    /// Up to `limit` (clamped to 1..=[`MAX_LIST_LIMIT`]) items with `salt` (all salts when
    /// `None`) changed after `cursor`, in change order.
    fn list_since(
        &self,
        salt: Option<&Salt>,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page, BackendError>;

    /// Removes every item not put or refreshed within [`Config::ttl`] before `now`.
    fn expire(&mut self, now: Timestamp) -> Result<Vec<Expired>, BackendError>;

    /// Counters.
    fn stats(&self) -> StoreStats;
}

/// Cuts `hits` (up to `limit + 1` `(change, target)` pairs read after `cursor`) to one page:
/// returns the next cursor and whether more changes follow. Shared by every backend so that
/// paging means the same everywhere.
pub(crate) fn cut_page(
    hits: &mut Vec<(u64, Target)>,
    limit: usize,
    cursor: Cursor,
) -> (Cursor, bool) {
    let has_more = hits.len() > limit;
    hits.truncate(limit);
    let next = hits.last().map_or(cursor, |(c, _)| Cursor::from_u64(*c));
    (next, has_more)
}

pub(crate) fn clamp_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_LIST_LIMIT)
}
