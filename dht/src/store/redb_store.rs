//! [`RedbStore`]: the persistent default, one redb file per node.
//!
//! Durability: every [`Store::put`] that inserts or replaces an item is one redb write
//! transaction committed with `Durability::Immediate` (fsync) before it returns `Ok`, so an
//! acknowledged item survives a crash or `SIGKILL`. [`Store::put_batch`] commits the whole batch
//! with one fsync. A put that only refreshes an identical item's TTL commits without fsync (see
//! `relax`): the item was already durable; only its refresh time may roll back in a crash.
//!
//! Tables (all keys and values are byte strings laid out here; nothing is serde'd):
//!
//! | table | key | value |
//! |---|---|---|
//! | `items` | target (32) | change (u64 BE) ‖ refreshed (u64 BE, Unix ms) ‖ item encoding |
//! | `changes` | change (u64) | target (32) |
//! | `salt_changes` | len(salt) (1) ‖ salt ‖ change (u64 BE) | target (32) |
//! | `expiry` | refreshed (u64 BE) ‖ target (32) | () |
//! | `key_counts` | subject pk (33) | targets held (u64) |
//! | `meta` | name | u64 (`last_change`, `items`, `bytes`) |
//!
//! Every table is bounded by the store's capacity ([`Config::max_items`]): one row per item in
//! each of the first four, at most one per item in `key_counts`.
//!
//! Items read back are decoded with [`Item::decode`]; a record that does not decode is reported
//! as [`BackendError::Corrupt`], never trusted silently. Signatures are not re-verified on read:
//! the file is ours and every record passed [`crate::rules::admit`] when written.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Cursor, Expired, Page, PutOutcome, Store, StoreStats, clamp_limit};
use crate::config::Config;
use crate::error::{BackendError, PutError};
use crate::item::{Item, Target};
use crate::rules::{Admissible, Decision, Usage, VerifiedItem};
use crate::salt::Salt;
use crate::time::Timestamp;

const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
const SALT_CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("salt_changes");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const KEY_COUNTS: TableDefinition<&[u8], u64> = TableDefinition::new("key_counts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_LAST_CHANGE: &str = "last_change";
const META_ITEMS: &str = "items";
const META_BYTES: &str = "bytes";

/// Record header in `items`: change ‖ refreshed.
const RECORD_HEADER: usize = 16;

fn db_err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> BackendError {
    move |e| BackendError::Db {
        op,
        source: Box::new(e.into()),
    }
}

fn salt_key(salt: &Salt, change: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + salt.len() + 8);
    // Salt ≤ 64 by type.
    k.push(salt.len() as u8);
    k.extend_from_slice(salt.as_bytes());
    k.extend_from_slice(&change.to_be_bytes());
    k
}

fn expiry_key(refreshed: u64, target: &Target) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&refreshed.to_be_bytes());
    k[8..].copy_from_slice(target.as_bytes());
    k
}

fn target_from(table: &'static str, b: &[u8]) -> Result<Target, BackendError> {
    let arr: [u8; 32] = b.try_into().map_err(|_| BackendError::CorruptLength {
        table,
        len: b.len(),
    })?;
    Ok(Target::from_bytes(arr))
}

struct Record {
    change: u64,
    refreshed: u64,
    item: Item,
}

fn decode_record(b: &[u8]) -> Result<Record, BackendError> {
    if b.len() < RECORD_HEADER {
        return Err(BackendError::CorruptLength {
            table: "items",
            len: b.len(),
        });
    }
    let (head, rest) = b.split_at(RECORD_HEADER);
    let mut change = [0u8; 8];
    let mut refreshed = [0u8; 8];
    change.copy_from_slice(&head[..8]);
    refreshed.copy_from_slice(&head[8..]);
    let item = Item::decode(rest).map_err(|source| BackendError::Corrupt {
        table: "items",
        source,
    })?;
    Ok(Record {
        change: u64::from_be_bytes(change),
        refreshed: u64::from_be_bytes(refreshed),
        item,
    })
}

fn encode_record(change: u64, refreshed: u64, item: &Item) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEADER + item.encoded_len());
    v.extend_from_slice(&change.to_be_bytes());
    v.extend_from_slice(&refreshed.to_be_bytes());
    item.encode_into(&mut v);
    v
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    last_change: u64,
    items: u64,
    bytes: u64,
}

