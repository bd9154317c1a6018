//! Many streams on one DMSG session (issue 18), client A → server relay → client B, loopback:
//!
//! * 64 concurrent streams over one session pair: aggregate throughput next to one stream's,
//!   measured in the same run, and fairness (the slowest stream's share of an equal split);
//! * head-of-line blocking: N streams with and without one more stream whose reader never
//!   reads (same run), and how many bytes that stalled stream's writer got rid of (all of them
//!   sit in windows and buffers on the way, so this is its memory);
//! * server RSS per open relayed stream, with 1,000 streams that each moved data both ways and
//!   stay open (the server runs in a child process; both clients are in this process).
//!
//! Throughput phases run for a fixed time (every sender writes 64 KiB chunks in a loop, every
//! receiver counts what it reads); the figures count only what arrived after a warm-up.
//!
//! `cargo bench -p skymesh-dmsg --bench dmsg_streams` (env `DMSG_BENCH_SECS` per phase,
//! default 3; `DMSG_BENCH_STREAMS` default 64; `DMSG_BENCH_ROUNDS` rounds of 1 stream next to
//! 64, default 3; `DMSG_BENCH_HOL_STREAMS` default 16;
//! `DMSG_BENCH_RELAYED` default 1000; `DMSG_BENCH_SMUX=0` skips the smux figures).
#![allow(clippy::unwrap_used)]

mod common;

