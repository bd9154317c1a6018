#![allow(clippy::unwrap_used)]
//! Items: signing, verification (incl. the DMSG vectors), target, encoding, decoder robustness.
use dht::item::{DELEGATION_TAG, ENCODING_VERSION, MAX_VALUE_LEN_LIMIT};
use dht::{DecodeError, Item, Salt, SeqClock, Target, Timestamp};
use keys::{PubKey, SecKey, Sig, sha256};
use proptest::prelude::*;
use serde_json::Value as Json;

fn sk(seed: &str) -> SecKey {
    SecKey::from_seed(seed.as_bytes())
}

fn salt(s: &str) -> Salt {
    Salt::new(s.as_bytes()).unwrap()
}

fn vectors() -> Json {
    let path = format!("{}/../dmsg/vectors/sign.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn s<'a>(v: &'a Json, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

/// secp256k1 group order.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

fn n_minus(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

/// The same mutations the DMSG negative vectors apply, applied to an item's signature.
fn mutations(sig: &Sig) -> Vec<(&'static str, Vec<u8>)> {
    let b = sig.as_bytes().to_vec();
    let mut r = b.clone();
    r[5] ^= 1;
    let mut sx = b.clone();
    sx[40] ^= 1;
    let mut rec = b.clone();
    rec[64] ^= 1;
    let mut rec4 = b.clone();
    rec4[64] += 4;
    let mut high = b.clone();
    high[32..64].copy_from_slice(&n_minus(&b[32..64]));
    high[64] ^= 1;
    vec![
        ("flipped_bit_in_r", r),
        ("flipped_bit_in_s", sx),
        ("wrong_recovery_id", rec),
        ("recovery_id_out_of_range", rec4),
        ("high_s_malleated", high),
    ]
}

#[test]
fn dmsg_sign_vectors_verify_with_the_item_primitive() {
    let v = vectors();
    let mut n = 0;
    for c in v["valid"].as_array().unwrap() {
        let msg = hex::decode(s(c, "message_hex")).unwrap();
        let pk = PubKey::from_hex(s(c, "signer_pk")).unwrap();
        let sig = Sig::from_hex(s(c, "sig")).unwrap();
        pk.verify(&msg, &sig).unwrap();
        // An item signed by the same key verifies, and each vector mutation is refused.
        let signer = SecKey::from_hex(s(c, "signer_sk")).unwrap();
        let item = Item::sign(&signer, salt("vec"), 1, msg.clone()).unwrap();
        item.verify_signature().unwrap();
        for (label, bad) in mutations(&item.sig) {
            let mut it = item.clone();
            if let Ok(sig) = Sig::from_bytes(&bad) {
                it.sig = sig;
                assert!(it.verify_signature().is_err(), "{label} accepted");
            }
        }
        n += 1;
    }
    assert_eq!(n, 4);
    for c in v["negative"].as_array().unwrap() {
        let msg = hex::decode(s(c, "message_hex")).unwrap();
        let pk = PubKey::from_hex(s(c, "pk")).unwrap();
        let ok = Sig::from_hex(s(c, "sig"))
            .map(|sig| pk.verify(&msg, &sig).is_ok())
            .unwrap_or(false);
        assert_eq!(
            ok,
            c["verify_expected"].as_bool().unwrap(),
            "{}",
            s(c, "label")
        );
        n += 1;
    }
    let det = &v["determinism"];
    let pk = PubKey::from_hex(s(det, "signer_pk")).unwrap();
    let msg = hex::decode(s(det, "message_hex")).unwrap();
    for k in ["sig_first", "sig_second"] {
        pk.verify(&msg, &Sig::from_hex(s(det, k)).unwrap()).unwrap();
    }
    assert_eq!(n, 12);
}

#[test]
fn signed_bytes_owner_and_delegated() {
    let a = sk("alice");
    let it = Item::sign(&a, salt("dmsg"), 0x0102, b"v".to_vec()).unwrap();
    let expect = hex::decode("0000000000000102000000017600000004646d7367").unwrap();
    assert_eq!(it.signed_bytes(), expect);
    a.pubkey().verify(&expect, &it.sig).unwrap();

    let w = sk("writer");
    let d = Item::sign_for(&w, a.pubkey(), salt("dmsg"), 0x0102, b"v".to_vec()).unwrap();
    let mut exp2 = expect.clone();
    exp2.extend_from_slice(DELEGATION_TAG);
    exp2.extend_from_slice(a.pubkey().as_bytes());
    assert_eq!(d.signed_bytes(), exp2);
    w.pubkey().verify(&exp2, &d.sig).unwrap();
    // Not valid as the owner's own signature, nor as the writer's owner item.
    assert!(a.pubkey().verify(&exp2, &d.sig).is_err());
    assert!(w.pubkey().verify(&expect, &d.sig).is_err());
    assert!(Item::sign_for(&a, a.pubkey(), salt("x"), 1, vec![]).is_err());
}

#[test]
fn target_is_sha256_of_subject_and_salt() {
    let a = sk("alice").pubkey();
    let mut buf = a.as_bytes().to_vec();
    buf.extend_from_slice(b"dmsg");
    assert_eq!(Target::of(&a, &salt("dmsg")).as_bytes(), &sha256(&buf));
    assert_eq!(
        Target::of(&a, &Salt::default()).as_bytes(),
        &sha256(a.as_bytes())
    );
    let w = sk("writer");
    let d = Item::sign_for(&w, a, salt("dmsg"), 1, vec![]).unwrap();
    assert_eq!(d.target(), Target::of(&a, &salt("dmsg")));
    let t = d.target();
    assert_eq!(Target::from_hex(&t.to_hex()).unwrap(), t);
}

#[test]
fn encoding_layout_byte_by_byte() {
    let a = sk("alice");
    let it = Item::sign(&a, salt("ab"), 9, b"xyz".to_vec()).unwrap();
    let b = it.encode();
    assert_eq!(b[0], ENCODING_VERSION);
    assert_eq!(b[1], 0);
    assert_eq!(&b[2..35], a.pubkey().as_bytes());
    assert_eq!(&b[35..43], &9u64.to_be_bytes());
    assert_eq!(b[43], 2);
    assert_eq!(&b[44..46], b"ab");
    assert_eq!(&b[46..50], &3u32.to_be_bytes());
    assert_eq!(&b[50..53], b"xyz");
    assert_eq!(&b[53..], it.sig.as_bytes());
    assert_eq!(b.len(), 53 + 65);

    let w = sk("writer");
    let d = Item::sign_for(&w, a.pubkey(), salt("ab"), 9, b"xyz".to_vec()).unwrap();
    let b = d.encode();
    assert_eq!(b[1], 1);
    assert_eq!(&b[53..86], w.pubkey().as_bytes());
    assert_eq!(&b[86..], d.sig.as_bytes());
}

#[test]
fn decoder_refuses_malformed_input() {
    let a = sk("alice");
    let it = Item::sign(&a, salt("ab"), 9, b"xyz".to_vec()).unwrap();
    let b = it.encode();
    for cut in 0..b.len() {
        assert!(
            matches!(Item::decode(&b[..cut]), Err(DecodeError::Truncated { .. })),
            "{cut}"
        );
    }
    let mut t = b.clone();
    t.push(0);
    assert_eq!(Item::decode(&t), Err(DecodeError::Trailing { extra: 1 }));
    let mut v = b.clone();
    v[0] = 2;
    assert_eq!(Item::decode(&v), Err(DecodeError::Version { version: 2 }));
    let mut f = b.clone();
    f[1] = 0x82;
    assert_eq!(Item::decode(&f), Err(DecodeError::Flags { flags: 0x82 }));
    let mut sl = b.clone();
    sl[43] = 65;
    assert_eq!(Item::decode(&sl), Err(DecodeError::SaltTooLong { len: 65 }));
    let mut vl = b.clone();
    vl[46..50].copy_from_slice(&(MAX_VALUE_LEN_LIMIT as u32 + 1).to_be_bytes());
    assert!(matches!(
        Item::decode(&vl),
        Err(DecodeError::ValueTooLong { .. })
    ));
    let mut pk = b.clone();
    pk[2] = 0x05;
    assert!(matches!(
        Item::decode(&pk),
        Err(DecodeError::Key { field: "pk", .. })
    ));
    assert!(Salt::new(vec![0u8; 65]).is_err());
    assert!(Item::sign(&a, salt("x"), 1, vec![0; MAX_VALUE_LEN_LIMIT + 1]).is_err());
}

/// The bulk-transfer decoder leaves the signer key's point check to the signature check, which
/// refuses such an item; everything else it checks as `decode` does.
#[test]
fn decode_for_verification_defers_only_the_signer_point_check() {
    let a = sk("alice");
    let it = Item::sign(&a, salt("ab"), 9, b"xyz".to_vec()).unwrap();
    let b = it.encode();
    assert_eq!(Item::decode_for_verification(&b).unwrap(), it);
    for cut in 0..b.len() {
        assert!(Item::decode_for_verification(&b[..cut]).is_err(), "{cut}");
    }
    // Bytes 2..35 are the key: x = 5 is not on the curve.
    let mut off = b.clone();
    off[2] = 0x02;
    off[3..35].copy_from_slice(&[0u8; 32]);
    off[34] = 5;
    assert!(matches!(
        Item::decode(&off),
        Err(DecodeError::Key { field: "pk", .. })
    ));
    let deferred = Item::decode_for_verification(&off).unwrap();
    assert!(deferred.verify_signature().is_err());
    assert!(dht::rules::verify(&dht::Config::default(), deferred).is_err());
    // A prefix byte that no compressed key has is refused either way.
    let mut bad_prefix = b.clone();
    bad_prefix[2] = 0x05;
    assert!(Item::decode(&bad_prefix).is_err());
    assert!(
        Item::decode_for_verification(&bad_prefix)
            .unwrap()
            .verify_signature()
            .is_err()
    );
    // A writer item's subject key is checked at decode time by both.
    let d = Item::sign_for(&sk("writer"), a.pubkey(), salt("ab"), 9, b"xyz".to_vec()).unwrap();
    let mut w = d.encode();
    w[3..35].copy_from_slice(&[0u8; 32]);
    w[34] = 5;
    assert!(matches!(
        Item::decode_for_verification(&w),
        Err(DecodeError::Key { field: "pk", .. })
    ));
}

#[test]
fn seq_clock_never_goes_backwards() {
    let mut c = SeqClock::new(0);
    assert_eq!(c.next(Timestamp::from_unix_millis(1000)), 1000);
    assert_eq!(c.next(Timestamp::from_unix_millis(1000)), 1001);
    assert_eq!(c.next(Timestamp::from_unix_millis(500)), 1002); // clock went back
    // Restart: the persisted copy's seq is the high-water mark.
    let mut r = SeqClock::new(5_000);
    assert_eq!(r.next(Timestamp::from_unix_millis(1000)), 5_001);
    // A network copy with a Go UnixNano seq.
    r.observe(1_700_000_000_000_000_000);
    assert_eq!(
        r.next(Timestamp::from_unix_millis(1000)),
        1_700_000_000_000_000_001
    );
    r.observe(3);
    assert_eq!(r.last(), 1_700_000_000_000_000_001);
    let mut m = SeqClock::new(u64::MAX);
    assert_eq!(m.next(Timestamp::from_unix_millis(1)), u64::MAX);
}

proptest! {
    #[test]
    fn sign_encode_decode_verify(
        salt_b in proptest::collection::vec(any::<u8>(), 0..=64),
        value in proptest::collection::vec(any::<u8>(), 0..512),
        seq in any::<u64>(),
        delegated in any::<bool>(),
    ) {
        let a = sk("alice");
        let salt = Salt::new(salt_b).unwrap();
        let it = if delegated {
            Item::sign_for(&sk("writer"), a.pubkey(), salt, seq, value).unwrap()
        } else {
            Item::sign(&a, salt, seq, value).unwrap()
        };
        prop_assert!(it.verify_signature().is_ok());
        let b = it.encode();
        let back = Item::decode(&b).unwrap();
        prop_assert_eq!(&back, &it);
        prop_assert_eq!(back.encode(), b);
        // Any change of seq breaks the signature.
        let mut m = it.clone();
        m.seq = m.seq.wrapping_add(1);
        prop_assert!(m.verify_signature().is_err());
    }

    #[test]
    fn decode_never_panics_and_is_canonical(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(it) = Item::decode(&b) {
            prop_assert_eq!(it.encode(), b);
        }
    }

    #[test]
    fn decode_mutated_valid_item(pos in 0usize..200, byte in any::<u8>()) {
        let it = Item::sign(&sk("alice"), Salt::new(b"tp".to_vec()).unwrap(), 3, b"{}".to_vec()).unwrap();
        let mut b = it.encode();
        let p = pos % b.len();
        b[p] = byte;
        if let Ok(d) = Item::decode(&b) {
            prop_assert_eq!(d.encode(), b);
        }
    }
}
