//! noise_xk.json, noise_kk.json and ecdh.json against our Noise and record code.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use dmsg_proto::error::{HandshakeError, RecordError};
use dmsg_proto::noise::{self, HandshakeState, Pattern, Role, TransportKeys};
use dmsg_proto::record::{self, Opener, ReplayPolicy, Sealer};
use serde_json::Value;

fn states(v: &Value, pattern: Pattern) -> (HandshakeState, HandshakeState) {
    let i = &v["initiator"];
    let r = &v["responder"];
    let rs_for_resp = match pattern {
        Pattern::XK => None,
        Pattern::KK => Some(pk(i, "static_pk")),
    };
    assert!(r["remote_static_pk_known_before_handshake"].is_null() == (pattern == Pattern::XK));
    let ini = HandshakeState::new(
        pattern,
        Role::Initiator,
        sk(i, "static_sk"),
        Some(pk(i, "remote_static_pk_known_before_handshake")),
    )
    .unwrap()
    .with_ephemeral(sk(i, "ephemeral_sk"));
    let resp = HandshakeState::new(pattern, Role::Responder, sk(r, "static_sk"), rs_for_resp)
        .unwrap()
        .with_ephemeral(sk(r, "ephemeral_sk"));
    (ini, resp)
}

fn check_file(file: &str, pattern: Pattern) {
    let v = load(file);
    assert_eq!(
        s(&v, "protocol_name"),
        match pattern {
            Pattern::XK => noise::XK_NAME,
            Pattern::KK => noise::KK_NAME,
        }
    );
    assert_eq!(s(&v, "prologue_hex"), "");
    let (mut ini, mut resp) = states(&v, pattern);
    let init = &v["initial_state"];
    assert_eq!(
        keys::sha256(s(&v, "protocol_name").as_bytes()),
        h32(init, "h_from_protocol_name")
    );
    for st in [&ini, &resp] {
        assert_eq!(st.chaining_key(), h32(init, "ck"));
        assert_eq!(
            st.handshake_hash(),
            h32(init, "h_after_prologue_and_premessages")
        );
    }
    let msgs = v["messages"].as_array().unwrap();
    for m in msgs {
        let from_init = s(m, "direction") == "initiator->responder";
        let (w, r) = if from_init {
            (&mut ini, &mut resp)
        } else {
            (&mut resp, &mut ini)
        };
        assert!(w.is_my_turn() && !r.is_my_turn());
        let bytes = w.write_message().unwrap();
        assert_eq!(hex::encode(&bytes), s(m, "noise_message_hex"));
        assert_eq!(bytes.len() as u64, u(m, "noise_message_len"));
        assert_eq!(
            hex::encode(&bytes[bytes.len() - 16..]),
            s(&m["parts"], "encrypted_payload")
        );
        r.read_message(&bytes).unwrap();
        for st in [&*w, &*r] {
            assert_eq!(st.handshake_hash(), h32(m, "h_after"));
            assert_eq!(st.chaining_key(), h32(m, "ck_after"));
        }
    }
    assert!(ini.is_finished() && resp.is_finished());
    let ki = ini.into_transport().unwrap();
    let kr = resp.into_transport().unwrap();
    check_split(&v, &ki, &kr);
    check_transport(&v, &ki, &kr);
}

fn check_split(v: &Value, ki: &TransportKeys, kr: &TransportKeys) {
    let sp = &v["split"];
    assert_eq!(ki.handshake_hash, h32(v, "handshake_hash"));
    assert_eq!(kr.handshake_hash, h32(v, "handshake_hash"));
    assert_eq!(ki.send, h32(sp, "initiator_send_key"));
    assert_eq!(kr.send, h32(sp, "responder_send_key"));
    assert_eq!(ki.recv, kr.send);
    assert_eq!(kr.recv, ki.send);
    let k_of = |name: &str| h32(sp, name);
    assert_eq!(ki.send, k_of(s(sp, "initiator_send_key_is")));
    assert_eq!(kr.send, k_of(s(sp, "responder_send_key_is")));
    assert_eq!(ki.remote_static, pk(&v["responder"], "static_pk"));
    assert_eq!(kr.remote_static, pk(&v["initiator"], "static_pk"));
}

