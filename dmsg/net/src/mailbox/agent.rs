//! A visor's side of store-and-forward: sending to a recipient's mailbox servers, keeping
//! subscriptions to its own, writing what arrives to its inbox exactly once, acknowledging it,
//! and returning *delivered* receipts to senders.
//!
//! * **Where messages wait**: [`mailbox_servers`] — the [`MAILBOX_COPIES`] published DMSG
//!   servers whose key hashes are closest (XOR) to the hash of the recipient key (anyone can
//!   compute them without talking to the recipient, so a visor that was never online still gets
//!   its messages), plus the recipient's delegated servers when it has an entry.
//! * **Inbox**: `DATA/mailbox/inbox.jsonl`, one JSON line per message, fsync'd before the
//!   server is told to delete it. A message id already in the inbox is acknowledged again but
//!   not added (exactly once, also with two mailbox servers and across restarts).
//! * **Sent**: `DATA/mailbox/sent.jsonl` records each message sent and, when its delivered
//!   receipt arrives, its delivery time; status is `stored`, `delivered` or `expired`.
//! * Subscriptions are re-established every [`RESUBSCRIBE`] (the server set is recomputed then;
//!   a server re-sends whatever is still unacknowledged on each new subscription).
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keys::{PubKey, SecKey};
use tokio::sync::Notify;

use super::client::{MailboxConn, MailboxError};
use super::envelope::{DEFAULT_TTL_SECS, Draft, Envelope, FLAG_RECEIPT, MsgId};
use super::wire::mailbox_servers;
use crate::client::{Client, NewSession};
use crate::discovery::Discovery;
use crate::{AbortOnDrop, lock};

/// Mailbox servers chosen by key distance per recipient.
pub const MAILBOX_COPIES: usize = 2;
/// Servers a visor subscribes to for itself: one more than senders use, so a server that joins
/// closer to it does not hide messages stored before it joined.
pub const SUBSCRIBE_COPIES: usize = MAILBOX_COPIES + 1;
/// How often subscriptions are renewed and the server set recomputed.
pub const RESUBSCRIBE: Duration = Duration::from_secs(60);
/// Failed subscription attempts through held sessions (the mesh) before one opens a session
/// with the mailbox server itself (with the pauses between, about 8 s).
pub const MESH_TRIES: u32 = 4;
/// How long a subscription on a session of its own (the fallback) lasts before the mesh is
/// tried again, so that session is not held once the mesh is up (unacknowledged messages are
/// delivered again on the next subscription and deduplicated).
pub const FALLBACK_RENEW: Duration = Duration::from_secs(20);
/// How long the list of published servers is reused between sends.
pub const SERVER_LIST_TTL: Duration = Duration::from_secs(10);
/// How long a list with fewer servers than a send wants copies on is reused: while a visor
/// starts, its first list may hold only the servers that had published by then, and ten
/// seconds of sends stored once each would be ten seconds of needless risk.
pub const SHORT_SERVER_LIST_TTL: Duration = Duration::from_secs(1);
/// Sent messages remembered in memory (oldest dropped beyond it).
pub const MAX_SENT: usize = 10_000;

/// One message in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InboxEntry {
    /// Message id (hex).
    pub id: String,
    /// Sender key (hex).
    pub from: String,
    /// When the sender created it, Unix ms (the sender's clock).
    pub sent_ms: u64,
    /// When it reached this inbox, Unix ms.
    pub received_ms: u64,
    /// When it would have expired, Unix ms.
    pub expires_ms: u64,
    /// Payload (hex).
    pub payload: String,
}

impl InboxEntry {
    /// The payload as text, when it is printable UTF-8.
    pub fn text(&self) -> Option<String> {
        let b = hex::decode(&self.payload).ok()?;
        let s = String::from_utf8(b).ok()?;
        s.chars()
            .all(|c| !c.is_control() || c == '\n' || c == '\t')
            .then_some(s)
    }

    /// Payload size in bytes.
    pub fn size(&self) -> usize {
        self.payload.len() / 2
    }
}

/// A message this visor sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SentEntry {
    /// Message id (hex).
    pub id: String,
    /// Recipient (hex).
    pub to: String,
    /// Servers that stored it (hex).
    pub servers: Vec<String>,
    /// Created, Unix ms.
    pub sent_ms: u64,
    /// Expires, Unix ms.
    pub expires_ms: u64,
    /// When the delivered receipt arrived, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_ms: Option<u64>,
}

