//! The mirror role end to end with real processes: `skymesh mirror put/import` write into a real
//! `redis-server`; a `skymesh node --role full --redis URL` serves the items through
//! `skymesh dht get` without a restart.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::{Proc, RedisServer, free_port, run_skymesh, skymesh_bin};

const SVC_VALUE: &str =
    r#"{"v":1,"services":[{"kind":"vpn","port":44,"addrs":["127.0.0.1:3435"],"version":"v1"}]}"#;

fn dht_get(http: u16, pk: &str, salt: &str) -> Option<serde_json::Value> {
    let out = run_skymesh(
        &[
            "dht",
            "get",
            "--node",
            &format!("http://127.0.0.1:{http}"),
            "--pk",
            pk,
            "--salt",
            salt,
        ],
        None,
    );
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn wait_http(port: u16) {
    let end = Instant::now() + Duration::from_secs(90);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "node HTTP API never came up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mirror_writes_are_served_by_a_full_node_live() {
    // The value must be canonical for salt `svc`: check our literal with the library first.
    dht::Value::decode(&dht::Salt::new("svc").unwrap(), SVC_VALUE.as_bytes()).unwrap();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let service = SecKey::from_seed(b"mirror-e2e-service");
    let visor = SecKey::from_seed(b"mirror-e2e-visor");
    let (p2p, http) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let _node = Proc::spawn(
        "full",
        Command::new(skymesh_bin())
            .args(["node", "--role", "full"])
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
            .arg("--data")
            .arg(dir.path().join("full"))
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--redis", &redis.url()])
            .args(["--trusted-writer", &service.pubkey().to_hex()])
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    wait_http(http);

    // 1. The service's own item, written after the node started; 2. an item written *for* a
    //    visor by the (trusted) service. Each must be served within 1 s of `mirror put` returning.
    for subject in [None, Some(visor.pubkey())] {
        let mut args = vec![
            "mirror".to_string(),
            "put".into(),
            "--redis".into(),
            redis.url(),
            "--sk".into(),
            service.to_hex(),
            "--salt".into(),
            "svc".into(),
            "--value".into(),
            SVC_VALUE.into(),
        ];
        if let Some(s) = subject {
            args.extend(["--for".to_string(), s.to_hex()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_skymesh(&args, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = Instant::now();
        let pk = subject.unwrap_or(service.pubkey()).to_hex();
        let item = loop {
            if let Some(v) = dht_get(http, &pk, "svc") {
                break v;
            }
            assert!(
                written.elapsed() < Duration::from_secs(1),
                "mirror write for {pk} not served within 1 s"
            );
        };
        eprintln!(
            "mirror write visible through `dht get` after {:?}",
            written.elapsed()
        );
        assert_eq!(item["pk"], pk);
        assert_eq!(item["value"], SVC_VALUE);
    }

    // 3. Bulk import of JSON lines (unsigned records signed with --sk, plus one bad line).
    let mut lines = String::new();
    let mut subjects = Vec::new();
    for i in 0..20 {
        let s = SecKey::from_seed(format!("import-{i}").as_bytes())
            .pubkey()
            .to_hex();
        lines.push_str(
            &serde_json::json!({"salt": "svc", "value": SVC_VALUE, "for": s}).to_string(),
        );
        lines.push('\n');
        subjects.push(s);
    }
    lines.push_str("{\"salt\":\"svc\",\"value\":\"not json\"}\n");
    let file = dir.path().join("items.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out = run_skymesh(
        &[
            "mirror",
            "import",
            "--redis",
            &redis.url(),
            "--sk",
            &service.to_hex(),
            file.to_str().unwrap(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad line must make import fail: {stderr}"
    );
    assert!(stderr.contains("20 written"), "{stderr}");
    assert!(stderr.contains("1 failed"), "{stderr}");
    let t = Instant::now();
    for s in &subjects {
        while dht_get(http, s, "svc").is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "imported item {s} not served"
            );
        }
    }
}

#[test]
fn mirror_put_refuses_invalid_values_and_bad_keys() {
    let redis = RedisServer::start();
    let sk = SecKey::generate();
    let out = run_skymesh(
        &[
            "mirror",
            "put",
            "--redis",
            &redis.url(),
            "--sk",
            &sk.to_hex(),
            "--salt",
            "svc",
            "--value",
            "nope",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
    let out = run_skymesh(
        &[
            "mirror",
            "put",
            "--redis",
            &redis.url(),
            "--sk",
            "xyz",
            "--salt",
            "svc",
            "--value",
            SVC_VALUE,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sk"));
}
