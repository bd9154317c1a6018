//! The smux v2 codec and session (`dmsg_proto::mux::smux_frame`, `SmuxSession`): arbitrary bytes
//! become a script of peer input (frame bytes in arbitrary splits) interleaved with local calls
//! and clock ticks. Never panics, decoded frames re-encode to the same bytes, and the bounds
//! hold after every step: open streams ≤ `max_streams`, the write queue ≤ its hard limit (or the
//! session closed for it), the session receive buffer overshot by at most one frame, PSH frames
//! ≤ the frame size and within the peer's window.
#![no_main]

use std::time::{Duration, Instant};

use dmsg_proto::mux::smux_frame::{decode_frame, encode_frame};
use dmsg_proto::mux::{Bytes, CloseReason, Credit, Side, SmuxConfig, SmuxSession, StreamMux};
use libfuzzer_sys::fuzz_target;

const CFG: SmuxConfig = SmuxConfig {
    max_streams: 4,
    accept_backlog: 2,
    max_frame_size: 16 * 1024,
    max_receive_buffer: 64 * 1024,
    max_stream_buffer: 32 * 1024,
    write_high_water: 64 * 1024,
    write_hard_limit: 256 * 1024,
    keepalive_interval: Duration::from_secs(10),
    keepalive_timeout: Duration::from_secs(30),
};

fuzz_target!(|data: &[u8]| {
    // The codec alone: whatever decodes encodes back to the same bytes.
    if let Ok(Some((h, body, used))) = decode_frame(data) {
        let mut out = Vec::new();
        encode_frame(h.cmd, h.sid, body, &mut out).expect("a decoded frame encodes");
        assert_eq!(out, data[..used]);
    }
    let Some((&side, mut script)) = data.split_first() else {
        return;
    };
    let side = if side & 1 == 0 {
        Side::Server
    } else {
        Side::Client
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut s = SmuxSession::new(side, CFG, t0);
    let mut wire: Vec<u8> = Vec::new();
    while let Some((&op, rest)) = script.split_first() {
        script = rest;
        let arg = script.first().copied().unwrap_or(0);
        let id = u32::from(arg % 16);
        match op % 12 {
            // Peer bytes: the next `arg` bytes of the script, buffered until whole frames.
            0..=3 => {
                let body = script.get(1..).unwrap_or(&[]);
                let n = usize::from(arg).min(body.len());
                wire.extend_from_slice(&body[..n]);
                script = &body[n..];
                match s.handle_bytes(&wire, now) {
                    Ok(used) => {
                        wire.drain(..used);
                    }
                    Err(_) => {
                        assert_eq!(s.close_reason(), CloseReason::Protocol);
                        wire.clear();
                    }
                }
                continue;
            }
            4 => {
                let _ = s.open();
            }
            5 => {
                let _ = s.accept();
            }
            6 => {
                let _ = s.recv(id);
            }
            7 => {
                if let Ok(Credit::Window(w)) = s.send_credit(id) {
                    let mut body = Bytes::from(vec![0u8; usize::from(arg) * 1024]);
                    if let Ok(n) = s.send(id, &mut body) {
                        assert!(n <= w as usize && n <= CFG.max_frame_size);
                    }
                }
            }
            8 => s.close_write(id),
            9 => {
                if arg & 1 == 0 {
                    s.reset(id)
                } else {
                    s.forget(id)
                }
            }
            10 => {
                now += Duration::from_secs(u64::from(arg % 40));
                s.handle_timeout(now);
            }
            _ => {
                // The driver wrote `arg` frames.
                for _ in 0..arg {
                    let Some(t) = s.poll_transmit() else { break };
                    s.on_transmitted(t.len());
                }
                s.heartbeat();
            }
        }
        if !script.is_empty() {
            script = &script[1..];
        }
        while s.poll_event().is_some() {}
        assert!(s.num_streams() <= CFG.max_streams);
        assert!(
            s.queued_bytes() <= CFG.write_hard_limit || s.close_reason() == CloseReason::NotReading
        );
        assert!(s.receive_buffer_left() > -65536);
        if s.is_closed() {
            assert_eq!(s.num_streams(), 0);
            assert_eq!(s.poll_timeout(), None);
        }
    }
});
