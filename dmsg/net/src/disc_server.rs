//! A discovery server implementing the reference API (spec §6.4, `dmsg/vectors/README.md`):
//! routes, validation order, status codes, content types and exact error bodies, on an embedded
//! in-memory store with optional persistence to a directory, or on Redis with the reference's
//! layout.
//!
//! The checks themselves are the pure [`dmsg_proto::disc::decode_body`],
//! [`dmsg_proto::disc::check_post_entry`] and [`dmsg_proto::disc::check_delete_entry`]. The store
//! mirrors the reference's Redis layout: one value per key plus a `servers` and a `clients` key
//! set; with [`DiscServerConfig::redis`] that layout lives in Redis itself. Where the reference
//! panics (`dmsg/vectors/discovery_http.json` cases flagged `bug`), we
//! answer what the note recommends: a key with x ≥ p in a GET path is 400 `error bad input`,
//! and `available_servers` skips server-set keys whose entry has no server member.
//!
//! Expiry: server entries live [`DEFAULT_SERVER_ENTRY_TTL`] after their last write, client
//! entries posted with `?timeout=true` live [`DEFAULT_CLIENT_ENTRY_TTL`], other client entries
//! do not expire (as in the reference). The store holds at most [`DEFAULT_MAX_ENTRIES`] entries
//! (a POST of a new key beyond that answers 500).
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dmsg_proto::disc::{self, DiscPolicy, Entry, MAX_ENTRY_BODY, status_body};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use keys::{PubKey, Sig};
use tokio::net::TcpListener;

use crate::defaults::*;
use crate::error::ServeError;
use crate::{AbortOnDrop, lock};

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscServerConfig {
    /// Listen address.
    pub addr: String,
    /// Test mode (`-t`): loopback server addresses allowed.
    pub test_mode: bool,
    /// Keys allowed to call `deregister` (network monitors).
    pub whitelist: Vec<String>,
    /// Directory for persistence (`None`: memory only).
    pub data_dir: Option<PathBuf>,
    /// Server entry lifetime.
    pub server_ttl: Duration,
    /// Lifetime of client entries posted with `?timeout=true`.
    pub client_ttl: Duration,
    /// Redis URL: store entries in Redis with the reference's layout (key = PK hex → entry
    /// JSON with TTL, sets `servers` and `clients`) instead of the embedded store.
    pub redis: Option<String>,
}

impl DiscServerConfig {
    /// Production defaults listening on `addr`.
    pub fn new(addr: &str) -> DiscServerConfig {
        DiscServerConfig {
            addr: addr.to_string(),
            test_mode: false,
            whitelist: Vec::new(),
            data_dir: None,
            server_ttl: DEFAULT_SERVER_ENTRY_TTL,
            client_ttl: DEFAULT_CLIENT_ENTRY_TTL,
            redis: None,
        }
    }
}

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

/// The backend could not answer (Redis down, store full, DHT node stopped); the API answers
/// 500 `something unexpected happened`, as the reference does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

/// A boxed backend call.
pub type BackendFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreUnavailable>> + Send + 'a>>;

/// Where a discovery API keeps its entries: the embedded store, Redis with the reference's
/// layout, or (in `skymesh-overlay`) the DHT. The API applies every check before calling
/// [`EntryBackend::put`]; a backend only stores and lists.
pub trait EntryBackend: Send + Sync + 'static {
    /// The entry of `pk` and its stored JSON.
    fn get(&self, pk: PubKey) -> BackendFuture<'_, Option<(Entry, String)>>;
    /// Stores a checked entry (`new`: no entry existed; `ttl`: the reference's expiry).
    fn put(&self, e: Entry, new: bool, ttl: Option<Duration>) -> BackendFuture<'_, ()>;
    /// Removes the entries of `pks`.
    fn remove(&self, pks: Vec<PubKey>) -> BackendFuture<'_, ()>;
    /// Keys (hex) of every client entry.
    fn clients(&self) -> BackendFuture<'_, Vec<String>>;
    /// Every live server entry with its JSON.
    fn servers(&self) -> BackendFuture<'_, Vec<(Entry, String)>>;
}

