//! The yamux driver against a hand-driven peer sending hashicorp v0.1.1 frames as Go does
//! (spec §3.5): ping answers, SYN → ACK, data both ways, FIN, RST, window enforcement, bad ids,
//! the stream limit, GoAway.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use dmsg::mux::{MuxConfig, Session, Side};
use dmsg_proto::yamux::{Flags, FrameType, HEADER_LEN, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(20);

async fn pair() -> (Session, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    let (rd, wr) = tcp.into_split();
    (
        Session::new(Side::Server, rd, wr, Bytes::new(), MuxConfig::default()),
        raw,
    )
}

async fn send(raw: &mut TcpStream, ty: FrameType, flags: Flags, id: u32, len: u32, body: &[u8]) {
    let mut b = Header::new(ty, flags, id, len).encode().to_vec();
    b.extend_from_slice(body);
    raw.write_all(&b).await.unwrap();
}

async fn recv(raw: &mut TcpStream) -> (Header, Vec<u8>) {
    tokio::time::timeout(T, async {
        let mut h = [0u8; HEADER_LEN];
        raw.read_exact(&mut h).await.unwrap();
        let h = Header::decode(&h).unwrap();
        let mut body = vec![
            0u8;
            if h.ty == FrameType::Data {
                h.length as usize
            } else {
                0
            }
        ];
        raw.read_exact(&mut body).await.unwrap();
        (h, body)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn speaks_hashicorp_yamux() {
    let (sess, mut raw) = pair().await;
    // Ping SYN → Ping ACK with the same opaque value.
    send(&mut raw, FrameType::Ping, Flags::SYN, 0, 0xCAFE_BABE, &[]).await;
    let (h, _) = recv(&mut raw).await;
    assert_eq!(
        (h.ty, h.flags, h.stream_id, h.length),
        (FrameType::Ping, Flags::ACK, 0, 0xCAFE_BABE)
    );
    // Open stream 1 (Go: WindowUpdate+SYN, delta 0) → ACK (with our extra window).
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 1, 0, &[]).await;
    let (h, _) = recv(&mut raw).await;
    assert_eq!(
        (h.ty, h.flags, h.stream_id),
        (FrameType::WindowUpdate, Flags::ACK, 1)
    );
    let mut st = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    send(&mut raw, FrameType::Data, Flags::NONE, 1, 5, b"hello").await;
    assert_eq!(&st.recv_chunk().await.unwrap().unwrap()[..], b"hello");
    st.send_chunk(Bytes::from_static(b"world")).await.unwrap();
    let (h, body) = recv(&mut raw).await;
    assert_eq!(
        (h.ty, h.stream_id, &body[..]),
        (FrameType::Data, 1, &b"world"[..])
    );
    // FIN on data → EOF for the reader.
    send(&mut raw, FrameType::Data, Flags::FIN, 1, 1, b"!").await;
    assert_eq!(&st.recv_chunk().await.unwrap().unwrap()[..], b"!");
    assert!(st.recv_chunk().await.unwrap().is_none());
    // Our close sends FIN.
    st.close_write();
    let (h, _) = recv(&mut raw).await;
    assert!(h.flags.contains(Flags::FIN));
    assert!(!sess.is_closed());
}

#[tokio::test]
async fn wrong_parity_or_reused_stream_id_closes_the_session() {
    let (sess, mut raw) = pair().await;
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 2, 0, &[]).await;
    tokio::time::timeout(T, sess.closed()).await.unwrap();
    let (sess, mut raw) = pair().await;
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 5, 0, &[]).await;
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 3, 0, &[]).await;
    tokio::time::timeout(T, sess.closed()).await.unwrap();
}

#[tokio::test]
async fn sending_beyond_the_window_closes_the_session() {
    let (sess, mut raw) = pair().await;
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 1, 0, &[]).await;
    let _st = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    // Nobody reads: 1 MiB granted, then more.
    let chunk = vec![0u8; 256 * 1024];
    for _ in 0..5 {
        send(
            &mut raw,
            FrameType::Data,
            Flags::NONE,
            1,
            chunk.len() as u32,
            &chunk,
        )
        .await;
    }
    tokio::time::timeout(T, sess.closed()).await.unwrap();
}

#[tokio::test]
async fn sender_respects_the_peer_window() {
    let (sess, mut raw) = pair().await;
    // Peer opens a stream and grants only the initial 256 KiB.
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 1, 0, &[]).await;
    let _ack = recv(&mut raw).await;
    let mut st = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    let w = tokio::spawn(async move {
        st.send_chunk(Bytes::from(vec![1u8; 300 * 1024]))
            .await
            .unwrap();
        st
    });
    let mut got = 0usize;
    while got < 256 * 1024 {
        let (h, body) = recv(&mut raw).await;
        assert_eq!(h.ty, FrameType::Data);
        got += body.len();
    }
    assert_eq!(got, 256 * 1024, "sent beyond the granted window");
    // Nothing more until a window update.
    let mut probe = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), raw.peek(&mut probe))
            .await
            .is_err()
    );
    send(
        &mut raw,
        FrameType::WindowUpdate,
        Flags::NONE,
        1,
        64 * 1024,
        &[],
    )
    .await;
    while got < 300 * 1024 {
        let (_, body) = recv(&mut raw).await;
        got += body.len();
    }
    let _st = w.await.unwrap();
}

