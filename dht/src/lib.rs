//! skymesh DHT data model and stores: signed items, their acceptance rules, and the stores that
//! hold them. Pure code: no tokio, no sockets, no clock reads (time is a parameter).
//!
//! # Module map
//!
//! | Module | Owns |
//! |---|---|
//! | [`item`] | [`Item`] (pk, salt, seq, value, optional writer, sig), [`Target`] = SHA256(pk ‖ salt), signed bytes, signing, the binary encoding and its never-panicking decoder |
//! | [`json`] | the JSON form of an item (CLI and humans only) |
//! | [`salt`] | [`Salt`] (≤ 64 bytes) and the registry of known salts ([`SaltKind`]) |
//! | [`value`] | one versioned, typed, canonically encoded value format per known salt ([`Value`]) |
//! | [`rules`] | **the** acceptance decision ([`rules::admit`]): sizes, trusted writers, seq, value, signature, quota, capacity |
//! | [`seq`] | [`SeqClock`]: seqs for our own items that never go backwards across restarts |
//! | [`store`] | the [`Store`] trait, cursors/pages, events; backends [`MemoryStore`] and [`RedbStore`] |
//! | [`config`] | [`Config`] and its `DEFAULT_*` constants |
//! | [`error`] | [`PutError`], [`BackendError`] |
//! | [`time`] | [`Timestamp`] (Unix ms, passed in) |
//!
//! # Where things happen
//!
//! - A byte string becomes an item only in [`Item::decode`]; a value only in [`Value::decode`].
//! - An item is accepted or refused only in [`rules::admit`] (every store calls it), or in
//!   [`rules::admit_verified`] for a [`VerifiedItem`], whose value and signature
//!   [`rules::verify`] checked beforehand (possibly on another thread).
//! - No socket is touched in this crate; the networked node lives elsewhere and drives a
//!   [`Store`] from its swarm loop (hence the synchronous API, see [`store`]).
//!
//! # Using it from a node
//!
//! - Decode incoming bytes with [`Item::decode`]; put them with [`Store::put`] (or
//!   [`Store::put_batch`] for a sync page) and map [`PutError`] to the wire's refusal
//!   ([`PutError::is_item_fault`] tells "bad item" from "store full/broken").
//! - Serve reads with [`Store::get`] by [`Target`] and bulk sync with [`Store::list_since`]
//!   ([`Cursor`], [`Page`]); sweep with [`Store::expire`] on a timer.
//! - Publish own items with [`Item::sign`] and a [`SeqClock`] seeded from the stored copy.
//! - Open the persistent default with [`RedbStore::open`]; use [`MemoryStore`] in tests.
//!
//! # Synchronous API, and Redis
//!
//! Stores are synchronous because libp2p kad's `RecordStore` is synchronous and runs inside the
//! swarm loop. Redis is not a store backend here: a full node following a Redis mirror runs
//! `mirror::MirrorFeed`, a task that reads Redis and hands verified items to the node through a
//! bounded channel, where they are put into the node's own store like any other item. The swarm
//! never waits on the network and every item still passes [`rules::admit`]. See [`store`] and
//! `docs/mirror.md`.
//!
//! Formats are specified in `docs/protocols/items.md`; stores in `docs/stores.md`.
//!
//! Based on skywire `pkg/dht` (`item.go`, `store.go`, `fullnode_advert.go`), with its known bugs
//! fixed: seqs that restart at 1, unauthenticated mirror writes, several shapes per salt,
//! unbounded stores.
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod item;
pub mod json;
pub mod rules;
pub mod salt;
pub mod seq;
pub mod store;
pub mod time;
pub mod value;

pub use config::Config;
pub use error::{BackendError, CapacityLimit, PutError};
pub use item::{DecodeError, Item, SignError, Target};
pub use rules::{Decision, InvalidItem, Unverified, VerifiedItem};
pub use salt::{Salt, SaltKind};
pub use seq::SeqClock;
pub use store::{
    Cursor, Expired, MemoryStore, Page, PutOutcome, RedbStore, Store, StoreEvent, StoreStats,
};
pub use time::Timestamp;
pub use value::{Value, ValueError};
