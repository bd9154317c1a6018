//! Saved peers: `DATA/known-peers.json` records the full nodes (DHT peers) and DMSG servers a
//! node used, and its next start tries them first — before the deployment config's — so a
//! visor that once joined rejoins even when the deployment's nodes are gone or unknown (a
//! LAN network found by mDNS, a deployment that changed).
//!
//! - Written every [`SAVE_INTERVAL`] (the first time [`FIRST_SAVE`] after start) when what
//!   it holds changed and is not empty, atomically (temporary file renamed), at most
//!   [`MAX_SAVED`] full nodes (up to 4 addresses each) and [`MAX_SAVED`] DMSG servers.
//! - Full nodes: those the node currently knows (`info.full_nodes`) whose signed `fullnode`
//!   advert it holds, with the advertised addresses (`/p2p/<peer id>` appended; loopback ones
//!   only when a node has no other).
//! - DMSG servers: those the DMSG client holds sessions with, with the address of their
//!   discovery entry.
//! - With `--bootstrap` given, the saved DHT peers are not used (the operator chose).
//! - A missing or unreadable file is an empty list (a warning when it does not parse).
use std::path::{Path, PathBuf};
use std::time::Duration;

use dht::value::ValueFormat;
use dht::{Salt, SaltKind};
use dhtnode::Node;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};

/// File name inside the data directory.
pub(crate) const FILE: &str = "known-peers.json";
/// Most full nodes and most DMSG servers saved.
pub(crate) const MAX_SAVED: usize = 16;
/// How often the file is refreshed.
pub(crate) const SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// First save after start (once the node has found its peers).
pub(crate) const FIRST_SAVE: Duration = Duration::from_secs(10);

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Known {
    /// Full nodes' multiaddrs, each ending in `/p2p/<peer id>`.
    #[serde(default)]
    pub(crate) dht_peers: Vec<String>,
    /// DMSG servers used.
    #[serde(default)]
    pub(crate) dmsg_servers: Vec<overlay::deploy::DmsgServer>,
}

impl Known {
    fn is_empty(&self) -> bool {
        self.dht_peers.is_empty() && self.dmsg_servers.is_empty()
    }
}

fn path(data: &Path) -> PathBuf {
    data.join(FILE)
}

/// The saved peers in `data` (empty when there are none or the file is unreadable).
pub(crate) fn load(data: &Path) -> Known {
    let p = path(data);
    match std::fs::read_to_string(&p) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %p.display(), error = %e, "ignoring unreadable saved peers");
            Known::default()
        }),
        Err(_) => Known::default(),
    }
}

/// Writes `known` into `data` atomically.
pub(crate) fn save(data: &Path, known: &Known) -> std::io::Result<()> {
    let tmp = data.join(format!(".{FILE}.tmp"));
    let text = serde_json::to_string_pretty(known).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path(data))
}

/// Bootstrap peers: the saved ones first, then the deployment's; duplicates and the node's own
/// addresses (`own`) dropped; unparsable saved entries skipped.
pub(crate) fn bootstrap(
    saved: &Known,
    deploy: &[Multiaddr],
    own: libp2p::PeerId,
) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    let saved = saved.dht_peers.iter().filter_map(|s| s.parse().ok());
    for a in saved.chain(deploy.iter().cloned()) {
        let ours = a.iter().any(|p| p == Protocol::P2p(own));
        let has_peer = matches!(a.iter().last(), Some(Protocol::P2p(_)));
        if !ours && has_peer && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// DMSG servers to fall back on: the saved ones first, then the deployment's (by key, first
/// address wins).
pub(crate) fn dmsg_servers(
    saved: &Known,
    deploy: &[overlay::deploy::DmsgServer],
) -> Vec<overlay::deploy::DmsgServer> {
    let mut out: Vec<overlay::deploy::DmsgServer> = Vec::new();
    for s in saved.dmsg_servers.iter().chain(deploy) {
        if !out.iter().any(|o| o.pk == s.pk) {
            out.push(s.clone());
        }
    }
    out
}

/// Most addresses saved per full node.
const ADDRS_PER_NODE: usize = 4;

/// The addresses worth saving of one node: its non-loopback ones (a loopback address names
/// whichever host dials it), or its loopback ones when it has no other (a local network).
fn reachable(addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
    let is_lo = |a: &Multiaddr| match a.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    };
    let (lo, other): (Vec<_>, Vec<_>) = addrs.into_iter().partition(is_lo);
    let mut out = if other.is_empty() { lo } else { other };
    out.truncate(ADDRS_PER_NODE);
    out
}

