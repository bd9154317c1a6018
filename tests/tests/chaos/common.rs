//! Processes the scenarios share: a discovery and a DMSG server (standalone `skymesh dmsg …`).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use keys::SecKey;
use skymesh_tests::{Proc, free_port, http_request, poll, skymesh_bin, wait_port};

/// How long a process gets to listen on its port (2-core machine running other tests).
pub const START: Duration = Duration::from_secs(60);

/// `skymesh dmsg discovery -t` on a free port, with its base URL and port.
pub fn discovery(dir: &Path) -> (Proc, String, u16) {
    let port = free_port();
    let log = std::fs::File::create(dir.join("discovery.log")).unwrap();
    let p = Proc::spawn(
        "discovery",
        Command::new(skymesh_bin())
            .args([
                "dmsg",
                "discovery",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "-t",
            ])
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    wait_port(port, START);
    (p, format!("http://127.0.0.1:{port}"), port)
}

/// A `skymesh dmsg server` config file and the ports it names.
pub struct ServerPlan {
    /// The config file.
    pub config: std::path::PathBuf,
    /// Its DMSG port.
    pub port: u16,
    /// Its health/metrics port.
    pub health: u16,
    /// Its key, hex.
    pub pk: String,
}

/// Writes the config of a DMSG server registering at `disc` with `max_sessions`.
pub fn server_plan(
    dir: &Path,
    name: &str,
    disc: &str,
    sk: &SecKey,
    max_sessions: u32,
) -> ServerPlan {
    let (port, health) = (free_port(), free_port());
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
    let config = dir.join(format!("{name}.json"));
    std::fs::write(&config, cfg.to_string()).unwrap();
    ServerPlan {
        config,
        port,
        health,
        pk: sk.pubkey().to_hex(),
    }
}

/// Starts the server of `plan` (logs appended to `dir/NAME.log`) and waits for its port.
pub fn start_server(dir: &Path, name: &str, plan: &ServerPlan) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap();
    let p = Proc::spawn(
        name,
        Command::new(skymesh_bin())
            .args(["dmsg", "server"])
            .arg(&plan.config)
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    wait_port(plan.port, START);
    p
}

/// The discovery entry of `pk` as JSON (`None`: not found or not answering).
pub fn entry(disc_port: u16, pk: &str) -> Option<serde_json::Value> {
    match http_request(
        disc_port,
        "GET",
        &format!("/dmsg-discovery/entry/{pk}"),
        None,
    ) {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Waits until the discovery serves `pk`'s entry and `ok` holds for it.
pub fn wait_entry(
    disc_port: u16,
    pk: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    poll(what, START, || entry(disc_port, pk).filter(|e| ok(e)))
}

/// The value of the unlabelled metric `name` in `GET /metrics` on `port`.
pub fn metric(port: u16, name: &str) -> Option<f64> {
    let (status, body) = http_request(port, "GET", "/metrics", None)?;
    if status != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A node started by the chaos scenarios (full: a DMSG server, discovery API in test mode).
#[allow(dead_code)]
pub struct Full {
    /// The process.
    pub proc: Proc,
    /// Its key.
    pub sk: SecKey,
    /// Admin API port.
    pub http: u16,
    /// libp2p port.
    pub p2p: u16,
    /// DMSG port.
    pub dmsg: u16,
}

/// Starts `skymesh node --role full` named `name` with data in `dir/NAME`, a DMSG server on a
/// free port, no bootstrap peers unless `extra` names some; waits for `/health`.
pub fn full_node(dir: &Path, name: &str, sk: SecKey, extra: &[&str]) -> Full {
    node(dir, name, "full", sk, extra)
}

/// Starts `skymesh node --role ROLE` like [`full_node`]; a regular node is public and has no
/// DMSG server (`dmsg` is then an unused port).
pub fn node(dir: &Path, name: &str, role: &str, sk: SecKey, extra: &[&str]) -> Full {
    node_env(dir, name, role, sk, extra, &[])
}

/// [`node`] with extra environment variables.
pub fn node_env(
    dir: &Path,
    name: &str,
    role: &str,
    sk: SecKey,
    extra: &[&str],
    env: &[(&str, String)],
) -> Full {
    let (http, p2p, dmsg) = (free_port(), free_port(), free_port());
    let role_args: Vec<String> = if role == "full" {
        vec![
            "--dmsg-listen".into(),
            format!("127.0.0.1:{dmsg}"),
            "--disc-test-mode".into(),
        ]
    } else {
        vec!["--reachability".into(), "public".into()]
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap();
    let deploy = dir.join(format!("{name}-deploy.json"));
    std::fs::write(
        &deploy,
        serde_json::json!({"v": 1, "name": "chaos", "dht_bootstrap": []}).to_string(),
    )
    .unwrap();
    let proc = Proc::spawn(
        name,
        Command::new(skymesh_bin())
            .args(["node", "--role", role])
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
            .arg("--data")
            .arg(dir.join(name))
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(&role_args)
            .arg("--deploy")
            .arg(&deploy)
            .args(extra)
            .env("SKYMESH_SK", sk.to_hex())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    poll(&format!("{name} healthy"), START, || {
        skymesh_tests::get_json(http, "/health")
    });
    Full {
        proc,
        sk,
        http,
        p2p,
        dmsg,
    }
}

impl Full {
    /// Its libp2p multiaddr with `/p2p/<peer id>`.
    pub fn multiaddr(&self) -> String {
        skymesh_tests::multiaddr(&self.sk, self.p2p)
    }

    /// Item counts by salt (`GET /api/v1/info`).
    pub fn items(&self, salt: &str) -> Option<u64> {
        skymesh_tests::get_json(self.http, "/api/v1/info")?["items"][salt].as_u64()
    }
}
