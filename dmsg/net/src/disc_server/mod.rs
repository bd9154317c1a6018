//! A discovery server implementing the reference API (spec §6.4, `dmsg/vectors/README.md`),
//! on an embedded in-memory store with optional persistence to a directory, or on Redis with the
//! reference's layout.
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | this one | [`DiscServerConfig`], the [`EntryBackend`] trait, [`DiscServer`] (listener, connections) | TCP accept |
//! | [`api`] | [`DiscApi`]: routes, validation order, status codes, content types, exact error bodies | none (calls the backend) |
//! | `memory` | the embedded store: expiry, size bound, snapshot to a directory | snapshot file |
//! | `redis` | the reference's Redis layout (key = PK hex → entry JSON with TTL, sets `servers` and `clients`) | Redis |
//!
//! A full node serves the same [`DiscApi`] over the DHT (`skymesh-overlay`'s `DhtEntries`, a
//! third [`EntryBackend`]).
//!
//! Expiry: server entries live [`DEFAULT_SERVER_ENTRY_TTL`] after their last write, client
//! entries posted with `?timeout=true` live [`DEFAULT_CLIENT_ENTRY_TTL`], other client entries
//! do not expire (as in the reference). The embedded store holds at most
//! [`DEFAULT_MAX_ENTRIES`] entries (a POST of a new key beyond that answers 500).
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dmsg_proto::disc::Entry;
use hyper::Request;
use hyper::body::Incoming;
use keys::PubKey;
use tokio::net::TcpListener;

use crate::AbortOnDrop;
use crate::defaults::*;
use crate::error::ServeError;

pub mod api;
mod memory;
mod redis;

pub use api::{DiscApi, read_body};

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
    /// Keep the `protocol` member of entries (skywire 2026; an smux client says
    /// `"protocol":"smux"`). `false` behaves as the 2023 reference, which drops it. Default true.
    pub entry_protocol: bool,
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
            entry_protocol: true,
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

/// A running discovery server. Dropping it stops it.
pub struct DiscServer {
    local_addr: SocketAddr,
    _tasks: Vec<AbortOnDrop>,
}

impl DiscServer {
    /// Binds and starts serving, on Redis when [`DiscServerConfig::redis`] is set, else on the
    /// embedded store (loaded from [`DiscServerConfig::data_dir`] when set).
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
        let mut tasks = Vec::new();
        let backend: Arc<dyn EntryBackend> = match &cfg.redis {
            Some(url) => {
                if let Some(dir) = &cfg.data_dir {
                    // Entries live in Redis; the directory is only created, as it always was.
                    std::fs::create_dir_all(dir).map_err(|source| ServeError::Store {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                Arc::new(redis::RedisBackend::connect(url).await?)
            }
            None => {
                let mem = Arc::new(memory::MemoryBackend::open(&cfg)?);
                tasks.push(AbortOnDrop(tokio::spawn(memory::housekeeping(mem.clone()))));
                mem
            }
        };
        let api = Arc::new(DiscApi::new(cfg, backend));
        tasks.insert(0, AbortOnDrop(tokio::spawn(serve(api, listener))));
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

async fn serve(inner: Arc<DiscApi>, listener: TcpListener) {
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
            // A client that does not finish its request headers within 10 s is cut (slowloris,
            // tests/tests/chaos/slowloris.rs), as on the server's own HTTP and DMSG-HTTP.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
        });
    }
}

/// Current UTC time as RFC 3339 with nanoseconds (Go's `time.Time` JSON form).
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let [year, month, day, h, m, s] = utc_civil(d.as_secs() as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:09}Z",
        d.subsec_nanos()
    )
}

/// `[year, month, day, hour, minute, second]` in UTC of a Unix time in seconds (Howard
/// Hinnant's civil-from-days).
pub fn utc_civil(unix_secs: i64) -> [i64; 6] {
    let days = unix_secs.div_euclid(86_400);
    let rem = unix_secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    [year, month, day, rem / 3600, (rem % 3600) / 60, rem % 60]
}
