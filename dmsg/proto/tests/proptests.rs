//! Property tests: encode→decode round trips for every codec, and "never panics" on arbitrary
//! bytes for every decoder.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::OnceLock;

use dmsg_proto::disc::{ClientInfo, Entry, ServerInfo};
use dmsg_proto::gob;
use dmsg_proto::noise::{HandshakeState, Pattern, Role};
use dmsg_proto::record::{self, Opener, ReplayPolicy, ReplayWindow, Sealer};
use dmsg_proto::stream::{Addr, SignedObject, StreamRequest, StreamResponse, TypeIds};
use dmsg_proto::yamux::{self, Flags, Frame, FrameType, GoAwayCode, Header};
use keys::{PubKey, SecKey};
use proptest::prelude::*;

fn pool() -> &'static Vec<SecKey> {
    static P: OnceLock<Vec<SecKey>> = OnceLock::new();
    P.get_or_init(|| (0..4u8).map(|i| SecKey::from_seed(&[b'p', i])).collect())
}

fn any_pk() -> impl Strategy<Value = PubKey> {
    prop_oneof![
        (0..4usize).prop_map(|i| pool()[i].pubkey()),
        Just(PubKey::NULL),
    ]
}

fn any_addr() -> impl Strategy<Value = Addr> {
    (any_pk(), any::<u16>()).prop_map(|(pk, port)| Addr { pk, port })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn gob_uint_int_round_trip(u in any::<u64>(), i in any::<i64>()) {
        let mut b = Vec::new();
        gob::put_uint(&mut b, u);
        gob::put_int(&mut b, i);
        let mut r = gob::Reader::new(&b);
        prop_assert_eq!(r.uint().unwrap(), u);
        prop_assert_eq!(r.int().unwrap(), i);
        prop_assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn stream_request_round_trip(
        timestamp in any::<i64>(),
        src in any_addr(),
        dst in any_addr(),
        noise_msg in proptest::collection::vec(any::<u8>(), 0..200),
        first in 65i64..100_000,
    ) {
        let req = StreamRequest { timestamp, src, dst, noise_msg };
        let g = req.to_gob(TypeIds { first });
        prop_assert_eq!(StreamRequest::from_gob(&g).unwrap(), req);
    }

    #[test]
    fn stream_response_round_trip(
        req_hash in any::<[u8; 32]>(),
        accepted in any::<bool>(),
        err_code in any::<u16>(),
        noise_msg in proptest::collection::vec(any::<u8>(), 0..200),
        first in 65i64..100_000,
    ) {
        let resp = StreamResponse { req_hash, accepted, err_code, noise_msg };
        let g = resp.to_gob(TypeIds { first });
        prop_assert_eq!(StreamResponse::from_gob(&g).unwrap(), resp);
    }

    #[test]
    fn gob_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = gob::decode(&b);
        let _ = StreamRequest::from_gob(&b);
        let _ = StreamResponse::from_gob(&b);
        if let Ok(o) = SignedObject::from_bytes(&b) {
            let _ = o.hash();
        }
    }

    #[test]
    fn gob_mutated_objects_never_panic(
        idx in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        which in any::<bool>(),
    ) {
        let k = &pool()[0];
        let req = StreamRequest {
            timestamp: 5,
            src: Addr { pk: k.pubkey(), port: 1 },
            dst: Addr { pk: k.pubkey(), port: 2 },
            noise_msg: vec![7; 49],
        };
        let mut g = if which {
            req.to_gob(TypeIds::default())
        } else {
            StreamResponse { req_hash: [0x99; 32], accepted: true, err_code: 0, noise_msg: vec![1; 49] }
                .to_gob(TypeIds::default())
        };
        let i = idx.index(g.len());
        g[i] = byte;
        let _ = StreamRequest::from_gob(&g);
        let _ = StreamResponse::from_gob(&g);
    }

    #[test]
    fn record_round_trip(
        key in any::<[u8; 32]>(),
        writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..9000), 1..4),
        policy in prop_oneof![Just(ReplayPolicy::Window), Just(ReplayPolicy::Increasing), Just(ReplayPolicy::Strict)],
    ) {
        let mut s = Sealer::new(&key);
        let mut o = Opener::new(&key, policy);
        for w in writes {
            let mut wire = Vec::new();
            s.seal_write(&w, &mut wire).unwrap();
            let mut rest = &wire[..];
            let mut got = Vec::new();
            while let Some((body, used)) = record::read_frame(rest).unwrap() {
                prop_assert!(used <= record::MAX_FRAME);
                o.open_into(body, &mut got).unwrap();
                rest = &rest[used..];
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(got, w);
        }
    }

    #[test]
    fn record_decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = record::read_frame(&b);
        let mut o = Opener::new(&[3u8; 32], ReplayPolicy::Window);
        prop_assert!(o.open(&b).is_err());
        prop_assert_eq!(o.last_nonce(), 0);
    }

    #[test]
    fn replay_window_matches_model(nonces in proptest::collection::vec(
        prop_oneof![0u64..3000, any::<u64>()], 1..300)
    ) {
        let mut w = ReplayWindow::default();
        let mut seen = HashSet::new();
        let mut max = 0u64;
        for n in nonces {
            let model = n != 0 && !seen.contains(&n) && (n > max || max - n < record::WINDOW_SIZE);
            prop_assert_eq!(w.accept(n).is_ok(), model, "nonce {}", n);
            if model {
                seen.insert(n);
                max = max.max(n);
            }
        }
    }

    #[test]
    fn yamux_round_trip(
        ty in 0u8..4,
        flags in any::<u16>(),
        stream_id in any::<u32>(),
        length in any::<u32>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let ty = FrameType::from_u8(ty).unwrap();
        let h = Header::new(ty, Flags(flags), stream_id, length);
        prop_assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let f = match ty {
            FrameType::Data => Frame::Data { stream_id, flags: Flags(flags), body: &body },
            FrameType::WindowUpdate => Frame::WindowUpdate { stream_id, flags: Flags(flags), delta: length },
            FrameType::Ping => Frame::Ping { flags: Flags(flags), opaque: length },
            FrameType::GoAway => Frame::GoAway { flags: Flags(flags), code: match length % 3 {
                0 => GoAwayCode::Normal, 1 => GoAwayCode::ProtocolError, _ => GoAwayCode::InternalError } },
        };
        let mut out = Vec::new();
        f.encode(&mut out);
        let (g, used) = yamux::decode_frame(&out, yamux::DEFAULT_WINDOW).unwrap().unwrap();
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(g, f);
    }

    #[test]
    fn yamux_decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100), max in any::<u32>()) {
        let _ = yamux::decode_frame(&b, max);
    }

    #[test]
    fn entry_round_trip(
        version in ".{0,12}",
        sequence in any::<u64>(),
        timestamp in any::<i64>(),
        static_pk in any_pk(),
        client in proptest::option::of(proptest::option::of(proptest::collection::vec(any_pk(), 0..4))),
        server in proptest::option::of((".{0,20}", any::<i64>())),
        sig in "[0-9a-fA-F]{0,130}",
        protocol in "(smux)?",
    ) {
        let e = Entry {
            version, sequence, timestamp, static_pk,
            client: client.map(|d| ClientInfo { delegated_servers: d }),
            server: server.map(|(address, available_sessions)| ServerInfo { address, available_sessions }),
            signature: sig,
            protocol,
        };
        let back = Entry::from_json(e.canonical_json().as_bytes()).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.signed_json(), e.signed_json());
    }

    #[test]
    fn entry_decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(e) = Entry::from_json(&b) {
            let _ = e.verify_signature();
            let _ = e.validate(Some(0));
        }
    }

    #[test]
    fn entry_decoder_never_panics_on_json_text(s in r#"[{}\[\]",:0-9a-z\\ ]{0,200}"#) {
        let _ = Entry::from_json(s.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn handshake_round_trip(a in 0..4usize, b in 0..4usize, kk in any::<bool>(),
                            data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let p = if kk { Pattern::KK } else { Pattern::XK };
        let (sa, sb) = (pool()[a].clone(), pool()[b].clone());
        let ipk = sa.pubkey();
        let mut i = HandshakeState::new(p, Role::Initiator, sa, Some(sb.pubkey())).unwrap();
        let mut r = HandshakeState::new(p, Role::Responder, sb, Some(ipk)).unwrap();
        while !i.is_finished() {
            let (w, rd) = if i.is_my_turn() { (&mut i, &mut r) } else { (&mut r, &mut i) };
            let m = w.write_message().unwrap();
            let mut wire = Vec::new();
            record::write_frame(&m, &mut wire).unwrap();
            let (body, _) = record::read_frame(&wire).unwrap().unwrap();
            rd.read_message(body).unwrap();
        }
        let ki = i.into_transport().unwrap();
        let kr = r.into_transport().unwrap();
        prop_assert_eq!(kr.remote_static, ipk);
        let mut out = Vec::new();
        Sealer::new(&ki.send).seal_write(&data, &mut out).unwrap();
        if !data.is_empty() {
            let (body, _) = record::read_frame(&out).unwrap().unwrap();
            prop_assert_eq!(Opener::new(&kr.recv, ReplayPolicy::Strict).open(body).unwrap(), data);
        }
    }

    #[test]
    fn handshake_reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), kk in any::<bool>()) {
        let p = if kk { Pattern::KK } else { Pattern::XK };
        let mut r = HandshakeState::new(p, Role::Responder, pool()[1].clone(), Some(pool()[0].pubkey())).unwrap();
        prop_assert!(r.read_message(&b).is_err());
        let mut i = HandshakeState::new(p, Role::Initiator, pool()[0].clone(), Some(pool()[1].pubkey())).unwrap();
        let _ = i.write_message().unwrap();
        prop_assert!(i.read_message(&b).is_err());
    }
}
