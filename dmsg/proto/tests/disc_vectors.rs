//! disc_entry.json (canonical bytes, signatures, tampering) and discovery_http.json replayed at
//! the protocol level: every body decodes with our types, every POST/DELETE outcome and message
//! equals the reference's, every GET of an entry echoes our canonical text byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;
use dmsg_proto::disc::{
    self, ClientInfo, DiscPolicy, Entry, PostOutcome, check_delete, check_post, parse_pk_text,
};
use keys::{PubKey, Sig};
use serde_json::Value;

/// Builds an entry from the members of a signed_json document, without our decoder.
fn build_from_fields(j: &Value) -> Entry {
    let static_pk = PubKey::from_hex(s(j, "static")).unwrap();
    let mut e = if let Some(c) = j.get("client") {
        let list = c["delegated_servers"].as_array().map(|a| {
            a.iter()
                .map(|k| PubKey::from_hex(k.as_str().unwrap()).unwrap())
                .collect()
        });
        Entry::new_client(
            static_pk,
            u(j, "sequence"),
            j["timestamp"].as_i64().unwrap(),
            list,
        )
    } else {
        Entry::new_client(
            static_pk,
            u(j, "sequence"),
            j["timestamp"].as_i64().unwrap(),
            None,
        )
    };
    if j.get("client").is_none() {
        e.client = None;
    }
    if let Some(srv) = j.get("server") {
        e.server = Some(disc::ServerInfo {
            address: s(srv, "address").to_string(),
            available_sessions: srv["availableSessions"].as_i64().unwrap(),
        });
    }
    e.version = s(j, "version").to_string();
    e
}

