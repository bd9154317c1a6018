//! Shared helpers for the vector tests: every vector is read from `dmsg/vectors/` at test time.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;

/// Loads `dmsg/vectors/<name>` as JSON.
pub fn load(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vectors")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// A string member.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing string {key}"))
}

/// A hex member decoded.
pub fn hx(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(s(v, key)).unwrap()
}

/// A hex member as 32 bytes.
pub fn h32(v: &Value, key: &str) -> [u8; 32] {
    hx(v, key).try_into().unwrap()
}

/// A u64 member (never through f64).
pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("missing integer {key}"))
}

/// A secret key from a hex member.
pub fn sk(v: &Value, key: &str) -> keys::SecKey {
    keys::SecKey::from_hex(s(v, key)).unwrap()
}

/// A public key from a hex member.
pub fn pk(v: &Value, key: &str) -> keys::PubKey {
    keys::PubKey::from_hex(s(v, key)).unwrap()
}

/// The secret key of a named key in keys.json.
pub fn named_sk(name: &str) -> keys::SecKey {
    let k = load("keys.json");
    let e = k["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no key {name}"));
    sk(e, "sk")
}
