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
//! Route paths and bodies are typed in `bin/src/api.rs`, shared with the CLI clients.
//!
//! `GET /` is the status page (`bin/src/status/`). When `--http` is not on loopback (or with
//! `--admin-auth token`), every route but `/`, `/health`, `/metrics` and `/dmsg-discovery/…`
//! needs the bearer token kept in `DATA/admin.token` (`bin/src/admin.rs`).
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
use dhtnode::{Config, Node, Role};
use keys::SecKey;
use libp2p::Multiaddr;
use prometheus_client::registry::Registry;

use crate::api;
use crate::config::{KeySource, NodeConfig};
use crate::daemon::{Daemon, DmsgServerRef, TaskGroup, parent_gone, shutdown_signal};

pub(crate) mod addrs;
mod dmsg_api;
mod msg_api;
mod saved;
mod sync;
mod tp;

/// Arguments of `skymesh node`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Node role.
    #[arg(long, value_parser = parse_role)]
    pub(crate) role: Role,
    /// libp2p listen address, e.g. /ip4/0.0.0.0/tcp/7800 (repeatable).
    #[arg(long, required = true)]
    pub(crate) listen: Vec<Multiaddr>,
    /// Data directory (item store, node key).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Secret key in hex.
    #[arg(
        long,
        env = "SKYMESH_SK",
        hide_env_values = true,
        conflicts_with = "key"
    )]
    pub(crate) sk: Option<String>,
    /// File holding the secret key (hex, or `skymesh keygen` output, text or JSON).
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
    /// Bootstrap peer, a multiaddr ending in /p2p/<peer id> (repeatable).
    #[arg(long)]
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Find nodes on the local network by mDNS: `auto` = when a --listen address is not
    /// loopback.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) mdns: crate::config::Mdns,
    /// HTTP listener for /health, /metrics and the admin API.
    #[arg(long, default_value = crate::config::DEFAULT_HTTP)]
    pub(crate) http: SocketAddr,
    /// When the admin API requires the bearer token in DATA/admin.token: `auto` (when --http
    /// is not on loopback) or `token` (always).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) admin_auth: crate::admin::AdminAuth,
    /// Reachability of a regular node (full nodes are always Kademlia servers).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) reachability: crate::config::Reach,
    /// Follow this Redis mirror live and serve every valid item written there (full nodes;
    /// see docs/mirror.md). Redis being down never stops the node.
    #[arg(long, env = crate::config::REDIS_ENV)]
    pub(crate) redis: Option<String>,
    /// Accept items written *for* other keys by this writer key (a mirror service such as a
    /// transport discovery). Repeatable.
    #[arg(long = "trusted-writer", value_name = "PK", value_parser = crate::config::public_key)]
    pub(crate) trusted_writers: Vec<keys::PubKey>,
    /// Run a DMSG relay server on this TCP address (full nodes); it publishes itself in the
    /// DHT and the node serves the reference discovery API at /dmsg-discovery.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) dmsg_listen: Option<String>,
    /// Address the DMSG server advertises (default: the bound address).
    #[arg(long, value_name = "HOST:PORT", requires = "dmsg_listen")]
    pub(crate) dmsg_public: Option<String>,
    /// DMSG server session limit.
    #[arg(long, default_value_t = ::dmsg::defaults::DEFAULT_MAX_SESSIONS, requires = "dmsg_listen")]
    pub(crate) max_sessions: usize,
    /// PROXY protocol headers before the DMSG handshake (a load balancer in front):
    /// `optional` (used when present, as the reference server does), `required` or `off`.
    #[arg(long, value_name = "MODE", default_value = "optional", value_parser = parse_proxy_mode, requires = "dmsg_listen")]
    pub(crate) dmsg_proxy_protocol: ::dmsg::proxy::ProxyMode,
    /// Accept loopback server addresses posted to /dmsg-discovery (like dmsg-discovery -t).
    #[arg(long, requires = "dmsg_listen")]
    pub(crate) disc_test_mode: bool,
    /// Mesh with this DMSG server, `PK@HOST:PORT` (repeatable): requests for visors not held
    /// here are forwarded to it, one hop at most (docs/dmsg-mesh.md).
    #[arg(long = "mesh-peer", value_name = "PK@HOST:PORT", requires = "dmsg_listen", value_parser = crate::config::parse_mesh_peer)]
    pub(crate) mesh_peers: Vec<crate::config::MeshPeer>,
    /// Also mesh with the DMSG servers published in the DHT whose keys --mesh-allow lists.
    #[arg(long, requires_all = ["dmsg_listen", "mesh_allow"])]
    pub(crate) mesh_dht: bool,
    /// With --mesh-dht: a server key that may be a peer, or `any` (repeatable).
    #[arg(long = "mesh-allow", value_name = "PK|any", requires = "mesh_dht")]
    pub(crate) mesh_allow: Vec<String>,
    /// How often --mesh-dht re-reads the published servers, in milliseconds (tests shorten
    /// the default, the servers' publication interval).
    #[arg(long, hide = true, value_name = "MS")]
    pub(crate) mesh_refresh_ms: Option<u64>,
    /// Run a DMSG client that finds servers and peers through the DHT (visors).
    #[arg(long)]
    pub(crate) dmsg: bool,
    /// Serve this directory over DMSG-HTTP (needs --dmsg).
    #[arg(long, requires = "dmsg", value_name = "DIR")]
    pub(crate) dmsg_http_dir: Option<PathBuf>,
    /// Hold DMSG sessions with this server only (repeatable; --dmsg): peers on other servers
    /// are reached through the server mesh.
    #[arg(long = "dmsg-server", value_name = "PK", requires = "dmsg", value_parser = crate::config::public_key)]
    pub(crate) dmsg_servers: Vec<keys::PubKey>,
    /// Session multiplexer towards DMSG servers (--dmsg): yamux (every server) or smux
    /// (skywire 2026; announced in our discovery entry).
    #[arg(long, default_value = "yamux", requires = "dmsg", value_name = "yamux|smux", value_parser = crate::commands::dmsg::parse_protocol)]
    pub(crate) dmsg_protocol: ::dmsg::mux::Protocol,
    /// How many DMSG servers a visor holds sessions with (--dmsg).
    #[arg(long, default_value_t = ::dmsg::defaults::DEFAULT_MIN_SESSIONS, requires = "dmsg", value_name = "N")]
    pub(crate) dmsg_sessions: usize,
    /// DMSG port for --dmsg-http-dir.
    #[arg(long, default_value_t = 80, requires = "dmsg_http_dir")]
    pub(crate) dmsg_http_port: u16,
    /// Deployment config (bootstrap full nodes, DMSG servers, service endpoints); default:
    /// the embedded one.
    #[arg(long, env = "SKYDEPLOY", value_name = "FILE")]
    pub(crate) deploy: Option<PathBuf>,
    /// Environment to read from a Skywire services-config.json given as --deploy (`prod`,
    /// `test`, …); skymesh's own deployment format has none.
    #[arg(
        long,
        env = "SKYDEPLOY_ENV",
        default_value = "prod",
        value_name = "ENV"
    )]
    pub(crate) deploy_env: String,
    /// Stop when the process with this pid exits (used by `skymesh devnet` for its nodes).
    #[arg(long, hide = true, value_name = "PID")]
    pub(crate) watch_parent: Option<u32>,
    /// Republish timer for own items in milliseconds (tests shorten the 30 min default).
    #[arg(long, hide = true, value_name = "MS")]
    pub(crate) republish_interval_ms: Option<u64>,
}

