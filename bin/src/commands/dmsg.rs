//! `skymesh dmsg …`: the DMSG network programs, drop-in for the reference's
//! `dmsg-server start CONFIG.json`, `dmsg-discovery`, `dmsghttp` and `dmsgget`.
//!
//! * `skymesh dmsg server CONFIG.json` — the reference dmsg-server config file unchanged
//!   (`public_key`, `secret_key`, `discovery`, `public_address`, `local_address`,
//!   `health_endpoint_address`, `log_level`, `update_interval` (ns), `max_sessions`), plus an
//!   optional `peers` list (`[{"public_key": PK, "address": "HOST:PORT"}]`, the server mesh,
//!   docs/dmsg-mesh.md). Serves `GET /health` and `GET /metrics` on `health_endpoint_address`.
//! * `skymesh dmsg discovery --addr HOST:PORT [-t] [--data DIR | --redis URL] [--http ADDR]`
//! * `skymesh dmsg http --dir DIR [--port 80] [--sk SK] (--disc URL | --bootstrap MULTIADDR…)
//!   [--server PK…] [--http ADDR]`
//! * `skymesh dmsg get (--disc URL | --bootstrap MULTIADDR…) [--sk SK] [--server PK…]
//!   (--out FILE | --stdout) dmsg://PK:PORT/PATH`
//!
//! `--http ADDR` (the reference's `-m/--metrics`) serves `GET /health` and `GET /metrics`
//! (`bin/src/observe.rs`). Spellings are skymesh's, with the reference programs' kept as aliases
//! for drop-in use: `--disc` (`--dmsg-disc`; short `-d` in `get`, `-D` in `http`, as dmsgget
//! and dmsghttp have them), `--bootstrap` (formerly `--dht`), `--disc-test-mode` (`-t`,
//! `--test-mode`); the secret key comes from `--sk`, `$SKYMESH_SK`, then the reference's
//! `$DMSGHTTP_SK` / `$DMSGGET_SK`.
//!
//! `--server PK` (repeatable): hold sessions with these servers only and open no others; a
//! peer on another server is then reached through the server mesh or not at all.
//!
//! With `--bootstrap`, no discovery URL is needed: the command joins the DHT through the given full
//! node(s) as a private regular node and finds servers and peers there.
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use ::dmsg::disc_server::{DiscServer, DiscServerConfig};
use ::dmsg::metrics::ServerMetrics;
use ::dmsg::mux::Protocol;
use ::dmsg::{Client, ClientConfig, Server, ServerConfig};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use keys::{PubKey, SecKey};
use prometheus_client::registry::Registry;

use crate::config::{NodeConfig, REDIS_ENV, ServerFile, listen_addr};
use crate::daemon::{Daemon, DmsgServerRef, shutdown_signal};

/// Arguments of `skymesh dmsg`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Run a DMSG relay server from a reference dmsg-server config file.
    Server(ServerArgs),
    /// Run a discovery (the reference dmsg-discovery HTTP API).
    Discovery(DiscArgs),
    /// Serve a directory over DMSG-HTTP.
    Http(HttpArgs),
    /// Fetch a dmsg:// URL (like dmsgget).
    Get(GetArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// The config file (JSON, reference format).
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct DiscArgs {
    /// Listen address.
    #[arg(short, long, default_value = ":9090")]
    addr: String,
    /// Store entries in this Redis (the reference's layout) instead of the embedded store.
    #[arg(long, conflicts_with = "data")]
    redis: Option<String>,
    /// Directory to persist entries in (memory only without it).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Test mode: allow loopback server addresses (the reference's -t/--test-mode).
    #[arg(short = 't', long = "disc-test-mode", visible_alias = "test-mode")]
    test_mode: bool,
    /// Serve GET /health and GET /metrics on this address (the reference's -m/--metrics).
    #[arg(
        long = "http",
        short = 'm',
        visible_alias = "metrics",
        value_name = "HOST:PORT"
    )]
    http: Option<String>,
    /// Keys allowed to call deregister (comma separated).
    #[arg(long, value_delimiter = ',')]
    whitelist_keys: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct HttpArgs {
    /// Directory to serve.
    #[arg(short, long)]
    dir: PathBuf,
    /// DMSG port.
    #[arg(short, long, default_value_t = 80)]
    port: u16,
    /// Secret key (hex); random when absent. Also read from $DMSGHTTP_SK.
    #[arg(short, long, env = "SKYMESH_SK", hide_env_values = true)]
    sk: Option<String>,
    /// Discovery URL.
    #[arg(
        long,
        short = 'D',
        visible_alias = "dmsg-disc",
        required_unless_present = "dht",
        conflicts_with = "dht"
    )]
    disc: Option<String>,
    /// Find servers and peers through the DHT instead, joining through this full node (a
    /// multiaddr ending in /p2p/<peer id>; repeatable).
    #[arg(long = "bootstrap", alias = "dht", value_name = "MULTIADDR")]
    dht: Vec<libp2p::Multiaddr>,
    /// Hold sessions with this DMSG server only (repeatable); open no others.
    #[arg(long = "server", value_name = "PK", value_parser = crate::config::public_key)]
    servers: Vec<PubKey>,
    /// Session multiplexer: yamux (every server) or smux (skywire 2026; announced in our
    /// discovery entry).
    #[arg(long = "dmsg-protocol", default_value = "yamux", value_name = "yamux|smux", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Serve GET /health and GET /metrics on this address (the reference's -m/--metrics).
    #[arg(
        long = "http",
        short = 'm',
        visible_alias = "metrics",
        value_name = "HOST:PORT"
    )]
    http: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["out", "stdout"])))]
