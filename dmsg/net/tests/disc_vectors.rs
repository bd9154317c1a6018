//! Replays `dmsg/vectors/discovery_http.json` instance by instance against our discovery server
//! over a real socket, as the vectors README describes: statuses, content types and bodies per
//! `body_compare`. Cases the reference answers by panicking (`reference_quirk.kind == "bug"`)
//! expect the reply the note recommends. `lax`/`quirk` cases are reproduced as recorded.
//!
//! Each instance runs against the embedded store and against Redis (a private `redis-server`).
//! The `expiry` instance runs with lifetimes scaled by 1/30 (server 4 s, `?timeout=true` client
//! 6 s) and `wait_before` scaled the same way; `default_lifetimes_are_the_reference_ones` checks
//! the real defaults.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg_proto::disc::Entry;
use keys::SecKey;
use serde_json::Value;

fn vectors() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vectors/discovery_http.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn secret_keys() -> HashMap<String, SecKey> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors/keys.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_string(),
                SecKey::from_hex(k["sk"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// The entry text a case's echo stands for: `signed_json` plus the signature member.
fn echo_text(signed_json: &str, sig: &str) -> String {
    let base = &signed_json[..signed_json.len() - 1];
    format!("{base},\"signature\":\"{sig}\"}}")
}

struct Sent {
    body: Option<String>,
    /// (recorded entry text, our entry text) for echo replacement.
    echo: Option<(String, String)>,
}

fn build(case: &Value, keys: &HashMap<String, SecKey>, sent: &HashMap<String, Sent>) -> Sent {
    let req_body = case["request"]["body"].as_str().map(str::to_string);
    let Some(entry) = case.get("entry").filter(|e| !e.is_null()) else {
        return Sent {
            body: req_body,
            echo: None,
        };
    };
    let signed = entry["signed_json"].as_str().unwrap();
    let rec_sig = entry["signature"].as_str().unwrap();
    let recorded = echo_text(signed, rec_sig);
    let rule = entry["timestamp_rule"].as_str().unwrap();
    if let Some(other) = rule.strip_prefix("same as ") {
        let s = &sent[other];
        return Sent {
            body: s.body.clone(),
            echo: s.echo.clone(),
        };
    }
    let offset_ns: i64 = match rule {
        "fixed" => {
            return Sent {
                body: req_body,
                echo: Some((recorded.clone(), recorded)),
            };
        }
        "now" => 0,
        "now-120s" => -120_000_000_000,
        "now+60s" => 60_000_000_000,
        other => panic!("unknown timestamp rule {other}"),
    };
    let mut e = Entry::from_json(signed.as_bytes()).unwrap();
    e.timestamp = dmsg::now_ns() + offset_ns;
    e.signature.clear();
    e.sign(&keys[entry["signer"].as_str().unwrap()]);
    if entry["body_form"]
        .as_str()
        .unwrap()
        .contains("digit 10 changed")
    {
        let mut sig: Vec<u8> = e.signature.clone().into_bytes();
        sig[10] = if sig[10] == b'0' { b'1' } else { b'0' };
        e.signature = String::from_utf8(sig).unwrap();
    }
    let ours = e.canonical_json();
    Sent {
        body: Some(ours.clone()),
        echo: Some((recorded, ours)),
    }
}

fn structural_match(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|gv| structural_match(v, gv)))
        }
        (Value::String(_), Value::String(_)) => true,
        (Value::Number(_), Value::Number(_)) => true,
        (Value::Bool(_), Value::Bool(_)) => true,
        (Value::Array(_), Value::Array(_)) => true,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