/// The reference discovery API (routes, checks, status codes, bodies) over any
/// [`EntryBackend`]. [`DiscServer`] serves it on its own listener; a full node mounts it on its
/// HTTP listener with [`DiscApi::respond`].
pub struct DiscApi {
    cfg: DiscServerConfig,
    backend: Arc<dyn EntryBackend>,
    started: String,
}

impl DiscApi {
    /// The API over `backend` (`cfg`: test mode, deregister whitelist, TTLs; its address and
    /// storage fields are not used here).
    pub fn new(cfg: DiscServerConfig, backend: Arc<dyn EntryBackend>) -> DiscApi {
        DiscApi {
            cfg,
            backend,
            started: rfc3339_now(),
        }
    }

    /// Answers one request. `req`'s body is the request body read up to
    /// [`MAX_ENTRY_BODY`] + 1 bytes, or `None` when reading it failed.
    pub async fn respond(&self, req: Request<Option<Bytes>>) -> Response<Full<Bytes>> {
        handle(self, req).await
    }
}

/// Reads a request body for [`DiscApi::respond`] (at most [`MAX_ENTRY_BODY`] + 1 bytes, so an
/// oversized body is seen as oversized).
pub async fn read_body<B>(body: B) -> Option<Bytes>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(body, MAX_ENTRY_BODY + 1)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

/// The embedded store (memory, optionally persisted to a directory) or Redis.
struct LocalBackend {
    cfg: DiscServerConfig,
    store: Mutex<Store>,
    redis: Option<redis::aio::ConnectionManager>,
}

type Inner = DiscApi;

/// A running discovery server. Dropping it stops it.
pub struct DiscServer {
    local_addr: SocketAddr,
    _tasks: Vec<AbortOnDrop>,
}

