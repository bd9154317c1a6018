//! Both multiplexers over real loopback sockets: the same session tests for yamux and smux
//! (streams both ways, concurrent bulk echo, half-close, ping), the server choosing smux from a
//! client's discovery entry, and an smux client reaching a yamux client through our server and
//! back.
#![allow(clippy::unwrap_used)]

mod common;

use common::{T, echo, roundtrip, until};

use std::time::Duration;

use bytes::Bytes;
use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::metrics::ServerMetrics;
use dmsg::mux::{MuxConfig, MuxStream, Protocol, Session, Side};
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Two sessions of `protocol` over one loopback TCP connection.
async fn pair(protocol: Protocol) -> (Session, Session) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let cfg = MuxConfig::default().with_protocol(protocol);
    let (crd, cwr) = c.unwrap().into_split();
    let (srd, swr) = s.unwrap().0.into_split();
    (
        Session::new(Side::Client, crd, cwr, Bytes::new(), cfg),
        Session::new(Side::Server, srd, swr, Bytes::new(), cfg),
    )
}

/// Serves every stream the way a DMSG server treats a new stream's first bytes: `00 00` is a
/// ping (echo it and close), anything else is echoed back until FIN.
fn serve_echo(s: Session) -> tokio::task::JoinHandle<Session> {
    tokio::spawn(async move {
        while let Some(st) = s.accept().await {
            tokio::spawn(echo_stream(st));
        }
        s
    })
}

async fn echo_stream(mut st: MuxStream) {
    let mut head = [0u8; 2];
    if st.read_exact(&mut head).await.is_err() {
        return;
    }
    if head == [0, 0] {
        let _ = st.write_all(&[0, 0]).await;
        return; // dropped: FIN and forget, as Go's Close()
    }
    if st.write_all(&head).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = st.read(&mut buf).await {
        if n == 0 || st.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

async fn echo_bulk(c: &Session, len: usize, seed: u8) {
    let mut st = c.open().unwrap();
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed | 1)
        .collect();
    let (mut r, mut w) = tokio::io::split(&mut st);
    let d2 = data.clone();
    let write = async move { w.write_all(&d2).await.unwrap() };
    let read = async move {
        let mut got = vec![0u8; len];
        r.read_exact(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::join!(write, read);
    assert!(got == data, "stream echoed different bytes");
}

async fn session_suite(protocol: Protocol) {
    let (c, s) = pair(protocol).await;
    assert_eq!((c.protocol(), s.protocol()), (protocol, protocol));
    let server = serve_echo(s);
    // Many streams at once, each more than any initial window.
    let mut jobs = Vec::new();
    for i in 0..8u8 {
        let c = &c;
        jobs.push(async move { echo_bulk(c, 700_000 + usize::from(i) * 1000, i).await });
    }
    tokio::time::timeout(T, futures_join(jobs)).await.unwrap();
    // Half-close: the peer sees EOF after the data and can still answer.
    let mut st = c.open().unwrap();
    st.write_all(b"xy-half").await.unwrap();
    st.close_write();
    let mut got = Vec::new();
    tokio::time::timeout(T, st.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"xy-half");
    drop(st);
    // Ping: a yamux ping frame, or the smux `00 00` stream.
    let rtt = tokio::time::timeout(T, c.ping()).await.unwrap().unwrap();
    assert!(rtt < T);
    until("streams closed", || c.num_streams() == 0).await;
    let (rx, tx) = c.bytes();
    assert!(rx > 5_000_000 && tx > 5_000_000, "{rx} {tx}");
    c.close();
    let s = tokio::time::timeout(T, server).await.unwrap().unwrap();
    tokio::time::timeout(T, s.closed()).await.unwrap();
}

async fn futures_join<F: std::future::Future<Output = ()>>(fs: Vec<F>) {
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    for f in set {
        f.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yamux_session_over_tcp() {
    session_suite(Protocol::Yamux).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smux_session_over_tcp() {
    session_suite(Protocol::Smux).await;
}

/// The first bytes our smux client writes are the frames of the spec (version 2, SYN of
/// stream 3, PSH with the data), read raw from the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smux_client_bytes_on_the_wire() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let (crd, cwr) = c.unwrap().into_split();
    let cfg = MuxConfig::default().with_protocol(Protocol::Smux);
    let c = Session::new(Side::Client, crd, cwr, Bytes::new(), cfg);
    let mut st = c.open().unwrap();
    st.write_all(b"hello").await.unwrap();
    let mut raw = s.unwrap().0;
    let mut got = [0u8; 8 + 13];
    tokio::time::timeout(T, raw.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        [
            2, 0, 0, 0, 3, 0, 0, 0, // SYN 3
            2, 2, 5, 0, 3, 0, 0, 0, b'h', b'e', b'l', b'l', b'o' // PSH 3 "hello"
        ]
    );
}

struct Net {
    _disc: DiscServer,
    disc_url: String,
    server: Server,
    _registry: Registry,
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
        _registry: registry,
    }
}

async fn client(n: &Net, protocol: Protocol) -> Client {
    let mut cfg = ClientConfig::new(SecKey::generate(), &n.disc_url);
    cfg.mux = cfg.mux.with_protocol(protocol);
    let c = Client::spawn(cfg);
    tokio::time::timeout(T, c.ready()).await.unwrap();
    c
}

/// An smux client and a yamux client on one server: the server picks each one's protocol from
/// its entry, and streams cross between them both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smux_client_to_yamux_client_through_our_server() {
    let n = net().await;
    let a = client(&n, Protocol::Smux).await;
    let b = client(&n, Protocol::Yamux).await;
    // The smux client's entry says so; the yamux client's says nothing.
    let dc = dmsg::DiscClient::new(&n.disc_url);
    assert_eq!(dc.entry(&a.pk()).await.unwrap().protocol, "smux");
    assert_eq!(dc.entry(&b.pk()).await.unwrap().protocol, "");
    let _ea = echo(&a, 80);
    let _eb = echo(&b, 80);
    roundtrip(&a, b.pk(), 80, 1).await;
    roundtrip(&a, b.pk(), 80, 2 * 1024 * 1024 + 5).await;
    roundtrip(&b, a.pk(), 80, 2 * 1024 * 1024 + 7).await;
    assert_eq!(n.server.num_sessions(), 2);
    // Each client pinged its server at once: an smux `00 00` stream, a yamux ping frame.
    for c in [&a, &b] {
        until(
            "a ping RTT",
            || matches!(c.server_rtts()[..], [(pk, Some(_))] if pk == n.server.pk()),
        )
        .await;
    }
}

/// Two smux clients on one server: streams cross both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smux_client_to_smux_client_through_our_server() {
    let n = net().await;
    let a = client(&n, Protocol::Smux).await;
    let b = client(&n, Protocol::Smux).await;
    let _ea = echo(&a, 80);
    let _eb = echo(&b, 80);
    roundtrip(&a, b.pk(), 80, 1).await;
    roundtrip(&b, a.pk(), 80, 2 * 1024 * 1024 + 7).await;
    roundtrip(&a, b.pk(), 80, 2 * 1024 * 1024 + 5).await;
}