async fn run_instance(name: &str, cfg: DiscServerConfig, time_scale: f64) {
    let v = vectors();
    let keys = secret_keys();
    let server = DiscServer::spawn(cfg).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let cases: Vec<&Value> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["instance"] == name)
        .collect();
    let by_id: HashMap<String, &Value> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c))
        .collect();
    assert!(
        cases.len() >= 5,
        "instance {name} has {} cases",
        cases.len()
    );
    let mut sent: HashMap<String, Sent> = HashMap::new();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap().to_string();
        if let Some(w) = case.get("wait_before").filter(|w| !w.is_null()) {
            let after = &sent_at[w["after_case"].as_str().unwrap()];
            let secs = w["seconds_after_case"].as_f64().unwrap() * time_scale;
            let until = *after + Duration::from_secs_f64(secs);
            tokio::time::sleep_until(until.into()).await;
        }
        let s = build(case, &keys, &sent);
        let req = &case["request"];
        let method =
            reqwest::Method::from_bytes(req["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut rb = http.request(method, format!("{base}{}", req["path"].as_str().unwrap()));
        if let Some(h) = req["headers"].as_object() {
            for (k, val) in h {
                rb = rb.header(k, val.as_str().unwrap());
            }
        }
        if let Some(b) = &s.body {
            rb = rb.body(b.clone());
        }
        let resp = rb.send().await.unwrap();
        sent_at.insert(id.clone(), Instant::now());
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|h| h.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        sent.insert(id.clone(), s);

        // What we expect.
        let mut want = &case["response"];
        let quirk = case["reference_quirk"]["kind"].as_str().unwrap_or("");
        let bug_body: Option<(u16, String)> = if quirk == "bug" {
            match id.as_str() {
                "get_pk_x_not_in_field" => {
                    Some((400, r#"{"message":"error bad input","code":400}"#.into()))
                }
                "post_delegated_server_x_not_in_field" => Some((
                    500,
                    r#"{"message":"something unexpected happened","code":500}"#.into(),
                )),
                "available_servers_after_server_key_became_client" => {
                    want = &by_id["available_servers_after_cleanup"]["response"];
                    None
                }
                other => panic!("unhandled bug case {other}"),
            }
        } else {
            None
        };
        let (want_status, want_ctype) = match &bug_body {
            Some((st, _)) => (*st, Some("application/json".to_string())),
            None => (
                want["status"].as_u64().unwrap() as u16,
                want["content_type"].as_str().map(str::to_string),
            ),
        };
        let mut want_body = match &bug_body {
            Some((_, b)) => b.clone(),
            None => want["body"].as_str().unwrap_or("").to_string(),
        };
        if let Some(echoes) = want["body_echoes_cases"].as_array() {
            for e in echoes {
                let e = e.as_str().unwrap();
                if let Some((rec, ours)) = sent.get(e).and_then(|s| s.echo.clone()) {
                    want_body = want_body.replace(&rec, &ours);
                }
            }
        }
        let compare = if bug_body.is_some() {
            "exact"
        } else {
            want["body_compare"].as_str().unwrap_or("exact")
        };
        let body_ok = match compare {
            "exact" | "exact_with_echoed_entries" => body == want_body,
            "unordered_json_array" => {
                let mut w: Vec<String> = serde_json::from_str::<Vec<Value>>(&want_body)
                    .unwrap()
                    .iter()
                    .map(|x| x.to_string())
                    .collect();
                let mut g: Vec<String> = serde_json::from_str::<Vec<Value>>(&body)
                    .map(|v| v.iter().map(|x| x.to_string()).collect())
                    .unwrap_or_default();
                w.sort();
                g.sort();
                w == g
            }
            "structural" => serde_json::from_str::<Value>(&body)
                .is_ok_and(|g| structural_match(&serde_json::from_str(&want_body).unwrap(), &g)),
            other => panic!("unknown body_compare {other}"),
        };
        if status != want_status || ctype != want_ctype || !body_ok {
            failures.push(format!(
                "{id}: got {status} {ctype:?} {body:?}\n   want {want_status} {want_ctype:?} {want_body:?} ({compare})"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn cfg(test_mode: bool) -> DiscServerConfig {
    let mut c = DiscServerConfig::new("127.0.0.1:0");
    c.test_mode = test_mode;
    // The recordings are of the 2023 reference, which drops the 2026 `protocol` member.
    c.entry_protocol = false;
    c.whitelist = vec!["0301e38521adf5710a4711b4c211ad7197260d633cfa62e44fc40413d00f1d8a5f".into()];
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_main_instance() {
    run_instance("main", cfg(true), 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_production_instance() {
    run_instance("production", cfg(false), 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_expiry_instance_scaled() {
    let mut c = cfg(true);
    c.whitelist.clear();
    c.server_ttl = Duration::from_secs(4);
    c.client_ttl = Duration::from_secs(6);
    run_instance("expiry", c, 1.0 / 30.0).await;
}

#[test]
fn default_lifetimes_are_the_reference_ones() {
    let c = DiscServerConfig::new("127.0.0.1:0");
    assert_eq!(c.server_ttl, Duration::from_secs(120));
    assert_eq!(c.client_ttl, Duration::from_secs(180));
}

/// A private redis-server on a free port, killed on drop. Panics when redis-server is missing:
/// a Redis test must never pass by skipping.
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_redis_main_instance() {
    let r = Redis::start();
    let mut c = cfg(true);
    c.redis = Some(r.url());
    run_instance("main", c, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_redis_production_instance() {
    let r = Redis::start();
    let mut c = cfg(false);
    c.redis = Some(r.url());
    run_instance("production", c, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_redis_expiry_instance_scaled() {
    let r = Redis::start();
    let mut c = cfg(true);
    c.whitelist.clear();
    c.server_ttl = Duration::from_secs(4);
    c.client_ttl = Duration::from_secs(6);
    c.redis = Some(r.url());
    run_instance("expiry", c, 1.0 / 30.0).await;
}
