//! Acceptance rules, in one place. Every store calls [`admit`] (or [`admit_verified`] for an
//! item [`verify`] already checked) and nothing else decides whether an item is stored.
//!
//! Order of checks (cheap first, so a flood of junk costs little):
//!
//! 1. sizes: value ≤ [`Config::effective_max_value_len`] (salt ≤ 64 holds by type);
//! 2. writer: an item with a `writer` must name a key on [`Config::trusted_writers`] other than
//!    the subject key ([`InvalidItem::UntrustedWriter`], [`InvalidItem::SelfDelegation`]);
//! 3. seq against the stored item at the same target ([`decide`]): no stored item → insert;
//!    strictly higher seq → replace; equal seq and an identical item (every field, signature
//!    included) → [`Decision::Unchanged`], an idempotent no-op that only refreshes the item's
//!    TTL (no signature check needed: the stored copy was verified); lower seq →
//!    [`PutError::Stale`]; equal seq but different → [`PutError::SeqConflict`] (first writer wins,
//!    as in the Go node, but now reported);
//! 4. value: parses with its salt's format ([`crate::value`]) and matches the subject key;
//! 5. signature: by [`Item::signer`] over [`Item::signed_bytes`];
//! 6. per-key quota: a *new* target for a key already holding [`Config::max_items_per_key`]
//!    targets is refused ([`PutError::Quota`]);
//! 7. capacity: a new item beyond [`Config::max_items`], or any write that would take the stored
//!    bytes beyond [`Config::max_bytes`], is refused ([`PutError::Capacity`]). The store never
//!    evicts to make room: refusing is visible and cannot be abused to push others' items out.
//!
//! # Verifying off the store's thread
//!
//! Steps 4 and 5 (value and signature, ~50 µs of ECDSA recovery) depend only on the item, steps
//! 1 and 2 only on the configuration; none depends on what is stored. [`verify`] runs them
//! anywhere (a worker thread, in parallel) and returns a [`VerifiedItem`], a proof type whose
//! field is private: [`verify`] is the only way to build one. [`admit_verified`] then makes the
//! same decision as [`admit`] without repeating steps 4 and 5 (it re-runs the cheap steps 1 and 2
//! with the store's own configuration). Stores expose it as [`crate::Store::put_verified`].
//!
//! Deliberate differences from the Go node: no "mirror put" that skips checks (the Go
//! `PutMirror` let any key overwrite any slot); delegated writes exist only through the signed
//! writer envelope and the allowlist.

use keys::{PubKey, SigError};

use crate::config::Config;
use crate::error::{CapacityLimit, PutError};
use crate::item::Item;
use crate::value::{Value, ValueError};

/// Why an item is invalid in itself (independent of what is stored).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidItem {
    /// The value is longer than the configured limit.
    #[error("value is {len} bytes, at most {max} accepted")]
    ValueTooLarge {
        /// Value length.
        len: usize,
        /// Effective limit.
        max: usize,
    },
    /// The writer is not on the trusted-writer allowlist.
    #[error("writer {writer} is not trusted to write for {subject}")]
    UntrustedWriter {
        /// The writer key.
        writer: PubKey,
        /// The subject key it tried to write for.
        subject: PubKey,
    },
    /// The writer equals the subject; owner items carry no writer (one encoding per item).
    #[error("writer equals subject {pk}")]
    SelfDelegation {
        /// The key.
        pk: PubKey,
    },
    /// The value does not parse for its salt, or contradicts the subject key.
    #[error("bad value")]
    Value {
        /// Why.
        #[source]
        source: ValueError,
    },
    /// The signature does not verify against the signer.
    #[error("bad signature by {signer}")]
    Signature {
        /// Expected signer ([`Item::signer`]).
        signer: PubKey,
        /// Why.
        #[source]
        source: SigError,
    },
}

/// What a store must do with an admitted item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No item at the target: store it.
    Insert,
    /// Replace the stored item, which had `previous_seq`.
    Replace {
        /// Seq of the item being replaced.
        previous_seq: u64,
    },
    /// The identical item is stored: refresh its TTL, nothing else.
    Unchanged,
}

