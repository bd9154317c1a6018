//! [`RedisMirror`]: signs items with a service key and writes them into Redis.
//!
//! A handle ([`RedisMirror`], cheap to share behind an `Arc`) feeds a bounded queue; one writer
//! task drains it in batches of up to [`MirrorConfig::batch`] writes, sends each batch as one
//! pipeline of script calls (see [`crate::script`]), and answers every caller with Redis's
//! verdict. While Redis is unreachable the task keeps the batch and retries with capped
//! exponential backoff; the queue fills up to [`MirrorConfig::queue`] and further writes fail at
//! once with [`MirrorError::BufferFull`]. A caller waits at most [`MirrorConfig::put_timeout`].
//! So `Ok` always means "acknowledged by Redis", and no write is dropped silently.
use std::sync::Mutex;
use std::time::Duration;

use dht::{Item, PutError, Salt, SeqClock, Target, Timestamp, rules};
use keys::{PubKey, SecKey};
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use crate::conn::{Conn, Endpoint};
use crate::error::MirrorError;
use crate::keys::{SHARDS, changes_key, items_key, parse_seq_hex, seq_hex, shard_of};
use crate::reconnect::Reconnect;
use crate::script::PUT_SCRIPT;

/// Default bound of pending writes. 10 000 items of ≤ 64 KiB is ≤ 640 MiB in the worst case,
/// typically a few MiB; enough to ride out a Redis failover of several seconds at 1k writes/s.
pub const DEFAULT_QUEUE: usize = 10_000;
/// Default writes per pipeline: large enough to amortise round trips and script calls (a batch
/// is one script call per shard, ~64 items each), small enough that one batch (≤ 1024 × 64 KiB
/// in the worst case, ~250 KiB typically) stays well under Redis's client buffer limits.
pub const DEFAULT_BATCH: usize = 1024;
/// Default approximate length of each shard's change stream. Readers more than this many
/// changes behind a shard reload it in full.
pub const DEFAULT_STREAM_MAXLEN: usize = 1_000_000;
/// Default time a caller waits for Redis's acknowledgement.
pub const DEFAULT_PUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Backoff cap between reconnect attempts (see [`crate::reconnect`]).
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Connect and response timeout of the Redis connection.
pub const REDIS_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration of a [`RedisMirror`].
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Pending-write bound (default [`DEFAULT_QUEUE`]).
    pub queue: usize,
    /// Writes per pipeline (default [`DEFAULT_BATCH`]).
    pub batch: usize,
    /// Approximate change-stream length per shard (default [`DEFAULT_STREAM_MAXLEN`]).
    pub stream_maxlen: usize,
    /// How long a caller waits for the acknowledgement (default [`DEFAULT_PUT_TIMEOUT`]).
    pub put_timeout: Duration,
    /// The item rules applied before writing (the same the full nodes apply when reading);
    /// its `trusted_writers` need not contain our key: the readers' allowlist decides.
    pub rules: dht::Config,
    /// Verify the signature of items given to [`RedisMirror::put_item`] / [`RedisMirror::submit`]
    /// before writing (default `true`). Items signed by [`RedisMirror::put`] are never
    /// re-verified. Turning this off only moves the check: full nodes verify everything they read.
    pub verify_signatures: bool,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            queue: DEFAULT_QUEUE,
            batch: DEFAULT_BATCH,
            stream_maxlen: DEFAULT_STREAM_MAXLEN,
            put_timeout: DEFAULT_PUT_TIMEOUT,
            rules: dht::Config::default(),
            verify_signatures: true,
        }
    }
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored (new target, or a higher seq); `change` is the change-stream entry id.
    Written {
        /// The stream entry id, `ms-seq`.
        change: String,
    },
    /// The identical item was already stored.
    Unchanged,
}

