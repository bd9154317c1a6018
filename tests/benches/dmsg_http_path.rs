//! The whole DMSG-HTTP path with real processes (issue #18): `skymesh dmsg http` (serving host)
//! → `skymesh dmsg server` (relay) → `skymesh dmsg get` (client), with `skymesh dmsg discovery`
//! for them to meet. For a file of `DMSG_PATH_MB` MiB (default 256) it prints, per process,
//! CPU seconds per GiB (utime + stime from `/proc`; for `get`, the child times its parent shell
//! collects) and the wall time of the transfer, for `DMSG_PATH_RUNS` runs (default 3) and
//! their median, next to the targets and the Go reference's figures.
//!
//! `cargo bench -p skymesh-tests --bench dmsg_http_path`
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::floors::Floors;
use common::{TICKS, proc_stat};
use keys::SecKey;
use skymesh_tests::{Proc, free_port, payload, skymesh_bin, wait_port};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of `pid` in seconds, and its minor page faults.
fn cpu_of(pid: u32) -> (f64, u64) {
    proc_stat(&format!("/proc/{pid}/stat"))
}

fn spawn(name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    Proc::spawn(name, &mut cmd).unwrap()
}

/// Runs `dmsg get` to completion inside a shell that reports its children's CPU time and
/// minor page faults: returns (wall seconds, CPU seconds of `get`, its minor faults).
fn timed_get(disc: &str, url: &str, out: &Path) -> (f64, f64, u64) {
    // After `set --`, $1 is field 3: cminflt is field 11, cutime 16, cstime 17.
    let script = r#""$0" dmsg get --disc "$1" --out "$2" "$3" >/dev/null || exit 3
read -r stat < /proc/$$/stat
set -- ${stat##*\) }
echo "${14} ${15} ${9}""#;
    let start = Instant::now();
    let o = Command::new("bash")
        .args(["-c", script])
        .arg(skymesh_bin())
        .args([disc, out.to_str().unwrap(), url])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    assert!(o.status.success(), "dmsg get failed: {o:?}");
    let text = String::from_utf8(o.stdout).unwrap();
    let ticks: Vec<u64> = text
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    (wall, (ticks[0] + ticks[1]) as f64 / TICKS, ticks[2])
}

struct Run {
    wall: f64,
    server: f64,
    http: f64,
    get: f64,
    /// Minor page faults per MiB: server, http, get.
    faults: [f64; 3],
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mb = env_usize("DMSG_PATH_MB", 256);
    let runs = env_usize("DMSG_PATH_RUNS", 3).max(1);
    let gib = mb as f64 / 1024.0;
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let data = payload(mb << 20);
    std::fs::write(www.join("file.bin"), &data).unwrap();

    let disc_port = free_port();
    let disc = format!("http://127.0.0.1:{disc_port}");
    let _disc = spawn(
        "discovery",
        &[
            "dmsg",
            "discovery",
            "--addr",
            &format!("127.0.0.1:{disc_port}"),
            "-t",
        ],
    );
    wait_port(disc_port, Duration::from_secs(30));
    let srv_sk = SecKey::from_seed(b"dmsg-http-path-server");
    let (port, health) = (free_port(), free_port());
    let cfg = serde_json::json!({
        "public_key": srv_sk.pubkey().to_hex(),
        "secret_key": srv_sk.to_hex(),
        "discovery": disc,
        "public_address": format!("127.0.0.1:{port}"),
        "local_address": format!("127.0.0.1:{port}"),
        "health_endpoint_address": format!("127.0.0.1:{health}"),
        "log_level": "info",
        "update_interval": 0,
        "max_sessions": 100
    });
    let cfg_path = tmp.path().join("server.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let server = spawn("server", &["dmsg", "server", cfg_path.to_str().unwrap()]);
    wait_port(port, Duration::from_secs(30));
    let host = SecKey::from_seed(b"dmsg-http-path-host");
    let http = spawn(
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
        ],
    );
    let url = format!("dmsg://{}:80/file.bin", host.pubkey().to_hex());
    let out = tmp.path().join("got.bin");
    // Warm-up: the host registered and a small fetch works.
    let deadline = Instant::now() + Duration::from_secs(60);
    let small = tmp.path().join("www/small.txt");
    std::fs::write(&small, b"ok").unwrap();
    let small_url = format!("dmsg://{}:80/small.txt", host.pubkey().to_hex());
    loop {
        let o = Command::new(skymesh_bin())
            .args(["dmsg", "get", "--disc", &disc, "--stdout", &small_url])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        if o.status.success() && o.stdout == b"ok" {
            break;
        }
        assert!(Instant::now() < deadline, "the host never became reachable");
        std::thread::sleep(Duration::from_millis(200));
    }

    println!("DMSG-HTTP path, {mb} MiB, real processes on loopback ({runs} runs)");
    println!(
        "{:>4} {:>9} {:>9} {:>13} {:>13} {:>13}   minor page faults per MiB (server/http/get)",
        "run", "wall s", "MB/s", "server CPU-s/GiB", "http CPU-s/GiB", "get CPU-s/GiB"
    );
    let mut all = Vec::new();
    for i in 0..runs {
        let _ = std::fs::remove_file(&out);
        let ((s0, sf0), (h0, hf0)) = (cpu_of(server.child.id()), cpu_of(http.child.id()));
        let (wall, get_cpu, get_faults) = timed_get(&disc, &url, &out);
        let ((s1, sf1), (h1, hf1)) = (cpu_of(server.child.id()), cpu_of(http.child.id()));
        let got = std::fs::read(&out).unwrap();
        assert!(got == data, "run {i}: the file arrived damaged");
        let r = Run {
            wall,
            server: (s1 - s0) / gib,
            http: (h1 - h0) / gib,
            get: get_cpu / gib,
            faults: [
                (sf1 - sf0) as f64 / mb as f64,
                (hf1 - hf0) as f64 / mb as f64,
                get_faults as f64 / mb as f64,
            ],
        };
        println!(
            "{:>4} {:>9.2} {:>9.0} {:>13.2} {:>13.2} {:>13.2}   {:.1} / {:.1} / {:.1}",
            i + 1,
            r.wall,
            (mb as f64 * 1.048_576) / r.wall,
            r.server,
            r.http,
            r.get,
            r.faults[0],
            r.faults[1],
            r.faults[2]
        );
        all.push(r);
    }
    let m = |f: fn(&Run) -> f64| median(all.iter().map(f).collect());
    let wall = m(|r| r.wall);
    println!(
        "{:>4} {:>9.2} {:>9.0} {:>13.2} {:>13.2} {:>13.2}   {:.1} / {:.1} / {:.1}",
        "med",
        wall,
        (mb as f64 * 1.048_576) / wall,
        m(|r| r.server),
        m(|r| r.http),
        m(|r| r.get),
        m(|r| r.faults[0]),
        m(|r| r.faults[1]),
        m(|r| r.faults[2])
    );
    println!(
        "target: server ≤ 0.40, each endpoint ≤ 1.00 CPU-s/GiB; Go reference: server ≈ 4.0, \
         dmsg http ≈ 7.4, dmsg get ≈ 5.2 CPU-s/GiB"
    );

    // The machine's floors for the same jobs, measured now (best of 3, at least 1 GiB).
    let floor_mb = mb.max(1024);
    let f = Floors::measure(floor_mb << 20, &tmp.path().join("floor.bin"));
    println!(
        "floors on this machine ({floor_mb} MiB, one thread doing only that, best of 3), CPU-s/GiB:"
    );
    println!(
        "  TCP relay (one loopback socket into another, 64 KiB reads): {:.2}",
        f.relay
    );
    println!(
        "  ChaCha20-Poly1305 in {}-byte records: seal {:.2}, open {:.2}",
        dmsg_proto::record::MAX_PLAINTEXT,
        f.seal,
        f.open
    );
    println!(
        "  loopback socket into a new file {:.2}; file into a loopback socket {:.2}",
        f.socket_to_file, f.file_to_socket
    );
    for (name, got, floor, target) in [
        ("server", m(|r| r.server), f.server(), 0.40),
        ("dmsg http", m(|r| r.http), f.http(), 1.00),
        ("dmsg get", m(|r| r.get), f.get(), 1.00),
    ] {
        println!(
            "  {name:<9} median {got:.2} = {:.2}x its floor {floor:.2} (target {target:.2} = {:.2}x the floor)",
            got / floor,
            target / floor
        );
    }
}