/// What the store holds now, as far as the rules need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Items in the store.
    pub items: u64,
    /// Encoded bytes of all items.
    pub bytes: u64,
    /// Targets held by the new item's subject key.
    pub key_items: u32,
}

/// Checks an item on its own: sizes, writer, value format, signature (steps 1, 2, 4, 5). Returns
/// the decoded value.
pub fn validate(cfg: &Config, item: &Item) -> Result<Value, InvalidItem> {
    check_static(cfg, item)?;
    check_value_and_signature(item)
}

/// Everything [`validate`] checks except the signature: for items the caller has just signed
/// itself (e.g. a mirror writer's own items), where re-verifying would only cost time. Never use
/// it on items received from anyone else.
pub fn validate_unsigned(cfg: &Config, item: &Item) -> Result<Value, InvalidItem> {
    check_static(cfg, item)?;
    Value::decode(&item.salt, &item.value)
        .and_then(|v| v.check_subject(&item.pk).map(|()| v))
        .map_err(|source| InvalidItem::Value { source })
}

fn check_static(cfg: &Config, item: &Item) -> Result<(), InvalidItem> {
    let max = cfg.effective_max_value_len();
    if item.value.len() > max {
        return Err(InvalidItem::ValueTooLarge {
            len: item.value.len(),
            max,
        });
    }
    if let Some(writer) = item.writer {
        if writer == item.pk {
            return Err(InvalidItem::SelfDelegation { pk: writer });
        }
        if !cfg.trusted_writers.contains(&writer) {
            return Err(InvalidItem::UntrustedWriter {
                writer,
                subject: item.pk,
            });
        }
    }
    Ok(())
}

fn check_value_and_signature(item: &Item) -> Result<Value, InvalidItem> {
    let value = Value::decode(&item.salt, &item.value)
        .and_then(|v| v.check_subject(&item.pk).map(|()| v))
        .map_err(|source| InvalidItem::Value { source })?;
    if let Value::Dmsg(entry) = &value {
        // Self-authenticating value: the owner's reference entry signature is the item's.
        entry
            .authenticate(item)
            .map_err(|source| InvalidItem::Value { source })?;
        return Ok(value);
    }
    item.verify_signature()
        .map_err(|source| InvalidItem::Signature {
            signer: item.signer(),
            source,
        })?;
    Ok(value)
}

/// An item that passed [`verify`]: its value parses for its salt and matches its subject key,
/// and its signature (or, for a dmsg entry, the entry's own authentication) verifies. The field
/// is private, so holding a `VerifiedItem` proves the checks ran; the item cannot be changed
/// afterwards (only read or taken out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedItem(Item);

impl VerifiedItem {
    /// The item.
    pub fn item(&self) -> &Item {
        &self.0
    }

    /// Gives the item back (the proof is lost).
    pub fn into_inner(self) -> Item {
        self.0
    }
}

impl AsRef<Item> for VerifiedItem {
    fn as_ref(&self) -> &Item {
        &self.0
    }
}

/// An item [`verify`] refused, handed back with the reason.
#[derive(Debug, thiserror::Error)]
#[error("item failed verification")]
pub struct Unverified {
    /// The item, unchanged.
    pub item: Item,
    /// Why.
    #[source]
    pub reason: InvalidItem,
}

/// Runs every check of [`validate`] (sizes, writer, value, signature) and, if they pass, wraps
/// the item as proof. Pure and thread-safe: callers may run it on any thread, in parallel.
pub fn verify(cfg: &Config, item: Item) -> Result<VerifiedItem, Box<Unverified>> {
    match validate(cfg, &item) {
        Ok(_) => Ok(VerifiedItem(item)),
        Err(reason) => Err(Box::new(Unverified { item, reason })),
    }
}

/// The seq rule alone (step 3): how `new` relates to the `stored` item at the same target.
pub fn decide(stored: Option<&Item>, new: &Item) -> Result<Decision, PutError> {
    let Some(stored) = stored else {
        return Ok(Decision::Insert);
    };
    if new.seq > stored.seq {
        return Ok(Decision::Replace {
            previous_seq: stored.seq,
        });
    }
    if new.seq == stored.seq {
        if new == stored {
            return Ok(Decision::Unchanged);
        }
        return Err(PutError::SeqConflict {
            target: new.target(),
            seq: new.seq,
        });
    }
    Err(PutError::Stale {
        target: new.target(),
        stored_seq: stored.seq,
        offered_seq: new.seq,
    })
}

