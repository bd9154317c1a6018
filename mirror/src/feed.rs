//! [`MirrorFeed`]: follows what mirror writers put into Redis and hands every valid item to a
//! full node, live.
//!
//! Per shard the feed first records the newest change-stream id, then scans the whole items
//! HASH (catch-up), then follows the change stream from the recorded id (one `XREAD` per shard,
//! all in flight at once, every [`DEFAULT_IDLE_POLL`] when idle). A write that lands during the scan is seen twice, which is
//! harmless: stores treat an identical item as a no-op. When the stream was trimmed past the
//! feed's position (it fell more than `stream_maxlen` changes behind, e.g. after a long Redis
//! outage) the shard is scanned again. That check runs after every reconnect, whenever a read
//! returns a full batch, and every [`DEFAULT_GAP_CHECK`].
//!
//! Nothing read from Redis is trusted: every item is decoded, must sit under its own target,
//! and must pass [`dht::rules::validate`] with the node's rules (signatures, trusted writers,
//! value formats); anything else is counted in [`FeedStats::refused`] and skipped. Redis being
//! down never stops the node: the feed retries with capped backoff and catches up afterwards.
//! The feed never writes or deletes a Redis key.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dht::{Item, Target, rules};
use redis::Value;
use tokio::sync::mpsc;

use crate::conn::{Conn, Endpoint};
use crate::error::MirrorError;
use crate::keys::{SHARDS, StreamId, changes_key, items_key, split_stored};
use crate::reconnect::Reconnect;
use crate::writer::REDIS_IO_TIMEOUT;

/// Entries read per `XREAD` (over all shards) and fields per `HSCAN` page.
pub const DEFAULT_READ_COUNT: usize = 1000;
/// Pause between polls of the change streams when nothing changed: bounds the added latency of a
/// write (≤ 50 ms) at 16 cheap `XREAD`s per poll (~320 commands/s per idle full node).
pub const DEFAULT_IDLE_POLL: Duration = Duration::from_millis(50);
/// Interval of the periodic trimmed-stream check.
pub const DEFAULT_GAP_CHECK: Duration = Duration::from_secs(10);

/// Configuration of a [`MirrorFeed`].
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The rules items must pass (the node's own item config, incl. trusted writers).
    pub rules: dht::Config,
    /// Read batch (default [`DEFAULT_READ_COUNT`]).
    pub read_count: usize,
    /// Idle pause between polls (default [`DEFAULT_IDLE_POLL`]).
    pub idle_poll: Duration,
    /// Gap check interval (default [`DEFAULT_GAP_CHECK`]).
    pub gap_check: Duration,
}

impl FeedConfig {
    /// Defaults with the given item rules.
    pub fn new(rules: dht::Config) -> FeedConfig {
        FeedConfig {
            rules,
            read_count: DEFAULT_READ_COUNT,
            idle_poll: DEFAULT_IDLE_POLL,
            gap_check: DEFAULT_GAP_CHECK,
        }
    }
}

/// Counters of a feed (read them with `load(Ordering::Relaxed)`).
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Items delivered from full scans.
    pub scanned: AtomicU64,
    /// Items delivered from the change stream.
    pub followed: AtomicU64,
    /// Items refused (undecodable, wrong target, invalid).
    pub refused: AtomicU64,
    /// Full rescans of a shard after the first one (gaps).
    pub rescans: AtomicU64,
    /// Connection failures.
    pub redis_errors: AtomicU64,
    /// Whether the feed is connected and caught up (1) or not (0).
    pub live: AtomicU64,
}

/// A running feed; stops when dropped or when the receiver of its items is dropped.
#[derive(Debug)]
pub struct MirrorFeed {
    task: tokio::task::JoinHandle<()>,
    stats: Arc<FeedStats>,
}

impl Drop for MirrorFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MirrorFeed {
    /// Starts following `url`; valid items go to `out` (bounded: the feed waits when the node
    /// is busy). Must be called inside a tokio runtime.
    pub fn start(
        url: &str,
        cfg: FeedConfig,
        out: mpsc::Sender<Item>,
    ) -> Result<MirrorFeed, MirrorError> {
        let endpoint = Endpoint::parse(url)?;
        let stats = Arc::new(FeedStats::default());
        let task = tokio::spawn(run_feed(endpoint, cfg, out, stats.clone()));
        Ok(MirrorFeed { task, stats })
    }

    /// The feed's counters.
    pub fn stats(&self) -> &Arc<FeedStats> {
        &self.stats
    }
}

/// Why one pass of the feed loop ended.
enum Stop {
    /// Redis trouble: reconnect.
    Redis(redis::RedisError),
    /// The consumer is gone: stop for good.
    Closed,
}

