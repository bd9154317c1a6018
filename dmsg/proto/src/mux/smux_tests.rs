//! smux session tests without sockets: a peer's frames go in as bytes, our frames come out of
//! `poll_transmit`; a fake clock drives the timers. Expected bytes are the spec's (`smux.md`
//! §4, §5, §7, §8), several of them captured from Go.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::smux_frame::{Cmd, Header, Upd, encode_frame};
use super::*;

fn session(side: Side) -> (SmuxSession, Instant) {
    let t0 = Instant::now();
    (SmuxSession::new(side, SmuxConfig::default(), t0), t0)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn frame(cmd: Cmd, sid: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(cmd, sid, body, &mut v).unwrap();
    v
}

fn feed(s: &mut SmuxSession, bytes: &[u8], now: Instant) -> Result<(), ProtocolError> {
    let used = s.handle_bytes(bytes, now)?;
    assert!(used == bytes.len() || s.is_closed() || s.read_paused());
    Ok(())
}

/// Our queued frames as wire bytes, each reported written.
fn wire(s: &mut SmuxSession) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(t) = s.poll_transmit() {
        v.extend_from_slice(t.header());
        v.extend_from_slice(&t.body);
        s.on_transmitted(t.len());
    }
    v
}

fn events(s: &mut SmuxSession) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn read_all(s: &mut SmuxSession, id: StreamId) -> Vec<u8> {
    let mut v = Vec::new();
    while let Ok(Recv::Data(b)) = s.recv(id) {
        v.extend_from_slice(&b);
    }
    v
}

#[test]
fn stream_ids_follow_go() {
    let (mut c, _) = session(Side::Client);
    assert_eq!((c.open().unwrap(), c.open().unwrap()), (3, 5));
    // Spec §8 example 2: the first stream a Go client opens.
    assert_eq!(
        &wire(&mut c)[..8],
        hex("02 00 00 00 03 00 00 00").as_slice()
    );
    let (mut s, _) = session(Side::Server);
    assert_eq!((s.open().unwrap(), s.open().unwrap()), (2, 4));
    // Id exhaustion is local: nothing goes on the wire.
    let (mut c, _) = session(Side::Client);
    c.next_id = u32::MAX - 2;
    assert_eq!(c.open(), Ok(u32::MAX));
    wire(&mut c);
    assert_eq!(c.open(), Err(OpenError::IdsExhausted));
    assert!(wire(&mut c).is_empty());
}

#[test]
fn receiver_sends_upd_as_go_does() {
    let (mut s, t0) = session(Side::Server);
    feed(&mut s, &hex("02 00 00 00 03 00 00 00"), t0).unwrap();
    // Spec §8 example 3 (Go): PSH "hello" on stream 3.
    feed(&mut s, &hex("02 02 05 00 03 00 00 00 68 65 6c 6c 6f"), t0).unwrap();
    assert_eq!(events(&mut s), vec![Event::Incoming(3), Event::Readable(3)]);
    assert_eq!(s.accept(), Some(3));
    assert_eq!(read_all(&mut s, 3), b"hello");
    // Spec §8 example 5 (Go): UPD after the first read of 5 bytes.
    assert_eq!(
        wire(&mut s),
        hex("02 04 08 00 03 00 00 00 05 00 00 00 00 00 01 00")
    );
    // §4 rule 2 [run]: reads of 10, 20000, 20000, 49990 bytes gave UPDs 10, 40010, 90000.
    let (mut s, t0) = session(Side::Server);
    feed(&mut s, &frame(Cmd::Syn, 3, &[]), t0).unwrap();
    let mut upds = Vec::new();
    for n in [10usize, 20000, 20000, 49990] {
        feed(&mut s, &frame(Cmd::Psh, 3, &vec![7u8; n]), t0).unwrap();
        assert_eq!(read_all(&mut s, 3).len(), n);
        let out = wire(&mut s);
        if !out.is_empty() {
            let h = Header::decode(out[..8].try_into().unwrap()).unwrap();
            assert_eq!((h.cmd, h.sid), (Cmd::Upd, 3));
            upds.push(Upd::decode(&out[8..]).unwrap());
        }
    }
    let consumed: Vec<u32> = upds.iter().map(|u| u.consumed).collect();
    assert_eq!(consumed, vec![10, 40010, 90000]);
    assert!(upds.iter().all(|u| u.window == 65536));
}

