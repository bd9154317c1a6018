//! In-process network tests over real loopback sockets: discovery + server + clients, and the
//! bad-input matrix (each case: typed refusal, offender disconnected, others unaffected).
#![allow(clippy::unwrap_used)]

mod common;

use common::{T, echo, metrics_soon, metrics_text, request};

use std::time::Duration;

use bytes::Bytes;
use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::metrics::ServerMetrics;
use dmsg::mux::{MuxConfig, Session, Side};
use dmsg::transport::{SessionCrypto, handshake_client};
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Net {
    _disc: DiscServer,
    disc_url: String,
    server: Server,
    registry: Registry,
}

async fn net() -> Net {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let disc_url = format!("http://{}", disc.local_addr());
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.discovery_url(&disc_url);
    let mut registry = Registry::default();
    let m = ServerMetrics::new(&mut registry);
    let server = Server::spawn(sc, m).await.unwrap();
    // Wait until the server entry is in discovery.
    let dc = dmsg::DiscClient::new(&disc_url);
    tokio::time::timeout(T, async {
        while dc.entry(&server.pk()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    Net {
        _disc: disc,
        disc_url,
        server,
        registry,
    }
}

async fn client(n: &Net) -> Client {
    let c = Client::spawn(ClientConfig::new(SecKey::generate(), &n.disc_url));
    tokio::time::timeout(T, c.ready()).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_roundtrip_and_ports_released() {
    let n = net().await;
    let a = client(&n).await;
    let b = client(&n).await;
    let _e = echo(&b, 80);
    roundtrip(&a, &b, 80, 1).await;
    roundtrip(&a, &b, 80, 3 * 1024 * 1024 + 17).await;
    // Concurrent dials.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (a, b) = (&a, &b);
        tasks.push(async move { roundtrip(a, b, 80, 10_000).await });
    }
    futures_join(tasks).await;
    // Every dialed stream is closed now: only the ephemeral ports of open streams count.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.ports_in_use(), 0, "ephemeral ports leaked");
    assert_eq!(n.server.num_sessions(), 2);
    let m = metrics_text(&n.registry);
    assert!(m.contains("skymesh_dmsg_streams_total 12"), "{m}");
}

async fn futures_join<F: std::future::Future<Output = ()>>(fs: Vec<F>) {
    let handles: Vec<_> = fs.into_iter().map(Box::pin).collect();
    for h in handles {
        h.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_listener_and_unknown_key_are_refused_quickly() {
    let n = net().await;
    let a = client(&n).await;
    let b = client(&n).await;
    // No listener on port 81: the destination answers 306.
    let t0 = std::time::Instant::now();
    let e = a.dial(b.pk(), 81).await.unwrap_err();
    assert!(format!("{e:?}").contains("ReqNoListener"), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Unknown key: not in discovery.
    let e = a.dial(SecKey::generate().pubkey(), 80).await.unwrap_err();
    assert!(matches!(e, dmsg::error::DialError::Disc(_)), "{e:?}");
    // Key on discovery but no session on the server (entry left behind): 307 from the relay.
    let c = SecKey::generate();
    let e = dmsg_proto::disc::Entry::new_client(c.pubkey(), 0, 1, Some(vec![n.server.pk()]));
    dmsg::DiscClient::new(&n.disc_url)
        .put_entry(&c, e)
        .await
        .unwrap();
    // (The server resets the request; the error names the server and the one-hop rule.)
    let e = a.dial(c.pubkey(), 80).await.unwrap_err();
    assert!(
        matches!(e, dmsg::error::DialError::Unreachable { ref via, .. } if via == &[n.server.pk()]),
        "{e:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = metrics_text(&n.registry);
    assert!(m.contains("code=\"307\""), "{m}");
    // Failed dials released their ephemeral ports.
    assert_eq!(
        a.ports_in_use(),
        0,
        "ephemeral ports leaked on failed dials"
    );
    // Still fine for everyone.
    let _e = echo(&b, 80);
    roundtrip(&a, &b, 80, 1000).await;
}

async fn roundtrip(a: &Client, b: &Client, port: u16, len: usize) {
    common::roundtrip(a, b.pk(), port, len).await
}

async fn raw_session(n: &Net, sk: &SecKey) -> (Session, SessionCrypto) {
    common::raw_session(&n.server.local_addr().to_string(), n.server.pk(), sk).await
}

async fn expect_closed(mut tcp: TcpStream) {
    let mut buf = [0u8; 1024];
    let r = tokio::time::timeout(T, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "offender was not disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_handshake() {
    let n = net().await;
    let mut tcp = TcpStream::connect(n.server.local_addr()).await.unwrap();
    tcp.write_all(&[0xff; 300]).await.unwrap();
    expect_closed(tcp).await;
    let a = client(&n).await;
    let b = client(&n).await;
    let _e = echo(&b, 80);
    roundtrip(&a, &b, 80, 100).await;
    assert!(metrics_soon(&n.registry, "reason=\"bad_frame\"").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handshake_message_51_bytes() {
    // The message that crashes dmsg-server@2023: a 49-byte XK msg1 whose ephemeral key is not
    // a curve point.
    let n = net().await;
    let mut msg = vec![0x00, 0x31, 0x02];
    msg.extend_from_slice(&[0xff; 32]);
    msg.extend_from_slice(&[0u8; 16]);
    assert_eq!(msg.len(), 51);
    let mut tcp = TcpStream::connect(n.server.local_addr()).await.unwrap();
    tcp.write_all(&msg).await.unwrap();
    expect_closed(tcp).await;
    let a = client(&n).await;
    let b = client(&n).await;
    let _e = echo(&b, 80);
    roundtrip(&a, &b, 80, 100).await;
    assert!(metrics_soon(&n.registry, "reason=\"handshake\"").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_bytes_behind_message_3_are_refused() {
    let n = net().await;
    // Do the handshake by hand and pipeline a yamux ping in the same write as message 3.
    use dmsg_proto::noise::{HandshakeState, Pattern, Role};
    let sk = SecKey::generate();
    let mut tcp = TcpStream::connect(n.server.local_addr()).await.unwrap();
    let mut hs =
        HandshakeState::new(Pattern::XK, Role::Initiator, sk, Some(n.server.pk())).unwrap();
    let mut out = Vec::new();
    dmsg_proto::record::write_frame(&hs.write_message().unwrap(), &mut out).unwrap();
    tcp.write_all(&out).await.unwrap();
    let mut m2 = [0u8; 51];
    tcp.read_exact(&mut m2).await.unwrap();
    hs.read_message(&m2[2..]).unwrap();
    let mut out = Vec::new();
    dmsg_proto::record::write_frame(&hs.write_message().unwrap(), &mut out).unwrap();
    out.extend_from_slice(&[0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]);
    tcp.write_all(&out).await.unwrap();
    expect_closed(tcp).await;
    assert!(metrics_soon(&n.registry, "reason=\"extra_bytes\"").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_after_handshake() {
    let n = net().await;
    let a = client(&n).await;
    let b = client(&n).await;
    let _e = echo(&b, 80);
    // Garbage after the handshake: not a yamux header → session closed.
    let sk = SecKey::generate();
    let (tcp, _, _) = handshake_client(&n.server.local_addr().to_string(), &sk, n.server.pk())
        .await
        .unwrap();
    let mut tcp = tcp;
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(&[0x55; 64]).await.unwrap();
    expect_closed(tcp).await;
    // Oversized yamux data frame (beyond any window we grant).
    let (tcp, _, _) = handshake_client(&n.server.local_addr().to_string(), &sk, n.server.pk())
        .await
        .unwrap();
    let mut tcp = tcp;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let h = dmsg_proto::yamux::Header::new(
        dmsg_proto::yamux::FrameType::Data,
        dmsg_proto::yamux::Flags::SYN,
        1,
        4 << 20,
    );
    tcp.write_all(&h.encode()).await.unwrap();
    tcp.write_all(&vec![0u8; 4 << 20]).await.ok();
    expect_closed(tcp).await;
    // Oversized record inside a stream: the stream is refused, the session survives.
    let (sess, _crypto) = raw_session(&n, &sk).await;
    let mut st = sess.open().unwrap();
    st.send_chunk(Bytes::from(vec![0xff; 8000])).await.unwrap();
    let r = tokio::time::timeout(T, st.recv_chunk()).await.unwrap();
    assert!(r.is_err() || matches!(r, Ok(None)), "{r:?}");
    assert!(!sess.is_closed());
    assert!(sess.ping().await.is_ok());
    roundtrip(&a, &b, 80, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_requests_are_refused() {
    let n = net().await;
    let a = client(&n).await;
    let b = client(&n).await;
    let _e = echo(&b, 80);
    let sk = SecKey::generate();
    let (sess, crypto) = raw_session(&n, &sk).await;
    // Forged: signed by another key than the session's.
    let other = SecKey::generate();
    let forged = request(&other, &other, b.pk());
    let mut st = sess.open().unwrap();
    dmsg::stream::write_object(&mut st, &crypto, &forged)
        .await
        .unwrap();
    let r = tokio::time::timeout(T, st.recv_chunk()).await.unwrap();
    assert!(r.is_err() || matches!(r, Ok(None)), "{r:?}");
    // Bad signature: src is us, signature by someone else.
    let bad_sig = request(&sk, &other, b.pk());
    let mut st = sess.open().unwrap();
    dmsg::stream::write_object(&mut st, &crypto, &bad_sig)
        .await
        .unwrap();
    let r = tokio::time::timeout(T, st.recv_chunk()).await.unwrap();
    assert!(r.is_err() || matches!(r, Ok(None)), "{r:?}");
    // Replay: a valid sealed record sent again on a new stream.
    let good = request(&sk, &sk, b.pk());
    let mut rec = Vec::new();
    dmsg::lock_for_tests(&crypto.sealer)
        .seal_record(good.as_bytes(), &mut rec)
        .unwrap();
    let mut s1 = sess.open().unwrap();
    s1.send_chunk(Bytes::from(rec.clone())).await.unwrap();
    // The first one is relayed: a response arrives.
    let r1 = tokio::time::timeout(T, s1.recv_chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(r1.is_some());
    let mut s2 = sess.open().unwrap();
    s2.send_chunk(Bytes::from(rec)).await.unwrap();
    let r2 = tokio::time::timeout(T, s2.recv_chunk()).await.unwrap();
    assert!(r2.is_err() || matches!(r2, Ok(None)), "{r2:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = metrics_text(&n.registry);
    assert!(m.contains("code=\"302\""), "{m}");
    assert!(m.contains("code=\"300\""), "{m}");
    assert!(!sess.is_closed());
    roundtrip(&a, &b, 80, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_opening_streams_without_reading() {
    let n = net().await;
    let a = client(&n).await;
    let b = client(&n).await;
    let c = client(&n).await;
    // b floods a over streams a never reads; flow control stalls b, nobody else notices.
    let mut l = a.listen(90).unwrap();
    let _hold = dmsg::AbortOnDrop(tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Some(s) = l.accept().await {
            keep.push(s); // never read
        }
    }));
    let mut flooders = Vec::new();
    for _ in 0..20 {
        let mut s = b.dial(a.pk(), 90).await.unwrap();
        flooders.push(dmsg::AbortOnDrop(tokio::spawn(async move {
            let chunk = vec![1u8; 64 * 1024];
            loop {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        })));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _e = echo(&c, 80);
    roundtrip(&b, &c, 80, 200_000).await;
    roundtrip(&a, &c, 80, 200_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_that_never_finish_the_handshake() {
    let n = net().await;
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut tcp = TcpStream::connect(n.server.local_addr()).await.unwrap();
        if i % 2 == 0 {
            // half of them send a partial first message
            tcp.write_all(&[0x00, 0x31, 0x02, 0x03]).await.unwrap();
        }
        idle.push(tcp);
    }
    let a = client(&n).await;
    let b = client(&n).await;
    let _e = echo(&b, 80);
    roundtrip(&a, &b, 80, 10_000).await;
    // They are all dropped by the handshake timeout (5 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut closed = 0;
    for mut t in idle {
        let mut buf = [0u8; 8];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(50), t.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(closed >= 990, "only {closed} of 1000 closed");
    assert_eq!(n.server.num_sessions(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_is_enforced() {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.max_sessions = 2;
    let mut reg = Registry::default();
    let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            dmsg::transport::connect(
                &addr,
                &SecKey::generate(),
                server.pk(),
                MuxConfig::default(),
            )
            .await
            .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = dmsg::transport::connect(
        &addr,
        &SecKey::generate(),
        server.pk(),
        MuxConfig::default(),
    )
    .await
    .unwrap();
    tokio::time::timeout(T, third.session.closed())
        .await
        .unwrap();
    assert_eq!(server.num_sessions(), 2);
    for h in &held {
        assert!(h.session.ping().await.is_ok());
    }
    drop(url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_server_restart() {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let ssk = SecKey::generate();
    let spawn = |addr: String| {
        let mut sc = ServerConfig::new(ssk.clone(), &addr);
        sc.discovery_url(&url);
        let mut reg = Registry::default();
        Server::spawn(sc, ServerMetrics::new(&mut reg))
    };
    let server = spawn("127.0.0.1:0".into()).await.unwrap();
    let addr = server.local_addr().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = Client::spawn(ClientConfig::new(SecKey::generate(), &url));
    let b = Client::spawn(ClientConfig::new(SecKey::generate(), &url));
    tokio::time::timeout(T, a.ready()).await.unwrap();
    tokio::time::timeout(T, b.ready()).await.unwrap();
    let _e = echo(&b, 80);
    roundtrip(&a, &b, 80, 1000).await;
    drop(server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _server = spawn(addr).await.unwrap();
    // Both clients reconnect by themselves; new dials work.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if a.servers().len() == 1 && b.servers().len() == 1 {
                let r = tokio::time::timeout(Duration::from_secs(5), a.dial(b.pk(), 80)).await;
                if let Ok(Ok(_)) = r {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap();
    roundtrip(&a, &b, 80, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_peer_that_is_only_on_another_server() {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let spawn = |max: usize| {
        let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
        sc.discovery_url(&url);
        sc.max_sessions = max;
        let mut reg = Registry::default();
        Server::spawn(sc, ServerMetrics::new(&mut reg))
    };
    let dcl = dmsg::DiscClient::new(&url);
    let s1 = spawn(10).await.unwrap();
    while dcl.entry(&s1.pk()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = Client::spawn(ClientConfig::new(SecKey::generate(), &url));
    tokio::time::timeout(T, b.ready()).await.unwrap();
    assert_eq!(b.servers(), vec![s1.pk()]);
    let _e = echo(&b, 80);
    // s2 advertises more free sessions, so a new client picks it.
    let s2 = spawn(100).await.unwrap();
    while dcl.entry(&s2.pk()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a = Client::spawn(ClientConfig::new(SecKey::generate(), &url));
    tokio::time::timeout(T, a.ready()).await.unwrap();
    assert_eq!(a.servers(), vec![s2.pk()]);
    roundtrip(&a, &b, 80, 100_000).await;
    // a opened a session to b's delegated server s1 to get there.
    let mut servers = a.servers();
    servers.sort();
    let mut want = vec![s1.pk(), s2.pk()];
    want.sort();
    assert_eq!(servers, want);
    assert_eq!(s1.num_sessions(), 2);
}

// ---------------------------------------------------------------------------------------------
// Recorded hashicorp yamux bytes (dmsg/vectors/yamux.json) through the live driver.

fn yamux_vectors() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors/yamux.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The recorded frames sent in `direction`, as wire bytes (header ‖ body). Bodies recorded only
/// by length and hash are filled with zeros: the driver does not look at payload bytes.
fn recorded_frames(v: &serde_json::Value, direction: &str) -> Vec<(u64, Vec<u8>)> {
    v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["direction"] == direction)
        .map(|f| {
            let mut b = hex::decode(f["header_hex"].as_str().unwrap()).unwrap();
            if let Some(body) = f["body_hex"].as_str() {
                b.extend_from_slice(&hex::decode(body).unwrap());
            } else if let Some(n) = f["body_len"].as_u64() {
                b.resize(b.len() + n as usize, 0);
            }
            (f["order"].as_u64().unwrap(), b)
        })
        .collect()
}

fn recorded_header(v: &serde_json::Value, order: u64) -> dmsg_proto::yamux::Header {
    let f = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["order"] == order)
        .unwrap();
    let raw = hex::decode(f["header_hex"].as_str().unwrap()).unwrap();
    let raw: [u8; dmsg_proto::yamux::HEADER_LEN] = raw.try_into().unwrap();
    dmsg_proto::yamux::Header::decode(&raw).unwrap()
}

async fn raw_pair(side: Side) -> (Session, TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    let (rd, wr) = tcp.into_split();
    (
        Session::new(side, rd, wr, Bytes::new(), MuxConfig::default()),
        raw,
    )
}

/// Next frame our driver wrote, skipping keep-alive pings it may send on its own.
async fn next_frame(raw: &mut TcpStream) -> (dmsg_proto::yamux::Header, Vec<u8>) {
    use dmsg_proto::yamux::{FrameType, HEADER_LEN, Header};
    tokio::time::timeout(T, async {
        let mut h = [0u8; HEADER_LEN];
        raw.read_exact(&mut h).await.unwrap();
        let h = Header::decode(&h).unwrap();
        let n = if h.ty == FrameType::Data {
            h.length as usize
        } else {
            0
        };
        let mut body = vec![0u8; n];
        raw.read_exact(&mut body).await.unwrap();
        (h, body)
    })
    .await
    .unwrap()
}

/// Reads `n` payload bytes from a stream.
async fn read_n(st: &mut dmsg::mux::MuxStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let c = tokio::time::timeout(T, st.recv_chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.extend_from_slice(&c);
    }
    got
}

/// The Go client's bytes, replayed into our server-side driver: stream 1 accepted with the
/// recorded ACK (plus our window grant), data delivered, both pings answered with their ids,
/// FIN seen as end of stream; the server-opened stream 2 is acknowledged the way the recorded
/// client did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_go_client_frames_through_the_server_driver() {
    use dmsg_proto::yamux::{Flags, FrameType};
    let v = yamux_vectors();
    let frames = recorded_frames(&v, "client->server");
    let (sess, mut raw) = raw_pair(Side::Server).await;
    let frame = |order: u64| {
        frames
            .iter()
            .find(|(o, _)| *o == order)
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    // 0: SYN stream 1 → our ACK is the recorded one (order 1) with our extra window as delta.
    raw.write_all(&frame(0)).await.unwrap();
    let (h, _) = next_frame(&mut raw).await;
    let want = recorded_header(&v, 1);
    assert_eq!(
        (h.ty, h.flags, h.stream_id),
        (want.ty, want.flags, want.stream_id)
    );
    assert_eq!(h.length, (1024 - 256) * 1024, "window grant beyond 256 KiB");
    let mut st = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    // 2: "hello".
    raw.write_all(&frame(2)).await.unwrap();
    assert_eq!(read_n(&mut st, 5).await, b"hello");
    // 6/7: we open stream 2; the frame we send is the recorded server SYN (order 6) but for
    // the delta, and the recorded client ACK (order 7) is accepted.
    let mut s2 = sess.open().unwrap();
    let (h, _) = next_frame(&mut raw).await;
    let want = recorded_header(&v, 6);
    assert_eq!(
        (h.ty, h.flags, h.stream_id),
        (want.ty, want.flags, want.stream_id)
    );
    raw.write_all(&frame(7)).await.unwrap();
    // 8: a 200000-byte data frame on stream 1.
    raw.write_all(&frame(8)).await.unwrap();
    assert_eq!(read_n(&mut st, 200_000).await.len(), 200_000);
    // 11, 13: pings → ACKs with the recorded ids (orders 12, 14).
    for (ping, pong) in [(11, 12), (13, 14)] {
        raw.write_all(&frame(ping)).await.unwrap();
        let (h, _) = next_frame(&mut raw).await;
        let want = recorded_header(&v, pong);
        assert_eq!(
            (h.ty, h.flags, h.stream_id, h.length),
            (want.ty, want.flags, want.stream_id, want.length)
        );
    }
    // 15: FIN on stream 1 → end of stream; our close answers with the recorded FIN (order 16).
    raw.write_all(&frame(15)).await.unwrap();
    assert!(
        tokio::time::timeout(T, st.recv_chunk())
            .await
            .unwrap()
            .unwrap()
            .is_none()
    );
    st.close_write();
    let (h, _) = next_frame(&mut raw).await;
    let want = recorded_header(&v, 16);
    assert_eq!(
        (h.ty, h.flags, h.stream_id, h.length),
        (want.ty, want.flags, want.stream_id, want.length)
    );
    assert!(!sess.is_closed());
    s2.close_write();
    let (h, _) = next_frame(&mut raw).await;
    assert_eq!(
        (h.ty, h.flags, h.stream_id),
        (FrameType::WindowUpdate, Flags::FIN, 2)
    );
}

/// The Go server's bytes, replayed into our client-side driver: the recorded ACK opens our
/// stream 1, "world!" arrives, the server-opened stream 2 is accepted with the recorded ACK,
/// the recorded window update lets us send past the initial 256 KiB, FIN ends stream 1 and
/// GoAway ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_go_server_frames_through_the_client_driver() {
    use dmsg_proto::yamux::FrameType;
    let v = yamux_vectors();
    let frames = recorded_frames(&v, "server->client");
    let frame = |order: u64| {
        frames
            .iter()
            .find(|(o, _)| *o == order)
            .map(|(_, b)| b.clone())
            .unwrap()
    };
    let (sess, mut raw) = raw_pair(Side::Client).await;
    let mut st = sess.open().unwrap();
    let (h, _) = next_frame(&mut raw).await;
    let want = recorded_header(&v, 0);
    assert_eq!(
        (h.ty, h.flags, h.stream_id),
        (want.ty, want.flags, want.stream_id)
    );
    // 1: ACK; 4: "world!".
    raw.write_all(&frame(1)).await.unwrap();
    raw.write_all(&frame(4)).await.unwrap();
    assert_eq!(read_n(&mut st, 6).await, b"world!");
    // 6: the server opens stream 2 → we accept with the recorded client ACK (order 7).
    raw.write_all(&frame(6)).await.unwrap();
    let (h, _) = next_frame(&mut raw).await;
    let want = recorded_header(&v, 7);
    assert_eq!(
        (h.ty, h.flags, h.stream_id),
        (want.ty, want.flags, want.stream_id)
    );
    let _s2 = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    // The Go server granted only the initial 256 KiB; 10: its window update (200005) lets
    // 262144 + 200005 bytes through in all, and no more.
    let total = 256 * 1024 + recorded_header(&v, 10).length as usize;
    assert_eq!(total, 262_144 + 200_005);
    let w = tokio::spawn(async move {
        st.send_chunk(Bytes::from(vec![3u8; total + 1000]))
            .await
            .unwrap();
        st
    });
    let mut got = 0usize;
    while got < 256 * 1024 {
        let (h, body) = next_frame(&mut raw).await;
        if h.ty == FrameType::Data {
            got += body.len();
        }
    }
    assert_eq!(got, 256 * 1024, "sent beyond the initial window");
    raw.write_all(&frame(10)).await.unwrap();
    while got < total {
        let (h, body) = next_frame(&mut raw).await;
        if h.ty == FrameType::Data {
            got += body.len();
        }
    }
    assert_eq!(got, total, "sent beyond the recorded window update");
    let mut probe = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), raw.peek(&mut probe))
            .await
            .is_err(),
        "data beyond the granted window"
    );
    assert!(!w.is_finished());
    // 16: FIN on stream 1; 17: GoAway → the session ends.
    raw.write_all(&frame(16)).await.unwrap();
    raw.write_all(&frame(17)).await.unwrap();
    tokio::time::timeout(T, sess.closed()).await.unwrap();
    assert_eq!(sess.close_reason(), dmsg::mux::CloseReason::Remote);
    w.abort();
}

/// The 1 MiB window we grant (spec §8: the 256 KiB yamux initial window plus a window update
/// with SYN/ACK): a Go peer that only knows the 256 KiB default may send exactly 1 MiB before
/// it hears from us again, and the session stays up; one byte more closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_initial_window_grant() {
    use dmsg_proto::yamux::{Flags, FrameType, Header};
    let (sess, mut raw) = raw_pair(Side::Server).await;
    let send = |ty, flags, id, len: u32, body: &[u8]| {
        let mut b = Header::new(ty, flags, id, len).encode().to_vec();
        b.extend_from_slice(body);
        b
    };
    raw.write_all(&send(FrameType::WindowUpdate, Flags::SYN, 1, 0, &[]))
        .await
        .unwrap();
    let (h, _) = next_frame(&mut raw).await;
    assert_eq!(
        (h.ty, h.flags, h.stream_id),
        (FrameType::WindowUpdate, Flags::ACK, 1)
    );
    let granted = 256 * 1024 + h.length as usize;
    assert_eq!(granted, 1024 * 1024);
    let _st = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    // Nobody reads: 1 MiB in 64 KiB frames is within the grant.
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..granted / chunk.len() {
        raw.write_all(&send(
            FrameType::Data,
            Flags::NONE,
            1,
            chunk.len() as u32,
            &chunk,
        ))
        .await
        .unwrap();
    }
    // A ping round trip proves the driver has read all of it and is still up.
    raw.write_all(&send(FrameType::Ping, Flags::SYN, 0, 77, &[]))
        .await
        .unwrap();
    loop {
        let (h, _) = next_frame(&mut raw).await;
        if h.ty == FrameType::Ping && h.length == 77 {
            break;
        }
    }
    assert!(!sess.is_closed());
    raw.write_all(&send(FrameType::Data, Flags::NONE, 1, 1, &[0]))
        .await
        .unwrap();
    tokio::time::timeout(T, sess.closed()).await.unwrap();
    assert_eq!(sess.close_reason(), dmsg::mux::CloseReason::Protocol);
}
