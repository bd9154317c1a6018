//! GetItems bulk sync for skymesh full nodes: the page protocol `/skymesh/sync/1` and a sans-io
//! puller. No tokio, no sockets: the networked driver lives in `dht/node` (`dhtnode`), which
//! owns the libp2p streams, the timeouts and the store.
//!
//! # Modules
//!
//! | Module | Owns |
//! |---|---|
//! | [`wire`] | the messages (GetItems, Page, Push, Ack, Refused), their byte layout, limits, and the strict never-panicking decoders |
//! | [`serve`] | cutting one page of a `dht::Store` for a request (limit clamp, byte budget, epochs) |
//! | [`pull`] | [`Puller`]: request out, page in, stop on no progress; resumable [`SyncCursor`] |
//! | [`get`] | the byte layout of the one-round-trip read protocol `/skymesh/get/1` (its libp2p codec is `dhtnode::codec`) |
//!
//! # Paging contract
//!
//! - **Order**: items come in the *serving store's change order* (`dht::Store::list_since`). The
//!   cursor is the serving store's change number, never an item seq, so a new publisher's item
//!   with a tiny seq is not skipped (the Go `since_seq` scheme lost those).
//! - **Cursor**: `(epoch, change)`, opaque to everyone but the server that issued it. A server
//!   that restarted has a new epoch and serves a foreign-epoch request from the start.
//! - **Limits**: ≤ [`wire::MAX_PAGE_ITEMS`] items and ≤ [`wire::MAX_PAGE_BYTES`] item bytes per
//!   page (first item excepted), clamped by the server; readers refuse bigger messages.
//! - **Termination**: a session ends when a page says `has_more = false`; a page that makes no
//!   progress or goes backwards ends it as a protocol violation.
//! - **Trust**: nothing received is trusted. Every item goes through the normal acceptance rules
//!   (`dht::rules::admit`, or `dht::rules::verify` off the driver's loop then
//!   `dht::rules::admit_verified`; signature included either way) before it is stored; the puller
//!   only checks the paging.
//!
//! The protocol and the full-node push are specified in `docs/protocols/sync.md`.
#![deny(missing_docs)]

pub mod get;
pub mod pull;
pub mod serve;
pub mod wire;

pub use pull::{Progress, PullConfig, PullError, Puller, SyncCursor};
pub use wire::{GetItems, Page, RefuseReason, Request, Response};
