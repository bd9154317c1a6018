//! Helpers shared by the in-process network tests of this crate (each test file includes this
//! module; not every file uses every helper).
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use dmsg::Client;
use dmsg::mux::{MuxConfig, Session, Side};
use dmsg::transport::{SessionCrypto, handshake_client};
use dmsg_proto::stream::{Addr, SignedObject, StreamRequest, TypeIds};
use keys::{PubKey, SecKey};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deadline of every wait in these tests.
pub const T: Duration = Duration::from_secs(30);

/// The registry's metrics as text.
pub fn metrics_text(r: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, r).unwrap();
    s
}

/// Waits (≤ 5 s) for the metrics to mention `needle`: a server counts some refusals just after
/// dropping the socket, so the peer may see the close first.
pub async fn metrics_soon(r: &Registry, needle: &str) -> bool {
    for _ in 0..500 {
        if metrics_text(r).contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after [`T`].
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < T, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A listener on `port` that echoes everything back.
pub fn echo(c: &Client, port: u16) -> dmsg::AbortOnDrop {
    let mut l = c.listen(port).unwrap();
    dmsg::AbortOnDrop(tokio::spawn(async move {
        while let Some(mut s) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
}

/// Dials `pk:port` from `a`, sends `len` bytes and checks they come back unchanged.
pub async fn roundtrip(a: &Client, pk: PubKey, port: u16, len: usize) {
    let mut s = tokio::time::timeout(T, a.dial(pk, port))
        .await
        .unwrap()
        .unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let d2 = data.clone();
    let (mut r, mut w) = tokio::io::split(&mut s);
    let write = async move {
        w.write_all(&d2).await.unwrap();
        w.flush().await.unwrap();
    };
    let read = async move {
        let mut got = vec![0u8; len];
        r.read_exact(&mut got).await.unwrap();
        got
    };
    let (_, got) = tokio::time::timeout(T, async { tokio::join!(write, read) })
        .await
        .unwrap();
    assert!(got == data, "echoed bytes differ");
}

/// A raw session with the server at `addr` (handshake done, our own yamux driver) for
/// hand-made stream objects.
pub async fn raw_session(addr: &str, server: PubKey, sk: &SecKey) -> (Session, SessionCrypto) {
    let (tcp, keys, surplus) = handshake_client(addr, sk, server).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (rd, wr) = tcp.into_split();
    (
        Session::new(Side::Client, rd, wr, surplus, MuxConfig::default()),
        SessionCrypto::new(&keys),
    )
}

/// A stream request from `src` (ephemeral port 49999) to `dst:80`, signed by `signer`.
pub fn request(src: &SecKey, signer: &SecKey, dst: PubKey) -> SignedObject {
    let mut hs = dmsg_proto::noise::HandshakeState::new(
        dmsg_proto::noise::Pattern::KK,
        dmsg_proto::noise::Role::Initiator,
        src.clone(),
        Some(dst),
    )
    .unwrap();
    let req = StreamRequest {
        timestamp: dmsg::now_ns(),
        src: Addr {
            pk: src.pubkey(),
            port: 49999,
        },
        dst: Addr { pk: dst, port: 80 },
        noise_msg: hs.write_message().unwrap(),
    };
    req.sign(signer, TypeIds::default())
}
