//! Properties of the pure yamux session (`dmsg_proto::mux`): it never sends more than the peer's
//! window, keeps every bound whatever the peer sends, never panics on arbitrary frames, and two
//! sessions wired together deliver every byte in order.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use dmsg_proto::mux::{CloseReason, Credit, Recv, SessionConfig, Side, StreamMux, YamuxSession};
use dmsg_proto::yamux::{self, Flags, FrameType, Header};
use proptest::prelude::*;

fn frame(ty: FrameType, flags: Flags, id: u32, len: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Header::new(ty, flags, id, len).encode().to_vec();
    b.extend_from_slice(body);
    b
}

/// Drains the session's output; returns the data bytes sent per frame.
fn drain(s: &mut YamuxSession) -> Vec<usize> {
    let mut v = Vec::new();
    while let Some(t) = s.poll_transmit() {
        let h = Header::decode(t.header().try_into().unwrap()).unwrap();
        if h.ty == FrameType::Data {
            v.push(t.body.len());
        }
        s.on_transmitted(t.len());
    }
    while s.poll_event().is_some() {}
    v
}

#[derive(Debug, Clone)]
enum Op {
    /// The application sends this many bytes (as far as the window allows).
    Send(usize),
    /// The peer grants this window delta.
    Grant(u32),
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..200_000).prop_map(Op::Send),
        (0u32..150_000).prop_map(Op::Grant),
    ]
}

/// A random local or remote step for the "never panics" property.
#[derive(Debug, Clone)]
enum Step {
    Bytes(Vec<u8>),
    Frame(u8, u16, u32, u32, Vec<u8>),
    Open,
    Accept,
    Recv(u32),
    Send(u32, usize),
    CloseWrite(u32),
    Reset(u32),
    Forget(u32),
    Ping(u32),
    Tick(u64),
    Written(usize),
}

