//! DMSG network benchmarks on loopback, printed next to the Go reference figures
//! (`../shared/research/go-baselines.md`, 2-core machine):
//!
//! * single-stream relay throughput client → server → client, with yamux sessions and with
//!   smux sessions (both clients on the same multiplexer), and the smux/yamux ratio;
//! * the machine's floor for that relay, measured in the same run (`common/relay_floor.rs`:
//!   sealing and opening the records, and the same bytes through a bare loopback TCP relay);
//! * stream dial latency (request, KK, accept) over established sessions, p50/p99, yamux and
//!   smux;
//! * new sessions per second accepted by one server (XK + yamux set-up);
//! * server RSS per idle session (the server runs in a child process; the sessions are held by
//!   this process).
//!
//! Wall-clock figures depend on what else runs on the machine, so the relay and dial lines also
//! print the CPU time this process used (dialer, server and listener together, all in this
//! process) per GiB relayed and per dial: that figure barely moves with outside load.
//!
//! `cargo bench -p skymesh-dmsg --bench dmsg_net` (env `DMSG_BENCH_MB`, `DMSG_BENCH_DIALS`,
//! `DMSG_BENCH_NEW_SESSIONS`, `DMSG_BENCH_SESSIONS` scale the runs).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/relay_floor.rs"]
mod relay_floor;

use common::{cpu_secs, env_usize};
use std::time::{Duration, Instant};

use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::metrics::ServerMetrics;
use dmsg::mux::{MuxConfig, Protocol};
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 3 && args[1] == "--serve" {
        serve_child(&args[2]);
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
    // DMSG_BENCH_RELAY_ONLY=1: only the yamux relay, for profiling it.
    let relay_only = env_usize("DMSG_BENCH_RELAY_ONLY", 0) != 0;
    rt.block_on(async {
        let (disc, server) = setup().await;
        let url = format!("http://{}", disc.local_addr());
        let (ty, cpu_y) = throughput(&url, Protocol::Yamux).await;
        if relay_only {
            return;
        }
        let floor = relay_floor::RelayFloor::measure(env_usize("DMSG_BENCH_MB", 512) << 20);
        println!(
            "relay floor on this machine (same run, best of 3): records sealed + opened {:.2} + A→relay→B over loopback TCP {:.2} = {:.2} CPU-s per GiB; the yamux relay above is {:.2}x it   target ≤ 1.5 CPU-s per GiB",
            floor.records,
            floor.sockets,
            floor.total(),
            cpu_y / floor.total()
        );
        let (ts, _) = throughput(&url, Protocol::Smux).await;
        let dy = dial_latency(&url, Protocol::Yamux).await;
        let ds = dial_latency(&url, Protocol::Smux).await;
        println!(
            "smux / yamux (same run): relay throughput × {:.2}, dial p50 × {:.2}",
            ts / ty,
            ds / dy
        );
        sessions_per_sec(&server).await;
        drop(server);
        drop(disc);
    });
    if !relay_only {
        rt.block_on(rss_per_session());
    }
}

async fn setup() -> (DiscServer, Server) {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    let disc = DiscServer::spawn(dc).await.unwrap();
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.discovery_url(&format!("http://{}", disc.local_addr()));
    sc.max_sessions = 100_000;
    let mut reg = Registry::default();
    let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
        .await
        .unwrap();
    let dc = dmsg::DiscClient::new(&format!("http://{}", disc.local_addr()));
    while dc.entry(&server.pk()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (disc, server)
}

async fn clients(url: &str, protocol: Protocol) -> (Client, Client) {
    let client = || {
        let mut cfg = ClientConfig::new(SecKey::generate(), url);
        cfg.mux = cfg.mux.with_protocol(protocol);
        Client::spawn(cfg)
    };
    let (a, b) = (client(), client());
    a.ready().await;
    b.ready().await;
    (a, b)
}

/// Relay throughput in MB/s, and CPU-s per GiB (dialer, server and listener together).
async fn throughput(url: &str, protocol: Protocol) -> (f64, f64) {
    let (a, b) = clients(url, protocol).await;
    let mut l = b.listen(80).unwrap();
    let total = env_usize("DMSG_BENCH_MB", 512) * 1024 * 1024;
    let sink = tokio::spawn(async move {
        let mut s = l.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0usize;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    });
    let mut s = a.dial(b.pk(), 80).await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let c0 = cpu_secs();
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    s.shutdown().await.unwrap();
    let got = sink.await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - c0;
    assert_eq!(got, total);
    let mbs = total as f64 / secs / 1e6;
    let cpu_per_gib = cpu / (total as f64 / (1u64 << 30) as f64);
    println!(
        "[{protocol}] relay throughput, 1 stream A→server→B: {:.0} MB/s ({} MiB in {:.2} s; {:.2} CPU-s per GiB for A, server and B together)   Go ≈ 90 MB/s (≈ 18 CPU-s per GiB: 13.4 clients + 4.7 server), target ≥ 800 MB/s",
        mbs,
        total >> 20,
        secs,
        cpu_per_gib
    );
    (mbs, cpu_per_gib)
}

/// Dial latency p50 in ms.
async fn dial_latency(url: &str, protocol: Protocol) -> f64 {
    let (a, b) = clients(url, protocol).await;
    let mut l = b.listen(81).unwrap();
    let _acc = tokio::spawn(async move { while let Some(_s) = l.accept().await {} });
    // Warm the entry cache and the sessions.
    drop(a.dial(b.pk(), 81).await.unwrap());
    let n = env_usize("DMSG_BENCH_DIALS", 2000);
    let mut lat = Vec::with_capacity(n);
    let c0 = cpu_secs();
    for _ in 0..n {
        let t0 = Instant::now();
        let s = a.dial(b.pk(), 81).await.unwrap();
        lat.push(t0.elapsed());
        drop(s);
    }
    let cpu_ms = (cpu_secs() - c0) * 1e3 / n as f64;
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "[{protocol}] stream dial over established sessions ({n} dials): p50 {:.3} ms, p99 {:.3} ms ({cpu_ms:.2} CPU-ms per dial for A, server and B together)   Go p50 ≈ 17 ms (≈ 17 CPU-ms per dial); target p50 ≤ 1 ms, p99 ≤ 3 ms",
        p(0.50).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3
    );
    p(0.50).as_secs_f64() * 1e3
}