impl SentEntry {
    /// `delivered`, `expired` or `stored`.
    pub fn status(&self, now_ms: u64) -> &'static str {
        match self.delivered_ms {
            Some(_) => "delivered",
            None if now_ms >= self.expires_ms => "expired",
            None => "stored",
        }
    }
}

/// What a send did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendOutcome {
    /// Message id (hex).
    pub id: String,
    /// Servers that stored it and signed a receipt (hex).
    pub stored_on: Vec<String>,
    /// Servers that did not, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Why a send failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The envelope could not be made (size, TTL).
    #[error("building the message")]
    Envelope(#[from] super::envelope::EnvelopeError),
    /// No DMSG server is known.
    #[error("no DMSG server is known to hold the message")]
    NoServers,
    /// Every mailbox server refused or was unreachable.
    #[error("no mailbox server stored the message: {0}")]
    NotStored(String),
}

struct Files {
    dir: PathBuf,
    inbox: Vec<InboxEntry>,
    seen: HashSet<String>,
    sent: Vec<SentEntry>,
}

impl Files {
    fn append(&self, name: &str, line: &impl serde::Serialize) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))?;
        let mut s = serde_json::to_string(line).map_err(std::io::Error::other)?;
        s.push('\n');
        f.write_all(s.as_bytes())?;
        f.sync_data()
    }
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

struct Inner {
    sk: SecKey,
    client: Arc<Client>,
    disc: Arc<dyn Discovery>,
    files: Mutex<Files>,
    changed: Notify,
    subs: Mutex<HashMap<PubKey, AbortOnDrop>>,
    /// The published servers, reused for [`SERVER_LIST_TTL`]: listing them asks the full nodes,
    /// which a burst of sends should not repeat per message.
    servers: Mutex<Option<(std::time::Instant, Vec<PubKey>)>>,
}

/// A visor's mailbox agent. Dropping it stops its subscriptions.
pub struct MailboxAgent {
    inner: Arc<Inner>,
    _task: AbortOnDrop,
}

fn now_ms() -> u64 {
    u64::try_from(crate::now_ns() / 1_000_000).unwrap_or(0)
}

impl MailboxAgent {
    /// Starts the agent for `client`'s key (`sk`), with its files in `dir`.
    pub fn spawn(
        sk: SecKey,
        client: Arc<Client>,
        disc: Arc<dyn Discovery>,
        dir: &Path,
    ) -> std::io::Result<MailboxAgent> {
        std::fs::create_dir_all(dir)?;
        let inbox: Vec<InboxEntry> = load(&dir.join("inbox.jsonl"));
        let mut sent: HashMap<String, SentEntry> = HashMap::new();
        for s in load::<SentEntry>(&dir.join("sent.jsonl")) {
            sent.insert(s.id.clone(), s);
        }
        let mut sent: Vec<SentEntry> = sent.into_values().collect();
        sent.sort_by_key(|s| s.sent_ms);
        let seen = inbox.iter().map(|e| e.id.clone()).collect();
        let inner = Arc::new(Inner {
            sk,
            client,
            disc,
            files: Mutex::new(Files {
                dir: dir.to_path_buf(),
                inbox,
                seen,
                sent,
            }),
            changed: Notify::new(),
            subs: Mutex::new(HashMap::new()),
            servers: Mutex::new(None),
        });
        let task = AbortOnDrop(tokio::spawn(maintain(inner.clone())));
        Ok(MailboxAgent { inner, _task: task })
    }

    /// Sends `payload` to `to` (TTL `ttl_secs`, default 24 h): stored on its mailbox servers.
    pub async fn send(
        &self,
        to: PubKey,
        payload: &[u8],
        ttl_secs: Option<u32>,
    ) -> Result<SendOutcome, SendError> {
        let ttl = ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
        let d = Draft {
            to,
            payload,
            ttl_secs: ttl,
            flags: 0,
        };
        let e = Envelope::seal(
            &self.inner.sk,
            &d,
            rand::random(),
            now_ms(),
            &SecKey::generate(),
        )?;
        let out = store_everywhere(&self.inner, &e).await?;
        let entry = SentEntry {
            id: out.id.clone(),
            to: to.to_hex(),
            servers: out.stored_on.clone(),
            sent_ms: e.created_ms,
            expires_ms: e.expires_ms(),
            delivered_ms: None,
        };
        let mut f = lock(&self.inner.files);
        if let Err(err) = f.append("sent.jsonl", &entry) {
            tracing::warn!(error = %err, "recording a sent message failed");
        }
        f.sent.push(entry);
        if f.sent.len() > MAX_SENT {
            f.sent.remove(0);
        }
        drop(f);
        self.inner.changed.notify_waiters();
        Ok(out)
    }

