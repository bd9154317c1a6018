//! The node's configuration: one typed [`NodeConfig`] that both ways of starting a node convert
//! into, each in one function.
//!
//! - `skymesh node` flags: [`NodeConfig::from_args`] (`commands/node/mod.rs` `Args`).
//! - `skymesh dmsg server CONFIG.json` with a `dht` section: [`NodeConfig::from_server_file`].
//!   The file is the reference dmsg-server config ([`ServerFile`], pkg/dmsgserver/config.go)
//!   with two skymesh sections, `dht` ([`DhtSection`]) and `peers` ([`PeerEntry`]).
//!
//! `commands::node::run(NodeConfig)` runs it; nothing converts a configuration back into an
//! argument list. Our own sections refuse unknown fields (a typo must not silently drop a
//! setting); the reference part of the file accepts whatever the Go server accepts, since
//! deployed files carry fields we do not use.
//!
//! Tests: `config/tests.rs`.
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use dhtnode::Role;
use keys::PubKey;
use libp2p::Multiaddr;

#[cfg(test)]
mod tests;

/// Default admin/health/metrics listener of a node (`--http`): loopback, where the admin API
/// needs no token (`crate::admin`).
pub(crate) const DEFAULT_HTTP: &str = "127.0.0.1:7801";
/// Environment variable naming the Redis mirror a full node follows (`--redis`).
pub(crate) const REDIS_ENV: &str = "SKYMESH_REDIS";

/// The one value parser of every public-key flag (`node --trusted-writer`, `mirror put --for`,
/// `item sign --for`, `item verify --trusted-writer`): 66 hex digits of a compressed secp256k1
/// key. clap puts the flag and the value in front of the message, e.g. "invalid value 'xyz'
/// for '--trusted-writer <PK>': not a public key …".
pub(crate) fn public_key(s: &str) -> Result<PubKey, String> {
    PubKey::from_hex(s.trim()).map_err(|e| format!("not a public key (66 hex digits): {e}"))
}

/// Reachability of a regular node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Reach {
    /// Client mode until an external address is confirmed.
    Auto,
    /// Dialable: Kademlia server mode.
    Public,
    /// Not dialable: Kademlia client mode.
    Private,
}

impl From<Reach> for dhtnode::Reachability {
    fn from(r: Reach) -> Self {
        match r {
            Reach::Auto => dhtnode::Reachability::Auto,
            Reach::Public => dhtnode::Reachability::Public,
            Reach::Private => dhtnode::Reachability::Private,
        }
    }
}

/// Finding peers on the local network by mDNS.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mdns {
    /// On when a listen address is not loopback (a node listening on 127.0.0.1 only has no
    /// LAN to find peers on, and tests on loopback send no multicast).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

impl Mdns {
    /// Whether a node listening on `listen` uses mDNS.
    pub(crate) fn enabled(self, listen: &[Multiaddr]) -> bool {
        use libp2p::multiaddr::Protocol;
        match self {
            Mdns::On => true,
            Mdns::Off => false,
            Mdns::Auto => listen.iter().any(|a| match a.iter().next() {
                Some(Protocol::Ip4(ip)) => !ip.is_loopback(),
                Some(Protocol::Ip6(ip)) => !ip.is_loopback(),
                _ => false,
            }),
        }
    }
}

/// Where the node key comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum KeySource {
    /// A secret key in hex (`--sk`, `$SKYMESH_SK`, a server config's `secret_key`).
    Hex(String),
    /// A key file: hex, or `skymesh keygen` output, text or JSON (`--key`).
    File(PathBuf),
    /// `DATA/node.key`, created on first start.
    DataDir,
}

/// A mesh peer: another DMSG server requests may be forwarded to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeshPeer {
    /// The peer server's key.
    pub(crate) pk: PubKey,
    /// Its DMSG listener, `HOST:PORT`.
    pub(crate) address: String,
}