#[test]
fn sender_follows_absolute_windows() {
    let (mut c, t0) = session(Side::Client);
    let id = c.open().unwrap();
    wire(&mut c);
    let mut sent = 0usize;
    loop {
        let mut data = Bytes::from(vec![1u8; 100_000]);
        let n = c.send(id, &mut data).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 32768);
        sent += n;
        wire(&mut c);
    }
    // §4 rule 3 [run]: 262144 bytes before any UPD, then the sender stalls.
    assert_eq!(sent, 262144);
    assert_eq!(c.send_credit(id), Ok(Credit::Window(0)));
    let upd = |c: &mut SmuxSession, consumed, window| {
        let body = Upd { consumed, window }.encode();
        feed(c, &frame(Cmd::Upd, id, &body), t0).unwrap();
        assert_eq!(events(c), vec![Event::Writable(id)]);
    };
    upd(&mut c, 10, 65536);
    assert_eq!(c.send_credit(id), Ok(Credit::Window(0)));
    upd(&mut c, 262144, 65536);
    assert_eq!(c.send_credit(id), Ok(Credit::Window(65536)));
    let mut more = 0;
    while let Ok(n) = c.send(id, &mut Bytes::from(vec![1u8; 100_000])) {
        if n == 0 {
            break;
        }
        more += n;
    }
    wire(&mut c);
    assert_eq!(more, 65536);
    upd(&mut c, 327680, 1_000_000);
    assert_eq!(c.send_credit(id), Ok(Credit::Window(1_000_000)));
    // Consumed beyond what was sent fails the stream's writes (Go ErrConsumed).
    upd(&mut c, 400_000, 65536);
    assert_eq!(c.send_credit(id), Err(StreamError::Reset(id)));
}

#[test]
fn unknown_ids_and_duplicate_syns_are_ignored() {
    let (mut s, t0) = session(Side::Server);
    // Go accepts any id, parity unchecked (sid 1 and 2 sent to a Go server were accepted).
    feed(&mut s, &frame(Cmd::Syn, 1, &[]), t0).unwrap();
    feed(&mut s, &frame(Cmd::Syn, 2, &[]), t0).unwrap();
    feed(&mut s, &frame(Cmd::Syn, 1, &[]), t0).unwrap();
    feed(&mut s, &frame(Cmd::Psh, 9, b"lost"), t0).unwrap();
    feed(&mut s, &frame(Cmd::Fin, 9, &[]), t0).unwrap();
    feed(&mut s, &frame(Cmd::Upd, 9, &[0; 8]), t0).unwrap();
    feed(&mut s, &frame(Cmd::Psh, 1, &[]), t0).unwrap();
    assert_eq!(events(&mut s), vec![Event::Incoming(1), Event::Incoming(2)]);
    assert_eq!(s.num_streams(), 2);
    assert_eq!(s.receive_buffer_left(), 1024 * 1024);
    assert!(wire(&mut s).is_empty());
    assert!(!s.is_closed());
}

#[test]
fn protocol_errors_close_the_session() {
    // Spec §8 item 8: version 1, cmd 5, UPD of length 4; and SYN/NOP with a body.
    for bad in [
        "01 03 00 00 00 00 00 00",
        "02 05 00 00 00 00 00 00",
        "02 04 04 00 01 00 00 00 01 02 03 04",
        "02 00 02 00 03 00 00 00 00 00",
        "02 03 01 00 00 00 00 00 00",
    ] {
        let (mut s, t0) = session(Side::Server);
        assert!(matches!(
            feed(&mut s, &hex(bad), t0),
            Err(ProtocolError::Smux(_))
        ));
        assert_eq!(s.close_reason(), CloseReason::Protocol, "{bad}");
        assert_eq!(events(&mut s), vec![Event::Closed(CloseReason::Protocol)]);
        // Nothing is ever sent back.
        assert!(wire(&mut s).is_empty());
    }
}

