//! skymesh networked DHT node: libp2p Kademlia over the item model of the `dht` crate.
//!
//! The `dht` crate (`skymesh-dht`) owns items, acceptance rules and stores and has no sockets;
//! this crate owns the network, like quinn over quinn-proto.
//!
//! # Components
//!
//! | Module | Owns |
//! |---|---|
//! | [`node`] | [`Node`] handle and the actor owning the `Swarm` (kad, identify, ping, `/skymesh/get/1`, `/skymesh/sync/1`): a thin driver that reads the clock once per loop turn and turns the actions of pure per-operation state machines (read, put, full-node table, republish, sync pull, push, penalties) into swarm calls; see its module doc for the files |
//! | [`store`] | [`ItemStore`]: the kad `RecordStore` over a dht [`dht::Store`]; where a record is checked and admitted |
//! | [`persist`] | write-behind thread owning the redb file (the swarm loop never touches the disk) |
//! | [`cursor_file`] | the sync cursors saved next to the store, written by the disk thread once the items before them are committed |
//! | [`codec`] | libp2p codec of the one-round-trip read protocol `/skymesh/get/1` (byte layout in [`itemsync::get`]) |
//! | [`sync_codec`] | libp2p codec of the bulk sync and push protocol `/skymesh/sync/1` (layout in [`itemsync::wire`]) |
//! | [`framing`] | the one async framing both codecs use: read to EOF with a hard limit, write and close |
//! | [`kad_limit`] | per-peer limit on inbound kad requests, wrapped around the kad behaviour; feeds [`hops`] |
//! | [`hops`] | hop counting for iterative lookups (an upper bound on their depth) |
//! | [`identity`] | secp256k1 key ↔ libp2p `Keypair` / `PeerId` |
//! | [`role`] | [`Role`] (full, regular) and [`Reachability`] → kad mode |
//! | [`config`] | [`Config`] and `DEFAULT_*` constants |
//! | [`limits`] | per-peer fixed-window limiter |
//! | [`metrics`] | prometheus-client metrics `skymesh_dht_*` |
//! | [`error`] | error enums of the public operations |
//! | `testing` | (hidden) test support: loopback configs, network fixtures, signed items for tests and benches |
//!
//! # Where things happen
//!
//! - Sockets are touched only by the libp2p swarm inside the actor in [`node`].
//! - A record from the network becomes an item only in [`ItemStore::check`] (decode, target match,
//!   [`dht::rules::validate`]) and is stored only through [`dht::Store::put`]
//!   ([`dht::rules::admit`]); sync pages are verified on worker threads
//!   ([`dht::rules::verify`]) and stored through [`dht::Store::put_verified`]
//!   ([`dht::rules::admit_verified`]).
//!
//! Protocols are specified in `docs/protocols/dht.md`; roles in `docs/roles.md`.
#![deny(missing_docs)]

pub mod codec;
pub mod config;
pub mod cursor_file;
pub mod error;
pub mod framing;
pub mod hops;
pub mod identity;
pub mod kad_limit;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod persist;
pub mod role;
pub mod store;
pub mod sync_codec;
#[doc(hidden)]
pub mod testing;

pub use config::Config;
pub use error::{GetError, IdentityError, PutError, SpawnError, SyncError};
pub use metrics::Metrics;
pub use node::{
    LocalStoreReport, MAX_LOCAL_LIST, Node, NodeInfo, PutReport, ReadMode, ReadOutcome, ReadPath,
    SyncRequest, SyncStatus,
};
pub use role::{Reachability, Role};
pub use store::{ItemStore, StoreDigest};