    /// The inbox, oldest first.
    pub fn inbox(&self) -> Vec<InboxEntry> {
        lock(&self.inner.files).inbox.clone()
    }

    /// Sent messages, oldest first.
    pub fn sent(&self) -> Vec<SentEntry> {
        lock(&self.inner.files).sent.clone()
    }

    /// Resolves at the next change of the inbox or of a sent message's status.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// Servers we hold subscriptions with now.
    pub fn subscribed(&self) -> Vec<PubKey> {
        lock(&self.inner.subs).keys().copied().collect()
    }
}

/// Whether a list of `len` published servers fetched `age` ago may serve a lookup that wants
/// `copies` of them: an empty list never, a short one for [`SHORT_SERVER_LIST_TTL`], a full one
/// for [`SERVER_LIST_TTL`].
fn list_reusable(age: Duration, len: usize, copies: usize) -> bool {
    let ttl = if len < copies {
        SHORT_SERVER_LIST_TTL
    } else {
        SERVER_LIST_TTL
    };
    len > 0 && age < ttl
}

/// The mailbox servers of `pk`: the `copies` closest published servers plus its delegated
/// servers.
async fn servers_for(inner: &Inner, pk: PubKey, copies: usize) -> Vec<PubKey> {
    let cached = lock(&inner.servers)
        .as_ref()
        .filter(|(t, v)| list_reusable(t.elapsed(), v.len(), copies))
        .map(|(_, v)| v.clone());
    let all = match cached {
        Some(v) => v,
        None => {
            let v: Vec<PubKey> = inner
                .disc
                .all_servers()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.static_pk)
                .collect();
            *lock(&inner.servers) = Some((std::time::Instant::now(), v.clone()));
            v
        }
    };
    let mut v = mailbox_servers(&pk, &all, copies);
    if let Ok(e) = inner.disc.entry(pk).await {
        for s in e
            .client
            .and_then(|c| c.delegated_servers)
            .unwrap_or_default()
        {
            if !v.contains(&s) {
                v.push(s);
            }
        }
    }
    v
}

async fn store_everywhere(inner: &Inner, e: &Envelope) -> Result<SendOutcome, SendError> {
    let servers = servers_for(inner, e.recipient, MAILBOX_COPIES).await;
    if servers.is_empty() {
        return Err(SendError::NoServers);
    }
    let tries = servers.iter().map(|s| async move {
        let r = async {
            let mut c = MailboxConn::open(&inner.client, *s).await?;
            c.store(e).await
        }
        .await;
        (*s, r)
    });
    let mut out = SendOutcome {
        id: hex::encode(e.id),
        stored_on: Vec::new(),
        failed: Vec::new(),
    };
    for (s, r) in futures_join(tries).await {
        match r {
            Ok(_) => out.stored_on.push(s.to_hex()),
            Err(err) => out.failed.push((s.to_hex(), err.to_string())),
        }
    }
    if out.stored_on.is_empty() {
        let why: Vec<String> = out.failed.iter().map(|(_, e)| e.clone()).collect();
        return Err(SendError::NotStored(why.join("; ")));
    }
    Ok(out)
}

async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}

/// Keeps one subscription task per mailbox server of ours, recomputed every [`RESUBSCRIBE`].
async fn maintain(inner: Arc<Inner>) {
    loop {
        let me = inner.sk.pubkey();
        let want = servers_for(&inner, me, SUBSCRIBE_COPIES).await;
        {
            let mut subs = lock(&inner.subs);
            subs.retain(|s, _| want.contains(s));
            for s in &want {
                subs.entry(*s)
                    .or_insert_with(|| AbortOnDrop(tokio::spawn(subscribe(inner.clone(), *s))));
            }
        }
        tokio::time::sleep(if want.is_empty() {
            Duration::from_secs(2)
        } else {
            RESUBSCRIBE
        })
        .await;
        // Renew: new streams get whatever is still unacknowledged.
        lock(&inner.subs).clear();
    }
}

