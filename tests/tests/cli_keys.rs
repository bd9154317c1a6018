//! `skymesh --version` and `skymesh keygen` as a user runs them.
#![allow(clippy::unwrap_used)]

use skymesh_tests::run_skymesh;

#[test]
fn version_prints_package_version() {
    let out = run_skymesh(&["--version"], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("skymesh {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn keygen_seed_matches_go_reference_key() {
    // dmsg/vectors/keys.json: alice's seed and keys as produced by skycoin's generator.
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dmsg/vectors/keys.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for k in v["keys"].as_array().unwrap() {
        let seed = k["seed"].as_str().unwrap();
        let out = run_skymesh(&["keygen", "--seed", seed, "--json"], None);
        assert!(out.status.success());
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["public_key"], k["pk"]);
        assert_eq!(got["secret_key"], k["sk"]);
    }
}

#[test]
fn keygen_random_is_valid_and_fresh() {
    let a = run_skymesh(&["keygen", "--json"], None);
    let b = run_skymesh(&["keygen", "--json"], None);
    let a: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_ne!(a["secret_key"], b["secret_key"]);
    let sk = keys::SecKey::from_hex(a["secret_key"].as_str().unwrap()).unwrap();
    assert_eq!(sk.pubkey().to_hex(), a["public_key"].as_str().unwrap());
}

#[test]
fn keygen_text_form_has_both_lines() {
    let out = run_skymesh(&["keygen", "--seed", "x"], None);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("public_key: 0"));
    assert!(text.contains("\nsecret_key: "));
}

#[test]
fn unknown_command_fails_with_usage() {
    let out = run_skymesh(&["frobnicate"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}
