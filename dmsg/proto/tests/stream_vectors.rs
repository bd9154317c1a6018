//! stream_objects.json: gob encoding (both type-id forms), decoding by name, signatures,
//! ReqHash binding, negative objects, session framing.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use dmsg_proto::ErrorCode;
use dmsg_proto::record::{self, Opener, ReplayPolicy, Sealer};
use dmsg_proto::stream::{
    Addr, RequestContext, RequestPolicy, SignedObject, StreamRequest, StreamResponse, TypeIds,
    verify_request, verify_response,
};
use dmsg_proto::yamux::{self, Flags, Frame, FrameType, Header};
use serde_json::Value;

fn request_from(f: &Value) -> StreamRequest {
    StreamRequest {
        timestamp: f["Timestamp"].as_i64().unwrap(),
        src: Addr {
            pk: pk(f, "SrcAddr.PK"),
            port: u(f, "SrcAddr.Port") as u16,
        },
        dst: Addr {
            pk: pk(f, "DstAddr.PK"),
            port: u(f, "DstAddr.Port") as u16,
        },
        noise_msg: hx(f, "NoiseMsg"),
    }
}

fn response_from(f: &Value) -> StreamResponse {
    StreamResponse {
        req_hash: h32(f, "ReqHash"),
        accepted: f["Accepted"].as_bool().unwrap(),
        err_code: u(f, "ErrCode") as u16,
        noise_msg: hx(f, "NoiseMsg"),
    }
}

fn signed(v: &Value) -> SignedObject {
    SignedObject::from_bytes(&hx(v, "signed_object_hex")).unwrap()
}

#[test]
fn request_gob_and_signature() {
    let v = load("stream_objects.json");
    let r = &v["request"];
    let req = request_from(&r["fields"]);
    let gob = req.to_gob(TypeIds { first: 65 });
    assert_eq!(hex::encode(&gob), s(r, "gob_hex"));
    assert_eq!(gob.len() as u64, u(r, "gob_len"));
    assert_eq!(StreamRequest::from_gob(&gob).unwrap(), req);
    // the noise message is KK message 0
    let kk = load("noise_kk.json");
    assert_eq!(req.noise_msg, hx(&kk["messages"][0], "noise_message_hex"));
    // annotated byte ranges cover the gob exactly
    let mut off = 0;
    for a in r["gob_annotated"].as_array().unwrap() {
        assert_eq!(u(a, "off") as usize, off);
        let part = hx(a, "hex");
        assert_eq!(&gob[off..off + part.len()], &part[..]);
        off += part.len();
    }
    assert_eq!(off, gob.len());
    let obj = signed(r);
    assert_eq!(obj.gob(), &gob[..]);
    assert_eq!(hex::encode(obj.sig().as_bytes()), s(r, "sig"));
    assert_eq!(
        hex::encode(keys::sha256(&gob)),
        s(r, "signed_hash_sha256_of_gob")
    );
    assert_eq!(hex::encode(obj.hash()), s(r, "signed_object_sha256"));
    assert_eq!(obj.as_bytes().len() as u64, u(r, "signed_object_len"));
    assert_eq!(pk(r, "signer_pk"), req.src.pk);
    let ctx = RequestContext {
        session_pk: Some(req.src.pk),
        local_pk: Some(req.dst.pk),
    };
    assert_eq!(
        verify_request(&obj, &RequestPolicy::at(req.timestamp), &ctx).unwrap(),
        req
    );
    assert!(r["go_verify_error"].is_null());
    // reference rule: the timestamp must exceed the last one seen
    let mut p = RequestPolicy::reference();
    p.last_timestamp = req.timestamp;
    let e = verify_request(&obj, &p, &ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        s(r, "go_verify_error_when_last_timestamp_equals_timestamp")
    );
    // our freshness window refuses the 2023 request today
    let e = verify_request(&obj, &RequestPolicy::at(1_795_000_000_000_000_000), &ctx).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ReqInvalidTimestamp);
    // a Rust-signed request verifies under the same rules
    let ours = req.sign(&named_sk("alice"), TypeIds::default());
    verify_request(&ours, &RequestPolicy::at(req.timestamp), &ctx).unwrap();
}

