//! Scenario 7, clock skew: two full nodes whose wall clocks are 10 minutes ahead and 10 minutes
//! behind join a network of one correct full node. The skew is injected with libfaketime
//! (`LD_PRELOAD` + `FAKETIME`, monotonic clocks untouched), so every wall-clock read of the
//! process is off, as on a badly set host. Fails loudly when libfaketime is not installed
//! (`apt-get install -y libfaketime`), like the Redis tests without `redis-server`.
//!
//! Must hold (docs/reliability.md, "Clock skew"): items are accepted whatever the writer's clock
//! (the seq is the writer's Unix ms: ahead or behind by 10 min, and served by the others as
//! written); each node's own `dht put` seq follows its own clock; the skewed DMSG servers'
//! entries, timestamped by their clocks, are served by the correct node's discovery API as live
//! servers (freshness window 11 min).
use std::path::{Path, PathBuf};
use std::time::Duration;

use keys::SecKey;
use skymesh_tests::{chaos::unix_ms, get_json, http_request, poll};

use crate::common::{Full, full_node};

const SKEW_S: i64 = 600;
const DEADLINE: Duration = Duration::from_secs(90);

fn libfaketime() -> PathBuf {
    for p in [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "libfaketime is not installed: the clock-skew scenario needs it (apt-get install -y libfaketime)"
    );
}

fn put(n: &Full, value: &str) -> serde_json::Value {
    let body = serde_json::json!({"salt": "skew", "value": value}).to_string();
    let (status, body) = http_request(n.http, "POST", "/api/v1/put", Some(&body)).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn seq_via(n: &Full, pk: &str) -> Option<u64> {
    get_json(n.http, &format!("/api/v1/get?pk={pk}&salt=skew"))?["seq"].as_u64()
}

fn servers_listed(n: &Full) -> Vec<serde_json::Value> {
    match http_request(n.http, "GET", "/dmsg-discovery/available_servers", None) {
        Some((200, body)) => serde_json::from_str(&body).unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[test]
fn nodes_ten_minutes_ahead_and_behind_join_and_are_served() {
    let lib = libfaketime();
    let dir = tempfile::tempdir().unwrap();
    let a = full_node(dir.path(), "correct", SecKey::generate(), &[]);
    let boot = a.multiaddr();
    let skewed = |name: &str, offset: i64| {
        // SAFETY-free: the env of the child only. FAKETIME "+600" shifts the wall clock.
        let env = [
            ("LD_PRELOAD", lib.to_str().unwrap().to_string()),
            ("FAKETIME", format!("{offset:+}")),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
            ("FAKETIME_NO_CACHE", "1".into()),
        ];
        crate::common::node_env(
            dir.path(),
            name,
            "full",
            SecKey::generate(),
            &["--bootstrap", &boot],
            &env,
        )
    };
    let ahead = skewed("ahead", SKEW_S);
    let behind = skewed("behind", -SKEW_S);

    let real = unix_ms() as i64;
    let mut seqs = Vec::new();
    for n in [&a, &ahead, &behind] {
        let r = put(n, &format!("from {}", n.http));
        let seq = r["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {r}")) as i64;
        seqs.push(seq - real);
    }
    eprintln!(
        "clock skew: put seq minus the real time (ms): correct {}, ahead {}, behind {}",
        seqs[0], seqs[1], seqs[2]
    );
    assert!(seqs[0].abs() < 30_000, "{seqs:?}");
    assert!(
        (seqs[1] - SKEW_S * 1000).abs() < 30_000,
        "the ahead node's seq follows its clock: {seqs:?}"
    );
    assert!(
        (seqs[2] + SKEW_S * 1000).abs() < 30_000,
        "the behind node's seq follows its clock: {seqs:?}"
    );

    // Every node serves every node's item, with the seq its writer gave it.
    for reader in [&a, &ahead, &behind] {
        for writer in [&a, &ahead, &behind] {
            let pk = writer.sk.pubkey().to_hex();
            let want = seq_via(writer, &pk).unwrap();
            poll(
                &format!("node {} serves {pk}'s item", reader.http),
                DEADLINE,
                || (seq_via(reader, &pk) == Some(want)).then_some(()),
            );
        }
    }

    // The correct node's discovery lists both skewed DMSG servers as live.
    let listed = poll(
        "both skewed DMSG servers listed by the correct node",
        DEADLINE,
        || {
            let l = servers_listed(&a);
            let has = |n: &Full| l.iter().any(|e| e["static"] == n.sk.pubkey().to_hex());
            (has(&ahead) && has(&behind)).then_some(l)
        },
    );
    let now_ns = unix_ms() as i64 * 1_000_000;
    let ages: Vec<String> = listed
        .iter()
        .map(|e| {
            let age = (now_ns - e["timestamp"].as_i64().unwrap_or(0)) as f64 / 1e9;
            format!(
                "{}…: entry age {age:.0} s",
                &e["static"].as_str().unwrap_or("")[..8]
            )
        })
        .collect();
    eprintln!("clock skew: servers listed by the correct node: {ages:?}");
}
