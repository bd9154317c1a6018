//! The public face of the node: the cloneable [`Node`] handle, the commands it sends to the
//! actor over a bounded channel ([`crate::Config::command_queue`]; every command carries a
//! oneshot for its answer) and the types of the answers.
use std::collections::BTreeMap;
use std::time::Duration;

use dht::{Item, Salt, Target};
use keys::PubKey;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Actor;
use crate::config::Config;
use crate::error::{GetError, PutError, SpawnError, SyncError};
use crate::role::Role;
use crate::store::StoreDigest;

/// Where a read should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadMode {
    /// Full nodes first (one round trip), then an iterative lookup.
    #[default]
    Auto,
    /// Only the known full nodes.
    FullNodesOnly,
    /// Only an iterative Kademlia lookup (benchmarks, diagnostics).
    LookupOnly,
    /// Only the local store (diagnostics, tests: "what does this node hold").
    LocalOnly,
}

/// Where a read found its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReadPath {
    /// A full node answered directly.
    FullNode,
    /// An iterative lookup.
    Lookup,
    /// Only the local store had it.
    Local,
    /// Not found.
    NotFound,
}

/// The result of a read with its diagnostics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadOutcome {
    /// The verified item with the highest seq seen, if any.
    pub item: Option<Item>,
    /// Where it came from.
    pub path: ReadPath,
    /// Requests the iterative lookup sent (0 when none ran).
    pub lookup_requests: u32,
    /// Estimated lookup rounds: `ceil(requests / α)` with α = kad parallelism (3). A rough
    /// figure: a lookup that sends to all k closest at once counts that burst as k/α rounds.
    pub lookup_rounds: u32,
    /// Measured hops of the lookup, an upper bound on its depth: the hop of the request whose
    /// answer completed it (the quorum-th valid copy, else the last valid one). `None` unless
    /// [`Config::measure_lookup_hops`] is set or when no remote copy was found (see
    /// [`crate::hops`]).
    pub lookup_hops: Option<u32>,
    /// Time from start to answer.
    pub elapsed: Duration,
}

/// What a put achieved.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct PutReport {
    /// Target of the item.
    pub target: String,
    /// Seq of the item.
    pub seq: u64,
    /// Peers that acknowledged the record (full nodes and k closest).
    pub acks: u32,
}

impl PutReport {
    /// A report of a put of `seq` to `target`, nothing acknowledged yet (what a put starts
    /// from; the simulator, `dht/sim`, starts its puts with it).
    pub fn new(target: String, seq: u64) -> PutReport {
        PutReport {
            target,
            seq,
            acks: 0,
        }
    }
}

/// A snapshot of the node for `info` and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// `full` or `regular`.
    pub role: Role,
    /// The node's public key (hex).
    pub public_key: String,
    /// The node's libp2p peer id.
    pub peer_id: String,
    /// Addresses the node listens on, with `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Peers in the routing table.
    pub routing_table: usize,
    /// Kad mode: `server` or `client`.
    pub kad_mode: String,
    /// Full nodes known (peer ids).
    pub full_nodes: Vec<String>,
    /// Items stored, by salt.
    pub items: BTreeMap<String, u64>,
    /// Last successful bootstrap, Unix ms.
    pub last_bootstrap: Option<u64>,
}

/// Most items one [`Node::local_items`] call returns (bounds one swarm-loop turn).
pub const MAX_LOCAL_LIST: usize = 100_000;