impl MeshPeer {
    /// The library form.
    pub(crate) fn to_peer_addr(&self) -> ::dmsg::server::PeerAddr {
        ::dmsg::server::PeerAddr {
            pk: self.pk,
            address: self.address.clone(),
        }
    }
}

/// Which DMSG servers published in the DHT may be mesh peers (`--mesh-dht --mesh-allow`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum MeshAllow {
    /// Any server.
    Any,
    /// These keys only.
    Keys(Vec<PubKey>),
}

/// The DMSG relay server of a full node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DmsgServerConfig {
    /// TCP listen address, `HOST:PORT`.
    pub(crate) listen: String,
    /// Advertised address (`None`: the bound address).
    #[serde(default)]
    pub(crate) public: Option<String>,
    /// Session limit.
    pub(crate) max_sessions: usize,
    /// Accept loopback server addresses posted to /dmsg-discovery (like dmsg-discovery -t).
    #[serde(default)]
    pub(crate) disc_test_mode: bool,
    /// PROXY protocol headers before the handshake.
    #[serde(default)]
    pub(crate) proxy_protocol: ::dmsg::proxy::ProxyMode,
    /// Static mesh peers.
    #[serde(default)]
    pub(crate) mesh_peers: Vec<MeshPeer>,
    /// Also mesh with the servers published in the DHT that this allows.
    #[serde(default)]
    pub(crate) mesh_dht: Option<MeshAllow>,
    /// How often `mesh_dht` re-reads the published servers, in milliseconds (default: the
    /// servers' publication interval).
    #[serde(default)]
    pub(crate) mesh_refresh_ms: Option<u64>,
}

impl DmsgServerConfig {
    /// The library mesh settings.
    pub(crate) fn mesh(&self) -> ::dmsg::server::MeshConfig {
        let mut m = ::dmsg::server::MeshConfig {
            peers: self.mesh_peers.iter().map(MeshPeer::to_peer_addr).collect(),
            ..::dmsg::server::MeshConfig::default()
        };
        m.dht_allow = self.mesh_dht.as_ref().map(|a| match a {
            MeshAllow::Any => ::dmsg::server::MeshAllow::Any,
            MeshAllow::Keys(k) => ::dmsg::server::MeshAllow::Keys(k.iter().copied().collect()),
        });
        if let Some(ms) = self.mesh_refresh_ms {
            m.refresh_interval = std::time::Duration::from_millis(ms.max(100));
        }
        m
    }
}

/// The DMSG client of a visor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DmsgClientConfig {
    /// Serve this directory over DMSG-HTTP.
    #[serde(default)]
    pub(crate) http_dir: Option<PathBuf>,
    /// DMSG port of `http_dir`.
    pub(crate) http_port: u16,
    /// Hold sessions with these servers only.
    #[serde(default)]
    pub(crate) servers: Vec<PubKey>,
    /// How many servers to hold sessions with.
    pub(crate) sessions: usize,
    /// Session multiplexer (`yamux` or `smux`; default yamux).
    #[serde(default)]
    pub(crate) protocol: ::dmsg::mux::Protocol,
}

