//! Errors of the node's public operations.
use std::path::PathBuf;

use libp2p::Multiaddr;

/// A key could not be turned into a libp2p identity or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The secret key was refused by libp2p's secp256k1 implementation.
    #[error("secret key is not a valid secp256k1 scalar")]
    SecretKey,
    /// The public key is not a valid compressed secp256k1 point.
    #[error("public key is not a valid secp256k1 point")]
    PublicKey,
    /// The peer id does not contain its public key inline (hashed peer id).
    #[error("peer id does not carry its public key inline")]
    NotInline,
    /// The peer's key is not a secp256k1 key (e.g. ed25519).
    #[error("peer key is not secp256k1")]
    NotSecp256k1,
}

/// Why [`crate::Node::spawn`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The node key could not become a libp2p identity.
    #[error("node identity: {0}")]
    Identity(#[from] IdentityError),
    /// Building the libp2p transport failed.
    #[error("building the transport: {reason}")]
    Transport {
        /// What libp2p reported.
        reason: String,
    },
    /// Listening on an address failed.
    #[error("listening on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// What libp2p reported.
        reason: String,
    },
    /// A bootstrap address does not end in `/p2p/<peer id>`.
    #[error("bootstrap address {addr} must end in /p2p/<peer id>")]
    BootstrapAddr {
        /// The address.
        addr: Multiaddr,
    },
    /// The data directory could not be created.
    #[error("creating the data directory {dir}: {source}")]
    DataDir {
        /// The data directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Opening the persistent store failed.
    #[error("opening the store in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: PathBuf,
        /// The store error.
        #[source]
        source: dht::BackendError,
    },
    /// The node was not listening on any address after start.
    #[error("no listen address came up")]
    NoListenAddr,
}

/// Why a put failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The item was refused by the local acceptance rules (forged, stale, oversized, …).
    #[error("item refused: {0}")]
    Refused(#[from] dht::PutError),
    /// Signing failed (value over the hard limit).
    #[error("signing: {0}")]
    Sign(#[from] dht::SignError),
    /// The salt is too long.
    #[error("salt: {0}")]
    Salt(#[from] dht::salt::SaltTooLong),
    /// The node has shut down.
    #[error("node is shut down")]
    Shutdown,
}

/// Why a get failed (a missing item is `Ok(None)`, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The salt is too long.
    #[error("salt: {0}")]
    Salt(#[from] dht::salt::SaltTooLong),
    /// The node has shut down.
    #[error("node is shut down")]
    Shutdown,
}

/// Why a sync could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// No `from` address was given and no full node is known.
    #[error("no full node known to sync from")]
    NoFullNode,
    /// The `from` address does not end in `/p2p/<peer id>`.
    #[error("sync address {addr} must end in /p2p/<peer id>")]
    Addr {
        /// The address.
        addr: Multiaddr,
    },
    /// The address is this node's own.
    #[error("cannot sync from this node itself")]
    SelfSync,
    /// The peer is penalised (it sent bad pages or pushes recently).
    #[error("peer {peer} is penalised")]
    Penalised {
        /// The peer.
        peer: libp2p::PeerId,
    },
    /// Too many sync sessions are running.
    #[error("{max} sync sessions already running")]
    Busy {
        /// The limit.
        max: usize,
    },
    /// The node has shut down.
    #[error("node is shut down")]
    Shutdown,
}