struct GetArgs {
    /// Discovery URL.
    #[arg(
        long,
        short = 'd',
        visible_alias = "dmsg-disc",
        required_unless_present = "dht",
        conflicts_with = "dht"
    )]
    disc: Option<String>,
    /// Find servers and peers through the DHT instead, joining through this full node (a
    /// multiaddr ending in /p2p/<peer id>; repeatable).
    #[arg(long = "bootstrap", alias = "dht", value_name = "MULTIADDR")]
    dht: Vec<libp2p::Multiaddr>,
    /// Secret key (hex); random when absent. Also read from $DMSGGET_SK.
    #[arg(short, long, env = "SKYMESH_SK", hide_env_values = true)]
    sk: Option<String>,
    /// Print a JSON summary (url, file, bytes, seconds) on stdout when done (not with
    /// --stdout).
    #[arg(long, conflicts_with = "stdout")]
    json: bool,
    /// Output file.
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Write the body to stdout.
    #[arg(short = 'n', long)]
    stdout: bool,
    /// Hold sessions with this DMSG server only (repeatable); open no others.
    #[arg(long = "server", value_name = "PK", value_parser = crate::config::public_key)]
    servers: Vec<PubKey>,
    /// Session multiplexer: yamux (every server) or smux (skywire 2026; announced in our
    /// discovery entry).
    #[arg(long = "dmsg-protocol", default_value = "yamux", value_name = "yamux|smux", value_parser = parse_protocol)]
    protocol: Protocol,
    /// The URL, dmsg://PK:PORT/PATH.
    url: String,
}

/// `--dmsg-protocol`: `yamux` or `smux`.
pub(crate) fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse(s).ok_or_else(|| format!("{s:?}: expected yamux or smux"))
}