async fn sessions_per_sec(server: &Server) {
    let addr = server.local_addr().to_string();
    let n = env_usize("DMSG_BENCH_NEW_SESSIONS", 3000);
    let conc = 64;
    let keys: Vec<SecKey> = (0..conc).map(|_| SecKey::generate()).collect();
    let before = server.metrics().sessions_accepted.get();
    let c0 = cpu_secs();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for sk in keys {
        let addr = addr.clone();
        let pk = server.pk();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..n / conc {
                // Handshake only (the server sets up its yamux session); the connection is
                // dropped right after, as in a connect storm.
                if dmsg::transport::handshake_client(&addr, &sk, pk)
                    .await
                    .is_ok()
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_ms = (cpu_secs() - c0) * 1e3 / ok.max(1) as f64;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = server.metrics().sessions_accepted.get() - before;
    println!(
        "new sessions accepted by one server: {:.0}/s ({ok} handshakes in {secs:.2} s, {accepted} sessions set up; {cpu_ms:.2} CPU-ms per session, clients and server together in this process)   Go ≈ 60–120/s (server alone ≈ 8 CPU-ms per session), target ≥ 2000/s",
        ok as f64 / secs
    );
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn serve_child(addr_file: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sk = SecKey::generate();
        let mut sc = ServerConfig::new(sk.clone(), "127.0.0.1:0");
        sc.max_sessions = 100_000;
        let mut reg = Registry::default();
        let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
            .await
            .unwrap();
        std::fs::write(
            addr_file,
            format!("{} {}", server.local_addr(), sk.to_hex()),
        )
        .unwrap();
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

async fn rss_per_session() {
    let n = env_usize("DMSG_BENCH_SESSIONS", 5000);
    let dir = std::env::temp_dir().join(format!("dmsg-bench-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .arg(&dir)
        .spawn()
        .unwrap();
    let (addr, sk) = loop {
        if let Ok(s) = std::fs::read_to_string(&dir)
            && let Some((a, k)) = s.split_once(' ')
        {
            break (a.to_string(), SecKey::from_hex(k).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pk = sk.pubkey();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = rss_kb(child.id());
    let mut held = Vec::with_capacity(n);
    let conc = 32;
    let mut i = 0;
    while i < n {
        let mut batch = Vec::new();
        for _ in 0..conc.min(n - i) {
            let addr = addr.clone();
            batch.push(tokio::spawn(async move {
                dmsg::transport::connect(&addr, &SecKey::generate(), pk, MuxConfig::default()).await
            }));
        }
        for b in batch {
            if let Ok(Ok(e)) = b.await {
                held.push(e);
            }
            i += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb(child.id());
    let per = (after.saturating_sub(base)) as f64 * 1024.0 / held.len().max(1) as f64;
    println!(
        "server RSS per idle session: {:.1} KB ({} sessions; server RSS {} MB → {} MB)   Go ≈ 60 KB, target ≤ 16 KB",
        per / 1024.0,
        held.len(),
        base / 1024,
        after / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&dir);
}