/// Everything `skymesh node` runs with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeConfig {
    /// Node role.
    pub(crate) role: Role,
    /// libp2p listen addresses.
    #[serde(with = "text_list")]
    pub(crate) listen: Vec<Multiaddr>,
    /// Data directory (item store, node key).
    pub(crate) data: PathBuf,
    /// The node key.
    pub(crate) key: KeySource,
    /// Bootstrap peers (empty: the deployment's).
    #[serde(default, with = "text_list")]
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Finding peers on the local network.
    #[serde(default)]
    pub(crate) mdns: Mdns,
    /// HTTP listener for /health, /metrics, the admin API (and /dmsg-discovery).
    pub(crate) http: SocketAddr,
    /// When the admin API requires its bearer token.
    #[serde(default)]
    pub(crate) admin_auth: crate::admin::AdminAuth,
    /// Reachability of a regular node.
    pub(crate) reachability: Reach,
    /// Redis mirror to follow (full nodes).
    #[serde(default)]
    pub(crate) redis: Option<String>,
    /// Writer keys whose items written for other keys are accepted.
    #[serde(default)]
    pub(crate) trusted_writers: Vec<PubKey>,
    /// A DMSG relay server (full nodes).
    #[serde(default)]
    pub(crate) dmsg_server: Option<DmsgServerConfig>,
    /// A DMSG client (visors).
    #[serde(default)]
    pub(crate) dmsg_client: Option<DmsgClientConfig>,
    /// Deployment file (`None`: `$SKYDEPLOY`, else the embedded one).
    #[serde(default)]
    pub(crate) deploy: Option<PathBuf>,
    /// Environment of a Skywire services-config.json deployment file.
    #[serde(default = "default_deploy_env")]
    pub(crate) deploy_env: String,
    /// Stop when this process exits (`skymesh devnet`).
    #[serde(default)]
    pub(crate) watch_parent: Option<u32>,
    /// Republish timer for own items, in milliseconds (tests).
    #[serde(default)]
    pub(crate) republish_interval_ms: Option<u64>,
}

impl NodeConfig {
    /// The flags of `skymesh node`, converted. Fails on a `--mesh-allow` that is neither a key
    /// nor `any` (`--trusted-writer` is typed by clap: [`public_key`]).
    pub(crate) fn from_args(a: crate::commands::node::Args) -> anyhow::Result<NodeConfig> {
        let key = match (a.sk, a.key) {
            (Some(hex), _) => KeySource::Hex(hex),
            (None, Some(file)) => KeySource::File(file),
            (None, None) => KeySource::DataDir,
        };
        let mesh_dht = if !a.mesh_dht {
            None
        } else if a.mesh_allow.iter().any(|x| x == "any") {
            Some(MeshAllow::Any)
        } else {
            let keys = a
                .mesh_allow
                .iter()
                .map(|x| PubKey::from_hex(x).with_context(|| format!("--mesh-allow {x}")))
                .collect::<anyhow::Result<_>>()?;
            Some(MeshAllow::Keys(keys))
        };
        let dmsg_server = a.dmsg_listen.map(|listen| DmsgServerConfig {
            listen,
            public: a.dmsg_public,
            max_sessions: a.max_sessions,
            disc_test_mode: a.disc_test_mode,
            proxy_protocol: a.dmsg_proxy_protocol,
            mesh_peers: a.mesh_peers,
            mesh_dht,
            mesh_refresh_ms: a.mesh_refresh_ms,
        });
        let dmsg_client = a.dmsg.then_some(DmsgClientConfig {
            http_dir: a.dmsg_http_dir,
            http_port: a.dmsg_http_port,
            servers: a.dmsg_servers,
            sessions: a.dmsg_sessions,
            protocol: a.dmsg_protocol,
        });
        Ok(NodeConfig {
            role: a.role,
            listen: a.listen,
            data: a.data,
            key,
            bootstrap: a.bootstrap,
            mdns: a.mdns,
            http: a.http,
            admin_auth: a.admin_auth,
            reachability: a.reachability,
            redis: a.redis,
            trusted_writers: a.trusted_writers,
            dmsg_server,
            dmsg_client,
            deploy: a.deploy,
            deploy_env: a.deploy_env,
            watch_parent: a.watch_parent,
            republish_interval_ms: a.republish_interval_ms,
        })
    }

