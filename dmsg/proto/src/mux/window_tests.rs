//! The yamux session window budget shared by streams (issue 18): no sockets, a fixed clock.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use super::session::{DEFAULT_SESSION_WINDOW, MIN_STREAM_WINDOW};
use super::*;
use crate::yamux::{self, Flags, FrameType, Header};

const KIB: u32 = 1024;

fn data(id: u32, len: u32) -> Vec<u8> {
    let mut b = Header::new(FrameType::Data, Flags::NONE, id, len)
        .encode()
        .to_vec();
    b.resize(b.len() + len as usize, 7);
    b
}

fn syn(id: u32) -> Vec<u8> {
    Header::new(FrameType::WindowUpdate, Flags::SYN, id, 0)
        .encode()
        .to_vec()
}

/// Our queued window updates: (flags, stream, length).
fn updates(s: &mut YamuxSession) -> Vec<(Flags, u32, u32)> {
    let mut v = Vec::new();
    while let Some(t) = s.poll_transmit() {
        s.on_transmitted(t.len());
        let h = Header::decode(t.header().try_into().unwrap()).unwrap();
        if h.ty == FrameType::WindowUpdate {
            v.push((h.flags, h.stream_id, h.length));
        }
    }
    v
}

fn feed(s: &mut YamuxSession, b: &[u8], now: Instant) -> Result<usize, ProtocolError> {
    s.handle_bytes(b, now)
}

#[test]
fn accepted_streams_get_their_share_of_the_session_window() {
    let now = Instant::now();
    let mut s = YamuxSession::new(Side::Server, SessionConfig::default(), now);
    s.set_session_window(4 * 1024 * KIB);
    let mut acks = Vec::new();
    for i in 0..64u32 {
        feed(&mut s, &syn(2 * i + 1), now).unwrap();
        acks.extend(updates(&mut s));
    }
    // The extra beyond yamux's initial 256 KiB: 1 MiB (the whole recv_window) for the first
    // stream, 4 MiB / 8 = 512 KiB for the 8th, nothing once the share is ≤ 256 KiB.
    assert_eq!(acks[0], (Flags::ACK, 1, 768 * KIB));
    assert_eq!(acks[7], (Flags::ACK, 15, 256 * KIB));
    assert!(
        acks[16..]
            .iter()
            .all(|&(f, _, n)| f == Flags::ACK && n == 0)
    );
    assert_eq!(acks.len(), 64);
}

#[test]
fn a_stream_among_many_is_refilled_to_its_share_only() {
    let now = Instant::now();
    let mut s = YamuxSession::new(Side::Server, SessionConfig::default(), now);
    // 16 open streams: a share of 64 KiB each.
    s.set_session_window(16 * 64 * KIB);
    for i in 0..16u32 {
        feed(&mut s, &syn(2 * i + 1), now).unwrap();
    }
    updates(&mut s);
    // The 16th stream was accepted with a share of 64 KiB: no window beyond the initial one.
    let last = 31;
    // The peer may use yamux's initial window (that is the protocol's).
    for _ in 0..4 {
        feed(&mut s, &data(last, 64 * KIB), now).unwrap();
    }
    let mut granted = 0;
    while let Ok(Recv::Data(_)) = s.recv(last) {
        granted += updates(&mut s).iter().map(|u| u.2).sum::<u32>();
    }
    // Read empty: the window comes back to the share, not to 256 KiB.
    assert_eq!(granted, 64 * KIB);
    feed(&mut s, &data(last, 64 * KIB), now).unwrap();
    assert!(!s.is_closed());
    // Unread, the stream holds at most its window: one byte more breaks the protocol.
    assert!(matches!(
        feed(&mut s, &data(last, 1), now),
        Err(ProtocolError::WindowExceeded { id, .. }) if id == last
    ));
}

#[test]
fn a_lone_stream_keeps_the_whole_window_and_shares_never_go_below_the_minimum() {
    let now = Instant::now();
    let cfg = SessionConfig::default();
    let mut c = YamuxSession::new(Side::Client, cfg, now);
    assert!(DEFAULT_SESSION_WINDOW >= cfg.recv_window);
    let id = c.open().unwrap();
    assert_eq!(
        updates(&mut c),
        [(Flags::SYN, id, cfg.recv_window - yamux::DEFAULT_WINDOW)]
    );
    // A budget smaller than the minimum share: every stream still gets MIN_STREAM_WINDOW
    // once its initial window is used.
    c.set_session_window(1);
    feed(&mut c, &data(id, 256 * KIB), now).unwrap();
    let mut granted = 0;
    while let Ok(Recv::Data(_)) = c.recv(id) {
        granted += updates(&mut c).iter().map(|u| u.2).sum::<u32>();
    }
    // 768 KiB of the first window are still open: no update until it is used.
    assert_eq!(granted, 0);
    for _ in 0..12 {
        feed(&mut c, &data(id, 64 * KIB), now).unwrap();
    }
    while let Ok(Recv::Data(_)) = c.recv(id) {
        granted += updates(&mut c).iter().map(|u| u.2).sum::<u32>();
    }
    assert_eq!(granted, MIN_STREAM_WINDOW);
}
