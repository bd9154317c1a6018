//! A mailbox server's durable queue: an append-only log in the data directory, fsync'd before a
//! "stored" receipt is given, replayed on start (a torn tail from a crash is cut off), compacted
//! when mostly garbage. One writer thread takes the requests in batches (group commit: one fsync
//! per batch), so many concurrent senders cost one disk flush.
//!
//! ```text
//! record = u32 BE length (1 + body) ‖ u8 kind ‖ body ‖ first 8 bytes of SHA256(kind ‖ body)
//! kind 1 put        body = envelope
//! kind 2 ack        body = recipient key (33) ‖ message id (16)
//! kind 3 tombstone  body = recipient key (33) ‖ message id (16) ‖ expires, Unix ms u64 BE
//! ```
//!
//! Bounds ([`Limits`]): messages and bytes per recipient, bytes per server, messages per sender
//! per minute, acknowledged ids remembered (replays refused) until their envelope would have
//! expired, at most [`MAX_TOMBSTONES`].
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use keys::PubKey;
use tokio::sync::{mpsc, oneshot};

use super::envelope::{Envelope, MsgId};
use super::wire::Reason;
use crate::lock;

/// Acknowledged ids remembered at most (a bounded map keyed by remote input).
pub const MAX_TOMBSTONES: usize = 1_000_000;
/// Requests waiting for the writer thread.
pub const WRITE_QUEUE: usize = 4096;
/// Requests written per fsync at most.
pub const MAX_BATCH: usize = 1024;
/// Senders whose rate is tracked at once (the oldest window is dropped beyond it).
const MAX_SENDERS_TRACKED: usize = 100_000;
const LOG_FILE: &str = "mailbox.log";

/// Mailbox bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages queued per recipient (default 1000).
    pub per_recipient_msgs: usize,
    /// Bytes queued per recipient (default 16 MiB).
    pub per_recipient_bytes: usize,
    /// Bytes queued on this server (default 1 GiB).
    pub total_bytes: usize,
    /// Messages a sender may store per minute (default 600).
    pub per_sender_per_min: u32,
    /// How far in the future a creation time may lie (clock skew; default 10 min).
    pub max_future_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_recipient_msgs: 1000,
            per_recipient_bytes: 16 << 20,
            total_bytes: 1 << 30,
            per_sender_per_min: 600,
            max_future_ms: 10 * 60 * 1000,
        }
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Written and fsync'd.
    Stored,
    /// Already queued (a retry): nothing written, the message is still durable.
    Duplicate,
}

/// Queue sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages queued.
    pub messages: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Recipients with messages.
    pub recipients: usize,
}

#[derive(Default)]
struct State {
    queues: HashMap<PubKey, BTreeMap<u64, Envelope>>,
    by_id: HashMap<(PubKey, MsgId), u64>,
    bytes: HashMap<PubKey, usize>,
    total: usize,
    tombstones: HashMap<(PubKey, MsgId), u64>,
    senders: HashMap<PubKey, (u64, u32)>,
    seq: u64,
    garbage: u64,
    live: u64,
}

