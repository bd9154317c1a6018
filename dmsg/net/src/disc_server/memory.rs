//! The embedded store of a discovery: entries in memory with the reference's expiry, at most
//! [`DEFAULT_MAX_ENTRIES`], optionally persisted to a directory (a snapshot written by
//! [`housekeeping`] when the store changed, loaded at start).
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmsg_proto::disc::Entry;
use keys::PubKey;

use super::{BackendFuture, DiscServerConfig, EntryBackend, StoreUnavailable};
use crate::defaults::*;
use crate::error::ServeError;
use crate::lock;

struct Stored {
    entry: Entry,
    json: String,
    expires: Option<Instant>,
}

#[derive(Default)]
struct Store {
    entries: HashMap<PubKey, Stored>,
    servers: HashSet<PubKey>,
    clients: HashSet<PubKey>,
    dirty: bool,
}

impl Store {
    fn get(&mut self, pk: &PubKey) -> Option<&Stored> {
        let expired = self
            .entries
            .get(pk)
            .is_some_and(|s| s.expires.is_some_and(|t| t <= Instant::now()));
        if expired {
            self.entries.remove(pk);
            self.servers.remove(pk);
            self.dirty = true;
        }
        self.entries.get(pk)
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let before = self.entries.len();
        self.entries
            .retain(|_, s| s.expires.is_none_or(|t| t > now));
        let entries = &self.entries;
        self.servers.retain(|pk| entries.contains_key(pk));
        if self.entries.len() != before {
            self.dirty = true;
        }
    }
}

/// The embedded backend.
pub(super) struct MemoryBackend {
    cfg: DiscServerConfig,
    store: Mutex<Store>,
}

impl MemoryBackend {
    /// An empty store, or the snapshot in [`DiscServerConfig::data_dir`].
    pub(super) fn open(cfg: &DiscServerConfig) -> Result<MemoryBackend, ServeError> {
        let mut store = Store::default();
        if let Some(dir) = &cfg.data_dir {
            load(dir, &mut store).map_err(|source| ServeError::Store {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Ok(MemoryBackend {
            cfg: cfg.clone(),
            store: Mutex::new(store),
        })
    }
}

impl EntryBackend for MemoryBackend {
    fn get(&self, pk: PubKey) -> BackendFuture<'_, Option<(Entry, String)>> {
        let mut st = lock(&self.store);
        let r = st.get(&pk).map(|s| (s.entry.clone(), s.json.clone()));
        Box::pin(async move { Ok(r) })
    }

    fn put(&self, e: Entry, new: bool, ttl: Option<Duration>) -> BackendFuture<'_, ()> {
        let r = {
            let mut st = lock(&self.store);
            if new && st.entries.len() >= DEFAULT_MAX_ENTRIES {
                Err(StoreUnavailable)
            } else {
                put(&mut st, e, ttl.map(|t| Instant::now() + t));
                Ok(())
            }
        };
        Box::pin(async move { r })
    }

    fn remove(&self, pks: Vec<PubKey>) -> BackendFuture<'_, ()> {
        {
            let mut st = lock(&self.store);
            for pk in &pks {
                remove(&mut st, pk);
            }
        }
        Box::pin(async move { Ok(()) })
    }

    fn clients(&self) -> BackendFuture<'_, Vec<String>> {
        let r = lock(&self.store)
            .clients
            .iter()
            .map(|k| k.to_hex())
            .collect();
        Box::pin(async move { Ok(r) })
    }

    /// Existing entries of the server set (expired ones are dropped on the way).
    fn servers(&self) -> BackendFuture<'_, Vec<(Entry, String)>> {
        let r = {
            let mut st = lock(&self.store);
            let keys: Vec<PubKey> = st.servers.iter().copied().collect();
            keys.iter()
                .filter_map(|pk| st.get(pk).map(|s| (s.entry.clone(), s.json.clone())))
                .collect()
        };
        Box::pin(async move { Ok(r) })
    }
}

fn put(st: &mut Store, e: Entry, expires: Option<Instant>) {
    let pk = e.static_pk;
    if e.server.is_some() {
        st.servers.insert(pk);
    }
    if e.client.is_some() {
        st.clients.insert(pk);
    }
    let json = e.canonical_json();
    st.entries.insert(
        pk,
        Stored {
            entry: e,
            json,
            expires,
        },
    );
    st.dirty = true;
}

fn remove(st: &mut Store, pk: &PubKey) {
    st.entries.remove(pk);
    st.servers.remove(pk);
    st.clients.remove(pk);
    st.dirty = true;
}

/// Removes expired entries every 10 s (the reference prunes its server set every 10 s) and
/// writes the store to disk when it changed.
pub(super) async fn housekeeping(inner: Arc<MemoryBackend>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let snapshot = {
            let mut st = lock(&inner.store);
            if n.is_multiple_of(10) {
                st.sweep();
            }
            if st.dirty && inner.cfg.data_dir.is_some() {
                st.dirty = false;
                Some(snapshot(&st))
            } else {
                None
            }
        };
        if let (Some(snap), Some(dir)) = (snapshot, &inner.cfg.data_dir) {
            let dir = dir.clone();
            let r = tokio::task::spawn_blocking(move || save(&dir, &snap)).await;
            if !matches!(r, Ok(Ok(()))) {
                tracing::warn!("discovery store: writing the snapshot failed");
            }
        }
    }
}

/// Persistence format: one line per entry, `<remaining ms or -1>\t<client_set 0/1>\t<server_set
/// 0/1>\t<canonical json>`.
fn snapshot(st: &Store) -> String {
    let now = Instant::now();
    let mut out = String::new();
    for (pk, s) in &st.entries {
        let ttl = s
            .expires
            .map_or(-1, |t| t.saturating_duration_since(now).as_millis() as i64);
        out.push_str(&format!(
            "{ttl}\t{}\t{}\t{}\n",
            u8::from(st.clients.contains(pk)),
            u8::from(st.servers.contains(pk)),
            s.json
        ));
    }
    out
}

fn save(dir: &std::path::Path, snap: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("entries.tsv.tmp");
    std::fs::write(&tmp, snap)?;
    std::fs::rename(tmp, dir.join("entries.tsv"))
}

fn load(dir: &std::path::Path, st: &mut Store) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("entries.tsv");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = Instant::now();
    for line in text.lines() {
        let mut parts = line.splitn(4, '\t');
        let (Some(ttl), Some(c), Some(s), Some(j)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(ttl) = ttl.parse::<i64>() else {
            continue;
        };
        let Ok(e) = Entry::from_json(j.as_bytes()) else {
            continue;
        };
        let pk = e.static_pk;
        let expires = (ttl >= 0).then(|| now + Duration::from_millis(ttl as u64));
        if c == "1" {
            st.clients.insert(pk);
        }
        if s == "1" {
            st.servers.insert(pk);
        }
        st.entries.insert(
            pk,
            Stored {
                json: e.canonical_json(),
                entry: e,
                expires,
            },
        );
    }
    Ok(())
}