struct Request {
    item: Item,
    /// `item.target()`, computed once (it is a SHA-256).
    target: Target,
    reply: oneshot::Sender<Result<WriteOutcome, MirrorError>>,
    /// Held until the verdict is sent: the bound counts queued *and* in-flight writes.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Writes signed items into Redis for full nodes to serve. See the module doc.
pub struct RedisMirror {
    tx: mpsc::Sender<Request>,
    pending: std::sync::Arc<tokio::sync::Semaphore>,
    sk: SecKey,
    seq: Mutex<SeqClock>,
    cfg: MirrorConfig,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RedisMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMirror")
            .field("pk", &self.sk.pubkey())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisMirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisMirror {
    /// Starts a writer for `url` signing with `sk`. Does not wait for Redis: writes queue until
    /// it is reachable. Must be called inside a tokio runtime.
    pub fn start(url: &str, sk: SecKey, mut cfg: MirrorConfig) -> Result<RedisMirror, MirrorError> {
        // Our own delegated items pass our own pre-check; readers apply their allowlist.
        cfg.rules.trusted_writers.insert(sk.pubkey());
        cfg.queue = cfg.queue.max(1);
        let endpoint = Endpoint::parse(url)?;
        let (tx, rx) = mpsc::channel(cfg.queue);
        let pending = std::sync::Arc::new(tokio::sync::Semaphore::new(cfg.queue));
        let task = tokio::spawn(run_writer(endpoint, rx, cfg.clone()));
        Ok(RedisMirror {
            tx,
            pending,
            sk,
            seq: Mutex::new(SeqClock::new(0)),
            cfg,
            task,
        })
    }

    /// The service key items are signed with.
    pub fn public_key(&self) -> PubKey {
        self.sk.pubkey()
    }

    /// Signs `value` under `salt` — for our own key, or for `subject` (a delegated item, which
    /// full nodes accept only when our key is on their trusted-writer list) — with a fresh seq,
    /// and writes it. If a concurrent writer stored a higher seq, retries once above it.
    pub async fn put(
        &self,
        salt: Salt,
        value: Vec<u8>,
        subject: Option<PubKey>,
    ) -> Result<WriteOutcome, MirrorError> {
        let mut attempt = 0;
        loop {
            let seq = self.next_seq();
            let item = match subject {
                Some(s) if s != self.sk.pubkey() => {
                    Item::sign_for(&self.sk, s, salt.clone(), seq, value.clone())
                }
                _ => Item::sign(&self.sk, salt.clone(), seq, value.clone()),
            }
            .map_err(|source| MirrorError::Sign { source })?;
            match self.await_verdict(self.enqueue(item)?).await {
                Err(MirrorError::Stale { stored_seq, .. }) if attempt == 0 => {
                    self.observe_seq(stored_seq);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Writes an already signed item (e.g. from `skymesh mirror import`). The item must pass
    /// the acceptance rules; Redis refuses it if it would regress the stored seq.
    pub async fn put_item(&self, item: Item) -> Result<WriteOutcome, MirrorError> {
        let rx = self.submit(item)?;
        self.await_verdict(rx).await
    }

    async fn await_verdict(
        &self,
        rx: oneshot::Receiver<Result<WriteOutcome, MirrorError>>,
    ) -> Result<WriteOutcome, MirrorError> {
        let secs = self.cfg.put_timeout.as_secs();
        match tokio::time::timeout(self.cfg.put_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(MirrorError::Closed),
            Err(_) => Err(MirrorError::Timeout { secs }),
        }
    }

    /// Queues `item` and returns the receiver of its verdict without waiting: many submissions
    /// in flight share pipelines (used by bulk import). Fails at once when the buffer is full.
    pub fn submit(
        &self,
        item: Item,
    ) -> Result<oneshot::Receiver<Result<WriteOutcome, MirrorError>>, MirrorError> {
        if self.cfg.verify_signatures {
            rules::validate(&self.cfg.rules, &item).map_err(|e| invalid(&item, e))?;
        }
        self.enqueue(item)
    }

    /// Checks everything but the signature (sizes, writer, value format) and queues.
    fn enqueue(
        &self,
        item: Item,
    ) -> Result<oneshot::Receiver<Result<WriteOutcome, MirrorError>>, MirrorError> {
        rules::validate_unsigned(&self.cfg.rules, &item).map_err(|e| invalid(&item, e))?;
        let permit =
            self.pending
                .clone()
                .try_acquire_owned()
                .map_err(|_| MirrorError::BufferFull {
                    bound: self.cfg.queue,
                })?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Request {
                target: item.target(),
                item,
                reply,
                _permit: permit,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => MirrorError::BufferFull {
                    bound: self.cfg.queue,
                },
                mpsc::error::TrySendError::Closed(_) => MirrorError::Closed,
            })?;
        Ok(rx)
    }

    fn next_seq(&self) -> u64 {
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        match self.seq.lock() {
            Ok(mut c) => c.next(now),
            Err(poisoned) => poisoned.into_inner().next(now),
        }
    }

    fn observe_seq(&self, seq: u64) {
        match self.seq.lock() {
            Ok(mut c) => c.observe(seq),
            Err(poisoned) => poisoned.into_inner().observe(seq),
        }
    }
}

fn invalid(item: &Item, e: rules::InvalidItem) -> MirrorError {
    MirrorError::Invalid {
        source: Box::new(PutError::Invalid {
            target: item.target(),
            source: Box::new(e),
        }),
    }
}

async fn connect(endpoint: &Endpoint) -> Result<Conn, redis::RedisError> {
    let mut con = endpoint.connect(REDIS_IO_TIMEOUT).await?;
    // Load the script once per connection (on every primary of a cluster) so writes can use
    // EVALSHA; a NOSCRIPT after a failover or restart ends in a reconnect, which loads it again.
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(PUT_SCRIPT)
        .query_async::<Value>(&mut con)
        .await?;
    Ok(con)
}

/// Batches written concurrently: while Redis runs one batch's scripts, the writer prepares and
/// sends the next. Two keep both Redis and the writer busy; more only add memory.
pub const BATCHES_IN_FLIGHT: usize = 2;

/// State shared by the batch tasks of one writer.
struct Shared {
    endpoint: Endpoint,
    script_sha: String,
    stream_maxlen: usize,
    con: tokio::sync::Mutex<Option<Conn>>,
    backoff: Mutex<Reconnect>,
}

impl Shared {
    async fn wait(&self) {
        let delay = match self.backoff.lock() {
            Ok(mut b) => b.next_delay(),
            Err(p) => p.into_inner().next_delay(),
        };
        tokio::time::sleep(delay).await;
    }

    fn reset(&self) {
        match self.backoff.lock() {
            Ok(mut b) => b.reset(),
            Err(p) => p.into_inner().reset(),
        }
    }

    async fn connection(&self) -> Result<Conn, redis::RedisError> {
        let mut guard = self.con.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = connect(&self.endpoint).await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn drop_connection(&self) {
        *self.con.lock().await = None;
    }
}

async fn run_writer(endpoint: Endpoint, mut rx: mpsc::Receiver<Request>, cfg: MirrorConfig) {
    let shared = std::sync::Arc::new(Shared {
        endpoint,
        script_sha: redis::Script::new(PUT_SCRIPT).get_hash().to_string(),
        stream_maxlen: cfg.stream_maxlen,
        con: tokio::sync::Mutex::new(None),
        backoff: Mutex::new(Reconnect::default()),
    });
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    // Owned here, so aborting the writer (dropping the RedisMirror) aborts its batches too.
    let mut tasks = tokio::task::JoinSet::new();
    let batch_max = cfg.batch.max(1);
    loop {
        let Some(first) = rx.recv().await else {
            while tasks.join_next().await.is_some() {}
            return;
        };
        let mut batch: Vec<Request> = Vec::with_capacity(batch_max);
        batch.push(first);
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        while tasks.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            write_batch(&shared, batch).await;
            drop(slot);
        });
    }
}

/// Writes one batch, retrying (reconnect + backoff) until Redis answers, then sends every
/// caller its verdict. Every queued item is written, even if its caller timed out: the caller
/// was told "not confirmed", and a late write is harmless because the script is idempotent.
async fn write_batch(shared: &Shared, batch: Vec<Request>) {
    // One script call per shard present in the batch (all keys of a call share one slot),
    // all calls in flight at once over the multiplexed connection.
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); usize::from(SHARDS)];
    for (i, r) in batch.iter().enumerate() {
        groups[usize::from(shard_of(&r.target))].push(i);
    }
    let calls: Vec<(u8, &[usize])> = groups
        .iter()
        .enumerate()
        .filter(|(_, idxs)| !idxs.is_empty())
        .map(|(shard, idxs)| (shard as u8, idxs.as_slice()))
        .collect();
    let cmds: Vec<redis::Cmd> = calls
        .iter()
        .map(|(shard, idxs)| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&shared.script_sha)
                .arg(2)
                .arg(items_key(*shard))
                .arg(changes_key(*shard))
                .arg(shared.stream_maxlen);
            for &i in *idxs {
                let item = &batch[i].item;
                cmd.arg(batch[i].target.to_hex())
                    .arg(seq_hex(item.seq))
                    .arg(item.encode());
            }
            cmd
        })
        .collect();
    let replies = loop {
        let c = match shared.connection().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable; {} writes waiting", batch.len());
                shared.wait().await;
                continue;
            }
        };
        let requests = cmds.iter().map(|cmd| {
            let mut c = c.clone();
            async move { cmd.query_async::<Vec<String>>(&mut c).await }
        });
        let replies = futures::future::join_all(requests).await;
        match replies.iter().find_map(|r| r.as_ref().err()) {
            Some(e) => {
                // Connection trouble or NOSCRIPT after a restart/failover: reconnect (which
                // reloads the script) and resend the whole batch; calls that did succeed
                // answer "same" the second time.
                tracing::warn!(error = %e, "redis write failed; retrying {} writes", batch.len());
                shared.drop_connection().await;
                shared.wait().await;
            }
            None => {
                shared.reset();
                break replies;
            }
        }
    };
    let mut verdicts: Vec<Option<Result<WriteOutcome, MirrorError>>> =
        (0..batch.len()).map(|_| None).collect();
    for ((_, idxs), reply) in calls.iter().zip(replies) {
        let reply = reply.unwrap_or_default();
        let change = reply.first().cloned().unwrap_or_default();
        for (k, &i) in idxs.iter().enumerate() {
            let status = reply.get(1 + 2 * k).map(String::as_str).unwrap_or("");
            let info = reply.get(2 + 2 * k).map(String::as_str).unwrap_or("");
            verdicts[i] = Some(verdict(
                &batch[i].item,
                batch[i].target,
                status,
                info,
                &change,
            ));
        }
    }
    for (r, v) in batch.into_iter().zip(verdicts) {
        let _ = r.reply.send(v.unwrap_or(Err(MirrorError::Protocol {
            what: "no verdict for a write",
        })));
    }
}

fn verdict(
    item: &Item,
    target: Target,
    status: &str,
    info: &str,
    change: &str,
) -> Result<WriteOutcome, MirrorError> {
    match status {
        "ok" => Ok(WriteOutcome::Written {
            change: change.to_string(),
        }),
        "same" => Ok(WriteOutcome::Unchanged),
        "stale" => Err(MirrorError::Stale {
            target,
            stored_seq: parse_seq_hex(info).unwrap_or(u64::MAX),
            offered_seq: item.seq,
        }),
        "conflict" => Err(MirrorError::SeqConflict {
            target,
            seq: item.seq,
        }),
        _ => Err(MirrorError::Protocol {
            what: "unknown script status",
        }),
    }
}
