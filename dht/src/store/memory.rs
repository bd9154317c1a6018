//! [`MemoryStore`]: everything in maps; for tests, regular nodes and as the cache in front of
//! remote backends.
//!
//! Every map here is keyed by remote input (targets, keys, salts) and bounded by the store's
//! capacity: at most [`Config::max_items`] entries each (`per_key` has at most one entry per
//! stored item's key).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keys::PubKey;

use super::{Cursor, Expired, Page, PutOutcome, Store, StoreStats, clamp_limit};
use crate::config::Config;
use crate::error::{BackendError, PutError};
use crate::item::{Item, Target};
use crate::rules::{Admissible, Decision, Usage, VerifiedItem};
use crate::salt::Salt;
use crate::time::Timestamp;

#[derive(Debug)]
struct Entry {
    item: Item,
    change: u64,
    refreshed: u64,
}

/// An in-memory [`Store`]. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    cfg: Config,
    items: HashMap<Target, Entry>,
    by_change: BTreeMap<u64, Target>,
    by_salt: BTreeMap<(Salt, u64), Target>,
    by_time: BTreeSet<(u64, Target)>,
    per_key: HashMap<PubKey, u32>,
    last_change: u64,
    bytes: u64,
}

impl MemoryStore {
    /// An empty store applying `cfg`.
    pub fn new(cfg: Config) -> MemoryStore {
        MemoryStore {
            cfg,
            ..MemoryStore::default()
        }
    }

    /// The one put path: `item` decides through its own rule ([`crate::rules::admit`] for an
    /// [`Item`], [`crate::rules::admit_verified`] for a [`VerifiedItem`]).
    fn put_any<I: Admissible>(&mut self, item: I, now: Timestamp) -> Result<PutOutcome, PutError> {
        let new = item.item();
        let target = new.target();
        let usage = Usage {
            items: self.items.len() as u64,
            bytes: self.bytes,
            key_items: self.per_key.get(&new.pk).copied().unwrap_or(0),
        };
        let stored = self.items.get(&target).map(|e| &e.item);
        let decision = item.admit(&self.cfg, stored, &usage)?;
        let item = item.into_item();
        self.store_admitted(item, target, decision, now)
    }

    /// Writes an item `admit` accepted with `decision`.
    fn store_admitted(
        &mut self,
        item: Item,
        target: Target,
        decision: Decision,
        now: Timestamp,
    ) -> Result<PutOutcome, PutError> {
        let now = now.as_unix_millis();
        if let Some(old) = self.items.remove(&target) {
            self.unindex(&target, &old);
            self.bytes = self.bytes.saturating_sub(old.item.encoded_len() as u64);
            if decision == Decision::Unchanged {
                // Refresh only: same change number, new refresh time.
                self.by_change.insert(old.change, target);
                self.by_salt
                    .insert((old.item.salt.clone(), old.change), target);
                self.by_time.insert((now, target));
                self.bytes += old.item.encoded_len() as u64;
                self.items.insert(
                    target,
                    Entry {
                        refreshed: now,
                        ..old
                    },
                );
                return Ok(PutOutcome::Unchanged { target });
            }
        } else {
            *self.per_key.entry(item.pk).or_insert(0) += 1;
        }
        self.last_change += 1;
        let change = self.last_change;
        self.by_change.insert(change, target);
        self.by_salt.insert((item.salt.clone(), change), target);
        self.by_time.insert((now, target));
        self.bytes += item.encoded_len() as u64;
        self.items.insert(
            target,
            Entry {
                item,
                change,
                refreshed: now,
            },
        );
        Ok(match decision {
            Decision::Replace { previous_seq } => PutOutcome::Replaced {
                target,
                change: Cursor(change),
                previous_seq,
            },
            _ => PutOutcome::Inserted {
                target,
                change: Cursor(change),
            },
        })
    }

    fn unindex(&mut self, target: &Target, e: &Entry) {
        self.by_change.remove(&e.change);
        self.by_salt.remove(&(e.item.salt.clone(), e.change));
        self.by_time.remove(&(e.refreshed, *target));
    }
}

impl Store for MemoryStore {
    fn config(&self) -> &Config {
        &self.cfg
    }

    fn put(&mut self, item: Item, now: Timestamp) -> Result<PutOutcome, PutError> {
        self.put_any(item, now)
    }

    fn put_verified(&mut self, item: VerifiedItem, now: Timestamp) -> Result<PutOutcome, PutError> {
        self.put_any(item, now)
    }

    fn get(&self, target: &Target) -> Result<Option<Item>, BackendError> {
        Ok(self.items.get(target).map(|e| e.item.clone()))
    }

    fn list_since(
        &self,
        salt: Option<&Salt>,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page, BackendError> {
        let limit = clamp_limit(limit);
        let start = cursor.0.saturating_add(1);
        let mut hits: Vec<(u64, Target)> = match salt {
            None => self
                .by_change
                .range(start..)
                .take(limit + 1)
                .map(|(c, t)| (*c, *t))
                .collect(),
            Some(salt) => self
                .by_salt
                .range((salt.clone(), start)..=(salt.clone(), u64::MAX))
                .take(limit + 1)
                .map(|((_, c), t)| (*c, *t))
                .collect(),
        };
        let (next_cursor, has_more) = super::cut_page(&mut hits, limit, cursor);
        let items = hits
            .iter()
            .filter_map(|(_, t)| self.items.get(t).map(|e| e.item.clone()))
            .collect();
        Ok(Page {
            items,
            next_cursor,
            has_more,
        })
    }

    fn expire(&mut self, now: Timestamp) -> Result<Vec<Expired>, BackendError> {
        let cutoff = now.saturating_sub(self.cfg.ttl).as_unix_millis();
        let due: Vec<(u64, Target)> = self
            .by_time
            .range(..(cutoff, Target::from_bytes([0; 32])))
            .copied()
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for (_, target) in due {
            if let Some(e) = self.items.remove(&target) {
                self.unindex(&target, &e);
                self.bytes = self.bytes.saturating_sub(e.item.encoded_len() as u64);
                if let Some(n) = self.per_key.get_mut(&e.item.pk) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_key.remove(&e.item.pk);
                    }
                }
                out.push(Expired {
                    target,
                    pk: e.item.pk,
                    salt: e.item.salt,
                    seq: e.item.seq,
                });
            }
        }
        Ok(out)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            items: self.items.len() as u64,
            bytes: self.bytes,
            last_change: Cursor(self.last_change),
        }
    }
}
