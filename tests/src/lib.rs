//! Harness for skymesh's end-to-end tests: real `skymesh` processes, real sockets on 127.0.0.1,
//! real `redis-server` instances. Nothing here is mocked.
//!
//! - [`skymesh_bin`] finds (and if needed builds) the `skymesh` binary of this workspace.
//! - [`Proc`] runs a process and kills it on drop, so a failing test leaves nothing behind.
//! - [`free_port`] picks a free loopback TCP port.
//! - [`chaos`]: `/proc` resource samples and checks for the `chaos` scenarios.
#![deny(missing_docs)]

pub mod chaos;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// Path of the workspace's `skymesh` binary, built with the same profile as the running test.
///
/// `cargo test --workspace` does not build other packages' binaries for this crate, so the first
/// call runs `cargo build -p skymesh-bin --bin skymesh` (cargo's lock makes this safe while other
/// tests run). Set `SKYMESH_BIN` to test a binary built elsewhere.
pub fn skymesh_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SKYMESH_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test-exe> -> target/<profile>/skymesh
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test executable lives in target/<profile>/deps")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "skymesh-bin", "--bin", "skymesh"]);
        if release {
            cmd.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the skymesh binary");
        assert!(status.success(), "building the skymesh binary failed");
        let bin = profile_dir.join("skymesh");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// Runs `skymesh ARGS…` to completion with the given stdin and returns its output.
pub fn run_skymesh(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(skymesh_bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn skymesh");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait for skymesh")
}

/// A child process that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Proc {
    /// The running child.
    pub child: Child,
    /// A label for diagnostics.
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with stdout/stderr inherited unless the caller configured them.
    pub fn spawn(name: &str, cmd: &mut Command) -> std::io::Result<Proc> {
        Ok(Proc {
            child: cmd.spawn()?,
            name: name.to_string(),
        })
    }

    /// Kills the process with SIGKILL (no clean shutdown) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One plain HTTP/1.0 request to `127.0.0.1:port` (no client library needed for admin and
/// discovery endpoints). Returns the status and body, or `None` when the connection failed.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Calls `f` every 100 ms until it returns `Some`; panics naming `what` after `deadline`.
pub fn poll<T>(what: &str, deadline: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out ({deadline:?}) waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits until something listens on `127.0.0.1:port`; panics after `deadline`.
pub fn wait_port(port: u16, deadline: std::time::Duration) {
    poll(&format!("a listener on {port}"), deadline, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// `len` pseudo-random bytes (a fixed LCG), for files that must arrive byte-identical.
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

/// `GET path` on `127.0.0.1:port` parsed as JSON when the answer is 200.
pub fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    match http_request(port, "GET", path, None) {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// A `skymesh node` child process of a DMSG-over-DHT network (killed on drop).
#[derive(Debug)]
pub struct Member {
    /// Its name (and log file name).
    pub name: String,
    /// Its key.
    pub sk: keys::SecKey,
    /// Its `--http` port.
    pub http: u16,
    /// Its libp2p TCP port.
    pub p2p: u16,
    /// The process.
    pub proc: Proc,
}

impl Member {
    /// Its public key, hex.
    pub fn pk(&self) -> String {
        self.sk.pubkey().to_hex()
    }

    /// Its admin API base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// Its libp2p multiaddr with `/p2p/<peer id>`.
    pub fn multiaddr(&self) -> String {
        multiaddr(&self.sk, self.p2p)
    }
}

/// `/ip4/127.0.0.1/tcp/PORT/p2p/<peer id of sk>`.
pub fn multiaddr(sk: &keys::SecKey, p2p: u16) -> String {
    let peer = dhtnode::identity::peer_id(&sk.pubkey()).expect("a secp256k1 key is a peer id");
    format!("/ip4/127.0.0.1/tcp/{p2p}/p2p/{peer}")
}

/// Starts `skymesh node` named `name` in `dir` with the deployment file `deploy`: a full node
/// that is a DMSG server (discovery API in test mode) when `full`, else a public visor with a
/// DMSG client; `extra` arguments are appended. Logs go to `dir/NAME.log`.
pub fn spawn_member(
    dir: &std::path::Path,
    deploy: &std::path::Path,
    name: &str,
    sk: keys::SecKey,
    p2p: u16,
    full: bool,
    extra: &[&std::ffi::OsStr],
) -> Member {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    let _ = std::fs::remove_file(data.join(NODE_ADDRS));
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(["node", "--role", if full { "full" } else { "regular" }])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{p2p}")])
        .arg("--data")
        .arg(&data)
        .args(["--http", "127.0.0.1:0"])
        .arg("--deploy")
        .arg(deploy)
        .env("SKYMESH_SK", sk.to_hex())
        .stdout(Stdio::null())
        .stderr(log);
    if full {
        cmd.args(["--dmsg-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--disc-test-mode");
    } else {
        cmd.args(["--reachability", "public", "--dmsg"]);
    }
    cmd.args(extra);
    let mut proc = Proc::spawn(name, &mut cmd).expect("spawn skymesh node");
    let http = node_addrs(&mut proc, &data)["http"]
        .as_str()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .expect("the node's address file names its HTTP listener")
        .port();
    Member {
        name: name.to_string(),
        sk,
        http,
        p2p,
        proc,
    }
}

/// File in a node's data directory naming the addresses it bound (written once its listeners
/// are up; see `bin/src/commands/node/addrs.rs`).
pub const NODE_ADDRS: &str = "node.addrs.json";

/// Waits (up to 60 s) until the `skymesh node` in `proc`, with data directory `data`, has
/// written its address file, and returns it (`pid`, `http`, `p2p`, `dmsg`, `dmsg_public`).
/// Panics if the node exits first. Nodes given port 0 report the ports they got here, so a
/// test never pre-picks a port that another process could take first.
pub fn node_addrs(proc: &mut Proc, data: &std::path::Path) -> serde_json::Value {
    let pid = proc.child.id();
    let name = proc.name.clone();
    poll(
        &format!("{name} to write {NODE_ADDRS}"),
        std::time::Duration::from_secs(60),
        || {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("{name} exited ({status}) before binding its listeners");
            }
            let text = std::fs::read_to_string(data.join(NODE_ADDRS)).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            (v["pid"] == pid).then_some(v)
        },
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`, 32768 by default):
/// a port bound to `:0` and released lies inside that range, where the outgoing connections of
/// every process in a test may take it before the child that was told to listen there binds
/// it. With many nodes dialing each other that race made nodes fail to start. Each port is
/// handed out at most once per test process (starting at an offset derived from the process
/// id) and is checked free by binding it. Where the ephemeral range leaves too little room
/// below it, this falls back to a `:0` port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const BASE: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > BASE + 1_000 {
        let span = ephemeral_low - BASE;
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let port = BASE + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            if let Ok(port) = u16::try_from(port)
                && TcpListener::bind(("127.0.0.1", port)).is_ok()
            {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A private `redis-server` on a free loopback port, with its data in a temp dir, killed on drop.
///
/// Fails loudly (panics with an install hint) when `redis-server` is not installed: a test that
/// needs Redis must never pass by skipping.
#[derive(Debug)]
pub struct RedisServer {
    proc: Option<Proc>,
    /// AOF with `appendfsync always` (tests) or no persistence at all (benchmarks).
    durable: bool,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with AOF persistence and `appendfsync always`, so that every write Redis
    /// acknowledged survives a SIGKILL of the server.
    pub fn start() -> RedisServer {
        RedisServer::start_with(true)
    }

    /// Starts a server without any persistence, so that the disk does not decide the figures of
    /// a benchmark. A restart loses everything.
    pub fn start_volatile() -> RedisServer {
        RedisServer::start_with(false)
    }

    fn start_with(durable: bool) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir for redis");
        let port = free_port();
        let mut s = RedisServer {
            proc: None,
            durable,
            port,
            dir,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let bin = which_redis();
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"]);
        if self.durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn("redis-server", &mut cmd).expect("spawn redis-server");
        self.proc = Some(proc);
        wait_listening(self.port);
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILLs the server (no shutdown save; AOF keeps acknowledged writes).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

fn which_redis() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("redis-server");
        if p.exists() {
            return p;
        }
    }
    for p in [
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
        "/usr/sbin/redis-server",
    ] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "redis-server is not installed: this test needs a real Redis (apt-get install -y redis-server)"
    );
}

/// A Redis Cluster of three primaries (no replicas) on free loopback ports, each node in its own
/// temp dir, created with `redis-cli --cluster create`; all nodes are killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Proc>,
    /// The node ports.
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the nodes, joins them into one cluster and waits until it serves every slot.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir for redis cluster");
        let bin = which_redis();
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for i in 0..3 {
            // The cluster bus listens on port + 10000: pick ports whose bus port is free too.
            let port = loop {
                let p = free_port();
                if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
                    break p;
                }
            };
            let node_dir = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut cmd = Command::new(&bin);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            nodes.push(Proc::spawn("redis-cluster-node", &mut cmd).expect("spawn redis-server"));
            ports.push(port);
        }
        for &p in &ports {
            wait_listening(p);
        }
        let cli = which_redis().with_file_name("redis-cli");
        let mut create = Command::new(&cli);
        create.args(["--cluster", "create"]);
        for &p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create (package redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for &p in &ports {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli cluster info");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "cluster never became ok"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        RedisCluster {
            nodes,
            ports,
            _dir: dir,
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3` (skymesh's cluster URL form).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Number of running nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node runs.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not listen on 127.0.0.1:{port} within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
