//! The admin API of `skymesh node`: route paths and request/response bodies, shared by the
//! HTTP handlers (`commands/node/*.rs`) and the clients (`commands/dht.rs`, `commands/tp.rs`,
//! `commands/devnet.rs`). Routes and status codes are listed in `commands/node/mod.rs`.
//!
//! Answers that embed a library type which only serializes (`dhtnode::NodeInfo`,
//! `dhtnode::SyncStatus`, `dmsg::server::PeerStatus`, `tp::TransportInfo`, `tp::Catalog`) are
//! either generic over it — the handler fills them with the library type, a client reads them
//! with a view naming the fields it uses — or read through a view of their own (`*View`).
//!
//! The answers the handlers build here list their fields in alphabetical order, so they are
//! byte-identical to the `serde_json::json!` maps they replaced.
use std::collections::BTreeMap;

use keys::PubKey;
use serde::{Deserialize, Serialize};

/// `GET`: [`Health`].
pub(crate) const HEALTH: &str = "/health";
/// `GET`: Prometheus text.
pub(crate) const METRICS: &str = "/metrics";
/// `GET`: `dhtnode::NodeInfo` (read as [`InfoView`]).
pub(crate) const INFO: &str = "/api/v1/info";
/// `POST` [`PutRequest`]: `dhtnode::PutReport`.
pub(crate) const PUT: &str = "/api/v1/put";
/// `GET ?`[`GetQuery`]: [`ItemView`].
pub(crate) const GET: &str = "/api/v1/get";
/// `GET`: [`DmsgStatus`].
pub(crate) const DMSG: &str = "/api/v1/dmsg";
/// `GET ?`[`FetchQuery`]: the body fetched over DMSG.
pub(crate) const DMSG_FETCH: &str = "/api/v1/dmsg/fetch";
/// The reference discovery API, on full nodes with a DMSG server.
pub(crate) const DMSG_DISCOVERY: &str = "/dmsg-discovery/{*rest}";
/// `POST` [`SyncRequest`]: [`SyncStarted`].
pub(crate) const SYNC: &str = "/api/v1/sync";
/// `GET`: `dhtnode::SyncStatus` (read as [`SyncStatusView`]); `DELETE`: [`SyncCancelled`].
pub(crate) const SYNC_SESSION: &str = "/api/v1/sync/{id}";
/// `GET`: [`TpList`]; `POST` [`TpAddRequest`]: `tp::TransportInfo`.
pub(crate) const TP: &str = "/api/v1/tp";
/// `GET`: `tp::Catalog` (read as [`CatalogView`]).
pub(crate) const TP_ALL: &str = "/api/v1/tp/all";
/// `DELETE`: [`TpRemoved`].
pub(crate) const TP_ONE: &str = "/api/v1/tp/{id}";

/// The path of sync session `id` ([`SYNC_SESSION`]).
pub(crate) fn sync_session(id: u64) -> String {
    format!("{SYNC}/{id}")
}

/// The path of transport `id` ([`TP_ONE`]).
pub(crate) fn tp_one(id: &str) -> String {
    format!("{TP}/{id}")
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Health {
    /// `ok`.
    pub(crate) status: String,
}

/// Every error answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    #[serde(default)]
    pub(crate) error: Option<String>,
}

impl ErrorBody {
    /// Reads an error answer (an empty one when the body is something else).
    pub(crate) fn of(body: &serde_json::Value) -> ErrorBody {
        serde_json::from_value(body.clone()).unwrap_or_default()
    }

    /// The message as JSON text: quoted, or `null` when absent (how `dht` prints it).
    pub(crate) fn quoted(&self) -> String {
        serde_json::to_string(&self.error).unwrap_or_default()
    }
}

/// `POST /api/v1/put`: sign `value` under `salt` with the node key and put it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PutRequest {
    /// Salt (slot name).
    pub(crate) salt: String,
    /// Value (text).
    pub(crate) value: String,
}