/// What the node uses now (see the module docs).
pub(crate) async fn snapshot(node: &Node, client: Option<&overlay::DhtClient>) -> Known {
    let mut known = Known::default();
    if let Some(info) = node.info().await {
        let adverts = node
            .local_items(
                Salt::of_kind(SaltKind::Fullnode),
                dht::store::MAX_LIST_LIMIT,
            )
            .await;
        let mut nodes = 0;
        for item in adverts {
            if nodes >= MAX_SAVED {
                break;
            }
            let Ok(peer) = dhtnode::identity::peer_id(&item.pk) else {
                continue;
            };
            if !info.full_nodes.contains(&peer.to_string()) {
                continue;
            }
            let Ok(advert) = dht::value::FullnodeAdvert::decode(&item.value) else {
                continue;
            };
            let addrs: Vec<Multiaddr> = advert
                .listen
                .iter()
                .filter_map(|a| a.parse::<Multiaddr>().ok())
                .map(|a| match a.iter().last() {
                    Some(Protocol::P2p(_)) => a,
                    _ => a.with(Protocol::P2p(peer)),
                })
                .collect();
            let addrs = reachable(addrs);
            nodes += usize::from(!addrs.is_empty());
            known
                .dht_peers
                .extend(addrs.iter().map(Multiaddr::to_string));
        }
    }
    if let Some(c) = client {
        for pk in c.client.servers().into_iter().take(MAX_SAVED) {
            if let Ok(e) = ::dmsg::Discovery::entry(c.discovery.as_ref(), pk).await
                && let Some(s) = e.server
            {
                known.dmsg_servers.push(overlay::deploy::DmsgServer {
                    pk,
                    address: s.address,
                });
            }
        }
    }
    known.dht_peers.sort();
    known.dmsg_servers.sort_by_key(|s| s.pk.to_hex());
    known
}

/// Refreshes the file until shutdown (see the module docs).
pub(crate) async fn keep_saved(
    data: PathBuf,
    node: Node,
    ctx: std::sync::Arc<super::NodeCtx>,
    mut shutdown: crate::daemon::Shutdown,
) {
    let mut last = load(&data);
    let mut wait = FIRST_SAVE;
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = SAVE_INTERVAL;
        let now = snapshot(&node, ctx.dmsg_client.as_ref()).await;
        if now.is_empty() || now == last {
            continue;
        }
        match save(&data, &now) {
            Ok(()) => {
                tracing::debug!(
                    dht_peers = now.dht_peers.len(),
                    dmsg_servers = now.dmsg_servers.len(),
                    "saved peers"
                );
                last = now;
            }
            Err(e) => tracing::warn!(error = %e, "saving known peers failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: &str) -> libp2p::PeerId {
        dhtnode::identity::peer_id(&keys::SecKey::from_seed(seed.as_bytes()).pubkey()).unwrap()
    }

    #[test]
    fn saved_peers_come_first_without_duplicates_or_self() {
        let (a, b, me) = (peer("a"), peer("b"), peer("me"));
        let saved = Known {
            dht_peers: vec![
                format!("/ip4/10.0.0.2/tcp/7800/p2p/{a}"),
                format!("/ip4/10.0.0.9/tcp/7800/p2p/{me}"),
                "not a multiaddr".into(),
                "/ip4/10.0.0.3/tcp/7800".into(),
            ],
            dmsg_servers: vec![],
        };
        let deploy: Vec<Multiaddr> = vec![
            format!("/ip4/198.51.100.1/tcp/7800/p2p/{b}")
                .parse()
                .unwrap(),
            format!("/ip4/10.0.0.2/tcp/7800/p2p/{a}").parse().unwrap(),
        ];
        let got: Vec<String> = bootstrap(&saved, &deploy, me)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            got,
            [
                format!("/ip4/10.0.0.2/tcp/7800/p2p/{a}"),
                format!("/ip4/198.51.100.1/tcp/7800/p2p/{b}"),
            ]
        );
    }

    #[test]
    fn loopback_addresses_only_when_there_is_nothing_else() {
        let p = peer("a");
        let m = |s: &str| -> Multiaddr { format!("{s}/p2p/{p}").parse().unwrap() };
        let lan = reachable(vec![m("/ip4/127.0.0.1/tcp/1"), m("/ip4/10.0.0.2/tcp/1")]);
        assert_eq!(lan, [m("/ip4/10.0.0.2/tcp/1")]);
        let local = reachable(vec![m("/ip4/127.0.0.1/tcp/1")]);
        assert_eq!(local, [m("/ip4/127.0.0.1/tcp/1")]);
        let many: Vec<_> = (1..9)
            .map(|i| m(&format!("/ip4/10.0.0.{i}/tcp/1")))
            .collect();
        assert_eq!(reachable(many).len(), ADDRS_PER_NODE);
    }

    #[test]
    fn saved_servers_come_first_by_key() {
        let k = |s: &str| keys::SecKey::from_seed(s.as_bytes()).pubkey();
        let s = |pk, addr: &str| overlay::deploy::DmsgServer {
            pk,
            address: addr.into(),
        };
        let saved = Known {
            dht_peers: vec![],
            dmsg_servers: vec![s(k("x"), "10.0.0.2:8081")],
        };
        let deploy = [s(k("y"), "203.0.113.1:8081"), s(k("x"), "203.0.113.2:8081")];
        let got = dmsg_servers(&saved, &deploy);
        assert_eq!(
            got,
            [s(k("x"), "10.0.0.2:8081"), s(k("y"), "203.0.113.1:8081")]
        );
    }

    #[test]
    fn file_round_trip_and_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Known::default());
        let k = Known {
            dht_peers: vec![format!("/ip4/10.0.0.2/tcp/1/p2p/{}", peer("a"))],
            dmsg_servers: vec![],
        };
        save(dir.path(), &k).unwrap();
        assert_eq!(load(dir.path()), k);
        std::fs::write(dir.path().join(FILE), "{not json").unwrap();
        assert_eq!(load(dir.path()), Known::default());
    }
}
