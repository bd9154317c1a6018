//! Session tests without sockets: a peer's frames go in as bytes, our frames come out of
//! `poll_transmit`; a fake clock drives the timers.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::yamux::{self, Flags, FrameType, HEADER_LEN, Header};

const EXTRA: u32 = 1024 * 1024 - yamux::DEFAULT_WINDOW;

fn server(cfg: SessionConfig) -> (YamuxSession, Instant) {
    let t0 = Instant::now();
    (YamuxSession::new(Side::Server, cfg, t0), t0)
}

fn frame(ty: FrameType, flags: Flags, id: u32, len: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Header::new(ty, flags, id, len).encode().to_vec();
    b.extend_from_slice(body);
    b
}

fn feed(s: &mut YamuxSession, bytes: &[u8], now: Instant) -> Result<(), ProtocolError> {
    let used = s.handle_bytes(bytes, now)?;
    assert!(used == bytes.len() || s.is_closed());
    Ok(())
}

fn syn(s: &mut YamuxSession, id: u32, now: Instant) {
    feed(
        s,
        &frame(FrameType::WindowUpdate, Flags::SYN, id, 0, &[]),
        now,
    )
    .unwrap();
}

/// Our queued frames, decoded (bodies as lengths), each reported written.
fn out(s: &mut YamuxSession) -> Vec<(FrameType, Flags, u32, u32)> {
    let mut v = Vec::new();
    while let Some(t) = s.poll_transmit() {
        let h = Header::decode(t.header().try_into().unwrap()).unwrap();
        assert_eq!(h.body_len(), t.body.len());
        v.push((h.ty, h.flags, h.stream_id, h.length));
        s.on_transmitted(t.len());
    }
    v
}

fn events(s: &mut YamuxSession) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Moves every frame of `from` into `to`.
fn deliver(from: &mut YamuxSession, to: &mut YamuxSession, now: Instant) {
    while let Some(t) = from.poll_transmit() {
        from.on_transmitted(t.len());
        to.handle_header(t.header(), now).unwrap();
        if to.expected_body() > 0 {
            to.handle_body(t.body).unwrap();
        }
    }
}

#[test]
fn open_accept_data_and_fin_between_two_sessions() {
    let t0 = Instant::now();
    let mut c = YamuxSession::new(Side::Client, SessionConfig::default(), t0);
    let mut s = YamuxSession::new(Side::Server, SessionConfig::default(), t0);
    let id = c.open().unwrap();
    assert_eq!(id, 1);
    assert_eq!(c.open().unwrap(), 3);
    deliver(&mut c, &mut s, t0);
    assert_eq!(
        events(&mut s),
        [
            Event::Incoming(1),
            Event::Writable(1),
            Event::Incoming(3),
            Event::Writable(3)
        ]
    );
    assert_eq!(
        (s.accept(), s.accept(), s.accept()),
        (Some(1), Some(3), None)
    );
    assert_eq!(s.num_streams(), 2);
    // Both sides granted each other 1 MiB (256 KiB initial + the extra with SYN/ACK).
    deliver(&mut s, &mut c, t0);
    assert_eq!(c.send_credit(1), Ok(Credit::Window(1024 * 1024)));
    assert_eq!(s.send_credit(1), Ok(Credit::Window(1024 * 1024)));
    let mut data = Bytes::from_static(b"hello");
    assert_eq!(c.send(1, &mut data), Ok(5));
    assert!(data.is_empty());
    c.close_write(1);
    deliver(&mut c, &mut s, t0);
    assert_eq!(s.recv(1), Ok(Recv::Data(Bytes::from_static(b"hello"))));
    assert_eq!(s.recv(1), Ok(Recv::Finished));
    assert_eq!(s.recv(3), Ok(Recv::Blocked));
    assert_eq!(c.send(1, &mut data), Err(StreamError::Finished(1)));
    // Still open on the server until it closes its side too.
    assert_eq!(s.num_streams(), 2);
    s.close_write(1);
    assert_eq!(s.num_streams(), 1);
    deliver(&mut s, &mut c, t0);
    assert_eq!(c.recv(1), Ok(Recv::Finished));
    assert_eq!(c.num_streams(), 1);
    c.forget(1);
    s.forget(1);
    assert_eq!(s.recv(1), Err(StreamError::Unknown(1)));
    assert_eq!(c.bytes(), (0, 5));
    assert_eq!(s.bytes(), (5, 0));
}

