//! The server mesh (spec §7) in-process over real loopback sockets: one-hop forwarding,
//! refusal of relayed requests on ordinary sessions, a peer sending garbage, a peer that
//! restarts. The same scenarios with real `skymesh` processes are in `tests/tests/mesh_e2e.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{T, echo, until};

use std::time::Duration;

use bytes::Bytes;
use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::error::DialError;
use dmsg::metrics::ServerMetrics;
use dmsg::mux::Session;
use dmsg::server::{MeshConfig, PeerAddr};
use dmsg::transport::SessionCrypto;
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use dmsg_proto::stream::{Addr, StreamRequest, TypeIds};
use keys::{PubKey, SecKey};
use prometheus_client::registry::Registry;

struct Srv {
    sk: SecKey,
    server: Server,
    registry: Registry,
}

impl Srv {
    fn pk(&self) -> PubKey {
        self.sk.pubkey()
    }
    fn addr(&self) -> String {
        self.server.local_addr().to_string()
    }
    fn metrics(&self) -> String {
        common::metrics_text(&self.registry)
    }
}

async fn disc() -> (DiscServer, String) {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let d = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", d.local_addr());
    (d, url)
}

/// A server with mesh peers `peers` (key, address), short link backoff for tests.
async fn server(sk: SecKey, listen: &str, disc: &str, peers: Vec<(PubKey, String)>) -> Srv {
    let mut sc = ServerConfig::new(sk.clone(), listen);
    sc.discovery_url(disc);
    sc.mesh = MeshConfig {
        peers: peers
            .into_iter()
            .map(|(pk, address)| PeerAddr { pk, address })
            .collect(),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..MeshConfig::default()
    };
    let mut registry = Registry::default();
    let m = ServerMetrics::new(&mut registry);
    let server = Server::spawn(sc, m).await.unwrap();
    let dc = dmsg::DiscClient::new(disc);
    tokio::time::timeout(T, async {
        while dc.entry(&sk.pubkey()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    Srv {
        sk,
        server,
        registry,
    }
}

/// Free loopback ports for servers that must know each other's address before they start.
fn ports(n: usize) -> Vec<String> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// A client holding a session with `srv` only.
async fn client_on(disc: &str, srv: PubKey) -> Client {
    let mut cc = ClientConfig::new(SecKey::generate(), disc);
    cc.servers = vec![srv];
    let c = Client::spawn(cc);
    tokio::time::timeout(T, c.ready()).await.unwrap();
    assert_eq!(c.servers(), vec![srv]);
    c
}

async fn roundtrip(a: &Client, b: PubKey, len: usize) {
    common::roundtrip(a, b, 80, len).await
}

fn request(src: &SecKey, dst: PubKey) -> dmsg_proto::stream::SignedObject {
    common::request(src, src, dst)
}

async fn raw_session(srv: &Srv, sk: &SecKey) -> (Session, SessionCrypto) {
    common::raw_session(&srv.addr(), srv.pk(), sk).await
}

fn link_up(s: &Srv, peer: PubKey) -> bool {
    s.server
        .mesh_peers()
        .iter()
        .any(|p| p.pk == peer.to_hex() && p.up)
}

/// A–B and B–C peered, A–C not.
async fn chain(disc: &str) -> (Srv, Srv, Srv) {
    let (ka, kb, kc) = (SecKey::generate(), SecKey::generate(), SecKey::generate());
    let p = ports(3);
    let a = server(ka.clone(), &p[0], disc, vec![(kb.pubkey(), p[1].clone())]).await;
    let b = server(
        kb.clone(),
        &p[1],
        disc,
        vec![(ka.pubkey(), p[0].clone()), (kc.pubkey(), p[2].clone())],
    )
    .await;
    let c = server(kc, &p[2], disc, vec![(kb.pubkey(), p[1].clone())]).await;
    until("A–B and B–C links", || {
        link_up(&a, b.pk()) && link_up(&b, a.pk()) && link_up(&b, c.pk()) && link_up(&c, b.pk())
    })
    .await;
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hop_forwarding_through_a_peer_and_not_beyond() {
    let (_d, url) = disc().await;
    let (a, b, c) = chain(&url).await;
    let x = client_on(&url, a.pk()).await;
    let y = client_on(&url, b.pk()).await;
    let z = client_on(&url, c.pk()).await;
    let _ey = echo(&y, 80);
    let _ex = echo(&x, 80);
    let _ez = echo(&z, 80);
    // x (on A) reaches y (on B) through A → B, and y reaches x through B → A.
    roundtrip(&x, y.pk(), 1).await;
    roundtrip(&x, y.pk(), 3 << 20).await;
    roundtrip(&y, x.pk(), 100_000).await;
    // x still holds its one session: the mesh carried the streams.
    assert_eq!(x.servers(), vec![a.pk()]);
    let ma = a.metrics();
    assert!(
        ma.contains("skymesh_dmsg_mesh_forwarded_streams_total 2"),
        "{ma}"
    );
    let fa = a.server.mesh_peers();
    assert!(fa[0].forwarded_bytes >= 2 * (3 << 20), "{fa:?}");
    // z (on C) is two hops from x: refused, and the error says why.
    let e = x.dial(z.pk(), 80).await.unwrap_err();
    assert!(matches!(e, DialError::Unreachable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("one hop"), "{msg}");
    // B refused to forward A's request again.
    until("B counts the one-hop refusal", || {
        b.metrics().contains("reason=\"one_hop\"")
    })
    .await;
    assert!(a.metrics().contains("reason=\"no_peer\""));
    // Everyone is still served.
    roundtrip(&y, z.pk(), 1000).await;
    roundtrip(&x, y.pk(), 1000).await;
}

async fn refused(st: &mut dmsg::mux::MuxStream) {
    let r = tokio::time::timeout(T, st.recv_chunk()).await.unwrap();
    assert!(r.is_err() || matches!(r, Ok(None)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_request_on_an_ordinary_session_is_refused() {
    let (_d, url) = disc().await;
    let (a, b, _c) = chain(&url).await;
    let y = client_on(&url, a.pk()).await;
    let _ey = echo(&y, 80);
    // A visor (not a peer) sends a request signed by someone else: a relayed request.
    let visor = SecKey::generate();
    let (sess, crypto) = raw_session(&a, &visor).await;
    let someone = SecKey::generate();
    let mut st = sess.open().unwrap();
    dmsg::stream::write_object(&mut st, &crypto, &request(&someone, y.pk()))
        .await
        .unwrap();
    refused(&mut st).await;
    until("A counts it", || {
        let m = a.metrics();
        m.contains("code=\"302\"") && m.contains("reason=\"not_a_peer\"")
    })
    .await;
    // The session keeps serving: its own request goes through.
    let mut st = sess.open().unwrap();
    dmsg::stream::write_object(&mut st, &crypto, &request(&visor, y.pk()))
        .await
        .unwrap();
    let r = tokio::time::timeout(T, st.recv_chunk()).await.unwrap();
    assert!(matches!(r, Ok(Some(_))), "{r:?}");
    assert!(!sess.is_closed());
    // And the mesh is untouched.
    assert!(link_up(&a, b.pk()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_cut_and_kept_away() {
    let (_d, url) = disc().await;
    let peer = SecKey::generate();
    // A lists `peer` as a peer at an address where nothing listens; we play the peer by hand.
    let dead = ports(1).remove(0);
    let a = server(
        SecKey::generate(),
        "127.0.0.1:0",
        &url,
        vec![(peer.pubkey(), dead)],
    )
    .await;
    let x = client_on(&url, a.pk()).await;
    let y = client_on(&url, a.pk()).await;
    let _ey = echo(&y, 80);
    let (sess, _crypto) = raw_session(&a, &peer).await;
    until("A sees the peer's session", || link_up(&a, peer.pubkey())).await;
    let mut st = sess.open().unwrap();
    st.send_chunk(Bytes::from(vec![0x00, 0x30, 1, 2, 3]))
        .await
        .unwrap();
    st.send_chunk(Bytes::from(vec![0x5a; 48])).await.unwrap();
    tokio::time::timeout(T, sess.closed()).await.unwrap();
    assert!(a.metrics().contains("event=\"garbage\""));
    // Kept away: a new session from it is closed at once.
    let (again, _) = raw_session(&a, &peer).await;
    tokio::time::timeout(T, again.closed()).await.unwrap();
    let st = a.server.mesh_peers();
    assert!(st[0].penalty_secs.is_some() && !st[0].up, "{st:?}");
    // Everyone else is served.
    roundtrip(&x, y.pk(), 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_comes_back_and_the_link_is_restored() {
    let (_d, url) = disc().await;
    let (a, b, c) = chain(&url).await;
    let x = client_on(&url, a.pk()).await;
    let y = client_on(&url, b.pk()).await;
    let _ey = echo(&y, 80);
    roundtrip(&x, y.pk(), 1000).await;
    // Kill C: A–B forwarding is unaffected.
    let (kc, addr_c) = (c.sk.clone(), c.addr());
    drop(c);
    until("B sees C down", || !link_up(&b, kc.pubkey())).await;
    roundtrip(&x, y.pk(), 1000).await;
    // C comes back on the same address: B's link returns within its backoff (≤ 1 s here).
    let t0 = std::time::Instant::now();
    let c = server(kc, &addr_c, &url, vec![(b.pk(), b.addr())]).await;
    until("B–C link restored", || link_up(&b, c.pk())).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let z = client_on(&url, c.pk()).await;
    let _ez = echo(&z, 80);
    roundtrip(&y, z.pk(), 1000).await;
    roundtrip(&x, y.pk(), 1000).await;
    let _ = a;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_refused_at_its_link_bound_then_cut() {
    let (_d, url) = disc().await;
    let peer = SecKey::generate();
    let dead = ports(1).remove(0);
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.discovery_url(&url);
    sc.mesh = MeshConfig {
        peers: vec![PeerAddr {
            pk: peer.pubkey(),
            address: dead,
        }],
        max_relayed_per_link: 2,
        flood_refusals: 8,
        ..MeshConfig::default()
    };
    let mut registry = Registry::default();
    let server = Server::spawn(sc.clone(), ServerMetrics::new(&mut registry))
        .await
        .unwrap();
    let a = Srv {
        sk: sc.sk.clone(),
        server,
        registry,
    };
    let dc = dmsg::DiscClient::new(&url);
    while dc.entry(&a.pk()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let x = client_on(&url, a.pk()).await;
    let y = client_on(&url, a.pk()).await;
    let _ey = echo(&y, 80);
    let (sess, crypto) = raw_session(&a, &peer).await;
    until("A sees the peer's session", || link_up(&a, peer.pubkey())).await;
    // Two relayed streams fill the link's bound (they stay open)...
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut st = sess.open().unwrap();
        let req = request(&SecKey::generate(), y.pk());
        dmsg::stream::write_object(&mut st, &crypto, &req)
            .await
            .unwrap();
        let r = tokio::time::timeout(T, st.recv_chunk()).await.unwrap();
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
        open.push(st);
    }
    // ...and every further one is refused, until the peer is cut as a flooder.
    for _ in 0..8 {
        let Ok(mut st) = sess.open() else { break };
        let req = request(&SecKey::generate(), y.pk());
        if dmsg::stream::write_object(&mut st, &crypto, &req)
            .await
            .is_err()
        {
            break;
        }
        let _ = tokio::time::timeout(T, st.recv_chunk()).await.unwrap();
    }
    tokio::time::timeout(T, sess.closed()).await.unwrap();
    let m = a.metrics();
    assert!(m.contains("reason=\"link_capacity\""), "{m}");
    assert!(m.contains("event=\"flood\""), "{m}");
    // Everyone else is served.
    roundtrip(&x, y.pk(), 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_reaches_the_destination_byte_for_byte() {
    let (_d, url) = disc().await;
    let (a, b, _c) = chain(&url).await;
    // The destination: a raw session on B (no client entry: A offers the request to every peer).
    let dst = SecKey::generate();
    let (dsess, dcrypto) = raw_session(&b, &dst).await;
    // The source: a raw session on A, encoding with the gob type ids of a long-running Go
    // process (not the first ones a fresh process assigns).
    let src = SecKey::generate();
    let (ssess, scrypto) = raw_session(&a, &src).await;
    let mut hs = dmsg_proto::noise::HandshakeState::new(
        dmsg_proto::noise::Pattern::KK,
        dmsg_proto::noise::Role::Initiator,
        src.clone(),
        Some(dst.pubkey()),
    )
    .unwrap();
    let req = StreamRequest {
        timestamp: dmsg::now_ns(),
        src: Addr {
            pk: src.pubkey(),
            port: 49153,
        },
        dst: Addr {
            pk: dst.pubkey(),
            port: 80,
        },
        noise_msg: hs.write_message().unwrap(),
    }
    .sign(&src, TypeIds { first: 97 });
    let mut st = ssess.open().unwrap();
    dmsg::stream::write_object(&mut st, &scrypto, &req)
        .await
        .unwrap();
    let mut incoming = tokio::time::timeout(T, dsess.accept())
        .await
        .unwrap()
        .unwrap();
    let (got, _) = dmsg::stream::read_object(&mut incoming, &dcrypto, T)
        .await
        .unwrap();
    assert_eq!(
        got.as_bytes(),
        req.as_bytes(),
        "the signed object changed on the way"
    );
}

async fn health(
    c: &Client,
    server: PubKey,
    new: dmsg::client::NewSession,
) -> Result<(), DialError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(T, c.dial_server_with(server, 80, new))
        .await
        .unwrap()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    Ok(())
}

/// A server's own key is reached through the session with it, else through the mesh, and only
/// then through a session opened on demand, which is closed once idle while the session the
/// client holds anyway is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_own_key_goes_through_the_mesh_before_a_session_on_demand() {
    use dmsg::client::NewSession::{Allow, Never};
    let (_d, url) = disc().await;
    let (ka, kb) = (SecKey::generate(), SecKey::generate());
    let p = ports(2);
    let a = server(ka.clone(), &p[0], &url, vec![(kb.pubkey(), p[1].clone())]).await;
    let b = server(kb, &p[1], &url, vec![(ka.pubkey(), p[0].clone())]).await;
    until("A–B link", || link_up(&a, b.pk()) && link_up(&b, a.pk())).await;
    let x = Client::spawn(ClientConfig::new(SecKey::generate(), &url));
    tokio::time::timeout(T, x.ready()).await.unwrap();
    let held = x.servers();
    assert_eq!(held.len(), 1, "{held:?}");
    let other = if held[0] == a.pk() { b.pk() } else { a.pk() };
    // 1 and 2: the held server itself, and its mesh peer through it; no new session.
    health(&x, held[0], Never).await.unwrap();
    health(&x, other, Never).await.unwrap();
    assert_eq!(x.servers(), held);
    // A server outside the mesh: not without a session of its own, then with one on demand.
    let c = server(SecKey::generate(), "127.0.0.1:0", &url, Vec::new()).await;
    let e = health(&x, c.pk(), Never).await.unwrap_err();
    assert!(matches!(e, DialError::Unreachable { .. }), "{e:?}");
    health(&x, c.pk(), Allow).await.unwrap();
    assert_eq!(x.servers().len(), 2);
    // Idle, the on-demand session is closed at a rebalancing check; the held one stays.
    tokio::time::timeout(Duration::from_secs(60), async {
        while x.servers().len() > 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(x.servers(), held);
}

/// smux clients on two meshed servers reach each other (the mesh link itself is yamux).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smux_clients_on_two_servers_reach_each_other_through_the_mesh() {
    use dmsg::mux::Protocol;
    let (_d, url) = disc().await;
    let (ka, kb) = (SecKey::generate(), SecKey::generate());
    let p = ports(2);
    let a = server(ka.clone(), &p[0], &url, vec![(kb.pubkey(), p[1].clone())]).await;
    let b = server(kb, &p[1], &url, vec![(ka.pubkey(), p[0].clone())]).await;
    until("A–B link", || link_up(&a, b.pk()) && link_up(&b, a.pk())).await;
    let on = |srv: PubKey, protocol: Protocol| {
        let mut cc = ClientConfig::new(SecKey::generate(), &url);
        cc.servers = vec![srv];
        cc.mux = cc.mux.with_protocol(protocol);
        Client::spawn(cc)
    };
    for (px, py) in [
        (Protocol::Smux, Protocol::Smux),
        (Protocol::Smux, Protocol::Yamux),
        (Protocol::Yamux, Protocol::Smux),
    ] {
        let x = on(a.pk(), px);
        let y = on(b.pk(), py);
        tokio::time::timeout(T, x.ready()).await.unwrap();
        tokio::time::timeout(T, y.ready()).await.unwrap();
        let _ex = echo(&x, 80);
        let _ey = echo(&y, 80);
        roundtrip(&x, y.pk(), 1000).await;
        roundtrip(&y, x.pk(), 100_000).await;
    }
}
