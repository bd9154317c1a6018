//! `skymesh node --role full|regular --listen MULTIADDR --data DIR [--sk SK | --key FILE]
//! [--bootstrap MULTIADDR]... --http 127.0.0.1:PORT`: the DHT daemon.
//!
//! The HTTP listener (axum) serves:
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /metrics` | Prometheus text (`skymesh_dht_*`, see `docs/metrics.md`) |
//! | `GET /api/v1/info` | node info JSON (role, public_key, peer_id, listen_addrs, peers, full_nodes, items, …) |
//! | `POST /api/v1/put` | body `{"salt": S, "value": TEXT}`: signs with the node key and puts; answers the put report |
//! | `GET /api/v1/get?pk=PK&salt=S` | the verified item as JSON, 404 when not found |
//! | `GET /api/v1/dmsg` | DMSG status: server (sessions) and/or client (servers held) |
//! | `GET /api/v1/dmsg/fetch?url=dmsg://PK:PORT/PATH` | a visor fetches the URL over DMSG and answers the body |
//! | `/dmsg-discovery/…` | full nodes with `--dmsg-listen`: the reference discovery API served from DHT data |
//! | `POST /api/v1/sync` | body `{"from"?, "salt"?, "from_start"?}`: starts a pull (GetItems) from a full node; answers `{"id": N}` |
//! | `GET /api/v1/sync/{id}` / `DELETE /api/v1/sync/{id}` | a sync session's status / cancels it (its cursor stays saved) |
//! | `GET /api/v1/tp` / `POST /api/v1/tp` | visors: own transports / body `{"pk": PK}` adds one |
//! | `GET /api/v1/tp/all` | every transport known, with the source used (local store, DHT lookups, HTTP) |
//! | `DELETE /api/v1/tp/{id}` | visors: removes a transport (both ends drop it) |
//!
//! DMSG: `--dmsg-listen HOST:PORT` (full nodes) runs a DMSG relay server that publishes itself
//! in the DHT; `--dmsg` (regular nodes, i.e. visors) runs a DMSG client that finds servers and
//! peers through the DHT, optionally serving `--dmsg-http-dir` over DMSG-HTTP. Without
//! `--bootstrap`, the node bootstraps from the deployment config (`--deploy FILE`,
//! `$SKYDEPLOY`, else the embedded default).
//!
//! The admin API has no authentication: bind it to loopback (the default) only.
//!
//! Without `--sk`/`--key`, the node key is read from `DATA/node.key` (hex), created on first
//! start, so a restarted node keeps its identity.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dht::{Salt, SaltKind};
use dhtnode::{Config, Node, Reachability, Role};
use keys::SecKey;
use libp2p::Multiaddr;
use prometheus_client::registry::Registry;

mod dmsg_api;
mod sync;
mod tp;

/// Reachability as a command-line value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Reach {
    /// Client mode until an external address is confirmed.
    Auto,
    /// Dialable: Kademlia server mode.
    Public,
    /// Not dialable: Kademlia client mode.
    Private,
}