    /// A dmsg-server config file with a `dht` section, converted: a full node running a DMSG
    /// server on `local_address` (advertising `public_address`), its health, metrics, admin and
    /// discovery listener on `health_endpoint_address` (default [`DEFAULT_HTTP`]), meshed with
    /// `peers`. `discovery`, `log_level` and `update_interval` do not apply: the server
    /// publishes itself in the DHT. `redis`: the mirror to follow (`$SKYMESH_REDIS`), the only
    /// setting not in the file.
    pub(crate) fn from_server_file(
        f: &ServerFile,
        redis: Option<String>,
    ) -> anyhow::Result<Option<NodeConfig>> {
        let Some(dht) = &f.dht else {
            return Ok(None);
        };
        let multiaddrs = |field: &str, list: &[String]| {
            list.iter()
                .map(|s| {
                    s.parse::<Multiaddr>()
                        .with_context(|| format!("dht.{field}: {s:?} is not a multiaddr"))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let listen = multiaddrs("listen", &dht.listen)?;
        anyhow::ensure!(!listen.is_empty(), "dht.listen: at least one address");
        let http = if f.health_endpoint_address.is_empty() {
            DEFAULT_HTTP.parse().context("default HTTP address")?
        } else {
            let a = listen_addr(&f.health_endpoint_address);
            a.parse()
                .with_context(|| format!("health_endpoint_address {a:?} is not HOST:PORT"))?
        };
        Ok(Some(NodeConfig {
            role: Role::Full,
            listen,
            data: PathBuf::from(&dht.data),
            key: KeySource::Hex(f.secret_key.clone()),
            bootstrap: multiaddrs("bootstrap", &dht.bootstrap)?,
            mdns: Mdns::Auto,
            http,
            admin_auth: crate::admin::AdminAuth::Auto,
            reachability: Reach::Auto,
            redis: redis.filter(|r| !r.is_empty()),
            trusted_writers: Vec::new(),
            dmsg_server: Some(DmsgServerConfig {
                listen: listen_addr(&f.local_address),
                public: Some(f.public_address.clone()).filter(|p| !p.is_empty()),
                max_sessions: if f.max_sessions > 0 {
                    f.max_sessions
                } else {
                    ::dmsg::defaults::DEFAULT_MAX_SESSIONS
                },
                disc_test_mode: false,
                proxy_protocol: f.proxy_protocol,
                mesh_peers: f
                    .peers
                    .iter()
                    .map(PeerEntry::parse)
                    .collect::<anyhow::Result<_>>()?,
                mesh_dht: None,
                mesh_refresh_ms: None,
            }),
            dmsg_client: None,
            deploy: dht.deploy.as_ref().map(PathBuf::from),
            deploy_env: default_deploy_env(),
            watch_parent: None,
            republish_interval_ms: None,
        }))
    }

    /// Checks the combinations the types allow but a node refuses.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.dmsg_server.is_some() && self.role != Role::Full {
            anyhow::bail!("--dmsg-listen needs --role full: a DMSG server is a full node");
        }
        if self.dmsg_client.is_some() && self.role != Role::Regular {
            anyhow::bail!(
                "--dmsg is for visors (--role regular); a full node runs a DMSG server (--dmsg-listen)"
            );
        }
        Ok(())
    }
}

/// The reference dmsg-server config (pkg/dmsgserver/config.go), plus two skymesh sections the
/// Go server ignores. Unknown top-level fields are accepted, as the Go server does.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ServerFile {
    /// The server key (hex); must match `secret_key`.
    pub(crate) public_key: String,
    /// The secret key (hex).
    pub(crate) secret_key: String,
    /// Discovery URL the server registers with (not used with a `dht` section).
    pub(crate) discovery: String,
    /// Advertised `HOST:PORT`.
    pub(crate) public_address: String,
    /// Listen address (`:PORT` means every interface).
    pub(crate) local_address: String,
    /// `GET /health` and `GET /metrics` listener (default: local port + 1; with a `dht`
    /// section: [`DEFAULT_HTTP`]).
    #[serde(default)]
    pub(crate) health_endpoint_address: String,
    /// Informational; use `-v` or `RUST_LOG`.
    #[serde(default)]
    pub(crate) log_level: String,
    /// Entry refresh interval in nanoseconds (0: the default).
    #[serde(default)]
    pub(crate) update_interval: u64,
    /// Session limit (0: the default).
    #[serde(default)]
    pub(crate) max_sessions: usize,
    /// skymesh extension: run the server as a full DHT node that publishes itself in the DHT
    /// (instead of registering with `discovery`) and serves the discovery API.
    #[serde(default)]
    pub(crate) dht: Option<DhtSection>,
    /// skymesh extension: PROXY protocol headers before the handshake (`optional` — the
    /// reference's behaviour —, `required`, `off`).
    #[serde(default)]
    pub(crate) proxy_protocol: ::dmsg::proxy::ProxyMode,
    /// skymesh extension: mesh peers (other DMSG servers requests may be forwarded to).
    #[serde(default)]
    pub(crate) peers: Vec<PeerEntry>,
}