impl From<redis::RedisError> for Stop {
    fn from(e: redis::RedisError) -> Self {
        Stop::Redis(e)
    }
}

struct State {
    /// Position in each shard's stream; `None` until the shard was scanned.
    pos: Vec<Option<StreamId>>,
}

async fn run_feed(
    endpoint: Endpoint,
    cfg: FeedConfig,
    out: mpsc::Sender<Item>,
    stats: Arc<FeedStats>,
) {
    let mut st = State {
        pos: vec![None; usize::from(SHARDS)],
    };
    let mut backoff = Reconnect::default();
    loop {
        let con = endpoint.connect(REDIS_IO_TIMEOUT).await;
        let mut con = match con {
            Ok(c) => c,
            Err(e) => {
                stats.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "mirror feed: redis unreachable");
                backoff.wait().await;
                continue;
            }
        };
        match follow(&mut con, &cfg, &out, &stats, &mut st, &mut backoff).await {
            Stop::Closed => return,
            Stop::Redis(e) => {
                stats.live.store(0, Ordering::Relaxed);
                stats.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "mirror feed: redis error; reconnecting");
                backoff.wait().await;
            }
        }
    }
}

async fn follow(
    con: &mut Conn,
    cfg: &FeedConfig,
    out: &mpsc::Sender<Item>,
    stats: &FeedStats,
    st: &mut State,
    backoff: &mut Reconnect,
) -> Stop {
    match follow_inner(con, cfg, out, stats, st, backoff).await {
        Ok(never) => match never {},
        Err(stop) => stop,
    }
}

enum Never {}

async fn follow_inner(
    con: &mut Conn,
    cfg: &FeedConfig,
    out: &mpsc::Sender<Item>,
    stats: &FeedStats,
    st: &mut State,
    backoff: &mut Reconnect,
) -> Result<Never, Stop> {
    // After (re)connecting: scan shards never scanned, rescan shards with a gap.
    check_gaps(con, cfg, out, stats, st).await?;
    stats.live.store(1, Ordering::Relaxed);
    backoff.reset();
    let mut last_check = Instant::now();
    loop {
        // One non-blocking XREAD per shard, all in flight at once: each touches one hash slot,
        // as a cluster requires. When nothing changed, wait `idle_poll` before asking again.
        let reads = (0..SHARDS).map(|shard| {
            let mut c = con.clone();
            let from = st.pos[usize::from(shard)]
                .unwrap_or(StreamId::ZERO)
                .to_string();
            let count = cfg.read_count.max(1);
            async move {
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(count)
                    .arg("STREAMS")
                    .arg(changes_key(shard))
                    .arg(from)
                    .query_async::<Value>(&mut c)
                    .await
            }
        });
        let replies = futures::future::join_all(reads).await;
        let mut batches = Vec::new();
        for reply in replies {
            batches.extend(parse_xread(&reply?));
        }
        let mut full = false;
        let mut changed = false;
        for (shard, entries) in batches {
            changed |= !entries.is_empty();
            full |= entries.len() >= cfg.read_count.max(1);
            let targets: Vec<String> = entries
                .iter()
                .flat_map(|(_, t)| t.iter().cloned())
                .collect();
            if targets.is_empty() {
                continue;
            }
            let mut hmget = redis::cmd("HMGET");
            hmget.arg(items_key(shard));
            for t in &targets {
                hmget.arg(t);
            }
            let values: Vec<Option<Vec<u8>>> = hmget.query_async(con).await?;
            for (t, v) in targets.iter().zip(values) {
                if let Some(bytes) = v
                    && deliver(t, &bytes, cfg, out, stats).await?
                {
                    stats.followed.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some((last, _)) = entries.last() {
                st.pos[usize::from(shard)] = Some(*last);
            }
        }
        if !changed {
            tokio::time::sleep(cfg.idle_poll).await;
        }
        if full || last_check.elapsed() >= cfg.gap_check {
            check_gaps(con, cfg, out, stats, st).await?;
            last_check = Instant::now();
        }
    }
}

/// Scans every shard that was never scanned or whose stream lost entries after our position.
async fn check_gaps(
    con: &mut Conn,
    cfg: &FeedConfig,
    out: &mpsc::Sender<Item>,
    stats: &FeedStats,
    st: &mut State,
) -> Result<(), Stop> {
    for shard in 0..SHARDS {
        let idx = usize::from(shard);
        let need = match st.pos[idx] {
            None => true,
            Some(pos) => max_deleted_id(con, shard).await? > pos,
        };
        if need {
            if st.pos[idx].is_some() {
                stats.rescans.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    shard,
                    "mirror feed: change stream trimmed past our position; rescanning"
                );
            }
            st.pos[idx] = Some(scan_shard(con, shard, cfg, out, stats).await?);
        }
    }
    Ok(())
}

/// The newest deleted entry id of a shard's stream (`0-0` if none or the stream is missing).
async fn max_deleted_id(con: &mut Conn, shard: u8) -> Result<StreamId, Stop> {
    let key = changes_key(shard);
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(con).await?;
    if !exists {
        return Ok(StreamId::ZERO);
    }
    let info: Value = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&key)
        .query_async(con)
        .await?;
    Ok(field(&info, "max-deleted-entry-id")
        .and_then(as_text)
        .and_then(|s| StreamId::parse(&s))
        .unwrap_or(StreamId::ZERO))
}