/// `GET /api/v1/get?pk=PK&salt=S`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GetQuery {
    /// Public key (hex).
    pub(crate) pk: String,
    /// Salt.
    pub(crate) salt: String,
}

/// A verified item as JSON (`GET /api/v1/get`, printed by `skymesh dht get`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ItemView {
    /// Owner key (hex).
    pub(crate) pk: String,
    /// Salt, as text or hex ([`ItemView::salt_encoding`]).
    pub(crate) salt: String,
    /// `utf8` or `hex`.
    pub(crate) salt_encoding: String,
    /// Sequence number.
    pub(crate) seq: u64,
    /// Signature (hex).
    pub(crate) sig: String,
    /// DHT target (hex).
    pub(crate) target: String,
    /// Value, as text or hex ([`ItemView::value_encoding`]).
    pub(crate) value: String,
    /// `utf8` or `hex`.
    pub(crate) value_encoding: String,
    /// Trusted writer key (hex), for items written for `pk` by a service.
    pub(crate) writer: Option<String>,
}

impl ItemView {
    /// The view of a verified item.
    pub(crate) fn of(item: &dht::Item) -> ItemView {
        let (value, value_encoding) = text_or_hex(&item.value);
        let (salt, salt_encoding) = text_or_hex(item.salt.as_bytes());
        ItemView {
            pk: item.pk.to_hex(),
            salt,
            salt_encoding: salt_encoding.into(),
            seq: item.seq,
            value,
            value_encoding: value_encoding.into(),
            writer: item.writer.map(|w| w.to_hex()),
            sig: item.sig.to_hex(),
            target: item.target().to_hex(),
        }
    }
}

/// Bytes as UTF-8 text when they are, else hex; with the encoding used.
fn text_or_hex(b: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (hex::encode(b), "hex"),
    }
}

/// `GET /api/v1/info` as a client reads it (the node answers `dhtnode::NodeInfo`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct InfoView {
    /// `full` or `regular`.
    pub(crate) role: Option<String>,
    /// Node key (hex).
    pub(crate) public_key: Option<String>,
    /// libp2p peer id.
    pub(crate) peer_id: Option<String>,
    /// `server` or `client`.
    pub(crate) kad_mode: Option<String>,
    /// Listen addresses.
    pub(crate) listen_addrs: Vec<String>,
    /// Connected peers.
    pub(crate) peers: u64,
    /// Routing table size.
    pub(crate) routing_table: u64,
    /// Full nodes known (peer ids).
    pub(crate) full_nodes: Vec<String>,
    /// Items stored, by salt.
    pub(crate) items: BTreeMap<String, u64>,
    /// Last successful bootstrap, Unix ms.
    pub(crate) last_bootstrap: Option<u64>,
}

/// `POST /api/v1/sync`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncRequest {
    /// The full node to pull from (multiaddr with `/p2p/`); default: one the node knows.
    pub(crate) from: Option<String>,
    /// Only items with this salt.
    pub(crate) salt: Option<String>,
    /// Ignore the saved cursor.
    #[serde(default)]
    pub(crate) from_start: bool,
    /// Items per page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) page_limit: Option<u16>,
}

/// `POST /api/v1/sync` answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SyncStarted {
    /// Session id.
    pub(crate) id: u64,
}

/// `DELETE /api/v1/sync/{id}` answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SyncCancelled {
    /// Whether a running session was cancelled.
    pub(crate) cancelled: bool,
}

/// `GET /api/v1/sync/{id}` as a client reads it (the node answers `dhtnode::SyncStatus`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SyncStatusView {
    /// Peer pulled from.
    pub(crate) peer: Option<String>,
    /// `running`, `done` or `failed`.
    pub(crate) state: Option<String>,
    /// Items received.
    pub(crate) items_received: u64,
    /// Items stored.
    pub(crate) accepted: u64,
    /// Items already held.
    pub(crate) unchanged: u64,
    /// Items refused.
    pub(crate) refused: u64,
    /// Bytes received.
    pub(crate) bytes: u64,
    /// Duration so far.
    pub(crate) elapsed_ms: u64,
    /// Cursor reached.
    pub(crate) cursor: u64,
    /// The peer's last change number.
    pub(crate) remote_last_change: u64,
    /// Why it failed.
    pub(crate) error: Option<String>,
}