/// The whole acceptance decision for putting `item` into a store that holds `stored` at the
/// item's target and has `usage`. Every backend calls this (or [`admit_verified`] for a
/// [`VerifiedItem`]) and nothing else.
pub fn admit(
    cfg: &Config,
    item: &Item,
    stored: Option<&Item>,
    usage: &Usage,
) -> Result<Decision, PutError> {
    admit_with(cfg, item, stored, usage, check_value_and_signature)
}

/// [`admit`] for an item whose value and signature [`verify`] already checked: the same
/// decision, the same errors, without steps 4 and 5 (steps 1 and 2 run again, with `cfg`).
pub fn admit_verified(
    cfg: &Config,
    item: &VerifiedItem,
    stored: Option<&Item>,
    usage: &Usage,
) -> Result<Decision, PutError> {
    // The proof stands for steps 4 and 5; `()` replaces the decoded value nobody reads here.
    admit_with(cfg, &item.0, stored, usage, |_| Ok(()))
}

/// An item a backend can put: a received [`Item`] (fully checked by [`admit`]) or a
/// [`VerifiedItem`] ([`admit_verified`]). Lets each backend share one put path for both.
pub(crate) trait Admissible {
    /// The item.
    fn item(&self) -> &Item;
    /// The item, by value.
    fn into_item(self) -> Item;
    /// The acceptance decision for this kind of item.
    fn admit(
        &self,
        cfg: &Config,
        stored: Option<&Item>,
        usage: &Usage,
    ) -> Result<Decision, PutError>;
}

impl Admissible for Item {
    fn item(&self) -> &Item {
        self
    }
    fn into_item(self) -> Item {
        self
    }
    fn admit(
        &self,
        cfg: &Config,
        stored: Option<&Item>,
        usage: &Usage,
    ) -> Result<Decision, PutError> {
        admit(cfg, self, stored, usage)
    }
}

impl Admissible for VerifiedItem {
    fn item(&self) -> &Item {
        &self.0
    }
    fn into_item(self) -> Item {
        self.0
    }
    fn admit(
        &self,
        cfg: &Config,
        stored: Option<&Item>,
        usage: &Usage,
    ) -> Result<Decision, PutError> {
        admit_verified(cfg, self, stored, usage)
    }
}

fn admit_with<V>(
    cfg: &Config,
    item: &Item,
    stored: Option<&Item>,
    usage: &Usage,
    check_value_and_signature: impl FnOnce(&Item) -> Result<V, InvalidItem>,
) -> Result<Decision, PutError> {
    let target = || item.target();
    check_static(cfg, item).map_err(|source| PutError::Invalid {
        target: target(),
        source: Box::new(source),
    })?;
    let decision = decide(stored, item)?;
    if decision == Decision::Unchanged {
        return Ok(decision);
    }
    check_value_and_signature(item).map_err(|source| PutError::Invalid {
        target: target(),
        source: Box::new(source),
    })?;
    let new_len = item.encoded_len() as u64;
    let old_len = stored.map_or(0, |s| s.encoded_len() as u64);
    if decision == Decision::Insert {
        if usage.key_items >= cfg.max_items_per_key {
            return Err(PutError::Quota {
                pk: item.pk,
                max: cfg.max_items_per_key,
            });
        }
        if usage.items >= cfg.max_items {
            return Err(PutError::Capacity {
                limit: CapacityLimit::Items { max: cfg.max_items },
            });
        }
    }
    let bytes_after = usage.bytes.saturating_sub(old_len).saturating_add(new_len);
    if bytes_after > cfg.max_bytes {
        return Err(PutError::Capacity {
            limit: CapacityLimit::Bytes {
                max: cfg.max_bytes,
                needed: bytes_after,
            },
        });
    }
    Ok(decision)
}