#[test]
fn keepalive_nop_and_silence_timeout() {
    let (mut s, t0) = session(Side::Client);
    let sec = Duration::from_secs;
    assert_eq!(s.poll_timeout(), Some(t0 + sec(10)));
    s.handle_timeout(t0 + sec(10));
    // Spec §8 example 6 (Go): NOP.
    assert_eq!(wire(&mut s), hex("02 03 00 00 00 00 00 00"));
    s.handle_timeout(t0 + sec(20));
    assert_eq!(wire(&mut s).len(), 8);
    // A silent peer is dropped at the first check (T = 30 s).
    s.handle_timeout(t0 + sec(30));
    assert_eq!(s.close_reason(), CloseReason::Idle);
    assert_eq!(s.poll_timeout(), None);

    // A header at t≈0 keeps it until the second check (2T).
    let (mut s, t0) = session(Side::Client);
    feed(&mut s, &hex("02 03 00 00 00 00 00 00"), t0).unwrap();
    s.handle_timeout(t0 + sec(30));
    assert!(!s.is_closed());
    s.handle_timeout(t0 + sec(60));
    assert_eq!(s.close_reason(), CloseReason::Idle);

    // A peer sending NOP every 10 s stays up.
    let (mut s, t0) = session(Side::Server);
    for i in 1..=20 {
        feed(&mut s, &frame(Cmd::Nop, 0, &[]), t0 + sec(10 * i - 5)).unwrap();
        s.handle_timeout(t0 + sec(10 * i));
    }
    assert!(!s.is_closed());
    // One NOP per interval, data or not.
    assert_eq!(wire(&mut s).len(), 20 * 8);
}

#[test]
fn session_buffer_pauses_reading() {
    let (mut s, t0) = session(Side::Server);
    for id in [3, 5, 7, 9, 11] {
        feed(&mut s, &frame(Cmd::Syn, id, &[]), t0).unwrap();
    }
    let chunk = frame(Cmd::Psh, 3, &vec![0u8; 65535]);
    let mut fed = 0;
    while !s.read_paused() {
        feed(&mut s, &chunk, t0).unwrap();
        fed += 1;
    }
    // 1 MiB, overshot by less than one frame.
    assert_eq!(fed, 17);
    assert!(s.receive_buffer_left() > -65535);
    // handle_bytes stops at a header while paused.
    assert_eq!(s.handle_bytes(&chunk, t0), Ok(0));
    // The silence check does not close a paused session.
    s.handle_timeout(t0 + Duration::from_secs(30));
    s.handle_timeout(t0 + Duration::from_secs(60));
    assert!(!s.is_closed());
    s.recv(3).unwrap();
    assert!(!s.read_paused());
    // Forgetting a stream gives its unread bytes back.
    s.forget(3);
    assert_eq!(s.receive_buffer_left(), 1024 * 1024);
}

#[test]
fn refusal_is_syn_then_fin() {
    let cfg = SmuxConfig {
        max_streams: 2,
        ..SmuxConfig::default()
    };
    let t0 = Instant::now();
    let mut s = SmuxSession::new(Side::Server, cfg, t0);
    for id in [3, 5, 7] {
        feed(&mut s, &frame(Cmd::Syn, id, &[]), t0).unwrap();
    }
    assert_eq!(s.num_streams(), 2);
    assert_eq!(wire(&mut s), hex("02 01 00 00 07 00 00 00"));
    assert_eq!(s.open(), Err(OpenError::TooManyStreams { max: 2 }));
}

