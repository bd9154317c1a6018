//! Starting DMSG on a DHT node: a server on a full node, a client on a visor, or a short-lived
//! client for one command (`skymesh dmsg get --dht …`).
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhtnode::{Node, Reachability, Role};
use dmsg::metrics::ServerMetrics;
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use libp2p::Multiaddr;

use crate::discovery::{DhtDiscovery, ServerExtras, spawn_republisher};
use crate::entries::{CLIENT_REPUBLISH, SERVER_REPUBLISH};
use crate::metrics::OverlayMetrics;

/// A DMSG server's settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// TCP listen address.
    pub listen: String,
    /// Advertised `host:port` (empty: the bound address).
    pub public: String,
    /// Session limit.
    pub max_sessions: usize,
    /// Peering with other servers (static and/or from the DHT).
    pub mesh: dmsg::server::MeshConfig,
    /// The store-and-forward service on the server's own key (port 44), if any.
    pub mailbox: Option<Arc<dmsg::mailbox::MailboxService>>,
    /// PROXY protocol headers before the handshake.
    pub proxy: dmsg::proxy::ProxyMode,
}

/// A DMSG client's settings.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Servers to hold sessions with (0: the default, one).
    pub sessions: usize,
    /// Hold sessions with these servers only and open no others (`--server`).
    pub servers: Vec<keys::PubKey>,
    /// The session multiplexer (`--dmsg-protocol`; default yamux).
    pub protocol: dmsg::mux::Protocol,
}

/// A DMSG server publishing itself through the DHT.
pub struct DhtServer {
    /// The server.
    pub server: Server,
    /// Its discovery.
    pub discovery: Arc<DhtDiscovery>,
}

/// Starts a DMSG server on `node` (a full node): it publishes its `dmsg` entry and its
/// `dmsg-server` item every [`SERVER_REPUBLISH`] and whenever its free sessions change.
///
/// `sk` must be the node's own key: visors look for servers among the full nodes by key (a
/// server under another key is still found by full nodes, which hold every entry, but not by
/// visors asking full nodes for their own entries).
pub async fn start_server(
    node: &Node,
    sk: SecKey,
    opts: &ServerOptions,
    metrics: ServerMetrics,
    overlay: OverlayMetrics,
) -> Result<DhtServer, dmsg::error::ServeError> {
    if sk.pubkey() != node.public_key() {
        tracing::warn!(server = %sk.pubkey(), node = %node.public_key(), "DMSG server key differs from the DHT node key; visors will not find it through the full nodes");
    }
    let extras = ServerExtras {
        max_sessions: u32::try_from(opts.max_sessions).unwrap_or(u32::MAX),
        dht_bootstrap: true,
        protocols: vec!["dmsg".to_string()],
    };
    let discovery = Arc::new(DhtDiscovery::new(node.clone(), Some(extras), overlay));
    let mut cfg = ServerConfig::new(sk, &opts.listen);
    cfg.public_addr = opts.public.clone();
    cfg.max_sessions = opts.max_sessions;
    cfg.update_interval = SERVER_REPUBLISH;
    cfg.discovery = Some(discovery.clone());
    cfg.mesh = opts.mesh.clone();
    cfg.mailbox = opts.mailbox.clone();
    cfg.proxy = opts.proxy;
    if opts.mesh.refresh_interval == dmsg::server::MeshConfig::default().refresh_interval {
        // One publication interval: servers appear and leave at this pace.
        cfg.mesh.refresh_interval = SERVER_REPUBLISH;
    }
    let server = Server::spawn(cfg, metrics).await?;
    Ok(DhtServer { server, discovery })
}

/// A DMSG client finding servers and peers through the DHT.
pub struct DhtClient {
    /// The client.
    pub client: Arc<Client>,
    /// Its discovery.
    pub discovery: Arc<DhtDiscovery>,
    _tasks: [dmsg::AbortOnDrop; 2],
}

/// How often the client-sessions gauge is refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(2);

/// Starts a DMSG client on `node`; its client entry is republished every
/// [`CLIENT_REPUBLISH`] when unchanged.
/// `fallback`: DMSG servers to use while the DHT knows none (the deployment's).
pub fn start_client(
    node: &Node,
    sk: SecKey,
    metrics: OverlayMetrics,
    fallback: Vec<crate::deploy::DmsgServer>,
    opts: ClientOptions,
) -> DhtClient {
    let discovery =
        Arc::new(DhtDiscovery::new(node.clone(), None, metrics.clone()).with_fallback(fallback));
    let mut cfg = ClientConfig::with_discovery(sk.clone(), discovery.clone());
    if opts.sessions > 0 {
        cfg.min_sessions = opts.sessions;
    }
    cfg.servers = opts.servers;
    cfg.mux = cfg.mux.with_protocol(opts.protocol);
    let client = Arc::new(Client::spawn(cfg));
    let republish = dmsg::AbortOnDrop(spawn_republisher(discovery.clone(), sk, CLIENT_REPUBLISH));
    let weak = Arc::downgrade(&client);
    let gauge = dmsg::AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(GAUGE_INTERVAL);
        loop {
            tick.tick().await;
            let Some(c) = weak.upgrade() else { return };
            metrics.client_sessions.set(c.servers().len() as i64);
            // Held servers only: a server whose session ended loses its series.
            metrics.client_server_rtt.clear();
            for (pk, rtt) in c.server_rtts() {
                if let Some(rtt) = rtt {
                    let label = crate::metrics::ServerLabel {
                        server: pk.to_hex(),
                    };
                    metrics
                        .client_server_rtt
                        .get_or_create(&label)
                        .set(rtt.as_secs_f64());
                }
            }
        }
    }));
    DhtClient {
        client,
        discovery,
        _tasks: [republish, gauge],
    }
}

/// Why a short-lived DHT client could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The DHT node did not start.
    #[error("starting the DHT node")]
    Spawn(#[from] dhtnode::SpawnError),
    /// No full node became known in time.
    #[error("no full node answered within {0:?} (check --dht)")]
    NoFullNode(Duration),
}

/// Joins the DHT as a private regular node (no listener others dial, memory store) and starts
/// a DMSG client on it; returns once a full node is known or fails after `wait`.
pub async fn join(
    sk: SecKey,
    bootstrap: Vec<Multiaddr>,
    wait: Duration,
    opts: ClientOptions,
) -> Result<(Node, DhtClient), JoinError> {
    let mut cfg = dhtnode::Config::new(sk.clone(), Role::Regular);
    cfg.reachability = Reachability::Private;
    cfg.bootstrap = bootstrap;
    cfg.data_dir = None;
    let (node, _task) = Node::spawn(cfg).await?;
    let start = Instant::now();
    while node.find_full_nodes().await.is_empty() {
        if start.elapsed() > wait {
            return Err(JoinError::NoFullNode(wait));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = start_client(&node, sk, OverlayMetrics::default(), Vec::new(), opts);
    Ok((node, client))
}
