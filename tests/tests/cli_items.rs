//! `skymesh item sign` / `skymesh item verify` as a user runs them from the shell.
#![allow(clippy::unwrap_used)]

use keys::SecKey;
use skymesh_tests::run_skymesh;

const SVC: &str = r#"{"v":1,"services":[]}"#;

fn sign(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["item", "sign"];
    all.extend_from_slice(args);
    let out = run_skymesh(&all, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn verify(item: &serde_json::Value, extra: &[&str]) -> (bool, serde_json::Value) {
    let mut all = vec!["item", "verify"];
    all.extend_from_slice(extra);
    let out = run_skymesh(&all, Some(item.to_string().as_bytes()));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.success(), verdict["valid"] == true);
    (out.status.success(), verdict)
}

#[test]
fn signed_items_verify_and_tampering_is_refused() {
    let sk = SecKey::from_seed(b"cli-items");
    let item = sign(&[
        "--sk",
        &sk.to_hex(),
        "--salt",
        "svc",
        "--value",
        SVC,
        "--seq",
        "7",
    ]);
    assert_eq!(item["pk"], sk.pubkey().to_hex());
    assert_eq!(item["seq"], 7);
    assert_eq!(item["value"], SVC);
    let target = dht::Target::of(&sk.pubkey(), &dht::Salt::new("svc").unwrap());
    assert_eq!(item["target"], target.to_hex());
    assert!(verify(&item, &[]).0);

    for (field, bad) in [
        ("seq", serde_json::json!(8)),
        (
            "value",
            serde_json::json!(
                r#"{"v":1,"services":[{"kind":"x","port":1,"addrs":[],"version":""}]}"#
            ),
        ),
        (
            "pk",
            serde_json::json!(SecKey::from_seed(b"other").pubkey().to_hex()),
        ),
    ] {
        let mut t = item.clone();
        t[field] = bad;
        let (ok, verdict) = verify(&t, &[]);
        assert!(!ok, "tampered {field} verified: {verdict}");
    }
}

#[test]
fn delegated_items_need_the_writer_on_the_allowlist() {
    let writer = SecKey::from_seed(b"cli-writer");
    let subject = SecKey::from_seed(b"cli-subject").pubkey();
    let item = sign(&[
        "--sk",
        &writer.to_hex(),
        "--salt",
        "svc",
        "--value",
        SVC,
        "--for",
        &subject.to_hex(),
    ]);
    assert_eq!(item["pk"], subject.to_hex());
    assert_eq!(item["writer"], writer.pubkey().to_hex());
    // Without an allowlist only the signature is checked, and the verdict says so.
    let (ok, verdict) = verify(&item, &[]);
    assert!(ok);
    assert_eq!(verdict["writer_trust"], "not-checked");
    // With an allowlist that lacks the writer: refused.
    let other = SecKey::from_seed(b"cli-other-writer").pubkey().to_hex();
    assert!(
        !verify(&item, &["--trusted-writer", &other]).0,
        "untrusted writer accepted"
    );
    let (ok, verdict) = verify(&item, &["--trusted-writer", &writer.pubkey().to_hex()]);
    assert!(ok);
    assert_eq!(verdict["writer_trust"], "trusted");
}

#[test]
fn values_that_do_not_parse_for_their_salt_are_refused_at_signing() {
    let sk = SecKey::generate();
    let out = run_skymesh(
        &[
            "item",
            "sign",
            "--sk",
            &sk.to_hex(),
            "--salt",
            "svc",
            "--value",
            "hello",
        ],
        None,
    );
    assert!(!out.status.success());
    // Unknown salts carry opaque bytes.
    let item = sign(&["--sk", &sk.to_hex(), "--salt", "my-app", "--value", "hello"]);
    assert!(verify(&item, &[]).0);
}