/// Spec §7: the ping exchange captured from Go, seen from our server.
#[test]
fn ping_stream_as_captured_from_go() {
    let (mut s, t0) = session(Side::Server);
    feed(&mut s, &hex("02 00 00 00 05 00 00 00"), t0).unwrap();
    feed(&mut s, &hex("02 02 02 00 05 00 00 00 00 00"), t0).unwrap();
    let id = s.accept().unwrap();
    assert_eq!(read_all(&mut s, id), [0, 0]);
    s.send(id, &mut Bytes::from_static(&[0, 0])).unwrap();
    s.reset(id); // Close(): FIN and forget
    assert_eq!(
        wire(&mut s),
        hex("02 04 08 00 05 00 00 00 02 00 00 00 00 00 01 00
             02 02 02 00 05 00 00 00 00 00
             02 01 00 00 05 00 00 00")
    );
    // The client's late UPD and FIN for the forgotten id are ignored.
    feed(
        &mut s,
        &hex("02 04 08 00 05 00 00 00 02 00 00 00 00 00 01 00"),
        t0,
    )
    .unwrap();
    feed(&mut s, &hex("02 01 00 00 05 00 00 00"), t0).unwrap();
    assert!(wire(&mut s).is_empty());
    assert_eq!(s.num_streams(), 0);
}

#[test]
fn half_close_keeps_the_other_direction() {
    let (mut c, t0) = session(Side::Client);
    let (mut s, _) = session(Side::Server);
    let id = c.open().unwrap();
    c.close_write(id);
    s.handle_bytes(&wire(&mut c), t0).unwrap();
    assert_eq!(s.accept(), Some(id));
    assert_eq!(s.recv(id), Ok(Recv::Finished));
    assert_eq!(s.num_streams(), 1);
    s.send(id, &mut Bytes::from_static(b"reply")).unwrap();
    s.close_write(id);
    assert_eq!(s.num_streams(), 0);
    c.handle_bytes(&wire(&mut s), t0).unwrap();
    assert_eq!(read_all(&mut c, id), b"reply");
    assert_eq!(c.recv(id), Ok(Recv::Finished));
    assert_eq!(c.send_credit(id), Err(StreamError::Finished(id)));
    assert_eq!(c.num_streams(), 0);
}

#[test]
fn two_sessions_move_data_both_ways() {
    let t0 = Instant::now();
    let mut c = SmuxSession::new(Side::Client, SmuxConfig::default(), t0);
    let mut s = SmuxSession::new(Side::Server, SmuxConfig::default(), t0);
    let id = c.open().unwrap();
    let msg: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut todo = Bytes::from(msg.clone());
    let (mut got_s, mut got_c) = (Vec::new(), Vec::new());
    let mut accepted = None;
    let mut echo = std::collections::VecDeque::new();
    for _ in 0..100_000 {
        if !todo.is_empty()
            && let Ok(Credit::Window(w)) = c.send_credit(id)
            && w > 0
        {
            c.send(id, &mut todo).unwrap();
        }
        s.handle_bytes(&wire(&mut c), t0).unwrap();
        if accepted.is_none() {
            accepted = s.accept();
        }
        if let Some(sid) = accepted {
            while let Ok(Recv::Data(b)) = s.recv(sid) {
                got_s.extend_from_slice(&b);
                echo.push_back(b);
            }
            while let Some(front) = echo.front_mut() {
                if s.send(sid, front).unwrap() == 0 {
                    break;
                }
                if front.is_empty() {
                    echo.pop_front();
                }
            }
        }
        c.handle_bytes(&wire(&mut s), t0).unwrap();
        got_c.extend(read_all(&mut c, id));
        if got_c.len() == msg.len() {
            break;
        }
    }
    assert_eq!(got_s, msg);
    assert_eq!(got_c, msg);
    assert_eq!(c.bytes(), (msg.len() as u64, msg.len() as u64));
}