/// A [`Store`] in a redb file. Opening an existing file keeps everything committed before.
pub struct RedbStore {
    cfg: Config,
    db: Database,
    counters: Counters,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

struct Tables<'t> {
    items: redb::Table<'t, &'static [u8], &'static [u8]>,
    changes: redb::Table<'t, u64, &'static [u8]>,
    salt_changes: redb::Table<'t, &'static [u8], &'static [u8]>,
    expiry: redb::Table<'t, &'static [u8], ()>,
    key_counts: redb::Table<'t, &'static [u8], u64>,
    meta: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Tables<'t>, BackendError> {
        let op = "open table";
        Ok(Tables {
            items: txn.open_table(ITEMS).map_err(db_err(op))?,
            changes: txn.open_table(CHANGES).map_err(db_err(op))?,
            salt_changes: txn.open_table(SALT_CHANGES).map_err(db_err(op))?,
            expiry: txn.open_table(EXPIRY).map_err(db_err(op))?,
            key_counts: txn.open_table(KEY_COUNTS).map_err(db_err(op))?,
            meta: txn.open_table(META).map_err(db_err(op))?,
        })
    }

    fn get_record(&self, target: &Target) -> Result<Option<Record>, BackendError> {
        match self
            .items
            .get(target.as_bytes().as_slice())
            .map_err(db_err("read item"))?
        {
            Some(v) => decode_record(v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn key_count(&self, pk: &keys::PubKey) -> Result<u64, BackendError> {
        Ok(self
            .key_counts
            .get(pk.as_bytes().as_slice())
            .map_err(db_err("read key count"))?
            .map_or(0, |g| g.value()))
    }

    fn set_key_count(&mut self, pk: &keys::PubKey, n: u64) -> Result<(), BackendError> {
        let k = pk.as_bytes().as_slice();
        if n == 0 {
            self.key_counts
                .remove(k)
                .map_err(db_err("write key count"))?;
        } else {
            self.key_counts
                .insert(k, n)
                .map_err(db_err("write key count"))?;
        }
        Ok(())
    }

    fn unindex(&mut self, target: &Target, rec: &Record) -> Result<(), BackendError> {
        let op = "unindex";
        self.changes.remove(rec.change).map_err(db_err(op))?;
        self.salt_changes
            .remove(salt_key(&rec.item.salt, rec.change).as_slice())
            .map_err(db_err(op))?;
        self.expiry
            .remove(expiry_key(rec.refreshed, target).as_slice())
            .map_err(db_err(op))?;
        Ok(())
    }

    fn write(
        &mut self,
        target: &Target,
        change: u64,
        now: u64,
        item: &Item,
    ) -> Result<(), BackendError> {
        let op = "write item";
        let t = target.as_bytes().as_slice();
        self.items
            .insert(t, encode_record(change, now, item).as_slice())
            .map_err(db_err(op))?;
        self.changes.insert(change, t).map_err(db_err(op))?;
        self.salt_changes
            .insert(salt_key(&item.salt, change).as_slice(), t)
            .map_err(db_err(op))?;
        self.expiry
            .insert(expiry_key(now, target).as_slice(), ())
            .map_err(db_err(op))?;
        Ok(())
    }

    fn save_counters(&mut self, c: &Counters) -> Result<(), BackendError> {
        let op = "write meta";
        self.meta
            .insert(META_LAST_CHANGE, c.last_change)
            .map_err(db_err(op))?;
        self.meta.insert(META_ITEMS, c.items).map_err(db_err(op))?;
        self.meta.insert(META_BYTES, c.bytes).map_err(db_err(op))?;
        Ok(())
    }

    /// One put inside an open transaction; updates `c` only on success.
    fn apply<I: Admissible>(
        &mut self,
        cfg: &Config,
        c: &mut Counters,
        candidate: &I,
        now: u64,
    ) -> Result<PutOutcome, PutError> {
        let item = candidate.item();
        let target = item.target();
        let stored = self.get_record(&target)?;
        let key_items = self.key_count(&item.pk)?;
        let usage = Usage {
            items: c.items,
            bytes: c.bytes,
            key_items: u32::try_from(key_items).unwrap_or(u32::MAX),
        };
        let decision = candidate.admit(cfg, stored.as_ref().map(|r| &r.item), &usage)?;
        if let Some(old) = &stored {
            self.unindex(&target, old)?;
            if decision == Decision::Unchanged {
                self.write(&target, old.change, now, &old.item)?;
                return Ok(PutOutcome::Unchanged { target });
            }
        }
        let change = c.last_change + 1;
        self.write(&target, change, now, item)?;
        let old_len = stored.as_ref().map_or(0, |r| r.item.encoded_len() as u64);
        let mut next = *c;
        next.last_change = change;
        next.bytes = c.bytes.saturating_sub(old_len) + item.encoded_len() as u64;
        if stored.is_none() {
            next.items += 1;
            self.set_key_count(&item.pk, key_items + 1)?;
        }
        self.save_counters(&next)?;
        *c = next;
        Ok(match decision {
            Decision::Replace { previous_seq } => PutOutcome::Replaced {
                target,
                change: Cursor::from_u64(change),
                previous_seq,
            },
            _ => PutOutcome::Inserted {
                target,
                change: Cursor::from_u64(change),
            },
        })
    }
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: impl AsRef<Path>, cfg: Config) -> Result<RedbStore, BackendError> {
        let path = path.as_ref();
        let db = Database::create(path).map_err(|source| BackendError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        // Create every table once so reads never meet a missing table.
        let txn = db.begin_write().map_err(db_err("begin"))?;
        let counters = {
            let t = Tables::open(&txn)?;
            let read = |k: &str| -> Result<u64, BackendError> {
                Ok(t.meta
                    .get(k)
                    .map_err(db_err("read meta"))?
                    .map_or(0, |g| g.value()))
            };
            Counters {
                last_change: read(META_LAST_CHANGE)?,
                items: read(META_ITEMS)?,
                bytes: read(META_BYTES)?,
            }
        };
        txn.commit().map_err(db_err("commit"))?;
        Ok(RedbStore { cfg, db, counters })
    }

    fn begin(&self) -> Result<redb::WriteTransaction, BackendError> {
        let mut txn = self.db.begin_write().map_err(db_err("begin"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_err("set durability"))?;
        Ok(txn)
    }

    /// One put in its own transaction; `item` decides through its own rule.
    fn put_any<I: Admissible>(&mut self, item: I, now: Timestamp) -> Result<PutOutcome, PutError> {
        let mut txn = self.begin()?;
        let mut c = self.counters;
        let result = {
            let mut t = Tables::open(&txn)?;
            t.apply(&self.cfg, &mut c, &item, now.as_unix_millis())
        };
        match result {
            Ok(outcome) => {
                if matches!(outcome, PutOutcome::Unchanged { .. }) {
                    relax(&mut txn)?;
                }
                txn.commit().map_err(db_err("commit"))?;
                self.counters = c;
                Ok(outcome)
            }
            Err(e) => {
                txn.abort().map_err(db_err("abort"))?;
                Err(e)
            }
        }
    }

    /// A batch in one transaction (one fsync); each item decides through its own rule.
    fn put_batch_any<I: Admissible>(
        &mut self,
        items: Vec<I>,
        now: Timestamp,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, BackendError> {
        let mut txn = self.begin()?;
        let mut c = self.counters;
        let mut out = Vec::with_capacity(items.len());
        {
            let mut t = Tables::open(&txn)?;
            for item in &items {
                // A refused item may have touched nothing (admit runs before any write), so
                // the transaction stays consistent and the other items still commit.
                match t.apply(&self.cfg, &mut c, item, now.as_unix_millis()) {
                    Err(PutError::Backend(e)) => return Err(e),
                    r => out.push(r),
                }
            }
        }
        let changed = out.iter().any(|r| {
            matches!(
                r,
                Ok(PutOutcome::Inserted { .. } | PutOutcome::Replaced { .. })
            )
        });
        if !changed {
            relax(&mut txn)?;
        }
        txn.commit().map_err(db_err("commit"))?;
        self.counters = c;
        Ok(out)
    }
}

/// A transaction that only refreshed TTLs (or changed nothing) commits without fsync: losing it in
/// a crash only moves refresh times back to the last durable commit (the items themselves were
/// durable when first acknowledged), and the next durable commit persists it anyway. This keeps
/// publishers' periodic re-puts (every 60 s per visor) from costing one fsync each.
fn relax(txn: &mut redb::WriteTransaction) -> Result<(), BackendError> {
    txn.set_durability(Durability::None)
        .map_err(db_err("set durability"))
}

impl Store for RedbStore {
    fn config(&self) -> &Config {
        &self.cfg
    }

    fn put(&mut self, item: Item, now: Timestamp) -> Result<PutOutcome, PutError> {
        self.put_any(item, now)
    }

    fn put_verified(&mut self, item: VerifiedItem, now: Timestamp) -> Result<PutOutcome, PutError> {
        self.put_any(item, now)
    }

    fn put_batch(
        &mut self,
        items: Vec<Item>,
        now: Timestamp,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, BackendError> {
        self.put_batch_any(items, now)
    }

    fn put_batch_verified(
        &mut self,
        items: Vec<VerifiedItem>,
        now: Timestamp,
    ) -> Result<Vec<Result<PutOutcome, PutError>>, BackendError> {
        self.put_batch_any(items, now)
    }

    fn get(&self, target: &Target) -> Result<Option<Item>, BackendError> {
        let txn = self.db.begin_read().map_err(db_err("begin read"))?;
        let items = txn.open_table(ITEMS).map_err(db_err("open table"))?;
        match items
            .get(target.as_bytes().as_slice())
            .map_err(db_err("read item"))?
        {
            Some(v) => Ok(Some(decode_record(v.value())?.item)),
            None => Ok(None),
        }
    }

    fn list_since(
        &self,
        salt: Option<&Salt>,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page, BackendError> {
        let limit = clamp_limit(limit);
        let start = cursor.as_u64().saturating_add(1);
        let txn = self.db.begin_read().map_err(db_err("begin read"))?;
        let op = "list";
        let mut hits: Vec<(u64, Target)> = Vec::with_capacity(limit + 1);
        match salt {
            None => {
                let changes = txn.open_table(CHANGES).map_err(db_err(op))?;
                for row in changes.range(start..).map_err(db_err(op))? {
                    let (k, v) = row.map_err(db_err(op))?;
                    hits.push((k.value(), target_from("changes", v.value())?));
                    if hits.len() > limit {
                        break;
                    }
                }
            }
            Some(salt) => {
                let table = txn.open_table(SALT_CHANGES).map_err(db_err(op))?;
                let lo = salt_key(salt, start);
                let hi = salt_key(salt, u64::MAX);
                let prefix = 1 + salt.len();
                for row in table
                    .range(lo.as_slice()..=hi.as_slice())
                    .map_err(db_err(op))?
                {
                    let (k, v) = row.map_err(db_err(op))?;
                    let key = k.value();
                    let change: [u8; 8] = key.get(prefix..).and_then(|s| s.try_into().ok()).ok_or(
                        BackendError::CorruptLength {
                            table: "salt_changes",
                            len: key.len(),
                        },
                    )?;
                    hits.push((
                        u64::from_be_bytes(change),
                        target_from("salt_changes", v.value())?,
                    ));
                    if hits.len() > limit {
                        break;
                    }
                }
            }
        }
        let (next_cursor, has_more) = super::cut_page(&mut hits, limit, cursor);
        let items_table = txn.open_table(ITEMS).map_err(db_err(op))?;
        let mut items = Vec::with_capacity(hits.len());
        for (_, t) in &hits {
            if let Some(v) = items_table
                .get(t.as_bytes().as_slice())
                .map_err(db_err(op))?
            {
                items.push(decode_record(v.value())?.item);
            }
        }
        Ok(Page {
            items,
            next_cursor,
            has_more,
        })
    }

    fn expire(&mut self, now: Timestamp) -> Result<Vec<Expired>, BackendError> {
        let cutoff = now.saturating_sub(self.cfg.ttl).as_unix_millis();
        let txn = self.begin()?;
        let mut c = self.counters;
        let mut out = Vec::new();
        {
            let mut t = Tables::open(&txn)?;
            let hi = expiry_key(cutoff, &Target::from_bytes([0; 32]));
            let mut due = Vec::new();
            for row in t.expiry.range(..hi.as_slice()).map_err(db_err("expire"))? {
                let (k, _) = row.map_err(db_err("expire"))?;
                let key = k.value();
                due.push(target_from("expiry", key.get(8..).unwrap_or_default())?);
            }
            for target in due {
                let Some(rec) = t.get_record(&target)? else {
                    continue;
                };
                t.unindex(&target, &rec)?;
                t.items
                    .remove(target.as_bytes().as_slice())
                    .map_err(db_err("expire"))?;
                let n = t.key_count(&rec.item.pk)?;
                t.set_key_count(&rec.item.pk, n.saturating_sub(1))?;
                c.items = c.items.saturating_sub(1);
                c.bytes = c.bytes.saturating_sub(rec.item.encoded_len() as u64);
                out.push(Expired {
                    target,
                    pk: rec.item.pk,
                    salt: rec.item.salt,
                    seq: rec.item.seq,
                });
            }
            t.save_counters(&c)?;
        }
        txn.commit().map_err(db_err("commit"))?;
        self.counters = c;
        Ok(out)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            items: self.counters.items,
            bytes: self.counters.bytes,
            last_change: Cursor::from_u64(self.counters.last_change),
        }
    }
}