fn parse_proxy_mode(s: &str) -> Result<::dmsg::proxy::ProxyMode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("{s:?}: expected optional, required or off"))
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

/// Runs the daemon until Ctrl-C, SIGTERM or (with `watch_parent`) the parent's exit, then stops
/// it in order (see `daemon.rs`).
pub(crate) fn run(cfg: NodeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data)
        .with_context(|| format!("creating {}", cfg.data.display()))?;
    let sk = match &cfg.key {
        KeySource::Hex(hex) => SecKey::from_hex(hex.trim()).context("--sk")?,
        KeySource::File(file) => parse_key_text(
            &std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?,
        )?,
        KeySource::DataDir => load_or_create_key(&cfg.data)?,
    };
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(serve(cfg, sk))
}

/// Items handed from the mirror feed to the node per call (bounds one swarm-loop turn).
const MIRROR_BATCH: usize = 256;
/// Items buffered between the Redis feed and the node (the feed waits when it is full).
const MIRROR_CHANNEL: usize = 4096;

/// Starts the Redis mirror feed and the task that stores what it delivers in the node's own
/// store, both in the daemon's mirror stage.
fn follow_mirror(
    url: &str,
    rules: dht::Config,
    node: Node,
    registry: &mut Registry,
    stage: &mut TaskGroup,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<dht::Item>(MIRROR_CHANNEL);
    let feed = mirror::MirrorFeed::start(url, mirror::FeedConfig::new(rules), tx)
        .with_context(|| format!("--redis {url}"))?;
    let metrics = mirror::FeedMetrics::register(registry);
    let stats = feed.stats().clone();
    stage.spawn(|mut shutdown| async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut batch = Vec::with_capacity(MIRROR_BATCH);
        loop {
            tokio::select! {
                _ = shutdown.recv() => return,
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
                _ = tick.tick() => metrics.update(&stats),
            }
        }
    });
    stage.hold(feed);
    Ok(())
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
    pub(crate) dmsg_server: Option<Arc<overlay::DhtServer>>,
    /// The DMSG client (visors with `--dmsg`).
    pub(crate) dmsg_client: Option<overlay::DhtClient>,
    /// Discovery API test mode.
    pub(crate) disc_test_mode: bool,
    /// The data directory.
    pub(crate) data: PathBuf,
    /// The store-and-forward agent (visors with `--dmsg`).
    pub(crate) mailbox: Option<Arc<::dmsg::mailbox::MailboxAgent>>,
    /// The DMSG server's mailbox for offline visors (full nodes with `--dmsg-listen`).
    pub(crate) server_mailbox: Option<Arc<::dmsg::mailbox::MailboxService>>,
}

