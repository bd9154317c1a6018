//! `DhtDiscovery` on real in-process DHT nodes and DMSG servers on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use dhtnode::{Node, Role};
use dmsg::discovery::Discovery;
use dmsg::metrics::ServerMetrics;
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use overlay::deploy::DmsgServer;
use overlay::{DhtDiscovery, OverlayMetrics};

async fn node(role: Role, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    node_with(SecKey::generate(), role, bootstrap).await
}

async fn node_with(sk: SecKey, role: Role, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    let mut cfg = dhtnode::Config::new(sk, role);
    cfg.bootstrap = bootstrap;
    Node::spawn(cfg).await.unwrap().0
}

#[tokio::test]
async fn a_fresh_visor_uses_the_deployment_servers_until_the_dht_knows_some() {
    let n = node(Role::Regular, Vec::new()).await;
    // A DMSG server nobody published in the DHT.
    let srv = Server::spawn(
        ServerConfig::new(SecKey::generate(), "127.0.0.1:0"),
        ServerMetrics::default(),
    )
    .await
    .unwrap();
    let fallback = vec![DmsgServer {
        pk: srv.pk(),
        address: srv.local_addr().to_string(),
    }];
    let bare = DhtDiscovery::new(n.clone(), None, OverlayMetrics::default());
    assert!(bare.available_servers().await.unwrap().is_empty());
    let disc = Arc::new(
        DhtDiscovery::new(n.clone(), None, OverlayMetrics::default()).with_fallback(fallback),
    );
    let listed = disc.available_servers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].static_pk, srv.pk());
    let client = Client::spawn(ClientConfig::with_discovery(SecKey::generate(), disc));
    tokio::time::timeout(Duration::from_secs(20), client.ready())
        .await
        .unwrap();
    assert_eq!(client.servers(), vec![srv.pk()]);
}

#[tokio::test]
async fn servers_published_through_a_full_node_are_found_and_ranked() {
    // A DMSG server is a full node with the same key.
    let server_sk = SecKey::generate();
    let full = node_with(server_sk.clone(), Role::Full, Vec::new()).await;
    let boot: Vec<libp2p::Multiaddr> = full
        .listen_addrs()
        .iter()
        .map(|a| format!("{a}/p2p/{}", full.peer_id()).parse().unwrap())
        .collect();
    let visor = node(Role::Regular, boot).await;
    for _ in 0..200 {
        if !visor.find_full_nodes().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opts = overlay::ServerOptions {
        listen: "127.0.0.1:0".into(),
        public: String::new(),
        max_sessions: 10,
        mesh: Default::default(),
        mailbox: None,
        proxy: Default::default(),
    };
    let s = overlay::start_server(
        &full,
        server_sk,
        &opts,
        ServerMetrics::default(),
        OverlayMetrics::default(),
    )
    .await
    .unwrap();
    let metrics = OverlayMetrics::default();
    let disc = DhtDiscovery::new(visor.clone(), None, metrics.clone());
    let mut found = Vec::new();
    for _ in 0..200 {
        found = disc.available_servers().await.unwrap();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found.len(), 1, "the server's entry reached the visor");
    assert_eq!(found[0].static_pk, s.server.pk());
    assert_eq!(metrics.servers_reachable.get(), 1);
    // An entry lookup of an unknown key is a typed NotFound.
    let unknown = SecKey::generate().pubkey();
    assert!(matches!(
        disc.entry(unknown).await,
        Err(dmsg::error::DiscError::NotFound { .. })
    ));
}