#[test]
fn send_stops_at_the_peer_window_and_resumes_on_update() {
    let (mut s, t0) = server(SessionConfig::default());
    syn(&mut s, 1, t0);
    assert_eq!(
        out(&mut s),
        [(FrameType::WindowUpdate, Flags::ACK, 1, EXTRA)]
    );
    // The peer granted only yamux's initial 256 KiB.
    let mut data = Bytes::from(vec![7u8; 300 * 1024]);
    let mut sent = 0;
    loop {
        let n = s.send(1, &mut data).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 64 * 1024);
        sent += n;
    }
    assert_eq!(sent, 256 * 1024);
    assert_eq!(s.send_credit(1), Ok(Credit::Window(0)));
    assert_eq!(out(&mut s).len(), 4);
    events(&mut s);
    let wu = frame(FrameType::WindowUpdate, Flags::NONE, 1, 64 * 1024, &[]);
    feed(&mut s, &wu, t0).unwrap();
    assert_eq!(events(&mut s), [Event::Writable(1)]);
    assert_eq!(s.send(1, &mut data), Ok(44 * 1024));
    assert!(data.is_empty());
    assert_eq!(s.send_credit(1), Ok(Credit::Window(20 * 1024)));
}

#[test]
fn reading_half_the_window_sends_an_update() {
    let (mut s, t0) = server(SessionConfig::default());
    syn(&mut s, 1, t0);
    out(&mut s);
    let body = vec![1u8; 256 * 1024];
    let data = frame(FrameType::Data, Flags::NONE, 1, body.len() as u32, &body);
    for _ in 0..2 {
        feed(&mut s, &data, t0).unwrap();
    }
    assert!(matches!(s.recv(1), Ok(Recv::Data(b)) if b.len() == 256 * 1024));
    assert!(out(&mut s).is_empty());
    assert!(matches!(s.recv(1), Ok(Recv::Data(_))));
    assert_eq!(
        out(&mut s),
        [(FrameType::WindowUpdate, Flags::NONE, 1, 512 * 1024)]
    );
    // The peer may now send a full window again.
    for _ in 0..4 {
        feed(&mut s, &data, t0).unwrap();
    }
    assert!(!s.is_closed());
}

#[test]
fn data_beyond_the_window_is_a_protocol_error() {
    let (mut s, t0) = server(SessionConfig::default());
    syn(&mut s, 1, t0);
    let body = vec![0u8; 256 * 1024];
    let data = frame(FrameType::Data, Flags::NONE, 1, body.len() as u32, &body);
    for _ in 0..4 {
        feed(&mut s, &data, t0).unwrap();
    }
    assert_eq!(
        feed(&mut s, &data, t0),
        Err(ProtocolError::WindowExceeded {
            id: 1,
            len: 256 * 1024,
            window: 0
        })
    );
    assert_eq!(s.close_reason(), CloseReason::Protocol);
    assert_eq!(
        events(&mut s).last(),
        Some(&Event::Closed(CloseReason::Protocol))
    );
    // A data frame longer than the whole window is refused from its header.
    let (mut s, t0) = server(SessionConfig::default());
    let h = Header::new(FrameType::Data, Flags::NONE, 1, 1024 * 1024 + 1).encode();
    assert!(matches!(
        s.handle_header(&h, t0),
        Err(ProtocolError::DataTooLong { .. })
    ));
}

#[test]
fn fin_and_rst_transitions() {
    let (mut s, t0) = server(SessionConfig::default());
    syn(&mut s, 1, t0);
    syn(&mut s, 3, t0);
    events(&mut s);
    // FIN with data: the data, then the end; writes still allowed (half-close).
    feed(&mut s, &frame(FrameType::Data, Flags::FIN, 1, 1, b"!"), t0).unwrap();
    assert_eq!(events(&mut s), [Event::Readable(1), Event::Finished(1)]);
    assert_eq!(s.recv(1), Ok(Recv::Data(Bytes::from_static(b"!"))));
    assert_eq!(s.recv(1), Ok(Recv::Finished));
    assert_eq!(s.send_credit(1), Ok(Credit::Window(256 * 1024)));
    assert_eq!(s.num_streams(), 2);
    // RST: buffered data first, then the reset for reads and writes; no longer counted.
    feed(
        &mut s,
        &frame(FrameType::Data, Flags::NONE, 3, 2, b"ab"),
        t0,
    )
    .unwrap();
    feed(
        &mut s,
        &frame(FrameType::WindowUpdate, Flags::RST, 3, 0, &[]),
        t0,
    )
    .unwrap();
    assert_eq!(
        events(&mut s),
        [Event::Readable(3), Event::Writable(3), Event::Reset(3)]
    );
    assert_eq!(s.num_streams(), 1);
    assert_eq!(s.recv(3), Ok(Recv::Data(Bytes::from_static(b"ab"))));
    assert_eq!(s.recv(3), Err(StreamError::Reset(3)));
    assert_eq!(s.send_credit(3), Err(StreamError::Reset(3)));
    // Frames for a reset stream are dropped.
    feed(&mut s, &frame(FrameType::Data, Flags::NONE, 3, 1, b"x"), t0).unwrap();
    assert!(events(&mut s).is_empty());
    // Our reset of a live stream sends RST and forgets it; after FIN it sends nothing.
    out(&mut s);
    s.close_write(1);
    assert_eq!(s.num_streams(), 0);
    s.reset(1);
    assert_eq!(out(&mut s), [(FrameType::WindowUpdate, Flags::FIN, 1, 0)]);
    syn(&mut s, 5, t0);
    out(&mut s);
    s.reset(5);
    assert_eq!(out(&mut s), [(FrameType::WindowUpdate, Flags::RST, 5, 0)]);
    assert_eq!(s.recv(5), Err(StreamError::Unknown(5)));
}