async fn serve(cfg: NodeConfig, sk: SecKey) -> anyhow::Result<()> {
    let deploy = overlay::Deployment::load_env(cfg.deploy.as_deref(), &cfg.deploy_env)?;
    let mut registry = Registry::default();
    let mut dht_cfg = Config::new(sk.clone(), cfg.role);
    dht_cfg.listen = cfg.listen.clone();
    dht_cfg.bootstrap = if cfg.bootstrap.is_empty() {
        // The full nodes used last time first, then the deployment's (saved.rs).
        let own = dhtnode::identity::peer_id(&sk.pubkey())?;
        saved::bootstrap(&saved::load(&cfg.data), &deploy.dht_bootstrap, own)
    } else {
        cfg.bootstrap.clone()
    };
    dht_cfg.mdns = cfg.mdns.enabled(&cfg.listen);
    dht_cfg.data_dir = Some(cfg.data.clone());
    dht_cfg.metrics = dhtnode::Metrics::register(&mut registry);
    dht_cfg.reachability = cfg.reachability.into();
    dht_cfg
        .store
        .trusted_writers
        .extend(cfg.trusted_writers.iter().copied());
    if cfg.dmsg_server.is_some() {
        // The DMSG server side re-puts its `dmsg-server` item every SERVER_REPUBLISH.
        dht_cfg
            .app_refreshed
            .insert(Salt::of_kind(SaltKind::DmsgServer));
    }
    if cfg.dmsg_client.is_some() {
        // The transport manager publishes `tp` on change and before expiry.
        dht_cfg.app_refreshed.insert(Salt::of_kind(SaltKind::Tp));
    }
    if let Some(ms) = cfg.republish_interval_ms {
        dht_cfg.republish_interval = std::time::Duration::from_millis(ms.max(100));
    }
    let store_rules = dht_cfg.store.clone();
    let (node, task) = Node::spawn(dht_cfg)
        .await
        .context("starting the DHT node")?;
    // From here on, everything started is owned by `daemon` and stopped by its shutdown.
    let mut daemon = Daemon {
        node: Some((node.clone(), task)),
        ..Daemon::default()
    };
    let started = start(&cfg, sk, deploy, &node, store_rules, registry, &mut daemon).await;
    let outcome = match started {
        Ok(http_failed) => run_until_stopped(cfg.watch_parent, http_failed).await,
        Err(e) => Err(e),
    };
    tracing::info!("shutting down");
    daemon.shutdown().await?;
    outcome
}

