//! The node's item store seen from libp2p kad: a `RecordStore` over the dht crate's [`Store`].
//!
//! Every record that enters goes through [`dht::rules::admit`] (inside [`Store::put`]), or, for
//! sync pages verified off the actor, [`dht::rules::verify`] then [`dht::rules::admit_verified`]
//! ([`ItemStore::insert_verified`]); kad's own insertion paths are closed:
//!
//! - inbound PutRecord: `StoreInserts::FilterBoth` hands the record to the actor, which checks
//!   it ([`ItemStore::check`]) and calls [`ItemStore::insert`];
//! - caching of lookup results, replication and republication are off in the kad config, so
//!   [`RecordStore::records`] can be empty (the owner republishes instead, see `node.rs`);
//! - `put_record` (which stores locally first) is never called; the node uses `put_record_to`.
//!
//! Provider records are not used by skymesh and are refused.
//!
//! Reads (`get`) answer kad's inbound GetRecord from the local store. The store the swarm loop
//! touches is always a [`MemoryStore`]; with a data directory, accepted writes go to the redb file
//! through the write-behind disk thread of [`crate::persist`], so the swarm loop never waits on
//! disk or network I/O.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use dht::{
    Cursor, Item, MemoryStore, PutError, PutOutcome, Salt, Store, Target, Timestamp, VerifiedItem,
};
use keys::PubKey;

use crate::cursor_file::SavedCursor;
use crate::persist::Persister;
use libp2p::kad::store::{self, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};

/// Why bytes offered as a record are not an acceptable item for the key they came under.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The record key is not a 32-byte target.
    #[error("record key is {len} bytes, not a 32-byte target")]
    KeyLength {
        /// Length of the key.
        len: usize,
    },
    /// The value does not decode as an item.
    #[error("not an item: {0}")]
    Decode(#[from] dht::DecodeError),
    /// The item belongs to another target than the one asked for (a foreign item).
    #[error("item for {found} returned for {asked}")]
    WrongTarget {
        /// Target asked for.
        asked: Target,
        /// Target of the item.
        found: Target,
    },
    /// The item is invalid in itself (size, writer, value, signature).
    #[error("invalid item: {0}")]
    Invalid(#[from] dht::InvalidItem),
}

/// What [`ItemStore::digest`] returns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreDigest {
    /// Items stored.
    pub items: u64,
    /// Wrapping sum of the first 128 bits of SHA-256 of every item's encoding (hex).
    pub sum: String,
}

/// File name of the redb store inside the node's data directory.
pub const STORE_FILE: &str = "items.redb";

/// The store of one node.
pub struct ItemStore {
    inner: MemoryStore,
    /// The disk thread when the store is persistent.
    persist: Option<Persister>,
    /// Items per salt, kept up to date on insert and expiry (walked once at open), so metrics
    /// and `info` never scan the store.
    counts: BTreeMap<Vec<u8>, u64>,
    /// Items found at open that were signed by the key given to [`ItemStore::open`] (own and
    /// delegated ones), for the node to keep republishing; taken once.
    signed_at_open: Vec<Item>,
    /// Sync cursors saved next to the store file, for the node to resume from; taken once.
    cursors_at_open: Vec<SavedCursor>,
}

/// Most items signed by the node's own key that [`ItemStore::open`] reports (a node owns a
/// handful; a store with more keeps the first ones).
pub const MAX_SIGNED_AT_OPEN: usize = 10_000;

impl std::fmt::Debug for ItemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemStore")
            .field("stats", &self.inner.stats())
            .finish()
    }
}

/// The current wall-clock time as the dht crate wants it.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The 32-byte target of a kad record key.
pub fn target_of(key: &RecordKey) -> Result<Target, CheckError> {
    let bytes: [u8; 32] = key.as_ref().try_into().map_err(|_| CheckError::KeyLength {
        len: key.as_ref().len(),
    })?;
    Ok(Target::from_bytes(bytes))
}

/// The kad record key of a target.
pub fn record_key(target: &Target) -> RecordKey {
    RecordKey::new(target.as_bytes())
}

