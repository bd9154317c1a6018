//! Visor transports over DMSG, published as `tp` items.
//!
//! A *transport* is a long-lived, authenticated link between two visors. This crate keeps
//! `dmsg` transports (a DMSG stream with keepalives, re-established with backoff) and publishes
//! the visor's list under salt `tp` (format v2, `dht::value::TransportEntries`) when it changes
//! and before it would expire — never on a fixed timer. See `docs/transports.md`.
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`id`] | transport kinds, deterministic ids (hash of the sorted keys and the kind, as a UUID) | no |
//! | [`wire`] | the link protocol frames (Hello, Keepalive, Close) | no |
//! | [`backoff`] | bounded jittered reconnect delays (re-exported from `skymesh-dmsg`) | no |
//! | [`publish`] | the publish policy (on change, before expiry, bounded rate) | no |
//! | [`catalog`] | `tp all`: merge of many visors' lists (confirmed / claimed), and its sources | lookups and HTTP through [`catalog::ItemSource`] |
//! | [`manager`] | per-transport tasks, the accept side, the table, the publish loop | DMSG streams |
//! | [`metrics`] | `skymesh_tp_*` | no |
#![deny(missing_docs)]

pub use dmsg::backoff;
pub mod catalog;
pub mod defaults;
pub mod error;
pub mod id;
pub mod manager;
pub mod metrics;
pub mod publish;
pub mod wire;

pub use catalog::{Catalog, CatalogEntry, ItemSource, LookupFailed, Source};
pub use error::{AddError, CatalogError, LinkError, RemoveError};
pub use id::{TransportId, TransportKind};
pub use manager::{Manager, ManagerConfig, Publish, PublishFailed, TransportInfo};
pub use metrics::Metrics;