use common::{cpu_secs, env_usize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dmsg::disc_server::{DiscServer, DiscServerConfig};
use dmsg::metrics::ServerMetrics;
use dmsg::mux::Protocol;
use dmsg::{Client, ClientConfig, Server, ServerConfig};
use keys::SecKey;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 4 && args[1] == "--serve" {
        serve_child(&args[2], &args[3]);
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
    let mut protocols = vec![Protocol::Yamux];
    if env_usize("DMSG_BENCH_SMUX", 1) != 0 {
        protocols.push(Protocol::Smux);
    }
    rt.block_on(async {
        let disc = disc().await;
        let url = format!("http://{}", disc.local_addr());
        let server = server(&url).await;
        for &p in protocols
            .iter()
            .filter(|_| env_usize("DMSG_BENCH_STREAMS", 64) > 0)
        {
            let (a, b) = clients(&url, p).await;
            many_streams(&a, &b, p).await;
            head_of_line(&a, &b, p).await;
        }
        drop(server);
        for &p in &protocols {
            rss_per_relayed_stream(p).await;
        }
    });
}

async fn disc() -> DiscServer {
    let mut dc = DiscServerConfig::new("127.0.0.1:0");
    dc.test_mode = true;
    DiscServer::spawn(dc).await.unwrap()
}

async fn server(url: &str) -> Server {
    let mut sc = ServerConfig::new(SecKey::generate(), "127.0.0.1:0");
    sc.discovery_url(url);
    let mut reg = Registry::default();
    let server = Server::spawn(sc, ServerMetrics::new(&mut reg))
        .await
        .unwrap();
    let dc = dmsg::DiscClient::new(url);
    while dc.entry(&server.pk()).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
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

/// Streams A → B that write and count until aborted.
struct Flows {
    /// Bytes B read per stream.
    got: Vec<Arc<AtomicU64>>,
    /// Bytes A's writers handed over per stream.
    sent: Vec<Arc<AtomicU64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Flows {
    fn new() -> Flows {
        Flows {
            got: Vec::new(),
            sent: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Opens one stream on `port`; B reads it unless `stalled` (then B accepts and holds it).
    async fn add(&mut self, a: &Client, b: &Client, port: u16, stalled: bool) {
        let mut l = b.listen(port).unwrap();
        let got = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let g = got.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut s = l.accept().await.unwrap();
            if stalled {
                std::future::pending::<()>().await;
            }
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                g.fetch_add(n as u64, Ordering::Relaxed);
            }
            drop(l);
        }));
        let mut s = a.dial(b.pk(), port).await.unwrap();
        let c = sent.clone();
        self.tasks.push(tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            loop {
                let n = s.write(&chunk).await.unwrap();
                c.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
        self.got.push(got);
        self.sent.push(sent);
    }

    fn snapshot(&self) -> Vec<u64> {
        self.got.iter().map(|g| g.load(Ordering::Relaxed)).collect()
    }

    /// Per-stream bytes received during `secs` after a warm-up, and the seconds measured.
    async fn measure(&self, secs: f64) -> (Vec<u64>, f64) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c0 = self.snapshot();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let c1 = self.snapshot();
        let dt = t0.elapsed().as_secs_f64();
        (c1.iter().zip(&c0).map(|(x, y)| x - y).collect(), dt)
    }

    async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        // Let FIN/RST of the dropped streams settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn secs() -> f64 {
    env_usize("DMSG_BENCH_SECS", 3) as f64
}

/// Aggregate MB/s of `n` streams, the slowest stream's fraction of an equal share, and CPU-s
/// per GiB (this process: A, server and B).
async fn run_flows(a: &Client, b: &Client, base_port: u16, n: usize) -> (f64, f64, f64) {
    let mut f = Flows::new();
    for i in 0..n {
        f.add(a, b, base_port + i as u16, false).await;
    }
    let c0 = cpu_secs();
    let (per, dt) = f.measure(secs()).await;
    let cpu = cpu_secs() - c0;
    f.stop().await;
    let total: u64 = per.iter().sum();
    let share = total as f64 / n as f64;
    let min = per.iter().copied().min().unwrap_or(0) as f64;
    let gib = total as f64 / (1u64 << 30) as f64;
    (
        total as f64 / dt / 1e6,
        min / share.max(1.0),
        cpu / gib.max(1e-9),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One stream and `n` streams in alternation (`DMSG_BENCH_ROUNDS` rounds, default 3; odd
/// rounds run `n` first), so a change in the machine's load hits both sides of each ratio.
async fn many_streams(a: &Client, b: &Client, p: Protocol) {
    let n = env_usize("DMSG_BENCH_STREAMS", 64);
    let rounds = env_usize("DMSG_BENCH_ROUNDS", 3).max(1);
    let (mut ratios, mut fairs, mut ones, mut aggs, mut cpu1s, mut cpuns) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let (one_port, many_port) = (1000 + r as u16, 10_000 + (r * (n + 1)) as u16);
        let ((one, _, cpu1), (agg, fair, cpun)) = if r % 2 == 0 {
            let one = run_flows(a, b, one_port, 1).await;
            (one, run_flows(a, b, many_port, n).await)
        } else {
            let many = run_flows(a, b, many_port, n).await;
            (run_flows(a, b, one_port, 1).await, many)
        };
        println!(
            "[{p}]   round {}: 1 stream {one:.0} MB/s ({cpu1:.2} CPU-s per GiB), {n} streams {agg:.0} MB/s ({cpun:.2} CPU-s per GiB) = {:.0} %, slowest at {:.0} % of its share",
            r + 1,
            agg / one * 100.0,
            fair * 100.0
        );
        ratios.push(agg / one);
        fairs.push(fair);
        ones.push(one);
        aggs.push(agg);
        cpu1s.push(cpu1);
        cpuns.push(cpun);
    }
    let worst_fair = fairs.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "[{p}] 1 stream: {:.0} MB/s ({:.2} CPU-s per GiB); {n} streams on one session: {:.0} MB/s aggregate = {:.0} % of 1 stream (median of {rounds} rounds' ratios; {:.2} CPU-s per GiB), slowest stream at {:.0} % of its share (worst round)   target ≥ 90 %, slowest ≥ 50 %",
        median(ones),
        median(cpu1s),
        median(aggs),
        median(ratios) * 100.0,
        median(cpuns),
        worst_fair * 100.0
    );
}

async fn head_of_line(a: &Client, b: &Client, p: Protocol) {
    let n = env_usize("DMSG_BENCH_HOL_STREAMS", 16);
    let (base1, _, _) = run_flows(a, b, 3000, n).await;
    // The same n streams next to one whose reader never reads.
    let mut f = Flows::new();
    f.add(a, b, 3999, true).await;
    for i in 0..n {
        f.add(a, b, 3100 + i as u16, false).await;
    }
    let (per, dt) = f.measure(secs()).await;
    let stalled_sent = f.sent[0].load(Ordering::Relaxed);
    let stalled_got = per[0];
    let stalled: f64 = per[1..].iter().sum::<u64>() as f64 / dt / 1e6;
    let fair = per[1..].iter().copied().min().unwrap_or(0) as f64
        / (per[1..].iter().sum::<u64>() as f64 / n as f64).max(1.0);
    f.stop().await;
    let (base2, _, _) = run_flows(a, b, 3200, n).await;
    let base = (base1 + base2) / 2.0;
    println!(
        "[{p}] head-of-line: {n} streams {base:.0} MB/s alone ({base1:.0} / {base2:.0}), {stalled:.0} MB/s next to a stalled stream ({:+.1} %; slowest at {:.0} % of its share); the stalled stream's writer handed over {} KiB, {stalled_got} B read   target ≤ 10 % slower, stalled bytes within its windows",
        (stalled / base - 1.0) * 100.0,
        fair * 100.0,
        stalled_sent >> 10
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

fn serve_child(disc_url: &str, ready_file: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = server(disc_url).await;
        std::fs::write(ready_file, s.pk().to_string()).unwrap();
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

/// Server RSS per open relayed stream: the server in a child process, `n` streams A → B that
/// each carried 16 KiB both ways and stay open.
async fn rss_per_relayed_stream(p: Protocol) {
    let n = env_usize("DMSG_BENCH_RELAYED", 1000);
    let disc = disc().await;
    let url = format!("http://{}", disc.local_addr());
    let ready = std::env::temp_dir().join(format!("dmsg-streams-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .arg(&url)
        .arg(&ready)
        .spawn()
        .unwrap();
    while std::fs::read_to_string(&ready).map_or(true, |s| s.is_empty()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a, b) = clients(&url, p).await;
    let mut l = b.listen(80).unwrap();
    const MSG: usize = 16 * 1024;
    // B echoes one message per stream, then holds the stream until A closes it.
    let echo = tokio::spawn(async move {
        while let Some(mut s) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; MSG];
                if s.read_exact(&mut buf).await.is_err() || s.write_all(&buf).await.is_err() {
                    return;
                }
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    // Warm-up stream (first dial, lazily built state), then the baseline.
    let run = |k: usize| {
        let a = &a;
        let bpk = b.pk();
        async move {
            let mut out = Vec::with_capacity(k);
            let mut batch = Vec::new();
            for _ in 0..k {
                batch.push(async move {
                    let mut s = dial_retry(a, bpk, 80).await;
                    s.write_all(&[1u8; MSG]).await.unwrap();
                    let mut buf = vec![0u8; MSG];
                    s.read_exact(&mut buf).await.unwrap();
                    s
                });
                if batch.len() == 32 {
                    out.extend(futures_join(std::mem::take(&mut batch)).await);
                }
            }
            out.extend(futures_join(batch).await);
            out
        }
    };
    let warm = run(64).await;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = rss_kb(child.id());
    let held = run(n).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb(child.id());
    let per = after.saturating_sub(base) as f64 / held.len().max(1) as f64;
    println!(
        "[{p}] server RSS per open relayed stream: {per:.1} KiB ({} streams that each moved 16 KiB both ways; server RSS {} MiB → {} MiB)   target ≤ 64 KiB",
        held.len(),
        base / 1024,
        after / 1024
    );
    // The same streams all sending A → B at once (B reads everything): peak server RSS.
    let secs = secs();
    let writers: Vec<JoinHandle<()>> = held
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let chunk = vec![3u8; MSG];
                while s.write_all(&chunk).await.is_ok() {}
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut peak = after;
    while t0.elapsed().as_secs_f64() < secs {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kb(child.id()));
    }
    let busy = peak.saturating_sub(base) as f64 / n.max(1) as f64;
    println!(
        "[{p}] server RSS per relayed stream with all {n} streams sending at once: {busy:.1} KiB (peak server RSS {} MiB)   target ≤ 64 KiB",
        peak / 1024
    );
    for w in &writers {
        w.abort();
    }
    for w in writers {
        let _ = w.await;
    }
    echo.abort();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&ready);
    drop((a, b, disc));
}

/// Dials, retrying a refused dial a few times (a freshly started server may not know B yet).
async fn dial_retry(a: &Client, pk: keys::PubKey, port: u16) -> dmsg::DmsgStream {
    let mut tries = 0;
    loop {
        match a.dial(pk, port).await {
            Ok(s) => return s,
            Err(e) if tries < 100 => {
                tries += 1;
                if tries == 1 {
                    eprintln!("dial failed ({e}), retrying");
                }
                let _ = &e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("dial failed: {e}"),
        }
    }
}

/// Runs the futures concurrently on this task and returns their outputs in order.
async fn futures_join<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