#[test]
fn syn_beyond_max_streams_is_answered_with_rst() {
    let cfg = SessionConfig {
        max_streams: 2,
        ..SessionConfig::default()
    };
    let (mut s, t0) = server(cfg);
    for id in [1, 3, 5] {
        syn(&mut s, id, t0);
    }
    assert_eq!(
        out(&mut s),
        [
            (FrameType::WindowUpdate, Flags::ACK, 1, EXTRA),
            (FrameType::WindowUpdate, Flags::ACK, 3, EXTRA),
            (FrameType::WindowUpdate, Flags::RST, 5, 0),
        ]
    );
    assert_eq!(s.num_streams(), 2);
    assert_eq!(s.open(), Err(OpenError::TooManyStreams { max: 2 }));
    // Data for the refused stream is dropped, not an error.
    feed(&mut s, &frame(FrameType::Data, Flags::NONE, 5, 1, b"x"), t0).unwrap();
    assert!(!s.is_closed());
}

#[test]
fn accept_backlog_is_bounded() {
    let cfg = SessionConfig {
        accept_backlog: 2,
        ..SessionConfig::default()
    };
    let (mut s, t0) = server(cfg);
    for id in [1, 3, 5] {
        syn(&mut s, id, t0);
    }
    let o = out(&mut s);
    assert_eq!(o[2], (FrameType::WindowUpdate, Flags::RST, 5, 0));
    assert_eq!(s.accept(), Some(1));
    syn(&mut s, 7, t0);
    assert_eq!(
        out(&mut s),
        [(FrameType::WindowUpdate, Flags::ACK, 7, EXTRA)]
    );
    assert_eq!(
        (s.accept(), s.accept(), s.accept()),
        (Some(3), Some(7), None)
    );
}

#[test]
fn pings_are_echoed_and_answered() {
    let (mut s, t0) = server(SessionConfig::default());
    let ping = frame(FrameType::Ping, Flags::SYN, 0, 0xCAFE_BABE, &[]);
    feed(&mut s, &ping, t0).unwrap();
    assert_eq!(out(&mut s), [(FrameType::Ping, Flags::ACK, 0, 0xCAFE_BABE)]);
    assert_eq!(events(&mut s), [Event::Ping(0xCAFE_BABE)]);
    s.ping(42).unwrap();
    assert_eq!(out(&mut s), [(FrameType::Ping, Flags::SYN, 0, 42)]);
    feed(&mut s, &frame(FrameType::Ping, Flags::ACK, 0, 42, &[]), t0).unwrap();
    assert_eq!(events(&mut s), [Event::Pong(42)]);
}

#[test]
fn protocol_errors_close_the_session() {
    let t0 = Instant::now();
    let cases: [(Vec<u8>, ProtocolError); 5] = [
        (
            frame(FrameType::WindowUpdate, Flags::SYN, 2, 0, &[]),
            ProtocolError::WrongParity { id: 2 },
        ),
        (
            frame(FrameType::WindowUpdate, Flags::NONE, 0, 5, &[]),
            ProtocolError::StreamZero,
        ),
        (
            frame(FrameType::Ping, Flags::SYN, 3, 0, &[]),
            ProtocolError::PingOnStream(3),
        ),
        ([1u8; HEADER_LEN].to_vec(), yamux_error(1)),
        (
            [
                &frame(FrameType::WindowUpdate, Flags::SYN, 5, 0, &[])[..],
                &frame(FrameType::WindowUpdate, Flags::SYN, 3, 0, &[]),
            ]
            .concat(),
            ProtocolError::IdReused { id: 3, last: 5 },
        ),
    ];
    for (bytes, want) in cases {
        let mut s = YamuxSession::new(Side::Server, SessionConfig::default(), t0);
        assert_eq!(feed(&mut s, &bytes, t0), Err(want));
        assert_eq!(s.close_reason(), CloseReason::Protocol);
        assert_eq!(s.open(), Err(OpenError::SessionClosed));
        assert_eq!(s.poll_timeout(), None);
    }
}