/// Delivers every item of a shard; returns the stream position recorded before the scan.
async fn scan_shard(
    con: &mut Conn,
    shard: u8,
    cfg: &FeedConfig,
    out: &mpsc::Sender<Item>,
    stats: &FeedStats,
) -> Result<StreamId, Stop> {
    let last: Value = redis::cmd("XREVRANGE")
        .arg(changes_key(shard))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    let pos = match &last {
        Value::Array(entries) => entries
            .first()
            .and_then(|e| match e {
                Value::Array(parts) => parts.first().and_then(as_text),
                _ => None,
            })
            .and_then(|s| StreamId::parse(&s))
            .unwrap_or(StreamId::ZERO),
        _ => StreamId::ZERO,
    };
    let mut cursor: u64 = 0;
    loop {
        let (next, pairs): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
            .arg(items_key(shard))
            .arg(cursor)
            .arg("COUNT")
            .arg(cfg.read_count.max(1))
            .query_async(con)
            .await?;
        for (t, bytes) in pairs {
            if deliver(&t, &bytes, cfg, out, stats).await? {
                stats.scanned.fetch_add(1, Ordering::Relaxed);
            }
        }
        if next == 0 {
            return Ok(pos);
        }
        cursor = next;
    }
}

/// Checks one item read from Redis and hands it on. `Ok(false)`: refused and skipped.
async fn deliver(
    target_hex: &str,
    bytes: &[u8],
    cfg: &FeedConfig,
    out: &mpsc::Sender<Item>,
    stats: &FeedStats,
) -> Result<bool, Stop> {
    match check(target_hex, bytes, cfg) {
        Ok(item) => {
            out.send(item).await.map_err(|_| Stop::Closed)?;
            Ok(true)
        }
        Err(why) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target = target_hex,
                why,
                "mirror feed: refused an item found in redis"
            );
            Ok(false)
        }
    }
}

/// Decodes and validates one stored value (`seq hex ‖ item`). Pure; the error says why it was
/// refused.
pub fn check(target_hex: &str, stored: &[u8], cfg: &FeedConfig) -> Result<Item, &'static str> {
    let target = Target::from_hex(target_hex).map_err(|_| "field is not a target")?;
    let (seq, bytes) = split_stored(stored).ok_or("value lacks the seq prefix")?;
    let item = Item::decode(bytes).map_err(|_| "undecodable item")?;
    if item.target() != target {
        return Err("item stored under a foreign target");
    }
    if item.seq != seq {
        return Err("seq prefix differs from the item's seq");
    }
    rules::validate(&cfg.rules, &item).map_err(|_| "item fails the acceptance rules")?;
    Ok(item)
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| kv.first().and_then(as_text).as_deref() == Some(name))
            .and_then(|kv| kv.get(1)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| as_text(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// One change-stream entry: its id and the targets it lists.
type Change = (StreamId, Vec<String>);

/// `XREAD` reply → per shard, the entries in order.
fn parse_xread(v: &Value) -> Vec<(u8, Vec<Change>)> {
    let mut out = Vec::new();
    let streams: Vec<(&Value, &Value)> = match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => Some((&kv[0], &kv[1])),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    for (key, entries) in streams {
        let Some(key) = as_text(key) else { continue };
        let Some(shard) = (0..SHARDS).find(|s| changes_key(*s) == key) else {
            continue;
        };
        let mut list = Vec::new();
        if let Value::Array(entries) = entries {
            for e in entries {
                let Value::Array(parts) = e else { continue };
                let (Some(id), Some(fields)) = (parts.first(), parts.get(1)) else {
                    continue;
                };
                let Some(id) = as_text(id).and_then(|s| StreamId::parse(&s)) else {
                    continue;
                };
                let targets = match fields {
                    Value::Array(kv) => kv
                        .chunks(2)
                        .filter(|p| p.first().and_then(as_text).as_deref() == Some("t"))
                        .filter_map(|p| p.get(1).and_then(as_text))
                        .collect(),
                    _ => Vec::new(),
                };
                list.push((id, targets));
            }
        }
        out.push((shard, list));
    }
    out
}