#[test]
fn responses() {
    let v = load("stream_objects.json");
    let req_obj = signed(&v["request"]);
    let req = StreamRequest::from_gob(req_obj.gob()).unwrap();
    for (name, want) in [
        ("response_accepted", None),
        (
            "response_rejected_with_code",
            Some(ErrorCode::ReqNoListener),
        ),
        (
            "response_rejected_without_code",
            Some(ErrorCode::RespNotAccepted),
        ),
    ] {
        let r = &v[name];
        let resp = response_from(&r["fields"]);
        assert_eq!(resp.req_hash, req_obj.hash(), "{name}");
        let gob = resp.to_gob(TypeIds { first: 68 });
        assert_eq!(hex::encode(&gob), s(r, "gob_hex"), "{name}");
        assert_eq!(gob.len() as u64, u(r, "gob_len"));
        assert_eq!(StreamResponse::from_gob(&gob).unwrap(), resp);
        let obj = signed(r);
        assert_eq!(obj.gob(), &gob[..]);
        assert_eq!(hex::encode(obj.hash()), s(r, "signed_object_sha256"));
        assert_eq!(pk(r, "signer_pk"), req.dst.pk);
        match (verify_response(&obj, &req_obj, &req), want) {
            (Ok(got), None) => assert_eq!(got, resp),
            (Err(e), Some(code)) => {
                assert_eq!(e.code(), code, "{name}");
                assert_eq!(Some(e.to_string().as_str()), r["go_verify_error"].as_str());
            }
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
    let kk = load("noise_kk.json");
    assert_eq!(
        response_from(&v["response_accepted"]["fields"]).noise_msg,
        hx(&kk["messages"][1], "noise_message_hex")
    );
    // a Rust-signed response verifies
    let resp = response_from(&v["response_accepted"]["fields"]);
    let ours = resp.sign(&named_sk("bob"), TypeIds::default());
    assert_eq!(verify_response(&ours, &req_obj, &req).unwrap(), resp);
}

#[test]
fn type_id_variance_and_fixed_examples() {
    let v = load("stream_objects.json");
    let tv = &v["type_id_variance"];
    let first = &tv["response_encoded_first_in_fresh_process"];
    let resp = response_from(&v["response_accepted"]["fields"]);
    let g65 = resp.to_gob(TypeIds { first: 65 });
    assert_eq!(
        hex::encode(&g65),
        s(first, "response_gob_hex_when_encoded_first")
    );
    assert_eq!(
        hex::encode(&g65),
        s(
            &tv["responder_process_that_decoded_the_request_first"],
            "response_gob_hex"
        )
    );
    assert_eq!(StreamResponse::from_gob(&g65).unwrap(), resp);
    let mut off = 0;
    for a in first["response_gob_annotated"].as_array().unwrap() {
        let part = hx(a, "hex");
        assert_eq!(&g65[off..off + part.len()], &part[..]);
        off += part.len();
    }
    assert_eq!(off, g65.len());
    let req = request_from(&v["request"]["fields"]);
    let g67 = req.to_gob(TypeIds { first: 67 });
    assert_eq!(
        hex::encode(&g67),
        s(first, "request_gob_hex_when_encoded_second")
    );
    assert_eq!(StreamRequest::from_gob(&g67).unwrap(), req);
    for ex in v["deterministic_gob_examples"]["examples"]
        .as_array()
        .unwrap()
    {
        let resp = response_from(&ex["fields"]);
        assert_eq!(
            hex::encode(resp.req_hash),
            hex::encode(keys::sha256(b"dmsg-test-vectors/v1/fixed-req-hash"))
        );
        let gob = hx(ex, "gob_hex");
        assert_eq!(StreamResponse::from_gob(&gob).unwrap(), resp);
        let first = if gob[1..3] == [0xff, 0x81] { 65 } else { 68 };
        assert_eq!(resp.to_gob(TypeIds { first }), gob, "{}", s(ex, "label"));
    }
    // decoding never depends on the ids: a request is not a response and vice versa
    assert!(StreamResponse::from_gob(&g67).is_err());
    assert!(StreamRequest::from_gob(&g65).is_err());
}

#[test]
fn negatives_are_refused() {
    let v = load("stream_objects.json");
    let req_obj = signed(&v["request"]);
    let req = StreamRequest::from_gob(req_obj.gob()).unwrap();
    let negs = v["negative"].as_array().unwrap();
    assert_eq!(negs.len(), 5);
    for n in negs {
        let label = s(n, "label");
        let go_err = s(n, "go_verify_error");
        // "dmsg error NNN - ..."
        let code: u16 = go_err[11..14].parse().unwrap();
        let obj = SignedObject::from_bytes(&hx(n, "signed_object_hex")).unwrap();
        let err = if label.starts_with("request") {
            verify_request(
                &obj,
                &RequestPolicy::reference(),
                &RequestContext::default(),
            )
            .unwrap_err()
        } else {
            verify_response(&obj, &req_obj, &req).unwrap_err()
        };
        assert_eq!(err.code().as_u16(), code, "{label}: {err}");
        assert!(go_err.starts_with(&err.to_string()), "{label}: {err}");
    }
}

#[test]
fn session_framing() {
    let v = load("stream_objects.json");
    let sf = &v["session_framing"];
    for (part, obj_name) in [
        ("request_client_to_server", "request"),
        ("response_server_to_client", "response_accepted"),
    ] {
        let f = &sf[part];
        let obj = hx(&v[obj_name], "signed_object_hex");
        let key = h32(f, "session_key_used");
        let mut sealer = Sealer::new(&key);
        assert_eq!(sealer.next_nonce(), u(f, "nonce"));
        let mut out = Vec::new();
        sealer.seal_record(&obj, &mut out).unwrap();
        assert_eq!(hex::encode(&out), s(f, "bytes_written_to_yamux_stream_hex"));
        assert_eq!(out.len() as u64, u(f, "len"));
        let (body, _) = record::read_frame(&out).unwrap().unwrap();
        assert_eq!(body.len() as u64, u(f, "len_prefix"));
        assert_eq!(hex::encode(&body[8..]), s(f, "ciphertext_and_tag_hex"));
        let mut tcp = Vec::new();
        Frame::Data {
            stream_id: 1,
            flags: Flags::NONE,
            body: &out,
        }
        .encode(&mut tcp);
        assert_eq!(hex::encode(&tcp[..12]), s(f, "yamux_header_hex"));
        assert_eq!(hex::encode(&tcp), s(f, "tcp_bytes_hex"));
        let (frame, used) = yamux::decode_frame(&tcp, yamux::DEFAULT_WINDOW)
            .unwrap()
            .unwrap();
        assert_eq!(used, tcp.len());
        assert_eq!(
            frame.header(),
            Header::new(FrameType::Data, Flags::NONE, 1, out.len() as u32)
        );
        let mut opener = Opener::new(&key, ReplayPolicy::Window);
        assert_eq!(opener.open(body).unwrap(), obj);
    }
}