fn yamux_error(v: u8) -> ProtocolError {
    ProtocolError::Header(crate::error::YamuxError::Version(v))
}

#[test]
fn unknown_streams_are_ignored_and_goaway_closes() {
    let (mut s, t0) = server(SessionConfig::default());
    feed(
        &mut s,
        &frame(FrameType::Data, Flags::NONE, 9, 3, b"abc"),
        t0,
    )
    .unwrap();
    feed(
        &mut s,
        &frame(FrameType::WindowUpdate, Flags::FIN, 11, 9, &[]),
        t0,
    )
    .unwrap();
    assert!(events(&mut s).is_empty() && out(&mut s).is_empty() && !s.is_closed());
    feed(
        &mut s,
        &frame(FrameType::GoAway, Flags::NONE, 0, 0, &[]),
        t0,
    )
    .unwrap();
    assert_eq!(
        events(&mut s),
        [Event::GoAway(0), Event::Closed(CloseReason::Remote)]
    );
}

#[test]
fn keepalive_pings_and_idle_close_follow_the_clock() {
    let cfg = SessionConfig {
        keepalive: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(75),
        ..SessionConfig::default()
    };
    let (mut s, t0) = server(cfg);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    s.handle_timeout(t0 + Duration::from_secs(10));
    assert!(out(&mut s).is_empty());
    s.handle_timeout(t0 + Duration::from_secs(30));
    s.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(
        out(&mut s),
        [
            (FrameType::Ping, Flags::SYN, 0, 0),
            (FrameType::Ping, Flags::SYN, 0, 1)
        ]
    );
    // Anything received keeps it alive; 75 s of silence at a tick closes it.
    feed(
        &mut s,
        &frame(FrameType::Ping, Flags::ACK, 0, 1, &[]),
        t0 + Duration::from_secs(61),
    )
    .unwrap();
    s.handle_timeout(t0 + Duration::from_secs(90));
    s.handle_timeout(t0 + Duration::from_secs(120));
    assert!(!s.is_closed());
    s.handle_timeout(t0 + Duration::from_secs(150));
    assert_eq!(s.close_reason(), CloseReason::Idle);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn write_queue_bounds() {
    let cfg = SessionConfig {
        write_high_water: 3 * HEADER_LEN,
        write_hard_limit: 5 * HEADER_LEN,
        ..SessionConfig::default()
    };
    let (mut s, t0) = server(cfg);
    syn(&mut s, 1, t0); // ACK queued
    s.ping(1).unwrap();
    assert_eq!(s.send_credit(1), Ok(Credit::Window(256 * 1024)));
    s.ping(2).unwrap();
    assert_eq!(s.send_credit(1), Ok(Credit::QueueFull));
    assert!(s.write_blocked());
    let t = s.poll_transmit().unwrap();
    s.on_transmitted(t.len());
    assert!(!s.write_blocked());
    // A peer that makes us answer without reading is dropped.
    for i in 0..4 {
        s.ping(i).unwrap();
    }
    assert_eq!(s.close_reason(), CloseReason::NotReading);
}

#[test]
fn close_resets_every_stream_but_keeps_buffered_data() {
    let (mut s, t0) = server(SessionConfig::default());
    syn(&mut s, 1, t0);
    feed(
        &mut s,
        &frame(FrameType::Data, Flags::NONE, 1, 2, b"hi"),
        t0,
    )
    .unwrap();
    s.close(CloseReason::Local);
    s.close(CloseReason::Io);
    assert_eq!(s.close_reason(), CloseReason::Local);
    assert_eq!(s.num_streams(), 0);
    assert_eq!(s.recv(1), Ok(Recv::Data(Bytes::from_static(b"hi"))));
    assert_eq!(s.recv(1), Err(StreamError::Reset(1)));
    assert_eq!(s.send_credit(1), Err(StreamError::SessionClosed));
    assert_eq!(
        events(&mut s).last(),
        Some(&Event::Closed(CloseReason::Local))
    );
    // Frames after the close are ignored.
    syn(&mut s, 3, t0);
    assert_eq!(s.accept(), Some(1));
    assert_eq!(s.accept(), None);
}