/// Arguments of `skymesh node`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Node role.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// libp2p listen address, e.g. /ip4/0.0.0.0/tcp/7800 (repeatable).
    #[arg(long, required = true)]
    listen: Vec<Multiaddr>,
    /// Data directory (item store, node key).
    #[arg(long)]
    data: PathBuf,
    /// Secret key in hex.
    #[arg(
        long,
        env = "SKYMESH_SK",
        hide_env_values = true,
        conflicts_with = "key"
    )]
    sk: Option<String>,
    /// File holding the secret key (hex, or `skymesh keygen` output, text or JSON).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Bootstrap peer, a multiaddr ending in /p2p/<peer id> (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// HTTP listener for /health, /metrics and the admin API.
    #[arg(long, default_value = "127.0.0.1:7801")]
    http: SocketAddr,
    /// Reachability of a regular node (full nodes are always Kademlia servers).
    #[arg(long, value_enum, default_value = "auto")]
    reachability: Reach,
    /// Follow this Redis mirror live and serve every valid item written there (full nodes;
    /// see docs/mirror.md). Redis being down never stops the node.
    #[arg(long, env = "SKYMESH_REDIS")]
    redis: Option<String>,
    /// Accept items written *for* other keys by this writer key (a mirror service such as a
    /// transport discovery). Repeatable.
    #[arg(long = "trusted-writer", value_name = "PK")]
    trusted_writers: Vec<String>,
    /// Run a DMSG relay server on this TCP address (full nodes); it publishes itself in the
    /// DHT and the node serves the reference discovery API at /dmsg-discovery.
    #[arg(long, value_name = "HOST:PORT")]
    dmsg_listen: Option<String>,
    /// Address the DMSG server advertises (default: the bound address).
    #[arg(long, value_name = "HOST:PORT", requires = "dmsg_listen")]
    dmsg_public: Option<String>,
    /// DMSG server session limit.
    #[arg(long, default_value_t = 2048, requires = "dmsg_listen")]
    max_sessions: usize,
    /// Accept loopback server addresses posted to /dmsg-discovery (like dmsg-discovery -t).
    #[arg(long, requires = "dmsg_listen")]
    disc_test_mode: bool,
    /// Mesh with this DMSG server, `PK@HOST:PORT` (repeatable): requests for visors not held
    /// here are forwarded to it, one hop at most (docs/dmsg-mesh.md).
    #[arg(long = "mesh-peer", value_name = "PK@HOST:PORT", requires = "dmsg_listen", value_parser = parse_mesh_peer)]
    mesh_peers: Vec<::dmsg::server::PeerAddr>,
    /// Also mesh with the DMSG servers published in the DHT whose keys --mesh-allow lists.
    #[arg(long, requires_all = ["dmsg_listen", "mesh_allow"])]
    mesh_dht: bool,
    /// With --mesh-dht: a server key that may be a peer, or `any` (repeatable).
    #[arg(long = "mesh-allow", value_name = "PK|any", requires = "mesh_dht")]
    mesh_allow: Vec<String>,
    /// How often --mesh-dht re-reads the published servers, in milliseconds (tests shorten
    /// the default, the servers' publication interval).
    #[arg(long, hide = true, value_name = "MS")]
    mesh_refresh_ms: Option<u64>,
    /// Run a DMSG client that finds servers and peers through the DHT (visors).
    #[arg(long)]
    dmsg: bool,
    /// Serve this directory over DMSG-HTTP (needs --dmsg).
    #[arg(long, requires = "dmsg", value_name = "DIR")]
    dmsg_http_dir: Option<PathBuf>,
    /// Hold DMSG sessions with this server only (repeatable; --dmsg): peers on other servers
    /// are reached through the server mesh.
    #[arg(long = "dmsg-server", value_name = "PK", requires = "dmsg", value_parser = parse_pk)]
    dmsg_servers: Vec<keys::PubKey>,
    /// How many DMSG servers a visor holds sessions with (--dmsg).
    #[arg(long, default_value_t = ::dmsg::defaults::DEFAULT_MIN_SESSIONS, requires = "dmsg", value_name = "N")]
    dmsg_sessions: usize,
    /// DMSG port for --dmsg-http-dir.
    #[arg(long, default_value_t = 80)]
    dmsg_http_port: u16,
    /// Deployment config (bootstrap full nodes, DMSG servers, service endpoints); default:
    /// the embedded one.
    #[arg(long, env = "SKYDEPLOY", value_name = "FILE")]
    deploy: Option<PathBuf>,
    /// Stop when the process with this pid exits (used by `skymesh devnet` for its nodes).
    #[arg(long, hide = true, value_name = "PID")]
    watch_parent: Option<u32>,
    /// Republish timer for own items in milliseconds (tests shorten the 30 min default).
    #[arg(long, hide = true, value_name = "MS")]
    republish_interval_ms: Option<u64>,
}

fn parse_pk(s: &str) -> Result<keys::PubKey, String> {
    keys::PubKey::from_hex(s.trim()).map_err(|e| format!("server key: {e}"))
}

/// `PK@HOST:PORT`.
pub(crate) fn parse_mesh_peer(s: &str) -> Result<::dmsg::server::PeerAddr, String> {
    let (pk, address) = s
        .split_once('@')
        .ok_or_else(|| format!("expected PK@HOST:PORT, got {s:?}"))?;
    let pk = keys::PubKey::from_hex(pk).map_err(|e| format!("peer key: {e}"))?;
    if address
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(format!("peer address {address:?} is not HOST:PORT"));
    }
    Ok(::dmsg::server::PeerAddr {
        pk,
        address: address.to_string(),
    })
}

