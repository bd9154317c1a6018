//! Store-and-forward (issue #15) with real `skymesh` processes on 127.0.0.1: two full nodes
//! (DMSG servers, meshed through the DHT, each keeping a mailbox) and visors.
//!
//! * Three messages to a visor that has never been online; one mailbox server is killed with
//!   `kill -9` and restarted; the recipient starts: all three arrive exactly once, and again
//!   none twice after the recipient restarts; the sender sees them delivered. Through the CLI.
//! * An online recipient on the other server gets a message within a second, pushed.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use keys::SecKey;
use serde_json::Value;
use skymesh_tests::{
    Member, free_port, get_json, http_request, multiaddr, poll, run_skymesh, spawn_member,
};

const DEADLINE: Duration = Duration::from_secs(120);

fn deploy(dir: &Path, fulls: &[(SecKey, u16)]) -> std::path::PathBuf {
    let bootstrap: Vec<String> = fulls.iter().map(|(k, p)| multiaddr(k, *p)).collect();
    let path = dir.join("deploy.json");
    std::fs::write(
        &path,
        serde_json::json!({"v": 1, "name": "mailbox-e2e", "dht_bootstrap": bootstrap}).to_string(),
    )
    .unwrap();
    path
}

const MESH: [&str; 5] = [
    "--mesh-dht",
    "--mesh-allow",
    "any",
    "--mesh-refresh-ms",
    "500",
];

fn full(dir: &Path, deploy: &Path, name: &str, sk: &SecKey, p2p: u16) -> Member {
    let extra: Vec<&OsStr> = MESH.iter().map(OsStr::new).collect();
    let m = spawn_member(dir, deploy, name, sk.clone(), p2p, true, &extra);
    poll(&format!("{name} healthy"), DEADLINE, || {
        get_json(m.http, "/health")
    });
    m
}

/// A visor; pinned to `server` when given.
fn visor(dir: &Path, deploy: &Path, name: &str, sk: &SecKey, server: Option<&Member>) -> Member {
    let pk = server.map(Member::pk).unwrap_or_default();
    let pinned = server.is_some();
    let extra: Vec<&OsStr> = if server.is_some() {
        vec!["--dmsg-server".as_ref(), pk.as_ref()]
    } else {
        Vec::new()
    };
    let m = spawn_member(dir, deploy, name, sk.clone(), free_port(), false, &extra);
    poll(&format!("{name} holds its session"), DEADLINE, || {
        // Pinned: exactly its server. Unpinned: at least one (its mailbox agent may open more
        // while the mesh links are still coming up).
        get_json(m.http, "/api/v1/dmsg").filter(|d| {
            d["client"]["servers"]
                .as_array()
                .is_some_and(|a| if pinned { a.len() == 1 } else { !a.is_empty() })
        })
    });
    m
}