pub(super) enum Command {
    PutItem {
        item: Item,
        reply: oneshot::Sender<Result<PutReport, PutError>>,
    },
    PutValue {
        salt: Salt,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<PutReport, PutError>>,
    },
    RawPut {
        target: Target,
        bytes: Vec<u8>,
        reply: oneshot::Sender<u32>,
    },
    StoreLocal {
        items: Vec<Item>,
        reply: oneshot::Sender<LocalStoreReport>,
    },
    Get {
        target: Target,
        mode: ReadMode,
        reply: oneshot::Sender<ReadOutcome>,
    },
    Info {
        reply: oneshot::Sender<NodeInfo>,
    },
    FullNodes {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    ListLocal {
        salt: Salt,
        max: usize,
        reply: oneshot::Sender<Vec<Item>>,
    },
    Sync {
        req: SyncRequest,
        reply: oneshot::Sender<Result<u64, SyncError>>,
    },
    SyncStatus {
        id: u64,
        reply: oneshot::Sender<Option<SyncStatus>>,
    },
    SyncCancel {
        id: u64,
        reply: oneshot::Sender<bool>,
    },
    HoldsDataset {
        salt: Salt,
        reply: oneshot::Sender<bool>,
    },
    Digest {
        reply: oneshot::Sender<StoreDigest>,
    },
    Shutdown,
}

/// Verdicts of [`Node::store_local`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalStoreReport {
    /// Items stored or refreshed.
    pub accepted: u32,
    /// Items the acceptance rules refused (stale, invalid, over quota).
    pub refused: u32,
}

/// Handle to a running node. Cheap to clone; the node stops on [`Node::shutdown`] or when every
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Node {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    public_key: PubKey,
    listen_addrs: Vec<Multiaddr>,
}