impl State {
    fn check(&mut self, e: &Envelope, lim: &Limits, now_ms: u64) -> Result<Put, Reason> {
        let key = (e.recipient, e.id);
        if self.by_id.contains_key(&key) {
            return Ok(Put::Duplicate);
        }
        if self.tombstones.contains_key(&key) {
            return Err(Reason::Replay);
        }
        if e.expired(now_ms) || e.created_ms > now_ms.saturating_add(lim.max_future_ms) {
            return Err(Reason::Expired);
        }
        let len = e.as_bytes().len();
        let q = self.queues.get(&e.recipient).map_or(0, BTreeMap::len);
        let b = self.bytes.get(&e.recipient).copied().unwrap_or(0);
        if q >= lim.per_recipient_msgs || b + len > lim.per_recipient_bytes {
            return Err(Reason::RecipientQuota);
        }
        if self.total + len > lim.total_bytes {
            return Err(Reason::ServerFull);
        }
        if self.senders.len() >= MAX_SENDERS_TRACKED && !self.senders.contains_key(&e.sender) {
            self.senders
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < 60_000);
        }
        let w = self.senders.entry(e.sender).or_insert((now_ms, 0));
        if now_ms.saturating_sub(w.0) >= 60_000 {
            *w = (now_ms, 0);
        }
        if w.1 >= lim.per_sender_per_min {
            return Err(Reason::SenderRate);
        }
        w.1 += 1;
        Ok(Put::Stored)
    }

    fn insert(&mut self, e: Envelope) {
        let key = (e.recipient, e.id);
        if self.by_id.contains_key(&key) {
            return;
        }
        self.seq += 1;
        let len = e.as_bytes().len();
        self.by_id.insert(key, self.seq);
        *self.bytes.entry(e.recipient).or_default() += len;
        self.total += len;
        self.live += 1;
        self.queues
            .entry(e.recipient)
            .or_default()
            .insert(self.seq, e);
    }

    fn remove(&mut self, recipient: &PubKey, id: &MsgId) -> Option<Envelope> {
        let seq = self.by_id.remove(&(*recipient, *id))?;
        let q = self.queues.get_mut(recipient)?;
        let e = q.remove(&seq)?;
        if q.is_empty() {
            self.queues.remove(recipient);
        }
        let len = e.as_bytes().len();
        if let Some(b) = self.bytes.get_mut(recipient) {
            *b = b.saturating_sub(len);
            if *b == 0 {
                self.bytes.remove(recipient);
            }
        }
        self.total = self.total.saturating_sub(len);
        self.live = self.live.saturating_sub(1);
        self.garbage += 1;
        Some(e)
    }

    fn tombstone(&mut self, recipient: PubKey, id: MsgId, expires_ms: u64, now_ms: u64) {
        if self.tombstones.len() >= MAX_TOMBSTONES {
            self.tombstones.retain(|_, exp| *exp > now_ms);
            if self.tombstones.len() >= MAX_TOMBSTONES {
                let oldest = self
                    .tombstones
                    .iter()
                    .min_by_key(|(_, e)| **e)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.tombstones.remove(&k);
                }
            }
        }
        self.tombstones.insert((recipient, id), expires_ms);
    }
}

enum Req {
    Put(Envelope, u64, oneshot::Sender<Result<Put, Reason>>),
    Ack(PubKey, MsgId, u64, oneshot::Sender<bool>),
}

/// The durable queue (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct MailboxStore {
    state: Arc<Mutex<State>>,
    tx: mpsc::Sender<Req>,
    limits: Limits,
}

impl MailboxStore {
    /// Opens (or creates) the log in `dir`, replays it (dropping expired messages and a torn
    /// tail), compacts it when mostly garbage, and starts the writer thread.
    pub fn open(dir: &Path, limits: Limits, now_ms: u64) -> io::Result<MailboxStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut st = State::default();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let valid = replay(&mut file, &mut st, now_ms)?;
        file.set_len(valid)?;
        if st.garbage > st.live + 1000 {
            file = compact(&path, &st)?;
            st.garbage = 0;
        }
        let state = Arc::new(Mutex::new(st));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let st2 = state.clone();
        std::thread::Builder::new()
            .name("mailbox-writer".into())
            .spawn(move || writer(file, st2, rx, limits))?;
        Ok(MailboxStore { state, tx, limits })
    }

    /// Stores `e` durably (fsync'd when this returns `Stored`), or says why not.
    pub async fn put(&self, e: Envelope, now_ms: u64) -> Result<Put, Reason> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Req::Put(e, now_ms, tx))
            .await
            .map_err(|_| Reason::Storage)?;
        rx.await.map_err(|_| Reason::Storage)?
    }

    /// Deletes a delivered message (durably); `false` if it was not queued.
    pub async fn ack(&self, recipient: PubKey, id: MsgId, now_ms: u64) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(Req::Ack(recipient, id, now_ms, tx))
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// The messages queued for `recipient`, oldest first, without expired ones.
    pub fn queued(&self, recipient: &PubKey, now_ms: u64) -> Vec<Envelope> {
        lock(&self.state)
            .queues
            .get(recipient)
            .map(|q| q.values().filter(|e| !e.expired(now_ms)).cloned().collect())
            .unwrap_or_default()
    }

    /// Drops expired messages; returns how many.
    pub fn purge(&self, now_ms: u64) -> usize {
        let mut st = lock(&self.state);
        let expired: Vec<(PubKey, MsgId)> = st
            .queues
            .values()
            .flat_map(|q| q.values())
            .filter(|e| e.expired(now_ms))
            .map(|e| (e.recipient, e.id))
            .collect();
        for (r, id) in &expired {
            st.remove(r, id);
        }
        st.tombstones.retain(|_, exp| *exp > now_ms);
        expired.len()
    }

    /// Queue sizes.
    pub fn stats(&self) -> Stats {
        let st = lock(&self.state);
        Stats {
            messages: st.by_id.len(),
            bytes: st.total,
            recipients: st.queues.len(),
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

fn checksum(kind: u8, body: &[u8]) -> [u8; 8] {
    let mut m = Vec::with_capacity(1 + body.len());
    m.push(kind);
    m.extend_from_slice(body);
    let h = keys::sha256(&m);
    let mut c = [0u8; 8];
    c.copy_from_slice(&h[..8]);
    c
}

fn record(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out.extend_from_slice(&checksum(kind, body));
}

fn key_id(r: &PubKey, id: &MsgId) -> Vec<u8> {
    let mut b = r.as_bytes().to_vec();
    b.extend_from_slice(id);
    b
}

/// Applies every whole, intact record; returns the length of the valid prefix.
fn replay(file: &mut File, st: &mut State, now_ms: u64) -> io::Result<u64> {
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut data)?;
    let mut pos = 0usize;
    while data.len() >= pos + 5 {
        let len =
            u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let end = pos + 4 + len + 8;
        if len == 0 || end > data.len() {
            break;
        }
        let kind = data[pos + 4];
        let body = &data[pos + 5..pos + 4 + len];
        if data[pos + 4 + len..end] != checksum(kind, body) {
            break;
        }
        match kind {
            1 => {
                if let Ok(e) = Envelope::decode(body)
                    && !e.expired(now_ms)
                {
                    st.insert(e);
                } else {
                    st.garbage += 1;
                }
            }
            2 | 3 if body.len() >= 49 => {
                let Ok(r) = PubKey::from_bytes(&body[..33]) else {
                    break;
                };
                let mut id = [0u8; 16];
                id.copy_from_slice(&body[33..49]);
                let expires = if kind == 3 && body.len() == 57 {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&body[49..57]);
                    u64::from_be_bytes(t)
                } else {
                    st.remove(&r, &id).map_or(0, |e| e.expires_ms())
                };
                if expires > now_ms {
                    st.tombstone(r, id, expires, now_ms);
                }
                st.garbage += 1;
            }
            _ => break,
        }
        pos = end;
    }
    Ok(pos as u64)
}

