//! PROXY protocol v1/v2 in front of real sessions (issue #16 §4): a header's client address is
//! what the server records; no header still works (optional mode); a malformed header closes
//! that connection only; `Required` refuses connections without one.
#![allow(clippy::unwrap_used)]

mod common;

use common::{T, metrics_soon};

use std::net::SocketAddr;
use std::time::Duration;

use dmsg::metrics::ServerMetrics;
use dmsg::proxy::ProxyMode;
use dmsg::{Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn server(mode: ProxyMode) -> (Server, Registry) {
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.proxy = mode;
    let mut reg = Registry::default();
    let s = Server::spawn(sc, ServerMetrics::new(&mut reg))
        .await
        .unwrap();
    (s, reg)
}

/// A one-connection "load balancer": forwards to `to`, sending `header` first.
async fn balancer(to: SocketAddr, header: Vec<u8>) -> SocketAddr {
    slow_balancer(to, header, Duration::ZERO).await
}

/// Like [`balancer`], but connects upstream and then waits `pause` before sending anything.
async fn slow_balancer(to: SocketAddr, header: Vec<u8>, pause: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = l.accept().await.unwrap();
        let mut up = TcpStream::connect(to).await.unwrap();
        tokio::time::sleep(pause).await;
        up.write_all(&header).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
    });
    addr
}

/// A session through `addr`; returns it and the client's key.
async fn session_via(
    addr: SocketAddr,
    server: &Server,
) -> (dmsg::transport::Established, keys::PubKey) {
    let sk = SecKey::generate();
    let est = tokio::time::timeout(
        T,
        dmsg::transport::connect(
            &addr.to_string(),
            &sk,
            server.pk(),
            dmsg::mux::MuxConfig::default(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    (est, sk.pubkey())
}

async fn wait_session(server: &Server, pk: keys::PubKey) -> SocketAddr {
    for _ in 0..500 {
        if let Some((_, a)) = server.session_addrs().into_iter().find(|(k, _)| *k == pk) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no session from {pk}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_headers_carry_the_client_address() {
    let (s, _reg) = server(ProxyMode::Optional).await;
    let v1 = b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 8081\r\n".to_vec();
    let lb = balancer(s.local_addr(), v1).await;
    let (est, pk) = session_via(lb, &s).await;
    assert_eq!(
        wait_session(&s, pk).await,
        "198.51.100.22:35646".parse::<SocketAddr>().unwrap()
    );
    assert!(est.session.ping().await.is_ok());
    let v2 = hex::decode("0d0a0d0a000d0a515549540a2111000cc6336417cb0071078b3f1f91").unwrap();
    let lb = balancer(s.local_addr(), v2).await;
    let (_est2, pk2) = session_via(lb, &s).await;
    assert_eq!(
        wait_session(&s, pk2).await,
        "198.51.100.23:35647".parse::<SocketAddr>().unwrap()
    );
    // No header at all: still a session (optional mode), with the socket's own address.
    let (_direct, pk3) = session_via(s.local_addr(), &s).await;
    let a = wait_session(&s, pk3).await;
    assert!(a.ip().is_loopback(), "{a}");
    // A slow client that sends nothing for longer than the header deadline is not a header.
    let lb = slow_balancer(s.local_addr(), Vec::new(), Duration::from_millis(400)).await;
    let (slow, _) = session_via(lb, &s).await;
    assert!(slow.session.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_header_closes_that_connection_only() {
    let (s, reg) = server(ProxyMode::Optional).await;
    let mut bad = TcpStream::connect(s.local_addr()).await.unwrap();
    bad.write_all(b"PROXY TCP4 not-an-address 1.2.3.4 1 2\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(T, bad.read(&mut buf)).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(metrics_soon(&reg, "reason=\"proxy_header\"").await);
    let (ok, _) = session_via(s.local_addr(), &s).await;
    assert!(ok.session.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_mode_refuses_connections_without_a_header() {
    let (s, reg) = server(ProxyMode::Required).await;
    let r = dmsg::transport::connect(
        &s.local_addr().to_string(),
        &SecKey::generate(),
        s.pk(),
        dmsg::mux::MuxConfig::default(),
    )
    .await;
    assert!(r.is_err(), "a session without a PROXY header");
    assert!(metrics_soon(&reg, "reason=\"proxy_header\"").await);
    let lb = balancer(s.local_addr(), b"PROXY UNKNOWN\r\n".to_vec()).await;
    let (est, _) = session_via(lb, &s).await;
    assert!(est.session.ping().await.is_ok());
}