/// One subscription: receive, write to the inbox, acknowledge; redial after a pause on error.
async fn subscribe(inner: Arc<Inner>, server: PubKey) {
    let mut backoff =
        dmsg_proto::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut failures = 0;
    loop {
        // Through the sessions we hold (and the server mesh) first: a session of its own with
        // the server only after MESH_TRIES failures, e.g. when the servers are not meshed.
        let new = if failures < MESH_TRIES {
            NewSession::Never
        } else {
            NewSession::Allow
        };
        let run = run_subscription(&inner, server, new);
        let ended = match new {
            NewSession::Never => run.await,
            // A session of its own is a fallback: back to the mesh after a while.
            _ => match tokio::time::timeout(FALLBACK_RENEW, run).await {
                Ok(r) => r,
                Err(_) => {
                    failures = 0;
                    backoff.reset();
                    continue;
                }
            },
        };
        match ended {
            Ok(()) => {
                failures = 0;
                backoff.reset();
            }
            Err(e) => {
                failures += 1;
                tracing::debug!(%server, error = %e, "mailbox subscription ended");
            }
        }
        tokio::time::sleep(backoff.next_delay(rand::random::<f64>())).await;
    }
}

async fn run_subscription(
    inner: &Arc<Inner>,
    server: PubKey,
    new: NewSession,
) -> Result<(), MailboxError> {
    let me = inner.sk.pubkey();
    let mut c = MailboxConn::open_with(&inner.client, server, new).await?;
    c.subscribe().await?;
    while let Some(e) = c.next().await? {
        if e.recipient != me {
            tracing::warn!(%server, "mailbox server delivered a message for another key; ignored");
            continue;
        }
        let Ok(payload) = e.open(&inner.sk) else {
            tracing::warn!(%server, from = %e.sender, "undecryptable message; acknowledged and dropped");
            c.ack(e.id).await?;
            continue;
        };
        if e.is_receipt() {
            mark_delivered(inner, &e.sender, &payload);
            c.ack(e.id).await?;
            continue;
        }
        let id = hex::encode(e.id);
        let fresh = {
            let mut f = lock(&inner.files);
            if f.seen.contains(&id) {
                false
            } else {
                let entry = InboxEntry {
                    id: id.clone(),
                    from: e.sender.to_hex(),
                    sent_ms: e.created_ms,
                    received_ms: now_ms(),
                    expires_ms: e.expires_ms(),
                    payload: hex::encode(&payload),
                };
                if f.append("inbox.jsonl", &entry).is_err() {
                    // Not durable: do not acknowledge; the server sends it again.
                    continue;
                }
                f.seen.insert(id);
                f.inbox.push(entry);
                true
            }
        };
        c.ack(e.id).await?;
        if fresh {
            inner.changed.notify_waiters();
            let inner = inner.clone();
            tokio::spawn(async move { send_receipt(&inner, &e).await });
        }
    }
    Ok(())
}

/// Tells the sender its message arrived (a receipt envelope, queued for it in turn).
async fn send_receipt(inner: &Inner, e: &Envelope) {
    let d = Draft {
        to: e.sender,
        payload: &e.id,
        ttl_secs: e.ttl_secs,
        flags: FLAG_RECEIPT,
    };
    let Ok(r) = Envelope::seal(&inner.sk, &d, rand::random(), now_ms(), &SecKey::generate()) else {
        return;
    };
    if let Err(err) = store_everywhere(inner, &r).await {
        tracing::debug!(error = %err, "delivered receipt not stored");
    }
}

/// Marks a sent message delivered; only its recipient's signed receipt counts.
fn mark_delivered(inner: &Inner, by: &PubKey, payload: &[u8]) {
    let Ok(id) = <MsgId>::try_from(payload) else {
        return;
    };
    let id = hex::encode(id);
    let mut f = lock(&inner.files);
    let now = now_ms();
    let by = by.to_hex();
    let Some(pos) = f
        .sent
        .iter()
        .position(|s| s.id == id && s.to == by && s.delivered_ms.is_none())
    else {
        return;
    };
    f.sent[pos].delivered_ms = Some(now);
    let entry = f.sent[pos].clone();
    if let Err(err) = f.append("sent.jsonl", &entry) {
        tracing::warn!(error = %err, "recording a delivery failed");
    }
    drop(f);
    inner.changed.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_server_list_is_fetched_again_sooner() {
        let s = Duration::from_millis(500);
        assert!(list_reusable(s, 2, MAILBOX_COPIES));
        assert!(list_reusable(s, 1, MAILBOX_COPIES));
        assert!(!list_reusable(s, 0, MAILBOX_COPIES));
        let late = SHORT_SERVER_LIST_TTL + s;
        assert!(list_reusable(late, 2, MAILBOX_COPIES));
        assert!(!list_reusable(late, 1, MAILBOX_COPIES));
        assert!(!list_reusable(SERVER_LIST_TTL, 2, MAILBOX_COPIES));
    }
}
