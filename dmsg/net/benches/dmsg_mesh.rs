//! Server-mesh benchmark on loopback (issue #14): two DMSG servers A and B, each in its own
//! child process, peered with each other; the clients and the discovery run in this process.
//!
//! In one run it prints, next to each other:
//! * stream dial latency p50/p99: direct (dialer and listener both on A) and forwarded
//!   (dialer on A, listener on B: A → B one hop);
//! * single-stream throughput: direct and forwarded;
//! * server CPU seconds per GiB (from `/proc/<pid>/stat` of the server processes): A alone for
//!   the direct stream, A + B for the forwarded one.
//!
//! Targets: forwarded dial p50 ≤ 1.5× direct; forwarded throughput ≥ 80 % of direct.
//!
//! `cargo bench -p skymesh-dmsg --bench dmsg_mesh` (env `DMSG_BENCH_MB`, default 256, and
//! `DMSG_BENCH_DIALS`, default 2000, scale the runs).
#![allow(clippy::unwrap_used)]

mod common;

use common::{cpu_secs_of, env_usize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::metrics::ServerMetrics;
use dmsg::server::{MeshConfig, PeerAddr};
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::{PubKey, SecKey};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Child: `--serve-mesh SK LISTEN PEER_PK PEER_ADDR DISC_URL READY_FILE`.
fn serve_child(a: &[String]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sk = SecKey::from_hex(&a[0]).unwrap();
        let mut sc = ServerConfig::new(sk, &a[1]);
        sc.discovery_url(&a[4]);
        sc.mesh = MeshConfig {
            peers: vec![PeerAddr {
                pk: PubKey::from_hex(&a[2]).unwrap(),
                address: a[3].clone(),
            }],
            backoff_min: Duration::from_millis(100),
            ..MeshConfig::default()
        };
        let mut reg = Registry::default();
        let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
            .await
            .unwrap();
        while !server.mesh_peers().iter().all(|p| p.up) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::write(&a[5], "up").unwrap();
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

struct Child {
    proc: std::process::Child,
    pk: PubKey,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

fn spawn_server(
    sk: &SecKey,
    listen: &str,
    peer: &SecKey,
    peer_addr: &str,
    disc: &str,
    ready: &Path,
) -> Child {
    let proc = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve-mesh")
        .args([
            &sk.to_hex(),
            listen,
            &peer.pubkey().to_hex(),
            peer_addr,
            disc,
        ])
        .arg(ready)
        .spawn()
        .unwrap();
    Child {
        proc,
        pk: sk.pubkey(),
    }
}

async fn client_on(url: &str, server: PubKey) -> Client {
    let mut cc = ClientConfig::new(SecKey::generate(), url);
    cc.servers = vec![server];
    let c = Client::spawn(cc);
    c.ready().await;
    c
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 8 && args[1] == "--serve-mesh" {
        serve_child(&args[2..]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let url = format!("http://{}", disc.local_addr());
    let dir = std::env::temp_dir().join(format!("dmsg-mesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ka, kb) = (SecKey::generate(), SecKey::generate());
    let (aa, ab) = (free_addr(), free_addr());
    let ready: [PathBuf; 2] = [dir.join("a"), dir.join("b")];
    let a = spawn_server(&ka, &aa, &kb, &ab, &url, &ready[0]);
    let b = spawn_server(&kb, &ab, &ka, &aa, &url, &ready[1]);
    let t0 = Instant::now();
    while !ready.iter().all(|r| r.exists()) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "servers did not mesh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dialer = client_on(&url, a.pk).await;
    let near = client_on(&url, a.pk).await;
    let far = client_on(&url, b.pk).await;
    println!("mesh bench: servers A and B in child processes, peered; dialer on A");

    let n = env_usize("DMSG_BENCH_DIALS", 2000);
    let (d50, d99) = dials(&dialer, &near, n).await;
    let (f50, f99) = dials(&dialer, &far, n).await;
    println!(
        "stream dial, direct (A):        p50 {:.3} ms, p99 {:.3} ms ({n} dials)",
        d50 * 1e3,
        d99 * 1e3
    );
    println!(
        "stream dial, forwarded (A → B): p50 {:.3} ms, p99 {:.3} ms — p50 {:.2}× direct (target ≤ 1.5×)",
        f50 * 1e3,
        f99 * 1e3,
        f50 / d50
    );

    let mb = env_usize("DMSG_BENCH_MB", 256);
    let (dt, dcpu) = throughput(&dialer, &near, mb, &[&a]).await;
    let (ft, fcpu) = throughput(&dialer, &far, mb, &[&a, &b]).await;
    println!(
        "1 stream, direct (A):        {:.0} MB/s; server A {:.2} CPU-s per GiB",
        dt / 1e6,
        dcpu
    );
    println!(
        "1 stream, forwarded (A → B): {:.0} MB/s ({:.0} % of direct, target ≥ 80 %); servers A + B {:.2} CPU-s per forwarded GiB",
        ft / 1e6,
        ft / dt * 100.0,
        fcpu
    );
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// p50 and p99 of `n` dials in seconds.
async fn dials(from: &Client, to: &Client, n: usize) -> (f64, f64) {
    let port = 81;
    let mut l = to.listen(port).unwrap();
    let acc = tokio::spawn(async move { while let Some(_s) = l.accept().await {} });
    drop(from.dial(to.pk(), port).await.unwrap());
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let s = from.dial(to.pk(), port).await.unwrap();
        lat.push(t0.elapsed().as_secs_f64());
        drop(s);
    }
    acc.abort();
    let _ = acc.await;
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    (p(0.50), p(0.99))
}

/// Bytes per second of one stream of `mb` MiB, and the servers' CPU seconds per GiB.
async fn throughput(from: &Client, to: &Client, mb: usize, servers: &[&Child]) -> (f64, f64) {
    let port = 82;
    let mut l = to.listen(port).unwrap();
    let total = mb << 20;
    let sink = tokio::spawn(async move {
        let mut s = l.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0usize;
        while let Ok(k) = s.read(&mut buf).await {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    });
    let mut s = from.dial(to.pk(), port).await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let cpu0: f64 = servers
        .iter()
        .map(|c| cpu_secs_of(&c.proc.id().to_string()))
        .sum();
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    s.shutdown().await.unwrap();
    let got = sink.await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = servers
        .iter()
        .map(|c| cpu_secs_of(&c.proc.id().to_string()))
        .sum::<f64>()
        - cpu0;
    assert_eq!(got, total);
    (
        total as f64 / secs,
        cpu / (total as f64 / f64::from(1u32 << 30)),
    )
}
