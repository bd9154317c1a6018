//! Services on a server's own DMSG key (issue #16 §3), in-process over loopback sockets:
//! `dmsg://SERVER_PK:80/health` answers JSON; another port is refused with a signed 306.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::error::DialError;
use dmsg::metrics::ServerMetrics;
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_health_on_its_own_key() {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.discovery_url(&url);
    let server = Server::spawn(sc, ServerMetrics::new(&mut Registry::default()))
        .await
        .unwrap();
    let c = Client::spawn(ClientConfig::new(SecKey::generate(), &url));
    tokio::time::timeout(T, c.ready()).await.unwrap();
    assert_eq!(c.servers(), vec![server.pk()]);

    let mut s = tokio::time::timeout(T, c.dial_via(server.pk(), server.pk(), 80))
        .await
        .unwrap()
        .unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["sessions"], 1, "{v}");
    assert_eq!(
        v["dmsg_address"],
        format!("{}:80", server.pk()).as_str(),
        "{v}"
    );
    assert!(v["build_info"]["version"].is_string(), "{v}");
    assert!(v["uptime_secs"].is_u64(), "{v}");

    // Another port of the server's key: refused by the server itself, signed (306).
    let e = c.dial_via(server.pk(), server.pk(), 22).await.unwrap_err();
    assert!(
        matches!(&e, DialError::Stream { source, .. } if format!("{source:?}").contains("ReqNoListener")),
        "{e:?}"
    );
    // The session keeps serving.
    assert!(c.dial_via(server.pk(), server.pk(), 80).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_stream_is_echoed_and_closed() {
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.max_sessions = 10;
    let mut reg = Registry::default();
    let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
        .await
        .unwrap();
    let est = dmsg::transport::connect(
        &server.local_addr().to_string(),
        &SecKey::generate(),
        server.pk(),
        dmsg::mux::MuxConfig::default(),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let mut st = est.session.open().unwrap();
        let t0 = std::time::Instant::now();
        st.send_chunk(bytes::Bytes::from_static(&[0, 0]))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Ok(Some(c)) = tokio::time::timeout(T, st.recv_chunk()).await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(got, [0, 0], "echo, then the stream ends");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(server.metrics().pings.get(), 3);
    assert!(
        est.session.ping().await.is_ok(),
        "the session keeps serving"
    );
}
