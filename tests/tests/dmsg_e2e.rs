//! End to end with real `skymesh` processes on loopback: `dmsg discovery` + `dmsg server` +
//! `dmsg http` + `dmsg get` fetch a file byte-identical; two servers with the peer only on the
//! other one; the http host survives its server restarting.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::{Proc, free_port, payload, skymesh_bin};

/// `skymesh dmsg http --dir WWW --sk HOST --disc DISC`.
fn serve_dir(www: &std::path::Path, host: &SecKey, disc: &str) -> Proc {
    let www = www.to_str().unwrap();
    let sk = host.to_hex();
    spawn(
        "http",
        &["dmsg", "http", "--dir", www, "--sk", &sk, "--disc", disc],
    )
}

fn wait_port(port: u16) {
    skymesh_tests::wait_port(port, Duration::from_secs(30));
}

fn spawn(name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Proc::spawn(name, &mut cmd).unwrap()
}

fn discovery() -> (Proc, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let p = spawn("discovery", &["dmsg", "discovery", "--addr", &addr, "-t"]);
    wait_port(port);
    (p, format!("http://{addr}"))
}

struct Srv {
    proc: Proc,
    health: u16,
    config: std::path::PathBuf,
    port: u16,
    pk: String,
}

fn server(
    dir: &Path,
    name: &str,
    disc: &str,
    sk: &SecKey,
    port: Option<u16>,
    max_sessions: u32,
) -> Srv {
    let port = port.unwrap_or_else(free_port);
    let health = free_port();
    let cfg = serde_json::json!({
        "public_key": sk.pubkey().to_hex(),
        "secret_key": sk.to_hex(),
        "discovery": disc,
        "public_address": format!("127.0.0.1:{port}"),
        "local_address": format!("127.0.0.1:{port}"),
        "health_endpoint_address": format!("127.0.0.1:{health}"),
        "log_level": "info",
        "update_interval": 0,
        "max_sessions": max_sessions
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, cfg.to_string()).unwrap();
    let proc = spawn(name, &["dmsg", "server", path.to_str().unwrap()]);
    wait_port(port);
    wait_port(health);
    Srv {
        proc,
        health,
        config: path,
        port,
        pk: sk.pubkey().to_hex(),
    }
}

/// A minimal HTTP/1.0 GET over std (no curl needed): (status line + headers, body).
fn http_get(base: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn wait_entry(disc: &str, pk: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let path = format!("/dmsg-discovery/entry/{pk}");
    while Instant::now() < deadline {
        if http_get(disc, &path).is_some_and(|r| r.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("entry of {pk} never contained {needle}");
}

fn get(disc: &str, url: &str, out: &Path) -> std::process::Output {
    Command::new(skymesh_bin())
        .args([
            "dmsg",
            "get",
            "--disc",
            disc,
            "--out",
            out.to_str().unwrap(),
            url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn dmsg_get_fetches_file_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = payload(5 * 1024 * 1024 + 123);
    std::fs::write(www.join("file.bin"), &data).unwrap();

    let (_d, disc) = discovery();
    let s = server(tmp.path(), "s1", &disc, &SecKey::generate(), None, 100);
    let host = SecKey::generate();
    let _h = serve_dir(&www, &host, &disc);
    wait_entry(&disc, &host.pubkey().to_hex(), "delegated_servers\":[\"");
    let out = tmp.path().join("got.bin");
    let url = format!("dmsg://{}:80/file.bin", host.pubkey().to_hex());
    let o = get(&disc, &url, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == data, "fetched bytes differ");

    // --stdout
    let o = Command::new(skymesh_bin())
        .args(["dmsg", "get", "--disc", &disc, "--stdout", &url])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(o.stdout == data);

    // The server's health endpoint and metrics.
    let h = format!("http://127.0.0.1:{}", s.health);
    assert!(http_get(&h, "/health").unwrap().starts_with("HTTP/1.0 200"));
    let m = http_get(&h, "/metrics").unwrap();
    assert!(m.contains("skymesh_dmsg_sessions"), "{m}");
    assert!(m.contains("skymesh_dmsg_streams_total"), "{m}");

    // A missing file is an error exit, not a hang.
    let o = get(
        &disc,
        &format!("dmsg://{}:80/nope", host.pubkey().to_hex()),
        &out,
    );
    assert!(!o.status.success());
}

#[test]
fn dmsg_get_through_the_other_server() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = payload(300_000);
    std::fs::write(www.join("f"), &data).unwrap();
    let (_d, disc) = discovery();
    let s1 = server(tmp.path(), "s1", &disc, &SecKey::generate(), None, 10);
    let host = SecKey::generate();
    let _h = serve_dir(&www, &host, &disc);
    wait_entry(&disc, &host.pubkey().to_hex(), &s1.pk);
    // A second server appears after the host chose s1. It advertises more free sessions (100 vs
    // at most 10), so the getter's own session goes to s2; the host is only on s1, so the
    // getter must open a session to one of the host's delegated servers (s1), as the reference
    // client does.
    let _s2 = server(tmp.path(), "s2", &disc, &SecKey::generate(), None, 100);
    wait_entry(&disc, &_s2.pk, "availableSessions");
    let out = tmp.path().join("got");
    let url = format!("dmsg://{}:80/f", host.pubkey().to_hex());
    let o = get(&disc, &url, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == data);
}

#[test]
fn dmsg_http_host_survives_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("f"), b"hello over dmsg").unwrap();
    let (_d, disc) = discovery();
    let ssk = SecKey::generate();
    let mut s1 = server(tmp.path(), "s1", &disc, &ssk, None, 100);
    let host = SecKey::generate();
    let _h = serve_dir(&www, &host, &disc);
    wait_entry(&disc, &host.pubkey().to_hex(), &s1.pk);
    let url = format!("dmsg://{}:80/f", host.pubkey().to_hex());
    let out = tmp.path().join("got");
    assert!(get(&disc, &url, &out).status.success());
    // Restart the server on the same port and key.
    s1.proc.kill();
    std::thread::sleep(Duration::from_millis(500));
    let port = s1.port;
    let config = s1.config.clone();
    let _s1b = Proc::spawn(
        "s1b",
        Command::new(skymesh_bin())
            .args(["dmsg", "server", config.to_str().unwrap()])
            .stdout(Stdio::null()),
    )
    .unwrap();
    wait_port(port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::fs::remove_file(&out).ok();
        let o = get(&disc, &url, &out);
        if o.status.success() {
            assert_eq!(std::fs::read(&out).unwrap(), b"hello over dmsg");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no successful fetch after the restart: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn dmsg_get_prints_a_servers_own_health() {
    let tmp = tempfile::tempdir().unwrap();
    let (_d, disc) = discovery();
    let ssk = SecKey::generate();
    let s = server(tmp.path(), "s1", &disc, &ssk, None, 100);
    wait_entry(&disc, &s.pk, "availableSessions");
    let url = format!("dmsg://{}:80/health", s.pk);
    let o = Command::new(skymesh_bin())
        .args(["dmsg", "get", "--disc", &disc, "--stdout", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dmsg_address"], format!("{}:80", s.pk).as_str(), "{v}");
    assert!(v["build_info"]["version"].is_string(), "{v}");
    assert!(v["sessions"].is_u64(), "{v}");
}