impl DiscServer {
    /// Binds and starts serving.
    pub async fn spawn(cfg: DiscServerConfig) -> Result<DiscServer, ServeError> {
        let listener = TcpListener::bind(&cfg.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: cfg.addr.clone(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: cfg.addr.clone(),
            source,
        })?;
        let mut store = Store::default();
        if let Some(dir) = &cfg.data_dir {
            load(dir, &mut store, &cfg).map_err(|source| ServeError::Store {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let redis = match &cfg.redis {
            Some(url) => Some(
                redis::Client::open(url.as_str())
                    .map_err(|source| ServeError::Redis {
                        url: url.clone(),
                        source,
                    })?
                    .get_connection_manager()
                    .await
                    .map_err(|source| ServeError::Redis {
                        url: url.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let backend = Arc::new(LocalBackend {
            cfg: cfg.clone(),
            store: Mutex::new(store),
            redis,
        });
        let inner = Arc::new(DiscApi::new(cfg, backend.clone()));
        let mut tasks = vec![AbortOnDrop(tokio::spawn(serve(inner.clone(), listener)))];
        tasks.push(AbortOnDrop(tokio::spawn(housekeeping(backend))));
        tracing::info!(addr = %local_addr, "dmsg discovery listening");
        Ok(DiscServer {
            local_addr,
            _tasks: tasks,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn serve(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let inner = inner.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = read_body(body).await;
                    Ok::<_, Infallible>(inner.respond(Request::from_parts(parts, body)).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
        });
    }
}

/// Removes expired entries every 10 s (the reference prunes its server set every 10 s) and
/// writes the store to disk when it changed.
async fn housekeeping(inner: Arc<LocalBackend>) {
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

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn msg(status: u16, message: &str) -> Response<Full<Bytes>> {
    json(status, status_body(message, status))
}

fn empty(status: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn not_found_page() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"404 page not found\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    r
}

const BAD_INPUT: &str = "error bad input";
const NOT_FOUND: &str = "entry of public key is not found";
const NO_SERVERS: &str = "no delegated dmsg servers available for remote";

fn body_bytes(req: Request<Option<Bytes>>) -> Option<Bytes> {
    req.into_body()
}

async fn handle(inner: &Inner, req: Request<Option<Bytes>>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let is = |m: &Method| method == *m;
    match path.as_str() {
        "/health" => {
            if !is(&Method::GET) {
                return empty(405);
            }
            let mut s = String::from(
                "{\"build_info\":{\"version\":\"unknown\",\"commit\":\"unknown\",\"date\":\"unknown\"},\"started_at\":",
            );
            disc::write_json_str(&mut s, &inner.started);
            s.push('}');
            json(200, s)
        }
        "/dmsg-discovery/entry" => {
            if !is(&Method::DELETE) {
                return empty(405);
            }
            let Some(body) = body_bytes(req) else {
                return msg(500, "something unexpected happened");
            };
            delete_entry(inner, &body).await
        }
        "/dmsg-discovery/entries" => {
            if !is(&Method::GET) {
                return empty(405);
            }
            match inner.backend.clients().await {
                Ok(keys) => json(
                    200,
                    serde_json::to_string(&keys).unwrap_or_else(|_| "[]".into()),
                ),
                Err(StoreUnavailable) => msg(500, "something unexpected happened"),
            }
        }
        "/dmsg-discovery/available_servers" | "/dmsg-discovery/all_servers" => {
            if !is(&Method::GET) {
                return empty(405);
            }
            server_list(inner, path.ends_with("available_servers")).await
        }
        "/dmsg-discovery/deregister" => {
            if !is(&Method::DELETE) {
                return empty(405);
            }
            deregister(inner, req).await
        }
        p if p.starts_with("/dmsg-discovery/entry/") => {
            let key = &p["/dmsg-discovery/entry/".len()..];
            if key.contains('/') {
                return not_found_page();
            }
            if is(&Method::POST) {
                let timeout = req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|kv| kv == "timeout=true"));
                let Some(body) = body_bytes(req) else {
                    return msg(500, "something unexpected happened");
                };
                post_entry(inner, &body, timeout).await
            } else if is(&Method::GET) && !key.is_empty() {
                get_entry(inner, key).await
            } else {
                empty(405)
            }
        }
        _ => not_found_page(),
    }
}

async fn get_entry(inner: &Inner, key: &str) -> Response<Full<Bytes>> {
    if key.bytes().all(|b| b == b'0') {
        return msg(404, NOT_FOUND);
    }
    let Ok(pk) = PubKey::from_hex(&key.to_ascii_lowercase()) else {
        return msg(400, BAD_INPUT);
    };
    match inner.backend.get(pk).await {
        Ok(Some((_, j))) => json(200, j),
        Ok(None) => msg(404, NOT_FOUND),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
    }
}

fn policy(inner: &Inner) -> DiscPolicy {
    DiscPolicy {
        now_ns: crate::now_ns(),
        production: !inner.cfg.test_mode,
    }
}

fn refusal(r: &dmsg_proto::error::DiscRefusal) -> Response<Full<Bytes>> {
    msg(r.status(), &r.message())
}

async fn post_entry(inner: &Inner, body: &[u8], timeout: bool) -> Response<Full<Bytes>> {
    let e = match disc::decode_body(body) {
        Ok(e) => e,
        Err(r) => return refusal(&r),
    };
    let stored = match inner.backend.get(e.static_pk).await {
        Ok(s) => s.map(|(e, _)| e),
        Err(StoreUnavailable) => return msg(500, "something unexpected happened"),
    };
    let outcome = match disc::check_post_entry(&e, stored.as_ref(), &policy(inner)) {
        Ok(o) => o,
        Err(r) => return refusal(&r),
    };
    let ttl = if e.server.is_some() && e.client.is_none() {
        Some(inner.cfg.server_ttl)
    } else if e.client.is_some() && timeout {
        Some(inner.cfg.client_ttl)
    } else if e.server.is_some() {
        // Both members: the reference stores it as a server (2 min TTL).
        Some(inner.cfg.server_ttl)
    } else {
        None
    };
    match inner.backend.put(e, stored.is_none(), ttl).await {
        Ok(()) => msg(200, outcome.message()),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
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

async fn delete_entry(inner: &Inner, body: &[u8]) -> Response<Full<Bytes>> {
    let e = match disc::decode_body(body) {
        Ok(e) => e,
        Err(r) => return refusal(&r),
    };
    if let Err(r) = disc::check_delete_entry(&e, &policy(inner)) {
        return refusal(&r);
    }
    match inner.backend.remove(vec![e.static_pk]).await {
        Ok(()) => msg(200, "deleted entry"),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
    }
}

fn remove(st: &mut Store, pk: &PubKey) {
    st.entries.remove(pk);
    st.servers.remove(pk);
    st.clients.remove(pk);
    st.dirty = true;
}

async fn server_list(inner: &Inner, available: bool) -> Response<Full<Bytes>> {
    let Ok(entries) = inner.backend.servers().await else {
        return msg(500, "something unexpected happened");
    };
    let mut list: Vec<(i64, String)> = Vec::new();
    for (entry, j) in entries {
        if available {
            match &entry.server {
                Some(srv) if srv.available_sessions > 0 => list.push((srv.available_sessions, j)),
                _ => {}
            }
        } else {
            list.push((0, j));
        }
    }
    if list.is_empty() {
        return msg(404, NO_SERVERS);
    }
    if available {
        list.sort_by_key(|e| std::cmp::Reverse(e.0));
        list.truncate(DEFAULT_MAX_SERVERS_LISTED);
    }
    let mut out = String::from("[");
    for (i, (_, j)) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(j);
    }
    out.push(']');
    json(200, out)
}

async fn deregister(inner: &Inner, req: Request<Option<Bytes>>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let nm_pk = header("NM-PK");
    let nm_sign = header("NM-Sign");
    if !inner.cfg.whitelist.contains(&nm_pk) {
        return empty(403);
    }
    let Ok(pk) = PubKey::from_hex(&nm_pk) else {
        return empty(400);
    };
    let Ok(sig) = Sig::from_hex(&nm_sign) else {
        return empty(400);
    };
    if pk.verify(pk.to_hex().as_bytes(), &sig).is_err() {
        return empty(403);
    }
    let Some(body) = body_bytes(req) else {
        return empty(400);
    };
    let Ok(list) = serde_json::from_slice::<Vec<String>>(&body) else {
        return empty(400);
    };
    let mut keys = Vec::with_capacity(list.len());
    for k in &list {
        match PubKey::from_hex(&k.to_ascii_lowercase()) {
            Ok(pk) => keys.push(pk),
            Err(_) => return msg(400, BAD_INPUT),
        }
    }
    match inner.backend.remove(keys).await {
        Ok(()) => json(200, "null".into()),
        Err(StoreUnavailable) => msg(500, "something unexpected happened"),
    }
}

impl LocalBackend {
    async fn get_(&self, pk: &PubKey) -> Result<Option<(Entry, String)>, StoreUnavailable> {
        let Some(con) = &self.redis else {
            let mut st = lock(&self.store);
            return Ok(st.get(pk).map(|s| (s.entry.clone(), s.json.clone())));
        };
        let v: Option<String> = redis::cmd("GET")
            .arg(pk.to_hex())
            .query_async(&mut con.clone())
            .await
            .map_err(redis_err)?;
        // A corrupt stored value counts as absent (the reference dereferences nil there).
        Ok(v.and_then(|j| Entry::from_json(j.as_bytes()).ok().map(|e| (e, j))))
    }

    async fn put_(
        &self,
        e: Entry,
        new: bool,
        ttl: Option<Duration>,
    ) -> Result<(), StoreUnavailable> {
        let Some(con) = &self.redis else {
            let mut st = lock(&self.store);
            if new && st.entries.len() >= DEFAULT_MAX_ENTRIES {
                return Err(StoreUnavailable);
            }
            put(&mut st, e, ttl.map(|t| Instant::now() + t));
            return Ok(());
        };
        let key = e.static_pk.to_hex();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let set = pipe.cmd("SET").arg(&key).arg(e.canonical_json());
        if let Some(t) = ttl {
            set.arg("PX").arg(t.as_millis() as u64);
        }
        set.ignore();
        if e.server.is_some() {
            pipe.cmd("SADD").arg("servers").arg(&key).ignore();
        }
        if e.client.is_some() {
            pipe.cmd("SADD").arg("clients").arg(&key).ignore();
        }
        pipe.query_async::<()>(&mut con.clone())
            .await
            .map_err(redis_err)
    }

    async fn remove_(&self, pks: &[PubKey]) -> Result<(), StoreUnavailable> {
        let Some(con) = &self.redis else {
            let mut st = lock(&self.store);
            for pk in pks {
                remove(&mut st, pk);
            }
            return Ok(());
        };
        if pks.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for pk in pks {
            let key = pk.to_hex();
            pipe.cmd("DEL").arg(&key).ignore();
            pipe.cmd("SREM").arg("servers").arg(&key).ignore();
            pipe.cmd("SREM").arg("clients").arg(&key).ignore();
        }
        pipe.query_async::<()>(&mut con.clone())
            .await
            .map_err(redis_err)
    }

    async fn clients_(&self) -> Result<Vec<String>, StoreUnavailable> {
        let Some(con) = &self.redis else {
            let st = lock(&self.store);
            return Ok(st.clients.iter().map(|k| k.to_hex()).collect());
        };
        redis::cmd("SMEMBERS")
            .arg("clients")
            .query_async(&mut con.clone())
            .await
            .map_err(redis_err)
    }

    /// Existing entries of the server set (stale members are pruned, as the reference's
    /// 10-second cleanup does).
    async fn servers_(&self) -> Result<Vec<(Entry, String)>, StoreUnavailable> {
        let Some(con) = &self.redis else {
            let mut st = lock(&self.store);
            let keys: Vec<PubKey> = st.servers.iter().copied().collect();
            return Ok(keys
                .iter()
                .filter_map(|pk| st.get(pk).map(|s| (s.entry.clone(), s.json.clone())))
                .collect());
        };
        let mut con = con.clone();
        let keys: Vec<String> = redis::cmd("SMEMBERS")
            .arg("servers")
            .query_async(&mut con)
            .await
            .map_err(redis_err)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let vals: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .map_err(redis_err)?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for (k, v) in keys.iter().zip(vals) {
            match v.and_then(|j| Entry::from_json(j.as_bytes()).ok().map(|e| (e, j))) {
                Some(x) => out.push(x),
                None => stale.push(k.clone()),
            }
        }
        if !stale.is_empty() {
            let _: Result<(), _> = redis::cmd("SREM")
                .arg("servers")
                .arg(&stale)
                .query_async(&mut con)
                .await;
        }
        Ok(out)
    }
}

impl EntryBackend for LocalBackend {
    fn get(&self, pk: PubKey) -> BackendFuture<'_, Option<(Entry, String)>> {
        Box::pin(async move { self.get_(&pk).await })
    }
    fn put(&self, e: Entry, new: bool, ttl: Option<Duration>) -> BackendFuture<'_, ()> {
        Box::pin(self.put_(e, new, ttl))
    }
    fn remove(&self, pks: Vec<PubKey>) -> BackendFuture<'_, ()> {
        Box::pin(async move { self.remove_(&pks).await })
    }
    fn clients(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(self.clients_())
    }
    fn servers(&self) -> BackendFuture<'_, Vec<(Entry, String)>> {
        Box::pin(self.servers_())
    }
}

fn redis_err(e: redis::RedisError) -> StoreUnavailable {
    tracing::warn!(error = %e, "discovery redis error");
    StoreUnavailable
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

fn load(dir: &std::path::Path, st: &mut Store, _cfg: &DiscServerConfig) -> std::io::Result<()> {
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

/// Current UTC time as RFC 3339 with nanoseconds (Go's `time.Time` JSON form).
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}