impl ServerFile {
    /// Parses the file and checks that the two keys match.
    pub(crate) fn parse(text: &str) -> anyhow::Result<ServerFile> {
        let f: ServerFile = serde_json::from_str(text).context("server config")?;
        let sk = keys::SecKey::from_hex(&f.secret_key).context("secret_key")?;
        let pk = PubKey::from_hex(&f.public_key).context("public_key")?;
        anyhow::ensure!(sk.pubkey() == pk, "public_key does not match secret_key");
        Ok(f)
    }
}

/// One mesh peer in a server config (skymesh extension; the Go server ignores it).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeerEntry {
    /// The peer server's key (hex).
    pub(crate) public_key: String,
    /// Its DMSG listener, `HOST:PORT`.
    pub(crate) address: String,
}

impl PeerEntry {
    /// The checked peer.
    pub(crate) fn parse(&self) -> anyhow::Result<MeshPeer> {
        parse_mesh_peer(&format!("{}@{}", self.public_key, self.address))
            .map_err(|e| anyhow::anyhow!("peers: {e}"))
    }
}

/// The `dht` section of a server config (skymesh extension; the Go server ignores it).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DhtSection {
    /// libp2p listen multiaddrs.
    pub(crate) listen: Vec<String>,
    /// Bootstrap full nodes (multiaddrs ending in /p2p/<peer id>); default: the deployment's.
    #[serde(default)]
    pub(crate) bootstrap: Vec<String>,
    /// Data directory (item store).
    pub(crate) data: String,
    /// Deployment file (default: `$SKYDEPLOY`, else embedded).
    #[serde(default)]
    pub(crate) deploy: Option<String>,
}

/// `PK@HOST:PORT` (`--mesh-peer`, and a config file's `peers`).
pub(crate) fn parse_mesh_peer(s: &str) -> Result<MeshPeer, String> {
    let (pk, address) = s
        .split_once('@')
        .ok_or_else(|| format!("expected PK@HOST:PORT, got {s:?}"))?;
    let pk = PubKey::from_hex(pk).map_err(|e| format!("peer key: {e}"))?;
    if address
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(format!("peer address {address:?} is not HOST:PORT"));
    }
    Ok(MeshPeer {
        pk,
        address: address.to_string(),
    })
}

/// A reference listen address: `:PORT` means every interface.
pub(crate) fn listen_addr(a: &str) -> String {
    if a.starts_with(':') {
        format!("0.0.0.0{a}")
    } else {
        a.to_string()
    }
}

/// Serde for lists of values written as text (multiaddrs).
mod text_list {
    use super::*;

    pub(super) fn serialize<T: Display, S: serde::Serializer>(
        v: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.to_string()))
    }

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: serde::Deserializer<'de>,
    {
        let v: Vec<String> = serde::Deserialize::deserialize(d)?;
        v.iter()
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

fn default_deploy_env() -> String {
    overlay::deploy_skywire::DEFAULT_ENV.to_string()
}
