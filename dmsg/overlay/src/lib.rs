//! DMSG without central discovery: DMSG servers and clients meet through the DHT.
//!
//! * [`DhtDiscovery`] implements [`dmsg::Discovery`] on a DHT [`dhtnode::Node`]: entries are
//!   `dmsg` items (the reference discovery entry, authenticated by its own signature — see
//!   [`dht::value::DmsgEntry`]), servers are found among the full nodes and the local store,
//!   ranked by measured RTT and load ([`rank`]). A DMSG server additionally publishes its
//!   `dmsg-server` item (max/available sessions, DHT bootstrap flag, protocols).
//! * [`DhtEntries`] is the [`dmsg::disc_server::EntryBackend`] that lets a full node serve the
//!   reference discovery HTTP API (`/dmsg-discovery/…`) from DHT data, so unmodified Go servers,
//!   clients, `dmsgget` and `dmsghttp` can use any full node as their discovery; an entry they
//!   post becomes a `dmsg` item every other node verifies against the owner's key.
//! * [`deploy`]: the deployment config (bootstrap full nodes, DMSG servers, service endpoints
//!   with a `dmsg://` and an `http(s)://` address), embedded default overridable by a file;
//!   [`deploy_skywire`] reads Skywire's own `services-config.json` (2026 merged shape, or the
//!   2024 pair with `dmsghttp-config.json`) into the same type.
//!
//! * [`runtime`]: starting a DMSG server on a full node, a client on a visor, or a short-lived
//!   client for one command.
#![deny(missing_docs)]

pub mod backend;
pub mod deploy;
pub mod deploy_skywire;
pub mod discovery;
pub mod entries;
pub mod metrics;
pub mod rank;
pub mod runtime;

pub use backend::DhtEntries;
pub use deploy::Deployment;
pub use discovery::{DhtDiscovery, ServerExtras};
pub use metrics::OverlayMetrics;
pub use runtime::{
    ClientOptions, DhtClient, DhtServer, ServerOptions, join, start_client, start_server,
};