/// Starts everything but the node, into the stages of `daemon`. The receiver gets the error
/// of the HTTP server if it fails.
async fn start(
    cfg: &NodeConfig,
    sk: SecKey,
    deploy: overlay::Deployment,
    node: &Node,
    store_rules: dht::Config,
    mut registry: Registry,
    daemon: &mut Daemon,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<std::io::Error>> {
    if let Some(url) = &cfg.redis {
        follow_mirror(
            url,
            store_rules,
            node.clone(),
            &mut registry,
            &mut daemon.mirror,
        )?;
    }
    for a in node.listen_addrs() {
        tracing::info!(addr = %a, "listening");
    }
    let overlay_metrics = if cfg.dmsg_client.is_some() || cfg.dmsg_server.is_some() {
        overlay::OverlayMetrics::new(&mut registry)
    } else {
        overlay::OverlayMetrics::default()
    };
    let mut server_mailbox = None;
    let dmsg_server = match &cfg.dmsg_server {
        Some(s) => {
            // Every DMSG server keeps a mailbox for offline visors (docs/mailbox.md).
            let store = ::dmsg::mailbox::MailboxStore::open(
                &cfg.data.join("mailbox"),
                ::dmsg::mailbox::Limits::default(),
                now_ms(),
            )
            .with_context(|| format!("opening the mailbox in {}", cfg.data.display()))?;
            let mailbox = ::dmsg::mailbox::MailboxService::new(
                store,
                sk.clone(),
                ::dmsg::metrics::MailboxMetrics::new(&mut registry),
            );
            let purger = mailbox.spawn_purger(::dmsg::mailbox::service::PURGE_INTERVAL);
            server_mailbox = Some(mailbox.clone());
            daemon.transports.hold(purger);
            let opts = overlay::ServerOptions {
                listen: s.listen.clone(),
                public: s.public.clone().unwrap_or_default(),
                max_sessions: s.max_sessions,
                mesh: s.mesh(),
                mailbox: Some(mailbox),
                proxy: s.proxy_protocol,
            };
            let metrics = ::dmsg::metrics::ServerMetrics::new(&mut registry);
            let srv =
                overlay::start_server(node, sk.clone(), &opts, metrics, overlay_metrics.clone())
                    .await
                    .with_context(|| format!("starting the DMSG server on {}", s.listen))?;
            tracing::info!(addr = %srv.server.local_addr(), "dmsg server listening");
            let srv = Arc::new(srv);
            daemon.dmsg_server = Some(DmsgServerRef::Dht(srv.clone()));
            Some(srv)
        }
        None => None,
    };
    let dmsg_client = cfg.dmsg_client.as_ref().map(|c| {
        overlay::start_client(
            node,
            sk.clone(),
            overlay_metrics.clone(),
            saved::dmsg_servers(&saved::load(&cfg.data), &deploy.dmsg_servers),
            overlay::ClientOptions {
                sessions: c.sessions,
                servers: c.servers.clone(),
                protocol: c.protocol,
            },
        )
    });
    if let (Some(c), Some(conf)) = (&dmsg_client, &cfg.dmsg_client)
        && let Some(dir) = &conf.http_dir
    {
        let listener = c
            .client
            .listen(conf.http_port)
            .with_context(|| format!("DMSG port {}", conf.http_port))?;
        tracing::info!(dir = %dir.display(), port = conf.http_port, "serving over DMSG-HTTP");
        let dir = dir.clone();
        daemon.transports.spawn(|mut shutdown| async move {
            tokio::select! {
                _ = ::dmsg::http::serve_dir(listener, dir) => {}
                _ = shutdown.recv() => {}
            }
        });
    }
    let mailbox = match &dmsg_client {
        Some(c) => {
            let disc: Arc<dyn ::dmsg::Discovery> = c.discovery.clone();
            let agent = ::dmsg::mailbox::MailboxAgent::spawn(
                sk.clone(),
                c.client.clone(),
                disc,
                &cfg.data.join("mailbox"),
            )
            .with_context(|| format!("starting the mailbox in {}", cfg.data.display()))?;
            Some(Arc::new(agent))
        }
        None => None,
    };
    let ctx = Arc::new(NodeCtx {
        node: node.clone(),
        role: cfg.role,
        sk: sk.clone(),
        deploy,
        dmsg_server,
        dmsg_client,
        disc_test_mode: cfg.dmsg_server.as_ref().is_some_and(|s| s.disc_test_mode),
        data: cfg.data.clone(),
        mailbox,
        server_mailbox,
    });
    let (data, saver_node, saver_ctx) = (cfg.data.clone(), node.clone(), ctx.clone());
    daemon
        .transports
        .spawn(|shutdown| saved::keep_saved(data, saver_node, saver_ctx, shutdown));
    let tp_manager = tp::start(&ctx, &mut registry)?;
    // Dropped in this order when the transports stage drains: the manager first (it uses the
    // DMSG client), then the DMSG client and server (the last reference to the context).
    daemon.transports.hold(tp_manager.clone());
    daemon.transports.hold(ctx.clone());
    let listener = tokio::net::TcpListener::bind(cfg.http)
        .await
        .with_context(|| format!("binding the HTTP listener {}", cfg.http))?;
    let http_addr = listener
        .local_addr()
        .context("the HTTP listener's address")?;
    tracing::info!(addr = %http_addr, "admin API listening");
    let bound = addrs::BoundAddrs {
        pid: std::process::id(),
        http: http_addr,
        p2p: node.listen_addrs().iter().map(|a| a.to_string()).collect(),
        dmsg: ctx.dmsg_server.as_ref().map(|s| s.server.local_addr()),
        dmsg_public: ctx
            .dmsg_server
            .as_ref()
            .map(|s| s.server.public_addr().to_owned()),
    };
    addrs::write(&cfg.data, &bound)
        .with_context(|| format!("writing {}", addrs::path(&cfg.data).display()))?;
    let state = Arc::new(AppState {
        node: node.clone(),
        registry,
    });
    let app = Router::new()
        .route(
            api::HEALTH,
            get(|| async {
                Json(api::Health {
                    status: "ok".into(),
                })
            }),
        )
        .route(api::METRICS, get(metrics))
        .route(api::INFO, get(info))
        .route(api::PUT, post(put))
        .route(api::GET, get(get_item))
        .with_state(state)
        .merge(dmsg_api::router(ctx.clone()))
        .merge(msg_api::router(ctx.clone()))
        .merge(sync::router(node.clone()))
        .merge(tp::router(ctx, tp_manager))
        .merge(crate::status::router(node.clone()));
    let token = crate::admin::token_for(cfg.admin_auth, cfg.http, &cfg.data)?;
    let app = crate::admin::protect(app, token);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    daemon.http.spawn(|mut shutdown| async move {
        let stop = async move { shutdown.recv().await };
        if let Err(e) = crate::http_serve::serve(listener, app, stop).await {
            let _ = failed_tx.send(e);
        }
    });
    Ok(failed_rx)
}

/// Waits for Ctrl-C, SIGTERM, the parent's exit or a failure of the HTTP server.
async fn run_until_stopped(
    parent: Option<u32>,
    http_failed: tokio::sync::oneshot::Receiver<std::io::Error>,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = shutdown_signal() => Ok(()),
        _ = parent_gone(parent) => {
            tracing::info!("parent process exited");
            Ok(())
        }
        Ok(e) = http_failed => Err(anyhow::Error::new(e).context("HTTP server")),
    }
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    let body = api::ErrorBody {
        error: Some(msg.to_string()),
    };
    (status, Json(body)).into_response()
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

async fn put(State(st): State<Arc<AppState>>, Json(body): Json<api::PutRequest>) -> Response {
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

async fn get_item(State(st): State<Arc<AppState>>, Query(q): Query<api::GetQuery>) -> Response {
    let pk = match keys::PubKey::from_hex(&q.pk) {
        Ok(pk) => pk,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("pk: {e}")),
    };
    let salt = match dht::Salt::new(q.salt.into_bytes()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match st.node.get(&pk, &salt).await {
        Ok(Some(item)) => Json(api::ItemView::of(&item)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    u64::try_from(::dmsg::now_ns() / 1_000_000).unwrap_or(0)
}
