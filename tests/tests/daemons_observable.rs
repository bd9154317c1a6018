//! Every long-running command serves `/health` and `/metrics` (issue #20): `dmsg discovery
//! --http`, `dmsg http --http`, `dmsg server` (its `health_endpoint_address`) and `node`
//! (`--http`), each checked on a real process on loopback. The same small network shows
//! `dmsg get`'s progress bar on a terminal (run under `script`, a real pseudo-terminal), its
//! `--json` summary, and `--log-format json` log lines.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use keys::SecKey;
use skymesh_tests::{Proc, free_port, http_request, payload, poll, skymesh_bin, wait_port};

const DEADLINE: Duration = Duration::from_secs(60);

fn spawn(name: &str, args: &[&str], log: &std::path::Path) -> Proc {
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Proc::spawn(name, &mut cmd).unwrap()
}

/// `/health` answers 200 JSON and `/metrics` Prometheus text holding every name of `want`.
fn observable(what: &str, port: u16, want: &[&str]) {
    let (code, body) = http_request(port, "GET", "/health", None).unwrap();
    assert_eq!(code, 200, "{what} /health");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["started_at"].is_string() || v["status"] == "ok",
        "{what}: {v}"
    );
    let text = poll(&format!("{what} metrics"), DEADLINE, || {
        let (code, text) = http_request(port, "GET", "/metrics", None)?;
        (code == 200 && want.iter().all(|w| text.contains(w))).then_some(text)
    });
    assert!(text.ends_with("# EOF\n"), "{what}: OpenMetrics text");
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn every_daemon_serves_health_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // dmsg discovery, JSON logs.
    let (disc_port, disc_http) = (free_port(), free_port());
    let disc_log = dir.join("discovery.log");
    let _disc = spawn(
        "discovery",
        &[
            "--log-format",
            "json",
            "dmsg",
            "discovery",
            "--addr",
            &format!("127.0.0.1:{disc_port}"),
            "--test-mode",
            "--http",
            &format!("127.0.0.1:{disc_http}"),
        ],
        &disc_log,
    );
    wait_port(disc_port, DEADLINE);
    wait_port(disc_http, DEADLINE);
    let disc = format!("http://127.0.0.1:{disc_port}");

    // dmsg server (reference config file).
    let (srv_port, srv_health) = (free_port(), free_port());
    let sk = SecKey::generate();
    let cfg = serde_json::json!({
        "public_key": sk.pubkey().to_hex(), "secret_key": sk.to_hex(), "discovery": disc,
        "public_address": format!("127.0.0.1:{srv_port}"),
        "local_address": format!("127.0.0.1:{srv_port}"),
        "health_endpoint_address": format!("127.0.0.1:{srv_health}"),
        "log_level": "info", "update_interval": 0, "max_sessions": 100
    });
    let cfg_path = dir.join("server.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let _srv = spawn(
        "server",
        &["dmsg", "server", cfg_path.to_str().unwrap()],
        &dir.join("server.log"),
    );
    wait_port(srv_health, DEADLINE);

    // dmsg http serving a directory.
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = payload(3 * 1024 * 1024);
    std::fs::write(www.join("big.bin"), &data).unwrap();
    let host = SecKey::generate();
    let http_port = free_port();
    let _http = spawn(
        "http",
        &[
            "dmsg",
            "http",
            "--dir",
            www.to_str().unwrap(),
            "--sk",
            &host.to_hex(),
            "--disc",
            &disc,
            "--http",
            &format!("127.0.0.1:{http_port}"),
        ],
        &dir.join("http.log"),
    );
    wait_port(http_port, DEADLINE);

    observable(
        "dmsg discovery",
        disc_http,
        &[
            "skymesh_build_info",
            "skymesh_disc_servers",
            "skymesh_disc_clients",
        ],
    );
    observable(
        "dmsg server",
        srv_health,
        &["skymesh_dmsg_sessions", "skymesh_dmsg_streams_total"],
    );
    observable(
        "dmsg http",
        http_port,
        &["skymesh_dmsg_client_sessions", "skymesh_uptime_seconds"],
    );
    // The discovery counts what registered: the server and the http host.
    let text = poll("the discovery to count its entries", DEADLINE, || {
        let (_, text) = http_request(disc_http, "GET", "/metrics", None)?;
        (gauge(&text, "skymesh_disc_servers") >= 1.0 && gauge(&text, "skymesh_disc_clients") >= 1.0)
            .then_some(text)
    });
    assert_eq!(gauge(&text, "skymesh_disc_store_up"), 1.0);
    let text = poll("dmsg http to hold a session", DEADLINE, || {
        let (_, text) = http_request(http_port, "GET", "/metrics", None)?;
        (gauge(&text, "skymesh_dmsg_client_sessions") >= 1.0).then_some(text)
    });
    assert!(gauge(&text, "skymesh_uptime_seconds") >= 0.0);

    // dmsg get on a terminal: an indicatif bar on stderr, then a human summary.
    let url = format!("dmsg://{}:80/big.bin", host.pubkey().to_hex());
    let out = dir.join("got.bin");
    let cmdline = format!(
        "{} dmsg get --disc {disc} --out {} {url}",
        skymesh_bin().display(),
        out.display()
    );
    let tty = Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        .output()
        .expect("script(1) from util-linux runs the command on a pseudo-terminal");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(shown.contains("downloaded 3.00 MiB"), "{shown}");
    assert!(
        shown.contains("/3.00 MiB"),
        "progress bar ({{bytes}}/{{total_bytes}}): {shown}"
    );

    // Not on a terminal: no bar; --json prints the summary on stdout.
    let o = Command::new(skymesh_bin())
        .args(["dmsg", "get", "--disc", &disc, "--json", "--out"])
        .arg(dir.join("again.bin"))
        .arg(&url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("/3.00 MiB"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["bytes"], data.len());
    assert_eq!(v["url"], url);

    // The discovery's log: one JSON object per line (the start-up notices too), no ANSI
    // escapes.
    let log = std::fs::read_to_string(&disc_log).unwrap();
    assert!(!log.contains('\u{1b}'), "no colours in a file: {log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"].is_string()),
        "{log}"
    );
}

#[test]
fn node_serves_health_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (p2p, http) = (free_port(), free_port());
    let log = tmp.path().join("node.log");
    let _node = spawn(
        "node",
        &[
            "node",
            "--role",
            "full",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{p2p}"),
            "--data",
            tmp.path().join("data").to_str().unwrap(),
            "--http",
            &format!("127.0.0.1:{http}"),
            "--bootstrap",
            &skymesh_tests::multiaddr(&SecKey::generate(), free_port()),
        ],
        &log,
    );
    wait_port(http, DEADLINE);
    observable("node", http, &["skymesh_dht_"]);
    // Text logs into a file carry no colour codes.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("admin API listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
}
