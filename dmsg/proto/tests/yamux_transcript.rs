//! yamux.json and session_transcript.json: every header re-encodes; the whole session parses,
//! handshakes, and every Data frame decrypts to the expected objects and plaintexts.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use dmsg_proto::noise::{HandshakeState, Pattern, Role};
use dmsg_proto::record::{self, Opener, ReplayPolicy};
use dmsg_proto::stream::{
    RequestContext, RequestPolicy, SignedObject, verify_request, verify_response,
};
use dmsg_proto::yamux::{self, Flags, Frame, FrameType, GoAwayCode, Header};
use serde_json::Value;

fn type_of(v: &Value) -> u8 {
    s(v, "type")[..1].parse().unwrap()
}

#[test]
fn yamux_headers() {
    let v = load("yamux.json");
    let c = &v["default_config"];
    assert_eq!(
        u(c, "AcceptBacklog") as usize,
        yamux::DEFAULT_ACCEPT_BACKLOG
    );
    assert_eq!(u(c, "MaxStreamWindowSize") as u32, yamux::DEFAULT_WINDOW);
    assert_eq!(u(c, "initial_stream_window") as u32, yamux::DEFAULT_WINDOW);
    assert_eq!(
        u(c, "KeepAliveInterval_seconds"),
        yamux::DEFAULT_KEEPALIVE_SECS
    );
    assert_eq!(
        u(c, "ConnectionWriteTimeout_seconds"),
        yamux::DEFAULT_WRITE_TIMEOUT_SECS
    );
    assert_eq!(
        u(c, "StreamCloseTimeout_seconds"),
        yamux::DEFAULT_STREAM_CLOSE_TIMEOUT_SECS
    );
    assert_eq!(
        u(c, "StreamOpenTimeout_seconds"),
        yamux::DEFAULT_STREAM_OPEN_TIMEOUT_SECS
    );
    let mut c2s = 0u64;
    let mut s2c = 0u64;
    for f in v["frames"].as_array().unwrap() {
        let hb: [u8; 12] = hx(f, "header_hex").try_into().unwrap();
        let h = Header::decode(&hb).unwrap();
        assert_eq!(h.ty as u8, type_of(f));
        assert_eq!(h.flags.0 as u64, u(f, "flags"));
        assert_eq!(h.stream_id as u64, u(f, "stream_id"));
        assert_eq!(h.length as u64, u(f, "length"));
        assert_eq!(h.encode(), hb);
        let names: Vec<&str> = f["flag_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        for (flag, name) in [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ] {
            assert_eq!(h.flags.contains(flag), names.contains(&name));
        }
        // whole frame through the decoder
        let body: Vec<u8> = match (f["body_hex"].as_str(), f["body_len"].as_u64()) {
            (Some(b), _) => hex::decode(b).unwrap(),
            (None, Some(n)) => vec![0u8; n as usize],
            _ => Vec::new(),
        };
        let mut bytes = hb.to_vec();
        bytes.extend_from_slice(&body);
        let (frame, used) = yamux::decode_frame(&bytes, yamux::DEFAULT_WINDOW)
            .unwrap()
            .unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(frame.header(), h);
        let mut re = Vec::new();
        frame.encode(&mut re);
        assert_eq!(re, bytes);
        if h.ty == FrameType::GoAway {
            assert_eq!(
                frame,
                Frame::GoAway {
                    flags: Flags::NONE,
                    code: GoAwayCode::Normal
                }
            );
        }
        // stream ids: odd from the client, even from the server, 0 for the session
        if h.ty == FrameType::WindowUpdate && h.flags.contains(Flags::SYN) {
            let odd = h.stream_id % 2 == 1;
            assert_eq!(odd, s(f, "direction") == "client->server");
        }
        if s(f, "direction") == "client->server" {
            c2s += bytes.len() as u64;
        } else {
            s2c += bytes.len() as u64;
        }
    }
    assert_eq!(c2s, u(&v, "client_to_server_len"));
    assert_eq!(s2c, u(&v, "server_to_client_len"));
}