/// Reads a server config; with a `dht` section it is a node's configuration.
fn read_server_file(a: &ServerArgs) -> anyhow::Result<(ServerFile, Option<NodeConfig>)> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let f = ServerFile::parse(&text)?;
    let node = NodeConfig::from_server_file(&f, std::env::var(REDIS_ENV).ok())
        .with_context(|| format!("the dht section of {}", a.config.display()))?;
    if node.is_some() && !f.discovery.is_empty() {
        tracing::warn!(discovery = %f.discovery, "the config has a dht section: the server publishes itself in the DHT and does not register with the discovery URL");
    }
    Ok((f, node))
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let mut file = None;
    if let Cmd::Server(a) = &args.cmd {
        let (f, node) = read_server_file(a)?;
        if let Some(cfg) = node {
            // A server config with a `dht` section runs as a full node with a DMSG server.
            return super::node::run(cfg);
        }
        file = Some(f);
    }
    // `dmsg get` is one transfer: one thread runs it without waking others (on the
    // multi-thread runtime a third of its CPU went to futex wake-ups between workers).
    let rt = match &args.cmd {
        Cmd::Get(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("tokio runtime")?;
    rt.block_on(async move {
        match args.cmd {
            Cmd::Server(_) => match file {
                Some(f) => server(f).await,
                None => unreachable!("read above"),
            },
            Cmd::Discovery(a) => discovery(a).await,
            Cmd::Http(a) => http(a).await,
            Cmd::Get(a) => get_url(a).await,
        }
    })
}

/// `--sk`/`$SKYMESH_SK`, else the reference program's variable (`ref_env`), else a new key.
fn key_or_random(sk: &Option<String>, ref_env: &str) -> anyhow::Result<SecKey> {
    match sk.clone().or_else(|| std::env::var(ref_env).ok()) {
        Some(s) => SecKey::from_hex(s.trim()).with_context(|| format!("--sk (or ${ref_env})")),
        None => Ok(SecKey::generate()),
    }
}

/// A DMSG server registered with an HTTP discovery, stopped like a node (`daemon.rs`): health
/// endpoint, then deregistration, then the server.
async fn server(f: ServerFile) -> anyhow::Result<()> {
    let sk = SecKey::from_hex(&f.secret_key).context("secret_key")?;
    let pk = sk.pubkey();
    if !f.log_level.is_empty() {
        tracing::debug!(log_level = %f.log_level, "log_level from the config is informational; use -v/RUST_LOG");
    }
    let local = listen_addr(&f.local_address);
    let mut cfg = ServerConfig::new(sk, &local);
    cfg.proxy = f.proxy_protocol;
    cfg.public_addr = f.public_address.clone();
    if !f.discovery.is_empty() {
        cfg.discovery_url(&f.discovery);
    }
    if f.max_sessions > 0 {
        cfg.max_sessions = f.max_sessions;
    }
    if f.update_interval > 0 {
        cfg.update_interval = std::time::Duration::from_nanos(f.update_interval);
    }
    cfg.mesh.peers = f
        .peers
        .iter()
        .map(|p| p.parse().map(|p| p.to_peer_addr()))
        .collect::<anyhow::Result<_>>()?;
    let mut registry = Registry::default();
    let metrics = ServerMetrics::new(&mut registry);
    let srv = Arc::new(Server::spawn(cfg, metrics).await?);
    let health = if f.health_endpoint_address.is_empty() {
        // Reference default: local port + 1.
        let port = srv.local_addr().port().wrapping_add(1);
        format!("{}:{port}", srv.local_addr().ip())
    } else {
        listen_addr(&f.health_endpoint_address)
    };
    let registry = Arc::new(registry);
    let started = ::dmsg::disc_server::rfc3339_now();
    let app = Router::new()
        .route(
            crate::api::HEALTH,
            get(move || {
                let started = started.clone();
                async move {
                    axum::Json(serde_json::json!({
                        "build_info": {"version": env!("CARGO_PKG_VERSION"), "commit": "unknown", "date": "unknown"},
                        "started_at": started,
                        "dmsg_address": format!("{pk}:0"),
                    }))
                }
            }),
        )
        .route(
            crate::api::METRICS,
            get(|State(r): State<Arc<Registry>>| async move {
                let mut out = String::new();
                let _ = prometheus_client::encoding::text::encode(&mut out, &r);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    out,
                )
            }),
        )
        .with_state(registry);
    let hl = tokio::net::TcpListener::bind(&health)
        .await
        .with_context(|| format!("binding health endpoint {health}"))?;
    crate::telemetry::notice(format_args!(
        "dmsg server {pk} listening on {} (health {health})",
        srv.local_addr()
    ));
    let mut daemon = Daemon {
        dmsg_server: Some(DmsgServerRef::Plain(srv)),
        ..Daemon::default()
    };
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    daemon.http.spawn(|mut shutdown| async move {
        let stop = async move { shutdown.recv().await };
        if let Err(e) = crate::http_serve::serve(hl, app, stop).await {
            let _ = failed_tx.send(e);
        }
    });
    let outcome = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        Ok(e) = failed_rx => Err(anyhow::Error::new(e).context("health endpoint")),
    };
    daemon.shutdown().await?;
    outcome
}

async fn discovery(a: DiscArgs) -> anyhow::Result<()> {
    let mut cfg = DiscServerConfig::new(&listen_addr(&a.addr));
    cfg.test_mode = a.test_mode;
    cfg.data_dir = a.data;
    cfg.whitelist = a.whitelist_keys;
    cfg.redis = a.redis;
    let d = DiscServer::spawn(cfg).await?;
    crate::telemetry::notice(format_args!(
        "dmsg discovery listening on {}",
        d.local_addr()
    ));
    let mut observed = crate::daemon::TaskGroup::new("http");
    if let Some(addr) = &a.http {
        let (registry, refresh) = crate::observe::discovery_gauges(d.local_addr());
        let bound =
            crate::observe::serve(&listen_addr(addr), registry, Some(refresh), &mut observed)
                .await?;
        crate::telemetry::notice(format_args!("health and metrics on http://{bound}"));
    }
    shutdown_signal().await;
    observed.drain(crate::daemon::HTTP_GRACE).await;
    Ok(())
}