/// `GET /api/v1/dmsg`. `P`: a mesh peer (`dmsg::server::PeerStatus` on the node,
/// [`MeshPeerView`] in clients).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DmsgStatus<P> {
    /// The DMSG client, on visors with `--dmsg`.
    pub(crate) client: Option<DmsgClientStatus>,
    /// The deployment config's name.
    pub(crate) deployment: String,
    /// The node's key (hex).
    pub(crate) public_key: String,
    /// The node's role.
    pub(crate) role: String,
    /// The DMSG server, on full nodes with `--dmsg-listen`.
    pub(crate) server: Option<DmsgServerStatus<P>>,
}

/// The DMSG server part of [`DmsgStatus`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DmsgServerStatus<P> {
    /// Bound address.
    pub(crate) address: String,
    /// Its mailbox for offline visors (absent from older nodes).
    #[serde(default)]
    pub(crate) mailbox: Option<MailboxStoreStatus>,
    /// Payload bytes relayed.
    pub(crate) bytes_relayed: u64,
    /// The server mesh.
    pub(crate) mesh: MeshStatus<P>,
    /// Server key (hex).
    pub(crate) pk: String,
    /// Sessions held.
    pub(crate) sessions: usize,
    /// Streams open now.
    pub(crate) streams_active: i64,
    /// Streams relayed so far.
    pub(crate) streams_total: u64,
}

/// The mailbox part of [`DmsgServerStatus`]: what the server holds for offline visors now.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MailboxStoreStatus {
    /// Messages waiting for their recipients.
    pub(crate) messages: usize,
    /// Their bytes.
    pub(crate) bytes: usize,
    /// Recipients with messages waiting.
    pub(crate) recipients: usize,
    /// Bytes the server holds at most (`Limits::total_bytes`).
    pub(crate) capacity_bytes: usize,
}

/// The mesh part of [`DmsgServerStatus`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MeshStatus<P> {
    /// Whether the server meshes.
    pub(crate) enabled: bool,
    /// Bytes of those streams.
    pub(crate) forwarded_bytes: u64,
    /// Streams forwarded to peers.
    pub(crate) forwarded_streams: u64,
    /// Peers offered destinations they did not hold.
    pub(crate) misses: u64,
    /// Its peers.
    pub(crate) peers: Vec<P>,
    /// Streams peers relayed to our clients.
    pub(crate) relayed_in_streams: u64,
}

/// A mesh peer as a client reads it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct MeshPeerView {
    /// Whether a link (ours or theirs) is up.
    pub(crate) up: bool,
}

/// The DMSG client part of [`DmsgStatus`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DmsgClientStatus {
    /// Where it finds servers and peers (`dht`).
    pub(crate) discovery: String,
    /// Client key (hex).
    pub(crate) pk: String,
    /// DMSG ports listened on.
    pub(crate) ports_in_use: usize,
    /// Servers it holds sessions with (hex keys).
    pub(crate) servers: Vec<String>,
    /// Last ping RTT in milliseconds of each held server that has answered (hex key → ms).
    #[serde(default)]
    pub(crate) server_rtt_ms: std::collections::BTreeMap<String, f64>,
    /// Held servers whose session was opened on demand (for one dial: the target's server or a
    /// server's own service, while the mesh could not reach it); closed once idle.
    #[serde(default)]
    pub(crate) on_demand: Vec<String>,
    /// Streams each held session carries (hex key → streams).
    #[serde(default)]
    pub(crate) session_streams: std::collections::BTreeMap<String, usize>,
}

/// `GET /api/v1/dmsg/fetch?url=dmsg://PK:PORT/PATH`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FetchQuery {
    /// The URL.
    pub(crate) url: String,
}