fn check_transport(v: &Value, ki: &TransportKeys, kr: &TransportKeys) {
    let t = &v["transport_readwriter"];
    for (dir, send, recv) in [
        ("initiator_to_responder", ki.send, kr.recv),
        ("responder_to_initiator", kr.send, ki.recv),
    ] {
        let mut sealer = Sealer::new(&send);
        let mut strict = Opener::new(&recv, ReplayPolicy::Strict);
        for f in t[dir].as_array().unwrap() {
            let pt = hx(f, "plaintext_hex");
            assert_eq!(sealer.next_nonce(), u(f, "nonce"));
            let mut out = Vec::new();
            sealer.seal_write(&pt, &mut out).unwrap();
            assert_eq!(hex::encode(&out), s(f, "wire_hex"));
            assert_eq!(out.len() as u64, u(f, "wire_len"));
            assert_eq!(
                hex::encode(noise::aead_nonce(u(f, "nonce"))),
                s(f, "chacha20poly1305_nonce_hex")
            );
            // the Go bytes decrypt on the other side
            let go = hx(f, "wire_hex");
            let (body, used) = record::read_frame(&go).unwrap().unwrap();
            assert_eq!(used, go.len());
            assert_eq!(body.len() as u64, u(f, "len_prefix"));
            assert_eq!(hex::encode(&body[8..]), s(f, "ciphertext_and_tag_hex"));
            assert_eq!(strict.open(body).unwrap(), pt);
            // a replay of the same Go record is refused
            assert!(matches!(strict.open(body), Err(RecordError::Replay { .. })));
        }
        if dir == "initiator_to_responder" {
            let ex = &t["split_write_example"];
            let n = u(ex, "plaintext_len") as usize;
            let pt: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            assert_eq!(hex::encode(keys::sha256(&pt)), s(ex, "plaintext_sha256"));
            let mut out = Vec::new();
            sealer.seal_write(&pt, &mut out).unwrap();
            let mut rest = &out[..];
            let mut got_pt = Vec::new();
            for f in ex["frames"].as_array().unwrap() {
                let (body, used) = record::read_frame(rest).unwrap().unwrap();
                let wire = &rest[..used];
                assert_eq!(used as u64, u(f, "wire_len"));
                assert_eq!(body.len() as u64, u(f, "len_prefix"));
                if let Some(h) = f["wire_sha256"].as_str() {
                    assert_eq!(hex::encode(keys::sha256(wire)), h);
                }
                if let Some(first) = f["wire_first_64_hex"].as_str() {
                    assert_eq!(hex::encode(&wire[..64]), first);
                    assert_eq!(
                        hex::encode(&wire[wire.len() - 32..]),
                        s(f, "wire_last_32_hex")
                    );
                } else {
                    assert_eq!(hex::encode(wire), s(f, "wire_hex"));
                }
                let p = strict.open(body).unwrap();
                match f["plaintext_sha256"].as_str() {
                    Some(h) => assert_eq!(hex::encode(keys::sha256(&p)), h),
                    None => assert_eq!(hex::encode(&p), s(f, "plaintext_hex")),
                }
                assert_eq!(strict.last_nonce(), u(f, "nonce"));
                got_pt.extend_from_slice(&p);
                rest = &rest[used..];
            }
            assert!(rest.is_empty());
            assert_eq!(got_pt, pt);
        }
    }
}

#[test]
fn xk_vectors() {
    check_file("noise_xk.json", Pattern::XK);
}

#[test]
fn kk_vectors() {
    check_file("noise_kk.json", Pattern::KK);
}

#[test]
fn xk_wire_frames() {
    let v = load("noise_xk.json");
    for (m, w) in v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(v["wire"].as_array().unwrap())
    {
        let mut out = Vec::new();
        record::write_frame(&hx(m, "noise_message_hex"), &mut out).unwrap();
        assert_eq!(hex::encode(&out), s(w, "wire_hex"));
        assert_eq!(out.len() as u64, u(w, "wire_len"));
        let (body, used) = record::read_frame(&out).unwrap().unwrap();
        assert_eq!((body.len() as u64, used), (u(w, "len_prefix"), out.len()));
    }
}

