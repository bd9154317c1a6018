//! The admin API's bearer token (issue #20) on real `skymesh node` processes: required with
//! `--admin-auth token` (what a non-loopback `--http` gets by default), created 0600 in the
//! data directory, its path printed at start; `/health` and `/metrics` stay open; every other
//! route answers 401 without it; the CLI passes it from `--token`, `$SKYMESH_TOKEN` or
//! `--data DIR`. A loopback node without the flag needs none and creates no token file.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use keys::SecKey;
use skymesh_tests::{Proc, free_port, poll, run_skymesh, skymesh_bin};

const DEADLINE: Duration = Duration::from_secs(60);

/// One HTTP/1.0 request with optional `Authorization` header: (status, headers+body text).
fn request(port: u16, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

fn spawn(dir: &std::path::Path, http: u16, extra: &[&str]) -> Proc {
    let p2p = free_port();
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(["node", "--role", "full"])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--sk", &SecKey::generate().to_hex()])
        // Bootstrap from itself: no deployment file, no traffic beyond loopback.
        .args([
            "--bootstrap",
            &skymesh_tests::multiaddr(&SecKey::generate(), free_port()),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap());
    let p = Proc::spawn("node", &mut cmd).unwrap();
    poll("the node's HTTP listener", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", http)).ok()
    });
    p
}

#[test]
fn token_protects_the_admin_api_but_not_health_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let http = free_port();
    let _node = spawn(tmp.path(), http, &["--admin-auth", "token"]);
    let token_path = tmp.path().join("data").join("admin.token");
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert_eq!(token.trim().len(), 64, "32 random bytes in hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "token file is private");
    }
    let log = std::fs::read_to_string(tmp.path().join("node.log")).unwrap();
    assert!(
        log.contains(&token_path.display().to_string()),
        "start-up names the token file: {log}"
    );
    assert!(
        !log.contains(token.trim()),
        "the token itself is never logged"
    );

    // Open without a token.
    assert_eq!(request(http, "GET", "/health", None).0, 200);
    let (code, metrics) = request(http, "GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(metrics.contains("skymesh_dht_"), "{metrics}");
    assert_eq!(request(http, "GET", "/", None).0, 200, "status page shell");

    // Refused without it, or with a wrong one.
    for path in ["/api/v1/info", "/api/v1/dmsg", "/api/v1/status/sync"] {
        let (code, text) = request(http, "GET", path, None);
        assert_eq!(code, 401, "{path}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{text}"
        );
        let wrong = format!("Bearer {}", "0".repeat(64));
        assert_eq!(request(http, "GET", path, Some(&wrong)).0, 401, "{path}");
        assert_eq!(
            request(http, "GET", path, Some(token.trim())).0,
            401,
            "{path}: the token without the Bearer scheme"
        );
    }
    assert_eq!(request(http, "POST", "/api/v1/put", None).0, 401);
    // Accepted with it.
    let bearer = format!("Bearer {}", token.trim());
    assert_eq!(request(http, "GET", "/api/v1/info", Some(&bearer)).0, 200);

    // The CLI: refused without the token, accepted from --token, $SKYMESH_TOKEN and --data.
    let url = format!("http://127.0.0.1:{http}");
    let out = run_skymesh(&["dht", "info", "--node", &url, "--json"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    let out = run_skymesh(
        &[
            "dht",
            "info",
            "--node",
            &url,
            "--json",
            "--token",
            token.trim(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = tmp.path().join("data");
    let out = run_skymesh(
        &[
            "dht",
            "info",
            "--node",
            &url,
            "--json",
            "--data",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["role"], "full");
    let out = Command::new(skymesh_bin())
        .args([
            "dht", "put", "--node", &url, "--salt", "auth", "--value", "ok",
        ])
        .env("SKYMESH_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(skymesh_bin())
        .args(["tp", "ls", "--node", &url, "--json"])
        .env("SKYMESH_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn token_file_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let http = free_port();
    let mut node = spawn(tmp.path(), http, &["--admin-auth", "token"]);
    let path = tmp.path().join("data").join("admin.token");
    let first = std::fs::read_to_string(&path).unwrap();
    node.kill();
    let http2 = free_port();
    let _node = spawn(tmp.path(), http2, &["--admin-auth", "token"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    let bearer = format!("Bearer {}", first.trim());
    assert_eq!(request(http2, "GET", "/api/v1/info", Some(&bearer)).0, 200);
}

#[test]
fn loopback_node_needs_no_token_and_creates_none() {
    let tmp = tempfile::tempdir().unwrap();
    let http = free_port();
    let _node = spawn(tmp.path(), http, &[]);
    assert_eq!(request(http, "GET", "/api/v1/info", None).0, 200);
    assert!(!tmp.path().join("data").join("admin.token").exists());
}