impl Node {
    /// Builds the swarm, starts listening and spawns the actor on the current tokio runtime.
    /// Returns once every listen address is bound.
    pub async fn spawn(config: Config) -> Result<(Node, JoinHandle<()>), SpawnError> {
        let (actor, listen_addrs) = Actor::new(config).await?;
        let (tx, rx) = mpsc::channel(actor.cfg.command_queue.max(1));
        let node = Node {
            tx,
            peer_id: actor.local_peer,
            public_key: actor.sk.pubkey(),
            listen_addrs,
        };
        let handle = tokio::spawn(actor.run(rx));
        Ok((node, handle))
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's public key.
    pub fn public_key(&self) -> PubKey {
        self.public_key
    }

    /// The bound listen addresses, each ending in `/p2p/<peer id>` (usable as `--bootstrap`).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Signs `value` under `salt` with the node's key (seq from the node's seq clock) and puts it.
    pub async fn put(&self, salt: Salt, value: Vec<u8>) -> Result<PutReport, PutError> {
        self.call(|reply| Command::PutValue { salt, value, reply })
            .await
            .ok_or(PutError::Shutdown)?
    }

    /// Puts an already signed item (it must pass the local acceptance rules first).
    pub async fn put_item(&self, item: Item) -> Result<PutReport, PutError> {
        self.call(|reply| Command::PutItem { item, reply })
            .await
            .ok_or(PutError::Shutdown)?
    }

    /// Stores items in this node's own store only (each through the acceptance rules), without
    /// sending them anywhere: for items a full node gets from a shared source every full node
    /// follows, such as the Redis mirror. `None` when the node has stopped.
    pub async fn store_local(&self, items: Vec<Item>) -> Option<LocalStoreReport> {
        self.call(|reply| Command::StoreLocal { items, reply })
            .await
    }

    /// Sends arbitrary bytes as a kad record under `target` to the full nodes and the k closest
    /// peers, *bypassing* the local checks; returns the acks. For tests that play a malicious
    /// peer; never used by the node itself.
    #[doc(hidden)]
    pub async fn put_raw_unchecked(&self, target: Target, bytes: Vec<u8>) -> u32 {
        self.call(|reply| Command::RawPut {
            target,
            bytes,
            reply,
        })
        .await
        .unwrap_or(0)
    }

    /// Reads the item of `(pk, salt)`: full nodes first, then an iterative lookup. `Ok(None)` when
    /// no valid copy exists.
    pub async fn get(&self, pk: &PubKey, salt: &Salt) -> Result<Option<Item>, GetError> {
        Ok(self.get_with(pk, salt, ReadMode::Auto).await?.item)
    }

    /// [`Node::get`] with an explicit read mode, returning diagnostics.
    pub async fn get_with(
        &self,
        pk: &PubKey,
        salt: &Salt,
        mode: ReadMode,
    ) -> Result<ReadOutcome, GetError> {
        let target = Target::of(pk, salt);
        self.call(|reply| Command::Get {
            target,
            mode,
            reply,
        })
        .await
        .ok_or(GetError::Shutdown)
    }

    /// A snapshot of the node's state.
    pub async fn info(&self) -> Option<NodeInfo> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Full nodes known now: fresh adverts plus connected peers that identified as full nodes
    /// (bootstrap peers included).
    pub async fn find_full_nodes(&self) -> Vec<PeerId> {
        self.call(|reply| Command::FullNodes { reply })
            .await
            .unwrap_or_default()
    }

    /// Items with `salt` held in this node's own store (at most `max`, capped at
    /// [`MAX_LOCAL_LIST`]), in the store's change order. On a full node this is the dataset
    /// (used by the legacy discovery API and `tp all`); on a regular node only its share.
    pub async fn local_items(&self, salt: Salt, max: usize) -> Vec<Item> {
        self.call(|reply| Command::ListLocal { salt, max, reply })
            .await
            .unwrap_or_default()
    }

    /// Starts a bulk sync (GetItems pages over `/skymesh/sync/1`) from `req.from` or a known
    /// full node, resuming from the cursor saved for that peer unless `req.from_start`; every
    /// item goes through the acceptance rules. Returns the session id for
    /// [`Node::sync_status`].
    pub async fn sync(&self, req: SyncRequest) -> Result<u64, SyncError> {
        self.call(|reply| Command::Sync { req, reply })
            .await
            .ok_or(SyncError::Shutdown)?
    }

    /// The state of sync session `id` (`None` when unknown or long finished).
    pub async fn sync_status(&self, id: u64) -> Option<SyncStatus> {
        self.call(|reply| Command::SyncStatus { id, reply })
            .await
            .flatten()
    }

    /// Whether this node holds every item under `salt` (so listing its store is as good as
    /// asking the network): always for a full node (it receives every write); for a regular
    /// node, after a completed `dht sync` of everything or of that salt, for as long as items
    /// from that sync live ([`dht::Config::ttl`]), since nothing keeps the copy current.
    pub async fn holds_dataset(&self, salt: &Salt) -> bool {
        let salt = salt.clone();
        self.call(|reply| Command::HoldsDataset { salt, reply })
            .await
            .unwrap_or(false)
    }

    /// Stops sync session `id`; its cursor stays saved, so the next sync resumes there. `true`
    /// when it was running.
    pub async fn sync_cancel(&self, id: u64) -> bool {
        self.call(|reply| Command::SyncCancel { id, reply })
            .await
            .unwrap_or(false)
    }

    /// Item count and an order-independent digest of the local store (two nodes holding the
    /// same items have the same digest). Walks the whole store: diagnostics and tests.
    pub async fn store_digest(&self) -> Option<StoreDigest> {
        self.call(|reply| Command::Digest { reply }).await
    }

    /// Asks the actor to stop; await the `JoinHandle` from [`Node::spawn`] to wait for it.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// What a caller asks [`crate::Node::sync`] for.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SyncRequest {
    /// The full node to pull from (ending in `/p2p/<peer id>`); `None`: a known full node.
    pub from: Option<Multiaddr>,
    /// Only this salt.
    pub salt: Option<Salt>,
    /// Ignore the saved cursor and pull everything.
    pub from_start: bool,
    /// Items per page (default and maximum [`itemsync::wire::MAX_PAGE_ITEMS`]).
    pub page_limit: Option<u16>,
}

/// The state of one sync session, for [`crate::Node::sync_status`] and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct SyncStatus {
    /// Session id.
    pub id: u64,
    /// Peer pulled from.
    pub peer: String,
    /// `request`, `join` or `repair`.
    pub kind: &'static str,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    /// Salt filter, if any (lossy UTF-8).
    pub salt: Option<String>,
    /// Pages received.
    pub pages: u64,
    /// Items received.
    pub items_received: u64,
    /// Items stored (new or replacing).
    pub accepted: u64,
    /// Items already held identically.
    pub unchanged: u64,
    /// Items refused by the acceptance rules.
    pub refused: u64,
    /// Encoded bytes received.
    pub bytes: u64,
    /// Time since the session started (until it finished).
    pub elapsed_ms: u64,
    /// Cursor reached in the peer's change sequence.
    pub cursor: u64,
    /// The peer's last change number at the latest page (progress: `cursor / remote_last_change`).
    pub remote_last_change: u64,
    /// Why it failed.
    pub error: Option<String>,
}