/// Each side alone against the Go messages of the other side.
fn one_side(file: &str, pattern: Pattern, role: Role) {
    let v = load(file);
    let (ini, resp) = states(&v, pattern);
    let mut st = if role == Role::Initiator { ini } else { resp };
    let mine = if role == Role::Initiator {
        "initiator->responder"
    } else {
        "responder->initiator"
    };
    for m in v["messages"].as_array().unwrap() {
        let go = hx(m, "noise_message_hex");
        if s(m, "direction") == mine {
            assert_eq!(st.write_message().unwrap(), go);
        } else {
            st.read_message(&go).unwrap();
        }
        assert_eq!(st.handshake_hash(), h32(m, "h_after"));
    }
    let k = st.into_transport().unwrap();
    let sp = &v["split"];
    let want = if role == Role::Initiator {
        "initiator_send_key"
    } else {
        "responder_send_key"
    };
    assert_eq!(k.send, h32(sp, want));
}

#[test]
fn each_side_alone() {
    for (f, p) in [
        ("noise_xk.json", Pattern::XK),
        ("noise_kk.json", Pattern::KK),
    ] {
        one_side(f, p, Role::Initiator);
        one_side(f, p, Role::Responder);
    }
}

#[test]
fn malformed_51_byte_handshake_message_is_an_error() {
    // The 2023 Go server panics on this: a 51-byte TCP message whose ephemeral key is not a
    // valid point (02 ‖ x with x ≥ p).
    let v = load("noise_xk.json");
    for bad_key in [
        {
            let mut k = vec![0x02];
            k.extend_from_slice(&[0xff; 32]);
            k
        },
        {
            let mut k = vec![0x02];
            k.extend_from_slice(&[0; 31]);
            k.push(5);
            k
        },
        vec![0u8; 33],
        {
            let mut k = vec![0x05];
            k.extend_from_slice(&[1; 32]);
            k
        },
    ] {
        let (_, mut resp) = states(&v, Pattern::XK);
        let mut msg = bad_key.clone();
        msg.extend_from_slice(&[0xaa; 16]);
        let mut wire = Vec::new();
        record::write_frame(&msg, &mut wire).unwrap();
        assert_eq!(wire.len(), 51);
        let (body, _) = record::read_frame(&wire).unwrap().unwrap();
        assert_eq!(resp.read_message(body), Err(HandshakeError::InvalidPeerKey));
        // the initiator refuses the same in message 2, and the KK responder in message 1
        let (mut ini, mut xr) = states(&v, Pattern::XK);
        let m0 = ini.write_message().unwrap();
        xr.read_message(&m0).unwrap();
        assert_eq!(ini.read_message(&msg), Err(HandshakeError::InvalidPeerKey));
        let kk = load("noise_kk.json");
        let (_, mut kr) = states(&kk, Pattern::KK);
        assert_eq!(kr.read_message(&msg), Err(HandshakeError::InvalidPeerKey));
    }
    // valid point but wrong tag, and short / long messages
    let (_, mut resp) = states(&v, Pattern::XK);
    let mut msg = hx(&v["messages"][0], "noise_message_hex");
    msg[40] ^= 1;
    assert_eq!(resp.read_message(&msg), Err(HandshakeError::Decrypt));
    let (_, mut resp) = states(&v, Pattern::XK);
    assert!(matches!(
        resp.read_message(&msg[..48]),
        Err(HandshakeError::TooShort { .. })
    ));
    let (_, mut resp) = states(&v, Pattern::XK);
    assert!(matches!(
        resp.read_message(&vec![2u8; noise::MAX_HANDSHAKE_MSG + 1]),
        Err(HandshakeError::TooLong { .. })
    ));
}

#[test]
fn ecdh_vectors_as_noise_dh() {
    let v = load("ecdh.json");
    assert_eq!(s(&v, "dh_name"), "Secp256k1");
    assert_eq!(u(&v, "dh_len") as usize, noise::DH_LEN);
    for p in v["pairs"].as_array().unwrap() {
        let ab = noise::dh(&sk(p, "a_sk"), &pk(p, "b_pk")).unwrap();
        let ba = noise::dh(&sk(p, "b_sk"), &pk(p, "a_pk")).unwrap();
        assert_eq!(hex::encode(ab), s(p, "noise_dh_output"));
        assert_eq!(hex::encode(ab), s(p, "noise_dh_a_sk_b_pk"));
        assert_eq!(hex::encode(ba), s(p, "noise_dh_b_sk_a_pk"));
        assert_eq!(hex::encode(&ab[..32]), s(p, "cipher_ecdh_sha256_of_point"));
        assert_eq!(
            hex::encode(keys::sha256(&hx(p, "shared_point_compressed"))),
            s(p, "cipher_ecdh_sha256_of_point")
        );
    }
}
