//! Two real `skymesh node` processes on 127.0.0.1 plus `skymesh dht put/get/info`, as an operator
//! runs them. Everything is polled with generous deadlines (2-core CI).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::{Proc, free_port, run_skymesh, skymesh_bin};

const DEADLINE: Duration = Duration::from_secs(90);

fn spawn_node(
    name: &str,
    role: &str,
    sk: &SecKey,
    dir: &std::path::Path,
    p2p: u16,
    http: u16,
    bootstrap: Option<&str>,
) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(["node", "--role", role])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
        .arg("--data")
        .arg(dir.join(name))
        .args(["--sk", &sk.to_hex()])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
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

fn info(http: u16) -> Option<serde_json::Value> {
    let out = run_skymesh(&["dht", "info", "--node", &url(http), "--json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn url(http: u16) -> String {
    format!("http://127.0.0.1:{http}")
}

/// A plain HTTP/1.0 GET (no client library needed for two endpoints).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get(http: u16, pk: &str, salt: &str) -> Output {
    run_skymesh(
        &[
            "dht",
            "get",
            "--node",
            &url(http),
            "--pk",
            pk,
            "--salt",
            salt,
        ],
        None,
    )
}

#[test]
fn two_nodes_put_get_info_over_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (sk_a, sk_b) = (SecKey::generate(), SecKey::generate());
    let (p2p_a, http_a, p2p_b, http_b) = (free_port(), free_port(), free_port(), free_port());

    let _a = spawn_node("a", "full", &sk_a, dir.path(), p2p_a, http_a, None);
    let info_a = poll("node a's admin API", || info(http_a));
    let peer_a = info_a["peer_id"].as_str().unwrap().to_owned();
    let boot = format!("/ip4/127.0.0.1/tcp/{p2p_a}/p2p/{peer_a}");
    let _b = spawn_node(
        "b",
        "regular",
        &sk_b,
        dir.path(),
        p2p_b,
        http_b,
        Some(&boot),
    );

    // b finds a as a full node through bootstrap.
    let info_b = poll("node b to know node a as a full node", || {
        info(http_b).filter(|v| {
            v["full_nodes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p == &peer_a))
        })
    });
    for key in [
        "role",
        "public_key",
        "peer_id",
        "listen_addrs",
        "peers",
        "full_nodes",
        "items",
    ] {
        assert!(
            info_b.get(key).is_some(),
            "info --json lacks {key}: {info_b}"
        );
    }
    assert_eq!(info_b["role"], "regular");
    assert_eq!(info_b["public_key"], sk_b.pubkey().to_hex());
    assert_eq!(info_a["role"], "full");

    // put through b (signed with b's key), get through a.
    let out = run_skymesh(
        &[
            "dht",
            "put",
            "--node",
            &url(http_b),
            "--salt",
            "greeting",
            "--value",
            "hello skymesh",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pk_b = sk_b.pubkey().to_hex();
    let item: serde_json::Value = poll("node a to serve b's item", || {
        let out = get(http_a, &pk_b, "greeting");
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    });
    assert_eq!(item["pk"], pk_b);
    assert_eq!(item["salt"], "greeting");
    assert_eq!(item["value"], "hello skymesh");
    assert!(item["seq"].as_u64().unwrap() > 0);

    // A missing item exits 1.
    let out = get(http_b, &sk_a.pubkey().to_hex(), "nothing-here");
    assert_eq!(out.status.code(), Some(1));

    // a holds the item (full nodes store every valid item they receive).
    poll("node a to count the item", || {
        info(http_a).filter(|v| v["items"]["greeting"] == 1)
    });

    // Text info, /health and /metrics.
    let out = run_skymesh(&["dht", "info", "--node", &url(http_a)], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&peer_a));
    let (status, body) = http_get(http_a, "/health");
    assert_eq!(status, 200);
    assert!(body.contains("ok"));
    let (status, body) = http_get(http_a, "/metrics");
    assert_eq!(status, 200);
    for name in [
        "skymesh_dht_peers",
        "skymesh_dht_routing_table_peers",
        "skymesh_dht_inbound_puts_total",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
}