/// Rewrites the log with the live messages and tombstones only (tmp file, fsync, rename).
fn compact(path: &Path, st: &State) -> io::Result<File> {
    let tmp: PathBuf = path.with_extension("compact");
    let mut out = Vec::new();
    for ((r, id), exp) in &st.tombstones {
        let mut b = key_id(r, id);
        b.extend_from_slice(&exp.to_be_bytes());
        record(3, &b, &mut out);
    }
    for e in st.queues.values().flat_map(|q| q.values()) {
        record(1, e.as_bytes(), &mut out);
    }
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().read(true).append(true).open(path)
}

fn writer(mut file: File, state: Arc<Mutex<State>>, mut rx: mpsc::Receiver<Req>, lim: Limits) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Decide under the lock (limits see the batch's own earlier puts), write, fsync, then
        // make the accepted puts visible and answer.
        let mut out = Vec::new();
        let mut decided = Vec::with_capacity(batch.len());
        {
            let mut st = lock(&state);
            for req in batch {
                match req {
                    Req::Put(e, now, reply) => {
                        let d = st.check(&e, &lim, now);
                        if d == Ok(Put::Stored) {
                            record(1, e.as_bytes(), &mut out);
                            // Reserve its room now so the rest of the batch counts it. A
                            // subscription may see it before the fsync below returns; no
                            // receipt (and no push) is given until then, and a failed write
                            // withdraws it.
                            st.insert(e.clone());
                        }
                        decided.push((Some((e, reply, d)), None));
                    }
                    Req::Ack(r, id, now, reply) => {
                        let found = st.remove(&r, &id);
                        if let Some(e) = &found {
                            record(2, &key_id(&r, &id), &mut out);
                            st.tombstone(r, id, e.expires_ms(), now);
                        }
                        decided.push((None, Some((reply, found.is_some()))));
                    }
                }
            }
        }
        let durable =
            out.is_empty() || file.write_all(&out).and_then(|()| file.sync_data()).is_ok();
        if !durable {
            tracing::error!("mailbox log write failed; refusing this batch");
        }
        let mut st = lock(&state);
        for (put, ack) in decided {
            if let Some((e, reply, d)) = put {
                let d = match d {
                    Ok(Put::Stored) if !durable => {
                        st.remove(&e.recipient, &e.id);
                        Err(Reason::Storage)
                    }
                    d => d,
                };
                let _ = reply.send(d);
            }
            if let Some((reply, found)) = ack {
                let _ = reply.send(found && durable);
            }
        }
    }
}