fn any_step() -> impl Strategy<Value = Step> {
    let id = 0u32..12;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Step::Bytes),
        (
            0u8..5,
            0u16..16,
            id.clone(),
            0u32..300_000,
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(t, f, i, l, b)| Step::Frame(t, f, i, l, b)),
        Just(Step::Open),
        Just(Step::Accept),
        id.clone().prop_map(Step::Recv),
        (id.clone(), 0usize..100_000).prop_map(|(i, n)| Step::Send(i, n)),
        id.clone().prop_map(Step::CloseWrite),
        id.clone().prop_map(Step::Reset),
        id.prop_map(Step::Forget),
        any::<u32>().prop_map(Step::Ping),
        (0u64..100).prop_map(Step::Tick),
        (0usize..100_000).prop_map(Step::Written),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_sends_more_than_the_peer_window(syn_delta in 0u32..100_000, ops in proptest::collection::vec(any_op(), 1..40)) {
        let t0 = Instant::now();
        let mut s = YamuxSession::new(Side::Server, SessionConfig::default(), t0);
        let syn = frame(FrameType::WindowUpdate, Flags::SYN, 1, syn_delta, &[]);
        prop_assert_eq!(s.handle_bytes(&syn, t0).unwrap(), syn.len());
        prop_assert_eq!(s.accept(), Some(1));
        let mut granted = u64::from(yamux::DEFAULT_WINDOW) + u64::from(syn_delta);
        let mut sent = 0u64;
        for op in ops {
            match op {
                Op::Send(n) => {
                    let mut data = Bytes::from(vec![0u8; n]);
                    while s.send(1, &mut data).unwrap() > 0 {}
                    // Whatever is left is exactly what the window holds back.
                    if !data.is_empty() {
                        prop_assert_eq!(s.send_credit(1).unwrap(), Credit::Window(0));
                    }
                }
                Op::Grant(d) => {
                    let wu = frame(FrameType::WindowUpdate, Flags::NONE, 1, d, &[]);
                    s.handle_bytes(&wu, t0).unwrap();
                    granted += u64::from(d);
                }
            }
            for n in drain(&mut s) {
                prop_assert!(n <= s.config().max_frame_data);
                sent += n as u64;
            }
            prop_assert!(sent <= granted, "sent {} > granted {}", sent, granted);
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_keeps_the_bounds(steps in proptest::collection::vec(any_step(), 1..80)) {
        let cfg = SessionConfig {
            max_streams: 3,
            accept_backlog: 2,
            recv_window: 300_000,
            write_high_water: 200_000,
            write_hard_limit: 400_000,
            keepalive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(25),
            ..SessionConfig::default()
        };
        let t0 = Instant::now();
        let mut now = t0;
        let mut s = YamuxSession::new(Side::Server, cfg, t0);
        let mut pending = Vec::new();
        for step in steps {
            match step {
                Step::Bytes(b) => {
                    pending.extend_from_slice(&b);
                    if let Ok(n) = s.handle_bytes(&pending, now) {
                        pending.drain(..n);
                    } else {
                        pending.clear();
                    }
                }
                Step::Frame(t, f, id, len, body) => {
                    let mut b = Header::new(FrameType::Data, Flags(f), id, len).encode();
                    b[1] = t;
                    if t == 0 {
                        b[8..12].copy_from_slice(&(body.len() as u32).to_be_bytes());
                    }
                    let mut bytes = b.to_vec();
                    bytes.extend_from_slice(&body);
                    let _ = s.handle_bytes(&bytes, now);
                }
                Step::Open => { let _ = s.open(); }
                Step::Accept => { let _ = s.accept(); }
                Step::Recv(id) => { let _ = s.recv(id); }
                Step::Send(id, n) => {
                    if let Ok(Credit::Window(_)) = s.send_credit(id) {
                        let _ = s.send(id, &mut Bytes::from(vec![1u8; n]));
                    }
                }
                Step::CloseWrite(id) => s.close_write(id),
                Step::Reset(id) => s.reset(id),
                Step::Forget(id) => s.forget(id),
                Step::Ping(o) => { let _ = s.ping(o); }
                Step::Tick(secs) => {
                    now += Duration::from_secs(secs);
                    s.handle_timeout(now);
                }
                Step::Written(n) => {
                    let mut left = n;
                    while left > 0 {
                        let Some(t) = s.poll_transmit() else { break };
                        left = left.saturating_sub(t.len());
                        s.on_transmitted(t.len());
                    }
                }
            }
            while s.poll_event().is_some() {}
            prop_assert!(s.num_streams() <= 3);
            prop_assert!(s.queued_bytes() <= 400_000 || s.close_reason() == CloseReason::NotReading);
            if s.is_closed() {
                prop_assert_eq!(s.num_streams(), 0);
                prop_assert_eq!(s.poll_timeout(), None);
            }
        }
    }

    #[test]
    fn a_pair_delivers_every_byte_in_order(chunks in proptest::collection::vec(1usize..300_000, 1..12), reads in proptest::collection::vec(0usize..4, 1..12)) {
        let t0 = Instant::now();
        let mut c = YamuxSession::new(Side::Client, SessionConfig::default(), t0);
        let mut s = YamuxSession::new(Side::Server, SessionConfig::default(), t0);
        let id = c.open().unwrap();
        let total: usize = chunks.iter().sum();
        let mut queue: Vec<Bytes> = chunks
            .iter()
            .enumerate()
            .map(|(i, n)| Bytes::from(vec![i as u8; *n]))
            .collect();
        queue.reverse();
        let mut expect = Vec::with_capacity(total);
        for (i, n) in chunks.iter().enumerate() {
            expect.extend(std::iter::repeat_n(i as u8, *n));
        }
        let mut got = Vec::with_capacity(total);
        let mut accepted = false;
        let mut round = 0;
        while got.len() < total {
            round += 1;
            prop_assert!(round < 10_000, "stalled at {} of {}", got.len(), total);
            while let Some(mut next) = queue.pop() {
                c.send(id, &mut next).unwrap();
                if !next.is_empty() {
                    queue.push(next);
                    break;
                }
            }
            if queue.is_empty() {
                c.close_write(id);
            }
            while let Some(t) = c.poll_transmit() {
                c.on_transmitted(t.len());
                let n = s.handle_header(t.header(), t0).unwrap();
                if n > 0 {
                    s.handle_body(t.body).unwrap();
                }
            }
            if !accepted {
                prop_assert_eq!(s.accept(), Some(id));
                accepted = true;
            }
            for _ in 0..=reads[round % reads.len()] {
                match s.recv(id).unwrap() {
                    Recv::Data(b) => got.extend_from_slice(&b),
                    Recv::Finished | Recv::Blocked => break,
                }
            }
            let mut out = Vec::new();
            while let Some(t) = s.poll_transmit() {
                s.on_transmitted(t.len());
                out.extend_from_slice(t.header());
                out.extend_from_slice(&t.body);
            }
            prop_assert_eq!(c.handle_bytes(&out, t0).unwrap(), out.len());
            while c.poll_event().is_some() {}
            while s.poll_event().is_some() {}
        }
        prop_assert!(got == expect);
        prop_assert_eq!(s.recv(id).unwrap(), Recv::Finished);
        prop_assert_eq!(c.bytes().1, total as u64);
        prop_assert_eq!(s.bytes().0, total as u64);
    }
}