/// `POST /api/v1/tp`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TpAddRequest {
    /// The other visor's key (hex).
    pub(crate) pk: String,
}

/// `GET /api/v1/tp`. `T`: a transport (`tp::TransportInfo` on the node; clients print the
/// rows as they come).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TpList<T> {
    /// The visor's key.
    pub(crate) public_key: PubKey,
    /// Its transports.
    pub(crate) transports: Vec<T>,
}

/// `DELETE /api/v1/tp/{id}` answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TpRemoved {
    /// The transport id removed.
    pub(crate) removed: String,
}

/// `GET /api/v1/tp/all` as a client reads it (the node answers `tp::Catalog`); the rows are
/// printed as they come.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CatalogView {
    /// `local-store`, `dht` or `http`.
    pub(crate) source: Option<String>,
    /// Items read.
    pub(crate) items: u64,
    /// Items skipped.
    pub(crate) refused: u64,
    /// Why the HTTP fallback failed.
    pub(crate) fallback_error: Option<String>,
    /// The transports.
    pub(crate) transports: Vec<serde_json::Value>,
}

/// `POST` [`MsgSendRequest`]: `dmsg::mailbox::SendOutcome` (read as [`MsgSent`]).
pub(crate) const MSG_SEND: &str = "/api/v1/msg/send";
/// `GET ?`[`MsgInboxQuery`]: a list of [`MsgInboxEntry`].
pub(crate) const MSG_INBOX: &str = "/api/v1/msg/inbox";
/// `GET`: a list of [`MsgSentEntry`].
pub(crate) const MSG_SENT: &str = "/api/v1/msg/sent";

/// `POST /api/v1/msg/send`: exactly one of `text` and `payload_hex`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MsgSendRequest {
    /// Recipient key (hex).
    pub(crate) to: String,
    /// The message as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
    /// The message as hex bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload_hex: Option<String>,
    /// Time to live in seconds (default 24 h, at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ttl: Option<u32>,
}

/// The answer of `POST /api/v1/msg/send` as a client reads it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MsgSent {
    /// Message id (hex).
    pub(crate) id: String,
    /// Servers that stored it (hex).
    pub(crate) stored_on: Vec<String>,
    /// Servers that did not, with the reason.
    #[serde(default)]
    pub(crate) failed: Vec<(String, String)>,
}

/// `GET /api/v1/msg/inbox?after=N&wait_ms=MS`: with both, waits (≤ 60 s) until the inbox holds
/// more than N messages.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct MsgInboxQuery {
    /// Messages the client already has.
    #[serde(default)]
    pub(crate) after: Option<usize>,
    /// How long to wait for more.
    #[serde(default)]
    pub(crate) wait_ms: Option<u64>,
}

/// One received message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MsgInboxEntry {
    /// Message id (hex).
    pub(crate) id: String,
    /// Sender (hex).
    pub(crate) from: String,
    /// Created by the sender, Unix ms.
    pub(crate) sent_ms: u64,
    /// Received here, Unix ms.
    pub(crate) received_ms: u64,
    /// Would have expired, Unix ms.
    pub(crate) expires_ms: u64,
    /// Payload bytes.
    pub(crate) size: usize,
    /// The payload, when it is printable text.
    pub(crate) text: Option<String>,
}

/// One sent message and its status (`stored`, `delivered`, `expired`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MsgSentEntry {
    /// Message id (hex).
    pub(crate) id: String,
    /// Recipient (hex).
    pub(crate) to: String,
    /// Servers that stored it.
    pub(crate) servers: Vec<String>,
    /// Created, Unix ms.
    pub(crate) sent_ms: u64,
    /// Expires, Unix ms.
    pub(crate) expires_ms: u64,
    /// Delivered (receipt arrived), Unix ms.
    pub(crate) delivered_ms: Option<u64>,
    /// `stored`, `delivered` or `expired`.
    pub(crate) status: String,
}
