//! `skymesh dht sync` end to end: two real `skymesh node` processes on 127.0.0.1; the regular
//! node pulls the full node's items through the admin API and the CLI prints a summary.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::{Proc, free_port, run_skymesh, skymesh_bin};

const DEADLINE: Duration = Duration::from_secs(90);
const ITEMS: usize = 12;

fn spawn_node(name: &str, role: &str, dir: &std::path::Path, p2p: u16, http: u16) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(["node", "--role", role])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
        .arg("--data")
        .arg(dir.join(name))
        .args(["--sk", &SecKey::generate().to_hex()])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--reachability", "public"])
        .stdout(Stdio::null())
        .stderr(log);
    Proc::spawn(name, &mut cmd).unwrap()
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn url(http: u16) -> String {
    format!("http://127.0.0.1:{http}")
}

fn info(http: u16) -> Option<serde_json::Value> {
    let out = run_skymesh(&["dht", "info", "--node", &url(http), "--json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn dht_sync_pulls_a_full_nodes_items() {
    let dir = tempfile::tempdir().unwrap();
    let (p2p_a, http_a, p2p_b, http_b) = (free_port(), free_port(), free_port(), free_port());
    let _a = spawn_node("a", "full", dir.path(), p2p_a, http_a);
    let _b = spawn_node("b", "regular", dir.path(), p2p_b, http_b);
    let info_a = poll("node a's admin API", || info(http_a));
    poll("node b's admin API", || info(http_b));
    let addr_a = format!(
        "/ip4/127.0.0.1/tcp/{p2p_a}/p2p/{}",
        info_a["peer_id"].as_str().unwrap()
    );
    for i in 0..ITEMS {
        let out = run_skymesh(
            &[
                "dht",
                "put",
                "--node",
                &url(http_a),
                "--salt",
                &format!("sync-test-{i}"),
                "--value",
                &format!("value {i}"),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // b knows no full node yet: without --bootstrap there is nobody to sync from.
    let out = run_skymesh(&["dht", "sync", "--node", &url(http_b)], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no full node"));

    // Pull from a (through --from, the former spelling of --bootstrap, still accepted): the
    // summary counts every item (a's items + its advert).
    let out = run_skymesh(
        &["dht", "sync", "--node", &url(http_b), "--from", &addr_a],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sync done"), "{stdout}");
    assert!(stdout.contains("items received"), "{stdout}");
    let items_b = info(http_b).unwrap();
    for i in 0..ITEMS {
        assert_eq!(items_b["items"][format!("sync-test-{i}")], 1, "{items_b}");
    }

    // Again, as JSON: incremental, nothing changed (a's advert may have been re-put meanwhile).
    let out = run_skymesh(
        &[
            "dht",
            "sync",
            "--node",
            &url(http_b),
            "--bootstrap",
            &addr_a,
            "--json",
        ],
        None,
    );
    assert!(out.status.success());
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["state"], "done");
    assert!(st["items_received"].as_u64().unwrap() <= 1, "{st}");

    // From scratch, one salt only.
    let out = run_skymesh(
        &[
            "dht",
            "sync",
            "--node",
            &url(http_b),
            "--bootstrap",
            &addr_a,
            "--salt",
            "sync-test-3",
            "--from-start",
            "--json",
        ],
        None,
    );
    assert!(out.status.success());
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["items_received"], 1, "{st}");
    assert_eq!(st["unchanged"], 1, "{st}");

    // An address without /p2p is refused; an unreachable peer fails with exit 1.
    let out = run_skymesh(
        &[
            "dht",
            "sync",
            "--node",
            &url(http_b),
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    // A peer that is gone: a third node, stopped.
    let (p2p_c, http_c) = (free_port(), free_port());
    let c = spawn_node("c", "full", dir.path(), p2p_c, http_c);
    let info_c = poll("node c's admin API", || info(http_c));
    drop(c);
    let dead = format!(
        "/ip4/127.0.0.1/tcp/{p2p_c}/p2p/{}",
        info_c["peer_id"].as_str().unwrap()
    );
    let out = run_skymesh(
        &["dht", "sync", "--node", &url(http_b), "--bootstrap", &dead],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("sync failed"));

    // The sync metrics are exported.
    let body = http_get(http_b, "/metrics");
    for name in [
        "skymesh_sync_pages_pulled_total",
        "skymesh_sync_items_received_total",
        "skymesh_sync_items_accepted_total",
        "skymesh_sync_sessions_total",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
}

/// A plain HTTP/1.0 GET; returns the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}