#[tokio::test]
async fn half_dead_session_is_closed_and_live_peer_is_pinged() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut raw = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    let (rd, wr) = tcp.into_split();
    let cfg = MuxConfig {
        keepalive: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(900),
        ..MuxConfig::default()
    };
    let sess = Session::new(Side::Server, rd, wr, Bytes::new(), cfg);
    // The session pings; a peer that never answers (or sends anything) is dropped.
    let (h, _) = recv(&mut raw).await;
    assert_eq!((h.ty, h.flags), (FrameType::Ping, Flags::SYN));
    tokio::time::timeout(T, sess.closed()).await.unwrap();
    assert_eq!(sess.close_reason(), dmsg::mux::CloseReason::Idle);
}

#[tokio::test]
async fn syns_beyond_the_stream_limit_are_reset() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut raw = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (tcp, _) = l.accept().await.unwrap();
    let (rd, wr) = tcp.into_split();
    let cfg = MuxConfig {
        max_streams: 2,
        ..MuxConfig::default()
    };
    let sess = Session::new(Side::Server, rd, wr, Bytes::new(), cfg);
    for id in [1, 3, 5] {
        send(&mut raw, FrameType::WindowUpdate, Flags::SYN, id, 0, &[]).await;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let (h, _) = recv(&mut raw).await;
        got.push((h.stream_id, h.flags));
    }
    assert_eq!(got, [(1, Flags::ACK), (3, Flags::ACK), (5, Flags::RST)]);
    assert_eq!(sess.num_streams(), 2);
    // Closing one both ways frees a slot.
    let mut st = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    send(&mut raw, FrameType::WindowUpdate, Flags::FIN, 1, 0, &[]).await;
    assert!(st.recv_chunk().await.unwrap().is_none());
    st.close_write();
    let (h, _) = recv(&mut raw).await;
    assert_eq!((h.stream_id, h.flags), (1, Flags::FIN));
    assert_eq!(sess.num_streams(), 1);
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 7, 0, &[]).await;
    let (h, _) = recv(&mut raw).await;
    assert_eq!((h.stream_id, h.flags), (7, Flags::ACK));
}

#[tokio::test]
async fn reset_by_the_peer_fails_reads_after_the_buffered_data() {
    let (sess, mut raw) = pair().await;
    send(&mut raw, FrameType::WindowUpdate, Flags::SYN, 1, 0, &[]).await;
    let mut st = tokio::time::timeout(T, sess.accept())
        .await
        .unwrap()
        .unwrap();
    send(&mut raw, FrameType::Data, Flags::NONE, 1, 3, b"abc").await;
    send(&mut raw, FrameType::WindowUpdate, Flags::RST, 1, 0, &[]).await;
    // The RST may land before the first read: the data still comes first.
    assert_eq!(&st.recv_chunk().await.unwrap().unwrap()[..], b"abc");
    let e = st.recv_chunk().await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(st.send_chunk(Bytes::from_static(b"x")).await.is_err());
    assert_eq!(sess.num_streams(), 0);
    assert!(!sess.is_closed());
}

#[tokio::test]
async fn ping_round_trip_and_goaway_closes() {
    let (sess, mut raw) = pair().await;
    let peer = tokio::spawn(async move {
        let (h, _) = recv(&mut raw).await;
        assert_eq!(
            (h.ty, h.flags, h.stream_id),
            (FrameType::Ping, Flags::SYN, 0)
        );
        send(&mut raw, FrameType::Ping, Flags::ACK, 0, h.length, &[]).await;
        send(&mut raw, FrameType::GoAway, Flags::NONE, 0, 0, &[]).await;
        raw
    });
    tokio::time::timeout(T, sess.ping()).await.unwrap().unwrap();
    tokio::time::timeout(T, sess.closed()).await.unwrap();
    assert_eq!(sess.close_reason(), dmsg::mux::CloseReason::Remote);
    assert!(sess.open().is_err());
    assert!(sess.accept().await.is_none());
    let _raw = peer.await.unwrap();
}

/// 64 streams each write 1 MiB at once (16× the 4 MiB queue high-water mark, so writers wait
/// for the queue and are woken a few at a time as frames leave): every stream delivers all of
/// its bytes, in order, and none is left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writers_past_the_high_water_mark_all_finish() {
    const STREAMS: usize = 64;
    const EACH: usize = 1 << 20;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dialled = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = l.accept().await.unwrap();
    let (rd, wr) = dialled.into_split();
    let client = Session::new(Side::Client, rd, wr, Bytes::new(), MuxConfig::default());
    let (rd, wr) = accepted.into_split();
    let server = Session::new(Side::Server, rd, wr, Bytes::new(), MuxConfig::default());
    let readers = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let mut s = server.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::with_capacity(EACH + 1);
                s.read_to_end(&mut got).await.unwrap();
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        (server, all)
    });
    let mut writers = Vec::new();
    for i in 0..STREAMS {
        let mut s = client.open().unwrap();
        writers.push(tokio::spawn(async move {
            let data: Vec<u8> = (0..EACH).map(|k| (k * 31 + i) as u8).collect();
            for chunk in data.chunks(64 * 1024) {
                s.write_all(chunk).await.unwrap();
            }
            s.shutdown().await.unwrap();
            // Keep the stream until the reader has everything.
            s
        }));
    }
    let held = tokio::time::timeout(T, async {
        let mut held = Vec::new();
        for w in writers {
            held.push(w.await.unwrap());
        }
        held
    })
    .await
    .expect("a writer was left waiting");
    let (_server, all) = tokio::time::timeout(T, readers).await.unwrap().unwrap();
    assert_eq!(all.len(), STREAMS);
    for got in &all {
        assert_eq!(got.len(), EACH);
        // Each stream's bytes are one writer's pattern, in order.
        let i = (0..STREAMS)
            .find(|&i| got[0] == (i as u8))
            .expect("a known writer");
        assert!(
            got.iter()
                .enumerate()
                .all(|(k, &b)| b == (k * 31 + i) as u8)
        );
    }
    drop(held);
}
