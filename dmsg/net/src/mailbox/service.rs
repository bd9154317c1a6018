//! The mailbox service of a DMSG server: one DMSG stream per client on the server's own key,
//! port [`MAILBOX_PORT`] (see [`super::wire`]).
//!
//! * `Store`: the envelope is decoded and its signature checked, then stored durably
//!   ([`MailboxStore::put`]); the answer is a signed `Stored` receipt or `Refused` with a reason.
//!   A subscriber waiting for that recipient gets it at once (push).
//! * `Subscribe`: only for the stream's own key (authenticated by the Noise KK handshake): every
//!   queued message is sent, then new ones as they arrive, until the stream closes. Unacknowledged
//!   messages stay queued and are sent again on the next subscription.
//! * `Ack`: the recipient wrote the message to its inbox; it is deleted (and its id remembered, so
//!   a replay is refused).
//!
//! Bounds: [`MAX_SUBSCRIPTIONS_PER_KEY`] live subscriptions per recipient, [`PUSH_QUEUE`]
//! messages waiting per subscription (beyond it a push is skipped: the message stays queued),
//! [`IDLE_TIMEOUT`] without a frame closes a non-subscribed stream.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keys::{PubKey, SecKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::envelope::Envelope;
use super::store::{MailboxStore, Put};
use super::wire::{Frame, Reason, Receipt};
use crate::lock;
use crate::metrics::MailboxMetrics;
use crate::stream::DmsgStream;

pub use super::wire::MAILBOX_PORT;

/// Live subscriptions per recipient key.
pub const MAX_SUBSCRIPTIONS_PER_KEY: usize = 4;
/// Pushed messages waiting per subscription.
pub const PUSH_QUEUE: usize = 256;
/// A stream that sends nothing for this long (and is not subscribed) is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Subscribers at once, all keys together (bounds the map keyed by remote keys).
pub const MAX_SUBSCRIBERS: usize = 65_536;
/// How often expired messages are purged.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// The service (one per server).
pub struct MailboxService {
    store: MailboxStore,
    sk: SecKey,
    subs: Mutex<HashMap<PubKey, Vec<mpsc::Sender<Envelope>>>>,
    metrics: MailboxMetrics,
}

impl std::fmt::Debug for MailboxService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxService")
            .field("server", &self.sk.pubkey())
            .field("stats", &self.store.stats())
            .finish()
    }
}

fn now_ms() -> u64 {
    u64::try_from(crate::now_ns() / 1_000_000).unwrap_or(0)
}

impl MailboxService {
    /// A service storing in `store` and signing receipts with the server's key `sk`.
    pub fn new(store: MailboxStore, sk: SecKey, metrics: MailboxMetrics) -> Arc<MailboxService> {
        let s = Arc::new(MailboxService {
            store,
            sk,
            subs: Mutex::new(HashMap::new()),
            metrics,
        });
        s.update_gauges();
        s
    }

    /// The store.
    pub fn store(&self) -> &MailboxStore {
        &self.store
    }

    fn update_gauges(&self) {
        let st = self.store.stats();
        self.metrics.queued_messages.set(st.messages as i64);
        self.metrics.queued_bytes.set(st.bytes as i64);
    }

    /// Drops expired messages (call periodically).
    pub fn purge(&self) {
        let n = self.store.purge(now_ms());
        self.metrics.expired.inc_by(n as u64);
        self.update_gauges();
    }