/// Parsed content of one direction of the session.
struct Side {
    handshake: Vec<Vec<u8>>,
    frames: Vec<(Header, Vec<u8>)>,
}

fn split_stream(bytes: &[u8], n_handshake: usize) -> Side {
    let mut rest = bytes;
    let mut handshake = Vec::new();
    for _ in 0..n_handshake {
        let (body, used) = record::read_frame(rest).unwrap().unwrap();
        handshake.push(body.to_vec());
        rest = &rest[used..];
    }
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let (f, used) = yamux::decode_frame(rest, yamux::DEFAULT_WINDOW)
            .unwrap()
            .unwrap();
        let body = match f {
            Frame::Data { body, .. } => body.to_vec(),
            _ => Vec::new(),
        };
        frames.push((f.header(), body));
        rest = &rest[used..];
    }
    Side { handshake, frames }
}

#[test]
fn session_transcript() {
    let t = load("session_transcript.json");
    let xk = load("noise_xk.json");
    let kk = load("noise_kk.json");
    let so = load("stream_objects.json");
    let c2s = split_stream(&hx(&t, "client_to_server_hex"), 2);
    let s2c = split_stream(&hx(&t, "server_to_client_hex"), 1);

    // Handshake: the Rust server (responder) processes the client's Go messages and answers
    // with the same bytes the Go server sent; the Rust client does the mirror image.
    let i = &xk["initiator"];
    let r = &xk["responder"];
    let mut server = HandshakeState::new(Pattern::XK, Role::Responder, sk(r, "static_sk"), None)
        .unwrap()
        .with_ephemeral(sk(r, "ephemeral_sk"));
    let mut client = HandshakeState::new(
        Pattern::XK,
        Role::Initiator,
        sk(i, "static_sk"),
        Some(pk(&t, "server_static_pk")),
    )
    .unwrap()
    .with_ephemeral(sk(i, "ephemeral_sk"));
    server.read_message(&c2s.handshake[0]).unwrap();
    assert_eq!(server.write_message().unwrap(), s2c.handshake[0]);
    assert_eq!(client.write_message().unwrap(), c2s.handshake[0]);
    client.read_message(&s2c.handshake[0]).unwrap();
    assert_eq!(client.write_message().unwrap(), c2s.handshake[1]);
    server.read_message(&c2s.handshake[1]).unwrap();
    let sk_ = server.into_transport().unwrap();
    let ck = client.into_transport().unwrap();
    assert_eq!(sk_.remote_static, pk(&t, "client_static_pk"));
    let xk_keys = &t["xk_keys"];
    assert_eq!(ck.send, h32(xk_keys, "client_send_key"));
    assert_eq!(sk_.send, h32(xk_keys, "server_send_key"));
    let kk_keys = &t["kk_keys"];
    assert_eq!(
        h32(kk_keys, "alice_send_key"),
        h32(&kk["split"], "initiator_send_key")
    );
    assert_eq!(
        h32(kk_keys, "bob_send_key"),
        h32(&kk["split"], "responder_send_key")
    );

    // Handshake events match the framed messages.
    let events = t["events"].as_array().unwrap();
    let hs_events: Vec<&Value> = events.iter().filter(|e| e["kind"].is_string()).collect();
    assert_eq!(hs_events.len(), 3);

    // yamux frames, in capture order per direction, equal the events.
    let mut ev_c2s = events
        .iter()
        .filter(|e| e["type"].is_string() && s(e, "direction") == "client->server");
    for (h, body) in &c2s.frames {
        let e = ev_c2s.next().unwrap();
        assert_eq!(hex::encode(h.encode()), s(e, "header_hex"));
        assert_eq!(hex::encode(body), e["body_hex"].as_str().unwrap_or(""));
    }
    assert!(ev_c2s.next().is_none());
    let mut ev_s2c = events
        .iter()
        .filter(|e| e["type"].is_string() && s(e, "direction") == "server->client");
    for (h, body) in &s2c.frames {
        let e = ev_s2c.next().unwrap();
        assert_eq!(hex::encode(h.encode()), s(e, "header_hex"));
        assert_eq!(hex::encode(body), e["body_hex"].as_str().unwrap_or(""));
    }
    assert!(ev_s2c.next().is_none());

    // Decrypt every Data frame: the first on each side is the session object, the second a
    // KK stream record.
    let data = |side: &Side| -> Vec<Vec<u8>> {
        side.frames
            .iter()
            .filter(|(h, _)| h.ty == FrameType::Data)
            .map(|(h, b)| {
                assert_eq!(h.stream_id, 1);
                b.clone()
            })
            .collect()
    };
    let (d_c2s, d_s2c) = (data(&c2s), data(&s2c));
    assert_eq!((d_c2s.len(), d_s2c.len()), (2, 2));

    let open_one = |bytes: &[u8], key: [u8; 32], policy: ReplayPolicy| -> Vec<u8> {
        let (body, used) = record::read_frame(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "one record per Data frame");
        Opener::new(&key, policy).open(body).unwrap()
    };
    // session objects with the XK keys
    let req_bytes = open_one(&d_c2s[0], sk_.recv, ReplayPolicy::Window);
    assert_eq!(req_bytes, hx(&so["request"], "signed_object_hex"));
    let resp_bytes = open_one(&d_s2c[0], ck.recv, ReplayPolicy::Window);
    assert_eq!(
        resp_bytes,
        hx(&so["response_accepted"], "signed_object_hex")
    );
    let req_obj = SignedObject::from_bytes(&req_bytes).unwrap();
    let req = verify_request(
        &req_obj,
        &RequestPolicy::reference(),
        &RequestContext {
            session_pk: Some(sk_.remote_static),
            local_pk: None,
        },
    )
    .unwrap();
    let resp = verify_response(
        &SignedObject::from_bytes(&resp_bytes).unwrap(),
        &req_obj,
        &req,
    )
    .unwrap();

    // KK from the objects' noise messages, then the stream records
    let ki = &kk["initiator"];
    let kr = &kk["responder"];
    let mut alice = HandshakeState::new(
        Pattern::KK,
        Role::Initiator,
        sk(ki, "static_sk"),
        Some(req.dst.pk),
    )
    .unwrap()
    .with_ephemeral(sk(ki, "ephemeral_sk"));
    let mut bob = HandshakeState::new(
        Pattern::KK,
        Role::Responder,
        sk(kr, "static_sk"),
        Some(req.src.pk),
    )
    .unwrap()
    .with_ephemeral(sk(kr, "ephemeral_sk"));
    bob.read_message(&req.noise_msg).unwrap();
    assert_eq!(alice.write_message().unwrap(), req.noise_msg);
    assert_eq!(bob.write_message().unwrap(), resp.noise_msg);
    alice.read_message(&resp.noise_msg).unwrap();
    let ka = alice.into_transport().unwrap();
    let kb = bob.into_transport().unwrap();
    assert_eq!(ka.send, h32(kk_keys, "alice_send_key"));
    assert_eq!(kb.send, h32(kk_keys, "bob_send_key"));
    assert_eq!(
        open_one(&d_c2s[1], kb.recv, ReplayPolicy::Strict),
        b"hello bob, this is alice"
    );
    assert_eq!(
        open_one(&d_s2c[1], ka.recv, ReplayPolicy::Strict),
        b"hi alice, bob here"
    );

    // the rest: SYN/ACK open, ping SYN/ACK, FIN both ways, no GoAway
    let kinds = |side: &Side| -> Vec<(FrameType, u16)> {
        side.frames.iter().map(|(h, _)| (h.ty, h.flags.0)).collect()
    };
    assert_eq!(
        kinds(&c2s),
        vec![
            (FrameType::WindowUpdate, 1),
            (FrameType::Data, 0),
            (FrameType::Data, 0),
            (FrameType::Ping, 1),
            (FrameType::WindowUpdate, 4),
        ]
    );
    assert_eq!(
        kinds(&s2c),
        vec![
            (FrameType::WindowUpdate, 2),
            (FrameType::Data, 0),
            (FrameType::Data, 0),
            (FrameType::Ping, 2),
            (FrameType::WindowUpdate, 4),
        ]
    );
}
