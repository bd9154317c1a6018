//! Error types of the store operations. Item-level errors live next to their code
//! ([`crate::item::DecodeError`], [`crate::rules::InvalidItem`], [`crate::value::ValueError`]).

use std::path::PathBuf;

use keys::PubKey;

use crate::item::{DecodeError, Target};
use crate::rules::InvalidItem;

/// Which capacity limit a put ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapacityLimit {
    /// [`crate::Config::max_items`] items are stored.
    Items {
        /// The limit.
        max: u64,
    },
    /// The write would take the stored bytes past [`crate::Config::max_bytes`].
    Bytes {
        /// The limit.
        max: u64,
        /// Stored bytes after the write.
        needed: u64,
    },
}

/// Why a put was refused. Everything except [`PutError::Backend`] is a verdict on the item and
/// says nothing about the store's health.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The item is invalid in itself (size, writer, value, signature).
    #[error("invalid item for {target}")]
    Invalid {
        /// The item's target.
        target: Target,
        /// Why (boxed: keeps `Result<_, PutError>` small on the hot path).
        #[source]
        source: Box<InvalidItem>,
    },
    /// A higher seq is stored.
    #[error("stale item for {target}: seq {offered_seq} below stored {stored_seq}")]
    Stale {
        /// The item's target.
        target: Target,
        /// Seq stored.
        stored_seq: u64,
        /// Seq offered.
        offered_seq: u64,
    },
    /// The same seq is stored with different content.
    #[error("conflicting item for {target}: seq {seq} already stored with other content")]
    SeqConflict {
        /// The item's target.
        target: Target,
        /// The seq both carry.
        seq: u64,
    },
    /// The subject key already holds its quota of targets.
    #[error("key {pk} already holds {max} items")]
    Quota {
        /// The subject key.
        pk: PubKey,
        /// [`crate::Config::max_items_per_key`].
        max: u32,
    },
    /// The store is full.
    #[error("store full: {limit:?}")]
    Capacity {
        /// Which limit.
        limit: CapacityLimit,
    },
    /// The backend failed; the item was not stored.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl PutError {
    /// True when the refusal is a verdict on the item (the caller may penalise its sender);
    /// false for capacity, quota and backend failures.
    pub fn is_item_fault(&self) -> bool {
        matches!(
            self,
            PutError::Invalid { .. } | PutError::Stale { .. } | PutError::SeqConflict { .. }
        )
    }
}

/// A storage backend failed (I/O, corruption). Reads, listing and expiry return only this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The database file could not be opened or created.
    #[error("cannot open store {path}")]
    Open {
        /// File path.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: Box<redb::DatabaseError>,
    },
    /// A database operation failed.
    #[error("store {op} failed")]
    Db {
        /// What was being done.
        op: &'static str,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored record does not decode (the file was damaged or written by something else).
    #[error("corrupt record in table {table}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Why the item bytes do not decode.
        #[source]
        source: DecodeError,
    },
    /// A stored key or record has the wrong length.
    #[error("corrupt record in table {table}: {len} bytes")]
    CorruptLength {
        /// Table name.
        table: &'static str,
        /// Length found.
        len: usize,
    },
}
