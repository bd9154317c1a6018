//! The reference's keys, signatures and ECDH (dmsg/vectors/{keys,sign,ecdh}.json, produced by
//! skycoin/dmsg@9c8b80bd). Read at test time; nothing is pasted.
#![allow(clippy::unwrap_used)]
use keys::{PubKey, SecKey, Sig, sha256};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/../vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string field {k}"))
}

fn unhex(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

#[test]
fn keys_derive_from_sk_and_seed() {
    let v = load("keys.json");
    let keys = v["keys"].as_array().unwrap();
    assert!(keys.len() >= 9);
    for k in keys {
        let sk = SecKey::from_hex(s(k, "sk")).unwrap();
        assert_eq!(sk.pubkey().to_hex(), s(k, "pk"), "{}", s(k, "name"));
        let seed = unhex(k, "seed_hex");
        assert_eq!(seed, s(k, "seed").as_bytes());
        let inter = &k["derivation_intermediates"];
        assert_eq!(inter["extra_rehashes_for_sk"].as_u64(), Some(0));
        let d = keys::SeedDerivation::new(&seed);
        let name = s(k, "name");
        assert_eq!(hex::encode(d.h), s(inter, "h_sha256_seed"), "{name}");
        assert_eq!(
            hex::encode(d.inner_sk),
            s(inter, "inner_sk_sha256_h"),
            "{name}"
        );
        assert_eq!(
            hex::encode(d.inner_pk),
            s(inter, "inner_pk_from_sha256_sha256_h"),
            "{name}"
        );
        assert_eq!(
            hex::encode(d.inner_ecdh_point),
            s(inter, "inner_ecdh_point"),
            "{name}"
        );
        assert_eq!(
            hex::encode(d.seed1),
            s(inter, "secp256k1_hash_seed1"),
            "{name}"
        );
        assert_eq!(
            hex::encode(d.seed2),
            s(inter, "seed2_sha256_seed_concat_seed1"),
            "{name}"
        );
        assert_eq!(d.secret_key().to_hex(), s(k, "sk"), "{name}");
        // The PK parses and re-encodes identically.
        let pk = PubKey::from_hex(s(k, "pk")).unwrap();
        assert_eq!(pk.to_hex(), s(k, "pk"));
    }
}

#[test]
fn ecdh_matches_reference_both_directions() {
    let v = load("ecdh.json");
    assert_eq!(v["dh_len"].as_u64(), Some(33));
    let pairs = v["pairs"].as_array().unwrap();
    assert!(!pairs.is_empty());
    for p in pairs {
        let a = SecKey::from_hex(s(p, "a_sk")).unwrap();
        let b = SecKey::from_hex(s(p, "b_sk")).unwrap();
        let bpk = PubKey::from_hex(s(p, "b_pk")).unwrap();
        let apk = PubKey::from_hex(s(p, "a_pk")).unwrap();
        let ab = a.ecdh(&bpk).unwrap();
        let ba = b.ecdh(&apk).unwrap();
        assert_eq!(hex::encode(ab), s(p, "cipher_ecdh_sha256_of_point"));
        assert_eq!(ab, ba);
        let mut noise = ab.to_vec();
        noise.push(0);
        assert_eq!(hex::encode(&noise), s(p, "noise_dh_output"));
        assert_eq!(hex::encode(&noise), s(p, "noise_dh_a_sk_b_pk"));
        assert_eq!(hex::encode(&noise), s(p, "noise_dh_b_sk_a_pk"));
        assert_eq!(
            hex::encode(sha256(&unhex(p, "shared_point_compressed"))),
            s(p, "cipher_ecdh_sha256_of_point")
        );
    }
}

#[test]
fn reference_signatures_verify_and_ours_follow_the_same_rules() {
    let v = load("sign.json");
    let valid = v["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 4);
    for c in valid {
        let msg = unhex(c, "message_hex");
        assert_eq!(hex::encode(sha256(&msg)), s(c, "signed_hash_sha256"));
        let pk = PubKey::from_hex(s(c, "signer_pk")).unwrap();
        let sig = Sig::from_hex(s(c, "sig")).unwrap();
        assert_eq!(c["verify_expected"], Value::Bool(true));
        pk.verify(&msg, &sig).unwrap();
        let digest: [u8; 32] = unhex(c, "signed_hash_sha256").try_into().unwrap();
        assert_eq!(
            sig.recover_hash(&digest).unwrap().to_hex(),
            s(c, "recovered_pk")
        );
        // Our signature over the same message: verifies, low-S, recid < 4, recovers signer.
        let sk = SecKey::from_hex(s(c, "signer_sk")).unwrap();
        let ours = sk.sign(&msg);
        pk.verify(&msg, &ours).unwrap();
        assert!(ours.as_bytes()[64] < 4);
        assert_eq!(ours.as_bytes()[32] & 0x80, 0);
        assert_eq!(ours.recover_hash(&digest).unwrap(), pk);
    }
    let det = &v["determinism"];
    let pk = PubKey::from_hex(s(det, "signer_pk")).unwrap();
    let msg = unhex(det, "message_hex");
    for key in ["sig_first", "sig_second"] {
        pk.verify(&msg, &Sig::from_hex(s(det, key)).unwrap())
            .unwrap();
    }
    assert_ne!(s(det, "sig_first"), s(det, "sig_second"));
}

#[test]
fn every_negative_signature_case_is_refused() {
    let v = load("sign.json");
    let neg = v["negative"].as_array().unwrap();
    let mut refused = 0;
    for c in neg {
        let msg = unhex(c, "message_hex");
        let pk = PubKey::from_hex(s(c, "pk")).unwrap();
        let outcome = Sig::from_hex(s(c, "sig"))
            .map_err(|_| ())
            .and_then(|sig| pk.verify(&msg, &sig).map_err(|_| ()));
        let expected = c["verify_expected"].as_bool().unwrap();
        assert_eq!(outcome.is_ok(), expected, "case {}", s(c, "label"));
        if !expected {
            refused += 1;
        }
    }
    // flipped r, flipped s, flipped message, wrong pk, recid^1, recid+4, high-S twin
    assert!(refused >= 7, "only {refused} negative cases");
}

#[test]
fn from_seed_equals_derivation() {
    let v = load("keys.json");
    for k in v["keys"].as_array().unwrap() {
        let seed = unhex(k, "seed_hex");
        assert_eq!(SecKey::from_seed(&seed).to_hex(), s(k, "sk"));
    }
}