/// The mesh settings from the flags.
fn mesh_config(args: &Args) -> anyhow::Result<::dmsg::server::MeshConfig> {
    use ::dmsg::server::{MeshAllow, MeshConfig};
    let mut m = MeshConfig {
        peers: args.mesh_peers.clone(),
        ..MeshConfig::default()
    };
    if args.mesh_dht {
        let allow = if args.mesh_allow.iter().any(|a| a == "any") {
            MeshAllow::Any
        } else {
            let keys = args
                .mesh_allow
                .iter()
                .map(|a| keys::PubKey::from_hex(a).with_context(|| format!("--mesh-allow {a}")))
                .collect::<anyhow::Result<_>>()?;
            MeshAllow::Keys(keys)
        };
        m.dht_allow = Some(allow);
    }
    if let Some(ms) = args.mesh_refresh_ms {
        m.refresh_interval = std::time::Duration::from_millis(ms.max(100));
    }
    Ok(m)
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: dhtnode::role::UnknownRole| e.to_string())
}

/// Reads a secret key from text: bare hex, `skymesh keygen` text (`secret_key: …`) or JSON.
pub(crate) fn parse_key_text(text: &str) -> anyhow::Result<SecKey> {
    let text = text.trim();
    let hex = if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).context("key file JSON")?;
        v.get("secret_key")
            .and_then(|s| s.as_str())
            .context("key file JSON has no secret_key")?
            .to_owned()
    } else if let Some(line) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret_key:"))
    {
        line.trim().to_owned()
    } else {
        text.to_owned()
    };
    SecKey::from_hex(&hex).context("secret key")
}