fn inbox(m: &Member) -> Vec<Value> {
    get_json(m.http, "/api/v1/msg/inbox")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn send(from: &Member, to: &SecKey, text: &str) -> Value {
    let o = run_skymesh(
        &[
            "msg",
            "send",
            "--node",
            &from.url(),
            "--to",
            &to.pubkey().to_hex(),
            "--text",
            text,
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn messages_wait_for_a_visor_that_was_never_online_and_arrive_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keys = [SecKey::generate(), SecKey::generate()];
    let p2p = [free_port(), free_port()];
    let deploy = deploy(dir, &[(keys[0].clone(), p2p[0]), (keys[1].clone(), p2p[1])]);
    let f0 = full(dir, &deploy, "full-0", &keys[0], p2p[0]);
    let mut f1 = full(dir, &deploy, "full-1", &keys[1], p2p[1]);
    // Both full nodes list both servers before the sender starts, so the sender's first list of
    // mailbox servers (whichever full node answers it) holds both.
    for f in [&f0, &f1] {
        poll("both servers published", DEADLINE, || {
            get_json(f.http, "/dmsg-discovery/all_servers")
                .filter(|v| v.as_array().is_some_and(|a| a.len() == 2))
        });
    }
    let alice = visor(dir, &deploy, "alice", &SecKey::generate(), Some(&f0));
    let bob = SecKey::generate(); // never online yet
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = send(&alice, &bob, &format!("message {i}"));
        assert_eq!(out["stored_on"].as_array().unwrap().len(), 2, "{out}");
        ids.push(out["id"].as_str().unwrap().to_string());
    }
    // kill -9 one mailbox server and restart it on the same data directory.
    f1.proc.kill();
    let f1_sk = f1.sk.clone();
    drop(f1);
    let f1 = full(dir, &deploy, "full-1", &f1_sk, p2p[1]);
    // Nothing acknowledged was lost: the restarted server replayed its log.
    poll("full-1 replayed its mailbox", DEADLINE, || {
        let m = http_request(f1.http, "GET", "/metrics", None)?.1;
        m.contains("skymesh_mailbox_queued_messages 3")
            .then_some(())
    });
    // Bob starts for the first time.
    let b = visor(dir, &deploy, "bob", &bob, None);
    poll("bob has three messages", DEADLINE, || {
        (inbox(&b).len() >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let got = inbox(&b);
    assert_eq!(got.len(), 3, "{got:?}");
    for id in &ids {
        assert_eq!(got.iter().filter(|e| e["id"] == id.as_str()).count(), 1);
    }
    assert!(got.iter().any(|e| e["text"] == "message 2"));
    // The CLI shows them.
    let o = run_skymesh(&["msg", "inbox", "--node", &b.url()], None);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("message 1"));
    // Alice sees them delivered.
    poll("alice sees 3 delivered", DEADLINE, || {
        let sent = get_json(alice.http, "/api/v1/msg/sent")?;
        let n = sent
            .as_array()?
            .iter()
            .filter(|s| s["status"] == "delivered")
            .count();
        (n == 3).then_some(())
    });
    // Bob restarts: no duplicates.
    let Member { proc: mut bp, .. } = b;
    bp.kill();
    let b = visor(dir, &deploy, "bob", &bob, None);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(inbox(&b).len(), 3);
    // Bad input through the API: a TTL over 7 days is refused with a reason.
    let body = format!(
        r#"{{"to":"{}","text":"x","ttl":999999999}}"#,
        bob.pubkey().to_hex()
    );
    let (status, text) = http_request(alice.http, "POST", "/api/v1/msg/send", Some(&body)).unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("ttl"), "{text}");
    let m = http_request(f1.http, "GET", "/metrics", None).unwrap().1;
    assert!(m.contains("skymesh_mailbox_delivered_total"), "{m}");
}

#[test]
fn an_online_visor_on_another_server_gets_it_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keys = [SecKey::generate(), SecKey::generate()];
    let p2p = [free_port(), free_port()];
    let deploy = deploy(dir, &[(keys[0].clone(), p2p[0]), (keys[1].clone(), p2p[1])]);
    let f0 = full(dir, &deploy, "full-0", &keys[0], p2p[0]);
    let f1 = full(dir, &deploy, "full-1", &keys[1], p2p[1]);
    let alice = visor(dir, &deploy, "alice", &SecKey::generate(), Some(&f0));
    let carol_sk = SecKey::generate();
    let carol = visor(dir, &deploy, "carol", &carol_sk, Some(&f1));
    poll("both servers listed", DEADLINE, || {
        get_json(f1.http, "/dmsg-discovery/all_servers")
            .filter(|v| v.as_array().is_some_and(|a| a.len() == 2))
    });
    // Carol's agent subscribes to her mailbox servers; the first message shows it is up.
    send(&alice, &carol_sk, "warm-up");
    poll("warm-up arrives", DEADLINE, || {
        (inbox(&carol).len() == 1).then_some(())
    });
    let mut best = Duration::MAX;
    for i in 0..3 {
        let t0 = Instant::now();
        send(&alice, &carol_sk, &format!("live {i}"));
        let path = format!("/api/v1/msg/inbox?after={}&wait_ms=5000", i + 1);
        let n = loop {
            let v = http_request(carol.http, "GET", &path, None).unwrap().1;
            let n = serde_json::from_str::<Value>(&v)
                .unwrap()
                .as_array()
                .unwrap()
                .len();
            if n > i + 1 || t0.elapsed() > DEADLINE {
                break n;
            }
        };
        assert_eq!(n, i + 2);
        best = best.min(t0.elapsed());
    }
    // The send itself is a CLI process start plus an fsync'd store; the push is well within.
    assert!(best < Duration::from_secs(1), "delivered after {best:?}");
}
