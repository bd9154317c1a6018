//! Properties of the smux v2 codec and session (`dmsg_proto::mux::smux*`): headers round-trip
//! and every 8-byte string either decodes by the spec's rules or is refused; the session never
//! panics on arbitrary input and keeps its bounds; two sessions wired together deliver every
//! byte in order whatever the write sizes and wire splits.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use dmsg_proto::mux::smux_frame::{Cmd, Header, decode_frame};
use dmsg_proto::mux::{CloseReason, Credit, Recv, Side, SmuxConfig, SmuxSession, StreamMux};
use proptest::prelude::*;

fn any_cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        Just(Cmd::Syn),
        Just(Cmd::Fin),
        Just(Cmd::Psh),
        Just(Cmd::Nop),
        Just(Cmd::Upd)
    ]
}

fn wire(s: &mut SmuxSession, max: usize) -> Vec<u8> {
    let mut v = Vec::new();
    while v.len() < max {
        let Some(t) = s.poll_transmit() else { break };
        v.extend_from_slice(t.header());
        v.extend_from_slice(&t.body);
        s.on_transmitted(t.len());
    }
    v
}

proptest! {
    #[test]
    fn header_round_trips(cmd in any_cmd(), len in any::<u16>(), sid in any::<u32>()) {
        let len = match cmd {
            Cmd::Syn | Cmd::Fin | Cmd::Nop => 0,
            Cmd::Upd => 8,
            Cmd::Psh => len,
        };
        let h = Header::new(cmd, len, sid);
        let b = h.encode();
        prop_assert_eq!(b[0], 2);
        prop_assert_eq!(u16::from_le_bytes([b[2], b[3]]), len);
        prop_assert_eq!(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), sid);
        prop_assert_eq!(Header::decode(&b).unwrap(), h);
    }

    #[test]
    fn any_header_decodes_by_the_rules(b in any::<[u8; 8]>()) {
        let ok = b[0] == 2
            && match b[1] {
                0 | 1 | 3 => b[2] == 0 && b[3] == 0,
                4 => b[2] == 8 && b[3] == 0,
                2 => true,
                _ => false,
            };
        prop_assert_eq!(Header::decode(&b).is_ok(), ok);
        if ok {
            prop_assert_eq!(Header::decode(&b).unwrap().encode(), b);
        }
    }

    #[test]
    fn decode_frame_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(Some((h, body, used))) = decode_frame(&buf) {
            prop_assert_eq!(body.len(), usize::from(h.length));
            prop_assert_eq!(used, 8 + body.len());
        }
    }

    #[test]
    fn arbitrary_input_keeps_the_bounds(
        side in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..30),
        ticks in proptest::collection::vec(0u64..40, 0..5),
    ) {
        let cfg = SmuxConfig { max_streams: 4, accept_backlog: 2, max_receive_buffer: 4096, ..SmuxConfig::default() };
        let t0 = Instant::now();
        let side = if side { Side::Client } else { Side::Server };
        let mut s = SmuxSession::new(side, cfg, t0);
        let mut buf = Vec::new();
        let mut now = t0;
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            match s.handle_bytes(&buf, now) {
                Ok(used) => { buf.drain(..used); }
                Err(_) => { prop_assert_eq!(s.close_reason(), CloseReason::Protocol); buf.clear(); }
            }
            if let Some(id) = s.accept() {
                let _ = s.recv(id);
                if i % 3 == 0 { s.forget(id); }
            }
            if let Some(t) = ticks.get(i) {
                now += Duration::from_secs(*t);
                s.handle_timeout(now);
            }
            while s.poll_event().is_some() {}
            wire(&mut s, usize::MAX);
            prop_assert!(s.num_streams() <= cfg.max_streams);
            prop_assert!(s.receive_buffer_left() > -65536);
            if s.is_closed() { prop_assert_eq!(s.num_streams(), 0); }
        }
    }

    #[test]
    fn two_sessions_deliver_in_order(
        writes in proptest::collection::vec(1usize..70_000, 1..12),
        split in 1usize..70_000,
    ) {
        let t0 = Instant::now();
        let mut c = SmuxSession::new(Side::Client, SmuxConfig::default(), t0);
        let mut s = SmuxSession::new(Side::Server, SmuxConfig::default(), t0);
        let id = c.open().unwrap();
        let total: usize = writes.iter().sum();
        let msg: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
        let mut queue: Vec<Bytes> = Vec::new();
        let mut off = 0;
        for w in &writes {
            queue.push(Bytes::copy_from_slice(&msg[off..off + w]));
            off += w;
        }
        queue.reverse();
        let mut got = Vec::new();
        let mut pending = Vec::new();
        let mut sid = None;
        for _ in 0..10_000 {
            if let Some(front) = queue.last_mut()
                && let Ok(Credit::Window(w)) = c.send_credit(id)
                && w > 0
            {
                let n = c.send(id, front).unwrap();
                prop_assert!(n <= w as usize && n <= 32768);
                if front.is_empty() { queue.pop(); }
            }
            if queue.is_empty() { c.close_write(id); }
            pending.extend(wire(&mut c, usize::MAX));
            // The wire bytes arrive in pieces of `split` bytes.
            let mut take = split.min(pending.len());
            while take > 0 {
                let used = s.handle_bytes(&pending[..take], t0).unwrap();
                pending.drain(..used);
                if used == 0 && take == pending.len() {
                    break;
                }
                let more = if used == 0 { take + split } else { split };
                take = more.min(pending.len());
            }
            if sid.is_none() { sid = s.accept(); }
            let mut done = false;
            if let Some(sid) = sid {
                loop {
                    match s.recv(sid).unwrap() {
                        Recv::Data(b) => got.extend_from_slice(&b),
                        Recv::Finished => { done = true; break; }
                        Recv::Blocked => break,
                    }
                }
            }
            let upd = wire(&mut s, usize::MAX);
            c.handle_bytes(&upd, t0).unwrap();
            if done { break; }
        }
        prop_assert!(got == msg, "got {} of {} bytes", got.len(), msg.len());
    }
}