fn load_or_create_key(data: &Path) -> anyhow::Result<SecKey> {
    let path = data.join("node.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_key_text(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let sk = SecKey::generate();
            write_private(&path, &sk.to_hex())?;
            tracing::info!(path = %path.display(), "created node key");
            Ok(sk)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs the daemon until Ctrl-C / SIGTERM.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let sk = match (&args.sk, &args.key) {
        (Some(hex), _) => SecKey::from_hex(hex.trim()).context("--sk")?,
        (None, Some(file)) => parse_key_text(
            &std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?,
        )?,
        (None, None) => load_or_create_key(&args.data)?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(serve(args, sk))
}

/// Items handed from the mirror feed to the node per call (bounds one swarm-loop turn).
const MIRROR_BATCH: usize = 256;
/// Items buffered between the Redis feed and the node (the feed waits when it is full).
const MIRROR_CHANNEL: usize = 4096;

/// Starts the Redis mirror feed and the task that stores what it delivers in the node's own
/// store. Returns the handles; dropping them stops both.
fn follow_mirror(
    url: &str,
    rules: dht::Config,
    node: Node,
    registry: &mut Registry,
) -> anyhow::Result<(mirror::MirrorFeed, AbortOnDrop)> {
    use prometheus_client::metrics::gauge::Gauge;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<dht::Item>(MIRROR_CHANNEL);
    let feed = mirror::MirrorFeed::start(url, mirror::FeedConfig::new(rules), tx)
        .with_context(|| format!("--redis {url}"))?;
    let gauges: Vec<(&'static str, &'static str, Gauge)> = vec![
        (
            "skymesh_mirror_scanned_items",
            "Items delivered by full scans of the mirror",
            Gauge::default(),
        ),
        (
            "skymesh_mirror_followed_items",
            "Items delivered from the mirror's change streams",
            Gauge::default(),
        ),
        (
            "skymesh_mirror_refused_items",
            "Items found in Redis that failed verification",
            Gauge::default(),
        ),
        (
            "skymesh_mirror_rescans",
            "Shard rescans after the change stream was trimmed past us",
            Gauge::default(),
        ),
        (
            "skymesh_mirror_redis_errors",
            "Redis connection or command failures of the feed",
            Gauge::default(),
        ),
        (
            "skymesh_mirror_live",
            "1 when the feed is connected and caught up",
            Gauge::default(),
        ),
    ];
    for (name, help, g) in &gauges {
        registry.register(*name, *help, g.clone());
    }
    let stats = feed.stats().clone();
    let task = tokio::spawn(async move {
        use std::sync::atomic::Ordering::Relaxed;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut batch = Vec::with_capacity(MIRROR_BATCH);
        loop {
            tokio::select! {
                got = rx.recv() => {
                    let Some(item) = got else { return };
                    batch.push(item);
                    while batch.len() < MIRROR_BATCH {
                        match rx.try_recv() {
                            Ok(i) => batch.push(i),
                            Err(_) => break,
                        }
                    }
                    if node.store_local(std::mem::take(&mut batch)).await.is_none() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let values = [
                        stats.scanned.load(Relaxed),
                        stats.followed.load(Relaxed),
                        stats.refused.load(Relaxed),
                        stats.rescans.load(Relaxed),
                        stats.redis_errors.load(Relaxed),
                        stats.live.load(Relaxed),
                    ];
                    for ((_, _, g), v) in gauges.iter().zip(values) {
                        g.set(i64::try_from(v).unwrap_or(i64::MAX));
                    }
                }
            }
        }
    });
    Ok((feed, AbortOnDrop(task)))
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct AppState {
    node: Node,
    registry: Registry,
}

/// What the node runs, for the admin routes of each feature (`dmsg_api`, …).
pub(crate) struct NodeCtx {
    /// The DHT node.
    pub(crate) node: Node,
    /// The node's role.
    pub(crate) role: Role,
    /// The node's key.
    pub(crate) sk: SecKey,
    /// The deployment config in effect.
    pub(crate) deploy: overlay::Deployment,
    /// The DMSG server (full nodes with `--dmsg-listen`).
    pub(crate) dmsg_server: Option<overlay::DhtServer>,
    /// The DMSG client (visors with `--dmsg`).
    pub(crate) dmsg_client: Option<overlay::DhtClient>,
    /// Discovery API test mode.
    pub(crate) disc_test_mode: bool,
    /// The data directory.
    pub(crate) data: PathBuf,
}

async fn serve(args: Args, sk: SecKey) -> anyhow::Result<()> {
    if args.dmsg_listen.is_some() && args.role != Role::Full {
        anyhow::bail!("--dmsg-listen needs --role full: a DMSG server is a full node");
    }
    if args.dmsg && args.role != Role::Regular {
        anyhow::bail!(
            "--dmsg is for visors (--role regular); a full node runs a DMSG server (--dmsg-listen)"
        );
    }
    let deploy = overlay::Deployment::load(args.deploy.as_deref())?;
    let mut registry = Registry::default();
    let mut cfg = Config::new(sk.clone(), args.role);
    cfg.listen = args.listen.clone();
    cfg.bootstrap = if args.bootstrap.is_empty() {
        let own = dhtnode::identity::peer_id(&sk.pubkey())?;
        deploy
            .dht_bootstrap
            .iter()
            .filter(|a| !a.iter().any(|p| p == libp2p::multiaddr::Protocol::P2p(own)))
            .cloned()
            .collect()
    } else {
        args.bootstrap.clone()
    };
    cfg.data_dir = Some(args.data.clone());
    cfg.metrics = dhtnode::Metrics::register(&mut registry);
    cfg.reachability = match args.reachability {
        Reach::Auto => Reachability::Auto,
        Reach::Public => Reachability::Public,
        Reach::Private => Reachability::Private,
    };
    for pk in &args.trusted_writers {
        let pk = keys::PubKey::from_hex(pk)
            .with_context(|| format!("--trusted-writer {pk} is not a public key"))?;
        cfg.store.trusted_writers.insert(pk);
    }
    if args.dmsg_listen.is_some() {
        // The DMSG server side re-puts its `dmsg-server` item every SERVER_REPUBLISH.
        cfg.app_refreshed
            .insert(Salt::of_kind(SaltKind::DmsgServer));
    }
    if args.dmsg {
        // The transport manager publishes `tp` on change and before expiry.
        cfg.app_refreshed.insert(Salt::of_kind(SaltKind::Tp));
    }
    if let Some(ms) = args.republish_interval_ms {
        cfg.republish_interval = std::time::Duration::from_millis(ms.max(100));
    }
    let store_rules = cfg.store.clone();
    let (node, task) = Node::spawn(cfg).await.context("starting the DHT node")?;
    let _mirror = match &args.redis {
        Some(url) => Some(follow_mirror(
            url,
            store_rules,
            node.clone(),
            &mut registry,
        )?),
        None => None,
    };
    for a in node.listen_addrs() {
        tracing::info!(addr = %a, "listening");
    }
    let overlay_metrics = if args.dmsg || args.dmsg_listen.is_some() {
        overlay::OverlayMetrics::new(&mut registry)
    } else {
        overlay::OverlayMetrics::default()
    };
    let dmsg_server = match &args.dmsg_listen {
        Some(listen) => {
            let opts = overlay::ServerOptions {
                listen: listen.clone(),
                public: args.dmsg_public.clone().unwrap_or_default(),
                max_sessions: args.max_sessions,
                mesh: mesh_config(&args)?,
            };
            let metrics = ::dmsg::metrics::ServerMetrics::new(&mut registry);
            let s =
                overlay::start_server(&node, sk.clone(), &opts, metrics, overlay_metrics.clone())
                    .await
                    .with_context(|| format!("starting the DMSG server on {listen}"))?;
            tracing::info!(addr = %s.server.local_addr(), "dmsg server listening");
            Some(s)
        }
        None => None,
    };
    let dmsg_client = args.dmsg.then(|| {
        overlay::start_client(
            &node,
            sk.clone(),
            overlay_metrics.clone(),
            deploy.dmsg_servers.clone(),
            overlay::ClientOptions {
                sessions: args.dmsg_sessions,
                servers: args.dmsg_servers.clone(),
            },
        )
    });
    let _dmsg_http = match (&dmsg_client, &args.dmsg_http_dir) {
        (Some(c), Some(dir)) => {
            let listener = c
                .client
                .listen(args.dmsg_http_port)
                .with_context(|| format!("DMSG port {}", args.dmsg_http_port))?;
            tracing::info!(dir = %dir.display(), port = args.dmsg_http_port, "serving over DMSG-HTTP");
            Some(AbortOnDrop(tokio::spawn(::dmsg::http::serve_dir(
                listener,
                dir.clone(),
            ))))
        }
        _ => None,
    };
    let ctx = Arc::new(NodeCtx {
        node: node.clone(),
        role: args.role,
        sk: sk.clone(),
        deploy,
        dmsg_server,
        dmsg_client,
        disc_test_mode: args.disc_test_mode,
        data: args.data.clone(),
    });
    let tp_manager = tp::start(&ctx, &mut registry)?;
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding the HTTP listener {}", args.http))?;
    tracing::info!(addr = %args.http, "admin API listening");
    let state = Arc::new(AppState {
        node: node.clone(),
        registry,
    });
    let app = Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .route("/api/v1/info", get(info))
        .route("/api/v1/put", post(put))
        .route("/api/v1/get", get(get_item))
        .with_state(state)
        .merge(dmsg_api::router(ctx.clone()))
        .merge(sync::router(node.clone()))
        .merge(tp::router(ctx.clone(), tp_manager));
    let parent = args.watch_parent;
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = parent_gone(parent) => tracing::info!("parent process exited"),
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(stop);
    server.await.context("HTTP server")?;
    tracing::info!("shutting down");
    node.shutdown().await;
    task.await.context("node task")?;
    Ok(())
}

/// Resolves when process `pid` no longer exists (never when `None`; Linux `/proc` check
/// every 500 ms).
async fn parent_gone(pid: Option<u32>) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    let path = PathBuf::from(format!("/proc/{pid}"));
    while path.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": msg.to_string() })),
    )
        .into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &st.registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn info(State(st): State<Arc<AppState>>) -> Response {
    match st.node.info().await {
        Some(info) => Json(info).into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "node is shut down"),
    }
}

#[derive(serde::Deserialize)]
struct PutBody {
    salt: String,
    value: String,
}

async fn put(State(st): State<Arc<AppState>>, Json(body): Json<PutBody>) -> Response {
    let salt = match dht::Salt::new(body.salt.into_bytes()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match st.node.put(salt, body.value.into_bytes()).await {
        Ok(report) => Json(report).into_response(),
        Err(dhtnode::PutError::Shutdown) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "node is shut down")
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(serde::Deserialize)]
struct GetQuery {
    pk: String,
    salt: String,
}

async fn get_item(State(st): State<Arc<AppState>>, Query(q): Query<GetQuery>) -> Response {
    let pk = match keys::PubKey::from_hex(&q.pk) {
        Ok(pk) => pk,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("pk: {e}")),
    };
    let salt = match dht::Salt::new(q.salt.into_bytes()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match st.node.get(&pk, &salt).await {
        Ok(Some(item)) => Json(item_json(&item)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Bytes as UTF-8 text when they are, else hex; with the encoding used.
fn text_or_hex(b: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (hex::encode(b), "hex"),
    }
}

/// The JSON form of a verified item (also printed by `skymesh dht get`).
pub(crate) fn item_json(item: &dht::Item) -> serde_json::Value {
    let (value, value_encoding) = text_or_hex(&item.value);
    let (salt, salt_encoding) = text_or_hex(item.salt.as_bytes());
    serde_json::json!({
        "pk": item.pk.to_hex(),
        "salt": salt,
        "salt_encoding": salt_encoding,
        "seq": item.seq,
        "value": value,
        "value_encoding": value_encoding,
        "writer": item.writer.map(|w| w.to_hex()),
        "sig": item.sig.to_hex(),
        "target": item.target().to_hex(),
    })
}