impl ItemStore {
    /// A memory store (`dir == None`) or the persistent redb store in `dir`. The items in it
    /// signed by `signer` are kept for [`ItemStore::take_signed_at_open`].
    pub fn open(
        dir: Option<&Path>,
        cfg: dht::Config,
        signer: &PubKey,
    ) -> Result<ItemStore, dht::BackendError> {
        let mut cursors = Vec::new();
        let (inner, persist) = match dir {
            None => (MemoryStore::new(cfg), None),
            Some(dir) => {
                let (mem, p, c) = crate::persist::open(&dir.join(STORE_FILE), cfg, now())?;
                cursors = c;
                (mem, Some(p))
            }
        };
        let mut store = ItemStore {
            inner,
            persist,
            counts: BTreeMap::new(),
            signed_at_open: Vec::new(),
            cursors_at_open: cursors,
        };
        (store.counts, store.signed_at_open) = store.scan(signer);
        Ok(store)
    }

    /// The items signed by the `signer` given to [`ItemStore::open`] that the store held then
    /// (at most [`MAX_SIGNED_AT_OPEN`]); empty after the first call.
    pub fn take_signed_at_open(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.signed_at_open)
    }

    /// The sync cursors saved next to the store when it was opened; empty after the first call
    /// (and always for a memory store).
    pub fn take_cursors_at_open(&mut self) -> Vec<SavedCursor> {
        std::mem::take(&mut self.cursors_at_open)
    }

    /// Saves every sync cursor once the items inserted before are on disk (see
    /// [`crate::persist`]); nothing for a memory store.
    pub fn save_cursors(&mut self, cursors: Vec<SavedCursor>) {
        if let Some(p) = &mut self.persist {
            p.save_cursors(cursors);
        }
    }

    /// Writes the store takes now without skipping any on the way to disk (unbounded for a
    /// memory store).
    pub fn room(&self) -> usize {
        self.persist.as_ref().map_or(usize::MAX, Persister::room)
    }

    /// The store's acceptance configuration.
    pub fn config(&self) -> &dht::Config {
        self.inner.config()
    }

    /// Decodes `bytes` offered for `target` and checks it on its own: right target, valid size,
    /// writer, value and signature. Says nothing about seq (see [`ItemStore::insert`]).
    pub fn check(&self, target: &Target, bytes: &[u8]) -> Result<Item, CheckError> {
        let item = Item::decode(bytes)?;
        let found = item.target();
        if found != *target {
            return Err(CheckError::WrongTarget {
                asked: *target,
                found,
            });
        }
        dht::rules::validate(self.inner.config(), &item)?;
        Ok(item)
    }

    /// Puts an item through the acceptance rules.
    pub fn insert(&mut self, item: Item, now: Timestamp) -> Result<PutOutcome, PutError> {
        // The copy for the disk thread only when there is one.
        let copy = self.persist.is_some().then(|| item.clone());
        let salt = item.salt.clone();
        let outcome = self.inner.put(item, now)?;
        self.count(&salt, outcome);
        if let (Some(p), Some(item), PutOutcome::Inserted { .. } | PutOutcome::Replaced { .. }) =
            (&mut self.persist, copy, outcome)
        {
            p.put(item, now);
        }
        Ok(outcome)
    }

    /// [`ItemStore::insert`] for an item whose value and signature [`dht::rules::verify`]
    /// already checked (off the actor): the same decision through
    /// [`dht::rules::admit_verified`], the same counting and persistence (the disk thread does
    /// not verify it again either).
    pub fn insert_verified(
        &mut self,
        item: VerifiedItem,
        now: Timestamp,
    ) -> Result<PutOutcome, PutError> {
        let copy = self.persist.is_some().then(|| item.clone());
        let salt = item.item().salt.clone();
        let outcome = self.inner.put_verified(item, now)?;
        self.count(&salt, outcome);
        if let (Some(p), Some(item), PutOutcome::Inserted { .. } | PutOutcome::Replaced { .. }) =
            (&mut self.persist, copy, outcome)
        {
            p.put_verified(item, now);
        }
        Ok(outcome)
    }

    fn count(&mut self, salt: &Salt, outcome: PutOutcome) {
        if matches!(outcome, PutOutcome::Inserted { .. }) {
            match self.counts.get_mut(salt.as_bytes()) {
                Some(n) => *n += 1,
                None => {
                    self.counts.insert(salt.as_bytes().to_vec(), 1);
                }
            }
        }
    }

    /// The item at `target` (a backend failure is logged and reads as absent).
    pub fn get(&self, target: &Target) -> Option<Item> {
        match self.inner.get(target) {
            Ok(item) => item,
            Err(e) => {
                tracing::warn!(%target, error = %e, "store read failed");
                None
            }
        }
    }

    /// Every item with `salt` (at most `max`), in change order.
    pub fn with_salt(&self, salt: &Salt, max: usize) -> Vec<Item> {
        let mut out = Vec::new();
        let mut cursor = Cursor::START;
        while out.len() < max {
            match self.inner.list_since(Some(salt), cursor, max - out.len()) {
                Ok(page) => {
                    let more = page.has_more && !page.items.is_empty();
                    out.extend(page.items);
                    cursor = page.next_cursor;
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store list failed");
                    break;
                }
            }
        }
        out
    }

    /// The in-memory store the swarm loop serves from (for GetItems pages).
    pub fn backend(&self) -> &MemoryStore {
        &self.inner
    }

    /// An order-independent digest of every stored item: two stores holding exactly the same
    /// items (every field, signature included) have the same digest.
    pub fn digest(&self) -> StoreDigest {
        let mut sum: u128 = 0;
        let mut items = 0u64;
        let mut cursor = Cursor::START;
        loop {
            match self
                .inner
                .list_since(None, cursor, dht::store::MAX_LIST_LIMIT)
            {
                Ok(page) => {
                    for item in &page.items {
                        let h = keys::sha256(&item.encode());
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&h[..16]);
                        sum = sum.wrapping_add(u128::from_be_bytes(a));
                        items += 1;
                    }
                    cursor = page.next_cursor;
                    if !page.has_more || page.items.is_empty() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store list failed");
                    break;
                }
            }
        }
        StoreDigest {
            items,
            sum: format!("{sum:032x}"),
        }
    }

    /// Number of items per salt (salt as lossy UTF-8).
    pub fn counts_by_salt(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (salt, n) in &self.counts {
            if *n > 0 {
                *out.entry(String::from_utf8_lossy(salt).into_owned())
                    .or_insert(0) += n;
            }
        }
        out
    }

    /// Counts items per salt and collects the ones `signer` signed, walking the change log page
    /// by page (once, at open).
    fn scan(&self, signer: &PubKey) -> (BTreeMap<Vec<u8>, u64>, Vec<Item>) {
        let mut out = BTreeMap::new();
        let mut signed = Vec::new();
        let mut cursor = Cursor::START;
        loop {
            match self
                .inner
                .list_since(None, cursor, dht::store::MAX_LIST_LIMIT)
            {
                Ok(page) => {
                    for item in &page.items {
                        *out.entry(item.salt.as_bytes().to_vec()).or_insert(0) += 1;
                        if item.signer() == *signer && signed.len() < MAX_SIGNED_AT_OPEN {
                            signed.push(item.clone());
                        }
                    }
                    cursor = page.next_cursor;
                    if !page.has_more || page.items.is_empty() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store list failed");
                    break;
                }
            }
        }
        (out, signed)
    }

    /// Items stored.
    pub fn len(&self) -> u64 {
        self.inner.stats().items
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes expired items; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        if let Some(p) = &mut self.persist {
            p.expire(now);
        }
        match self.inner.expire(now) {
            Ok(expired) => {
                for e in &expired {
                    if let Some(n) = self.counts.get_mut(e.salt.as_bytes()) {
                        *n = n.saturating_sub(1);
                    }
                }
                expired.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "store expiry failed");
                0
            }
        }
    }
}

impl RecordStore for ItemStore {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::iter::Empty<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        let target = target_of(k).ok()?;
        let item = ItemStore::get(self, &target)?;
        Some(Cow::Owned(Record::new(k.clone(), item.encode())))
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        // Only reachable if a kad path we keep closed is opened; still checked in full.
        let target = target_of(&r.key).map_err(|_| store::Error::MaxRecords)?;
        let item = self
            .check(&target, &r.value)
            .map_err(|_| store::Error::ValueTooLarge)?;
        self.insert(item, now())
            .map(|_| ())
            .map_err(|_| store::Error::MaxRecords)
    }

    fn remove(&mut self, _k: &RecordKey) {
        // Items leave only through expiry or replacement by a higher seq; kad only calls this for
        // records whose kad `expires` passed, and ours carry none.
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        std::iter::empty()
    }

    fn add_provider(&mut self, _record: ProviderRecord) -> store::Result<()> {
        Err(store::Error::MaxProvidedKeys)
    }

    fn providers(&self, _key: &RecordKey) -> Vec<ProviderRecord> {
        Vec::new()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        std::iter::empty()
    }

    fn remove_provider(&mut self, _k: &RecordKey, _p: &libp2p::PeerId) {}
}