    /// Purges expired messages every `every` until the service is dropped.
    pub fn spawn_purger(self: &Arc<Self>, every: Duration) -> crate::AbortOnDrop {
        let weak = Arc::downgrade(self);
        crate::AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(s) = weak.upgrade() else { return };
                s.purge();
            }
        }))
    }

    /// Serves one client stream until it closes.
    pub async fn serve(self: Arc<Self>, mut stream: DmsgStream) {
        let remote = stream.remote_addr().pk;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut pushes: Option<mpsc::Receiver<Envelope>> = None;
        let mut out = Vec::new();
        loop {
            // Decode every whole frame we have.
            loop {
                match Frame::decode(&buf) {
                    Ok(Some((f, used))) => {
                        buf.drain(..used);
                        out.clear();
                        match self.handle(remote, f, &mut pushes, &mut out).await {
                            Ok(()) => {}
                            Err(()) => return,
                        }
                        if !out.is_empty() && stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "bad mailbox frame; closing");
                        self.metrics.refused(Reason::Invalid);
                        return;
                    }
                }
            }
            let idle = if pushes.is_some() {
                Duration::from_secs(24 * 3600)
            } else {
                IDLE_TIMEOUT
            };
            tokio::select! {
                r = tokio::time::timeout(idle, stream.read(&mut chunk)) => match r {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                },
                Some(e) = recv_push(&mut pushes) => {
                    out.clear();
                    Frame::Deliver(e.as_bytes().to_vec()).encode(&mut out);
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn handle(
        &self,
        remote: PubKey,
        f: Frame,
        pushes: &mut Option<mpsc::Receiver<Envelope>>,
        out: &mut Vec<u8>,
    ) -> Result<(), ()> {
        match f {
            Frame::Store(raw) => {
                let e = match Envelope::decode(&raw) {
                    Ok(e) => e,
                    Err(err) => {
                        tracing::debug!(%remote, error = %err, "mailbox envelope refused");
                        self.metrics.refused(Reason::Invalid);
                        let id = raw
                            .get(72..88)
                            .and_then(|b| b.try_into().ok())
                            .unwrap_or([0; 16]);
                        Frame::Refused(id, Reason::Invalid).encode(out);
                        return Ok(());
                    }
                };
                match self.store.put(e.clone(), now_ms()).await {
                    Ok(put) => {
                        if put == Put::Stored {
                            self.metrics.stored.inc();
                            self.push(&e);
                        }
                        self.update_gauges();
                        Frame::Stored(Receipt::sign(&self.sk, e.id, now_ms())).encode(out);
                    }
                    Err(why) => {
                        self.metrics.refused(why);
                        Frame::Refused(e.id, why).encode(out);
                    }
                }
            }
            Frame::Subscribe => {
                if pushes.is_some() {
                    return Ok(());
                }
                let (tx, rx) = mpsc::channel(PUSH_QUEUE);
                {
                    let mut subs = lock(&self.subs);
                    let n: usize = subs.values().map(Vec::len).sum();
                    let mine = subs.entry(remote).or_default();
                    mine.retain(|s| !s.is_closed());
                    if mine.len() >= MAX_SUBSCRIPTIONS_PER_KEY || n >= MAX_SUBSCRIBERS {
                        return Err(());
                    }
                    mine.push(tx);
                }
                *pushes = Some(rx);
                for e in self.store.queued(&remote, now_ms()) {
                    Frame::Deliver(e.as_bytes().to_vec()).encode(out);
                }
            }
            Frame::Ack(id) => {
                if self.store.ack(remote, id, now_ms()).await {
                    self.metrics.delivered.inc();
                    self.update_gauges();
                }
            }
            // Server-to-client frames from a client: a confused or hostile peer.
            Frame::Stored(_) | Frame::Refused(..) | Frame::Deliver(_) => return Err(()),
        }
        Ok(())
    }

    fn push(&self, e: &Envelope) {
        let mut subs = lock(&self.subs);
        if let Some(list) = subs.get_mut(&e.recipient) {
            list.retain(|s| !s.is_closed());
            for s in list.iter() {
                // Full: skip; the message stays queued for the next subscription.
                let _ = s.try_send(e.clone());
            }
            if list.is_empty() {
                subs.remove(&e.recipient);
            }
        }
    }
}

async fn recv_push(p: &mut Option<mpsc::Receiver<Envelope>>) -> Option<Envelope> {
    match p {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
