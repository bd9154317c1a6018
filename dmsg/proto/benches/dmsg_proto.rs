//! Throughput figures for the protocol core, printed as plain text (one core, no threads):
//! XK handshakes per second (both sides), Noise record seal+open MB/s at 4096-byte records next
//! to raw ChaCha20-Poly1305 measured in the same run — both `ring` (what the records use) and the
//! RustCrypto `chacha20poly1305` crate (what they used before) — and gob encode/decode per
//! second.
//!
//! Run: `cargo bench -p skymesh-dmsg-proto` (bench profile = release).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use dmsg_proto::noise::{ChaChaPoly, HandshakeState, Pattern, Role, aead_nonce};
use dmsg_proto::record::{MAX_PLAINTEXT, Opener, ReplayPolicy, Sealer};
use dmsg_proto::stream::{Addr, StreamRequest, StreamResponse, TypeIds};
use keys::SecKey;

const RUN: Duration = Duration::from_secs(3);

/// Runs `f` repeatedly for about [`RUN`] and returns operations per second.
fn rate(mut f: impl FnMut()) -> f64 {
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let client = SecKey::from_seed(b"bench-client");
    let server = SecKey::from_seed(b"bench-server");
    let server_pk = server.pubkey();

    let hs = rate(|| {
        let mut i = HandshakeState::new(
            Pattern::XK,
            Role::Initiator,
            client.clone(),
            Some(server_pk),
        )
        .unwrap();
        let mut r =
            HandshakeState::new(Pattern::XK, Role::Responder, server.clone(), None).unwrap();
        let m1 = i.write_message().unwrap();
        r.read_message(&m1).unwrap();
        let m2 = r.write_message().unwrap();
        i.read_message(&m2).unwrap();
        let m3 = i.write_message().unwrap();
        r.read_message(&m3).unwrap();
        black_box((i.into_transport().unwrap(), r.into_transport().unwrap()));
    });
    println!("xk_handshake (initiator + responder, fresh ephemerals): {hs:.0} handshakes/s");

    // 4096-byte records: 4070 bytes of plaintext each.
    let key = [7u8; 32];
    let pt = vec![0xa5u8; MAX_PLAINTEXT];
    let mut sealer = Sealer::new(&key);
    let mut opener = Opener::new(&key, ReplayPolicy::Window);
    let mut wire = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    let rec = rate(|| {
        wire.clear();
        sealer.seal_record(&pt, &mut wire).unwrap();
        out.clear();
        opener.open_into(&wire[2..], &mut out).unwrap();
        black_box(&out);
    });
    let rec_mbs = rec * MAX_PLAINTEXT as f64 / 1e6;

    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
    let mut buf = pt.clone();
    let mut n = 0u64;
    let raw = rate(|| {
        n += 1;
        let nonce = aead_nonce(n);
        let tag = cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[], &mut buf)
            .unwrap();
        cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &[], &mut buf, &tag)
            .unwrap();
        black_box(&buf);
    });
    let raw_mbs = raw * MAX_PLAINTEXT as f64 / 1e6;
    let ring_key = ChaChaPoly::new(&key);
    let mut n = 0u64;
    let ring_raw = rate(|| {
        n += 1;
        let tag = ring_key.seal_in_place(n, &[], &mut buf).unwrap();
        ring_key.open_in_place(n, &[], &mut buf, &tag).unwrap();
        black_box(&buf);
    });
    let ring_mbs = ring_raw * MAX_PLAINTEXT as f64 / 1e6;
    println!(
        "record seal+open (4096-byte records, 4070 B plaintext, window replay check): {rec_mbs:.1} MB/s"
    );
    println!(
        "raw ChaCha20-Poly1305 encrypt+decrypt, 4070 B, same run: ring {ring_mbs:.1} MB/s, RustCrypto chacha20poly1305 {raw_mbs:.1} MB/s (ring/RustCrypto {:.2}x)",
        ring_mbs / raw_mbs
    );
    println!("ratio record/raw ring: {:.3}", rec_mbs / ring_mbs);

    let req = StreamRequest {
        timestamp: 1_700_000_000_123_456_789,
        src: Addr {
            pk: client.pubkey(),
            port: 49153,
        },
        dst: Addr {
            pk: server_pk,
            port: 80,
        },
        noise_msg: vec![3; 49],
    };
    let resp = StreamResponse {
        req_hash: [0x96; 32],
        accepted: true,
        err_code: 0,
        noise_msg: vec![3; 49],
    };
    let enc_req = rate(|| {
        black_box(req.to_gob(TypeIds::default()));
    });
    let req_gob = req.to_gob(TypeIds::default());
    let dec_req = rate(|| {
        black_box(StreamRequest::from_gob(&req_gob).unwrap());
    });
    let enc_resp = rate(|| {
        black_box(resp.to_gob(TypeIds::default()));
    });
    let resp_gob = resp.to_gob(TypeIds::default());
    let dec_resp = rate(|| {
        black_box(StreamResponse::from_gob(&resp_gob).unwrap());
    });
    println!(
        "gob StreamRequest ({} B): encode {enc_req:.0}/s, decode {dec_req:.0}/s",
        req_gob.len()
    );
    println!(
        "gob StreamResponse ({} B): encode {enc_resp:.0}/s, decode {dec_resp:.0}/s",
        resp_gob.len()
    );
}