/// How long `--dht` waits for a full node to answer.
const DHT_JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A DMSG client on the HTTP discovery or, with `--dht`, on a short-lived DHT node (kept
/// alive by the returned guard).
async fn client_for(
    sk: SecKey,
    disc: &Option<String>,
    dht: &[libp2p::Multiaddr],
    servers: &[PubKey],
    protocol: Protocol,
) -> anyhow::Result<(Arc<Client>, Option<(dhtnode::Node, overlay::DhtClient)>)> {
    match disc {
        Some(url) => {
            let mut cfg = ClientConfig::new(sk, url);
            cfg.servers = servers.to_vec();
            cfg.mux = cfg.mux.with_protocol(protocol);
            Ok((Arc::new(Client::spawn(cfg)), None))
        }
        None => {
            let opts = overlay::ClientOptions {
                sessions: 0,
                servers: servers.to_vec(),
                protocol,
            };
            let (node, c) = overlay::join(sk, dht.to_vec(), DHT_JOIN_WAIT, opts)
                .await
                .context("joining the DHT (--dht)")?;
            Ok((c.client.clone(), Some((node, c))))
        }
    }
}

async fn http(a: HttpArgs) -> anyhow::Result<()> {
    let sk = key_or_random(&a.sk, "DMSGHTTP_SK")?;
    let pk = sk.pubkey();
    let (client, _dht) = client_for(sk, &a.disc, &a.dht, &a.servers, a.protocol).await?;
    let listener = client.listen(a.port)?;
    let mut observed = crate::daemon::TaskGroup::new("http");
    if let Some(addr) = &a.http {
        let (registry, refresh) = crate::observe::client_gauges(client.clone());
        let bound =
            crate::observe::serve(&listen_addr(addr), registry, Some(refresh), &mut observed)
                .await?;
        crate::telemetry::notice(format_args!("health and metrics on http://{bound}"));
    }
    crate::telemetry::notice(format_args!(
        "serving {} on dmsg://{pk}:{}",
        a.dir.display(),
        a.port
    ));
    tokio::select! {
        _ = ::dmsg::http::serve_dir(listener, a.dir) => {}
        _ = shutdown_signal() => {}
    }
    observed.drain(crate::daemon::HTTP_GRACE).await;
    Ok(())
}

async fn get_url(a: GetArgs) -> anyhow::Result<()> {
    let sk = key_or_random(&a.sk, "DMSGGET_SK")?;
    // Like dmsgget (-e 1): one session to a server from available_servers first; a target on
    // another server gets a session to one of its delegated servers when dialed.
    let (client, _dht) = client_for(sk, &a.disc, &a.dht, &a.servers, a.protocol).await?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), client.ready()).await;
    let show = !a.stdout && std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let bar = show.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let progress = |n: u64, total: Option<u64>| {
        if let Some(b) = &bar {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(n);
        }
    };
    let (n, saved) = if a.stdout {
        let mut out = tokio::io::stdout();
        let n = ::dmsg::http::fetch(&client, &a.url, &mut out, progress).await?;
        (n, None)
    } else {
        let path = match &a.out {
            Some(p) if p.is_dir() => {
                let name = a
                    .url
                    .rsplit('/')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("index.html");
                p.join(name)
            }
            Some(p) => p.clone(),
            None => anyhow::bail!("--out or --stdout"),
        };
        let tmp = path.with_extension("part");
        let n = ::dmsg::http::fetch_to_file(&client, &a.url, &tmp, progress)
            .await
            .with_context(|| format!("fetching {} into {}", a.url, tmp.display()))?;
        tokio::fs::rename(&tmp, &path).await?;
        (n, Some(path))
    };
    if let Some(b) = bar {
        b.finish_and_clear();
        eprintln!(
            "downloaded {} in {:.1} s",
            indicatif::HumanBytes(n),
            started.elapsed().as_secs_f64()
        );
    }
    if a.json {
        let summary = serde_json::json!({
            "url": a.url,
            "file": saved.map(|p| p.display().to_string()),
            "bytes": n,
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{summary}");
    }
    Ok(())
}