#[test]
fn disc_entry_valid() {
    let v = load("disc_entry.json");
    assert_eq!(
        v["field_order"],
        serde_json::json!([
            "version",
            "sequence",
            "timestamp",
            "static",
            "client",
            "server",
            "signature"
        ])
    );
    let valid = v["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 6);
    for c in valid {
        let label = s(c, "label");
        let signed = s(c, "signed_json");
        assert_eq!(hex::encode(signed), s(c, "signed_json_hex"));
        assert_eq!(
            hex::encode(keys::sha256(signed.as_bytes())),
            s(c, "signed_hash_sha256")
        );
        // built from its fields (numbers read as integers, never f64)
        let fields: Value = serde_json::from_str(signed).unwrap();
        let mut e = build_from_fields(&fields);
        assert_eq!(e.signed_json(), signed, "{label}");
        // the Go signature verifies over the canonical bytes
        let sig = Sig::from_hex(s(c, "signature")).unwrap();
        pk(c, "signer_pk").verify(signed.as_bytes(), &sig).unwrap();
        e.signature = s(c, "signature").to_string();
        e.verify_signature().unwrap();
        assert_eq!(e.canonical_json(), s(c, "wire_json"), "{label}");
        assert_eq!(hex::encode(e.canonical_json()), s(c, "wire_json_hex"));
        // decode the wire form and the reformatted form; both re-marshal and verify
        for form in ["wire_json", "reformatted_wire_json"] {
            let d = Entry::from_json(s(c, form).as_bytes()).unwrap();
            assert_eq!(d, e, "{label} {form}");
            d.verify_signature().unwrap();
            d.validate(None).unwrap();
        }
        assert!(c["go_verify_error"].is_null());
        // Rust-signed entries verify too
        let mut ours = e.clone();
        ours.sign(&sk(c, "signer_sk"));
        ours.verify_signature().unwrap();
        assert_eq!(ours.signed_json(), signed);
    }
    // null vs [] are different signed texts
    let nil = Entry::from_json(s(&valid[2], "wire_json").as_bytes()).unwrap();
    let empty = Entry::from_json(s(&valid[3], "wire_json").as_bytes()).unwrap();
    assert_eq!(
        nil.client,
        Some(ClientInfo {
            delegated_servers: None
        })
    );
    assert_eq!(
        empty.client,
        Some(ClientInfo {
            delegated_servers: Some(vec![])
        })
    );
}

#[test]
fn disc_entry_tampered() {
    let v = load("disc_entry.json");
    let t = v["tampered"].as_array().unwrap();
    assert_eq!(t.len(), 5);
    for c in t {
        assert_eq!(c["verify_expected"], false);
        let e = Entry::from_json(s(c, "wire_json").as_bytes()).unwrap();
        assert!(e.verify_signature().is_err(), "{}", s(c, "label"));
    }
}

fn status_of(body: &str) -> Option<(String, u16)> {
    let v: Value = serde_json::from_str(body).ok()?;
    Some((
        v["message"].as_str()?.to_string(),
        v["code"].as_u64()? as u16,
    ))
}

/// The `now` the recording used for a case (the reference reads its clock; we take it as a
/// parameter).
fn now_for(case: &Value, posted: Option<&Entry>, recording_now: i64) -> i64 {
    let rule = case["entry"]["timestamp_rule"].as_str().unwrap_or("fixed");
    let ts = posted.map(|e| e.timestamp).unwrap_or(recording_now);
    const S: i64 = 1_000_000_000;
    match rule {
        "now" => ts,
        "now-120s" => ts + 120 * S,
        "now+60s" => ts - 60 * S,
        r if r.starts_with("same as") => ts,
        _ => recording_now,
    }
}

#[test]
fn discovery_http_at_proto_level() {
    let v = load("discovery_http.json");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 160);
    let recording_now = cases
        .iter()
        .filter(|c| c["entry"]["timestamp_rule"] == "now")
        .map(|c| {
            let j: Value = serde_json::from_str(s(&c["entry"], "signed_json")).unwrap();
            j["timestamp"].as_i64().unwrap()
        })
        .min()
        .unwrap();
    let mut stores: HashMap<String, HashMap<PubKey, Entry>> = HashMap::new();
    let (mut posts, mut deletes, mut gets, mut lists, mut entries_checked) = (0, 0, 0, 0, 0);
    for c in cases {
        let id = s(c, "id");
        let instance = s(c, "instance").to_string();
        let production = instance == "production";
        let store = stores.entry(instance.clone()).or_default();
        let req = &c["request"];
        let resp = &c["response"];
        let method = s(req, "method");
        let path = s(req, "path").split('?').next().unwrap().to_string();
        let status = u(resp, "status") as u16;
        let rbody = s(resp, "body");
        let quirk_bug = c["reference_quirk"]["kind"] == "bug";

        // entry part of the case: canonical text and signature as recorded
        if let Some(ent) = c.get("entry") {
            let signed = s(ent, "signed_json");
            let d = Entry::from_json(signed.as_bytes()).unwrap();
            if d.signed_json() != signed {
                // only the case whose signer covered an unknown member: refused as 401
                assert_eq!(status, 401, "{id}: signed_json is not canonical");
            }
            entries_checked += 1;
        }

        let body = req["body"].as_str();
        let is_entry_post = method == "POST" && path.starts_with("/dmsg-discovery/entry/");
        let is_entry_delete = method == "DELETE" && path == "/dmsg-discovery/entry";
        if (is_entry_post || is_entry_delete) && status != 405 {
            let body = body.unwrap().as_bytes();
            let posted = Entry::from_json(body).ok();
            let policy = DiscPolicy {
                now_ns: now_for(c, posted.as_ref(), recording_now),
                production,
                // The recordings are of the 2023 reference (no `protocol` member).
                entry_protocol: false,
            };
            let result = if is_entry_post {
                posts += 1;
                let stored = posted.as_ref().and_then(|e| store.get(&e.static_pk));
                check_post(body, stored, &policy).map(|(e, o)| (e, Some(o)))
            } else {
                deletes += 1;
                check_delete(body, &policy).map(|e| (e, None))
            };
            match result {
                Ok((e, outcome)) => {
                    assert_eq!(status, 200, "{id}");
                    let msg = match outcome {
                        Some(o) => o.message(),
                        None => "deleted entry",
                    };
                    assert_eq!(rbody, disc::status_body(msg, 200), "{id}");
                    // echo rule: signed_json + the signature string exactly as posted
                    if let Some(ent) = c.get("entry") {
                        let signed = s(ent, "signed_json");
                        let want = format!(
                            "{},\"signature\":\"{}\"}}",
                            &signed[..signed.len() - 1],
                            e.signature
                        );
                        assert_eq!(e.canonical_json(), want, "{id}");
                    }
                    if outcome.is_some() {
                        if outcome == Some(PostOutcome::Created) {
                            assert!(!store.contains_key(&e.static_pk));
                        }
                        store.insert(e.static_pk, e);
                    } else {
                        store.remove(&e.static_pk);
                    }
                }
                Err(refusal) => {
                    assert_eq!(refusal.status(), status, "{id}: {refusal}");
                    if quirk_bug && rbody.is_empty() {
                        // the reference panics; we give the recommended ordinary reply
                        assert_eq!(refusal.status(), 500);
                    } else {
                        let (msg, code) = status_of(rbody).unwrap();
                        assert_eq!(code, status);
                        assert_eq!(refusal.message(), msg, "{id}");
                        assert_eq!(disc::status_body(&msg, code), rbody);
                    }
                }
            }
            continue;
        }

        if method == "DELETE" && path == "/dmsg-discovery/deregister" && status == 200 {
            let list: Vec<String> = serde_json::from_str(body.unwrap()).unwrap();
            for k in list {
                store.remove(&parse_pk_text(&k).unwrap());
            }
            continue;
        }
        if method == "DELETE"
            && path == "/dmsg-discovery/deregister"
            && status == 400
            && rbody == disc::status_body("error bad input", 400)
        {
            if let Some(b) = body
                && let Ok(list) = serde_json::from_str::<Vec<String>>(b)
                && !list.is_empty()
            {
                // a bad key in the list: nothing is deleted
                assert!(list.iter().any(|k| parse_pk_text(k).is_err()), "{id}");
            }
            continue;
        }

        if method == "GET"
            && instance != "expiry"
            && let Some(key) = path.strip_prefix("/dmsg-discovery/entry/")
            && !key.is_empty()
        {
            gets += 1;
            match parse_pk_text(key) {
                Err(_) => assert!(status == 400 || quirk_bug, "{id}"),
                Ok(pk) => match store.get(&pk) {
                    Some(e) => {
                        assert_eq!(status, 200, "{id}");
                        assert_eq!(e.canonical_json(), rbody, "{id}");
                    }
                    None => assert_eq!(status, 404, "{id}"),
                },
            }
            continue;
        }

        // Any other body that is a JSON array of entries: decode each and check that the
        // canonical texts, in order, rebuild the body exactly.
        if status == 200 && rbody.starts_with("[{") {
            lists += 1;
            let items: Vec<Value> = serde_json::from_str(rbody).unwrap();
            let mut canon = Vec::new();
            for it in items {
                let e = Entry::from_json(it.to_string().as_bytes()).unwrap();
                e.verify_signature().unwrap();
                canon.push(e.canonical_json());
            }
            assert_eq!(format!("[{}]", canon.join(",")), rbody, "{id}");
        }
    }
    eprintln!(
        "discovery_http: {posts} POST, {deletes} DELETE, {gets} GET entry, {lists} entry lists, {entries_checked} signed_json checked"
    );
    assert!(posts == 68 && deletes == 7 && gets == 36 && lists == 6);
    assert!(entries_checked == 49);
}
