//! Benchmarks of the networked node on 127.0.0.1 (real TCP + Noise + yamux), printing figures:
//!
//! 1. read latency of a one-round-trip read via a full node (`/skymesh/get/1`);
//! 2. Kademlia lookup requests, estimated rounds and latency in a large in-process network
//!    (`SKYMESH_BENCH_NODES`, default 1000) with lookup-only reads;
//! 3. puts per second (sequential and with many puts in flight).
//!
//! Run: `cargo bench -p skymesh-dht-node --bench dht_node` (env `SKYMESH_BENCH_NODES=N` sets the
//! size of the lookup network, `SKYMESH_BENCH_QUORUM=N` the lookup quorum (default 2),
//! `SKYMESH_BENCH_ONLY=read|lookup|put` runs one part).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use dht::Salt;
use dhtnode::{Config, Node, Reachability, ReadMode, ReadPath, Role};
use keys::SecKey;
use rand::seq::IndexedRandom;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, unit: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name}: n={} p50={:.3}{unit} p90={:.3}{unit} p99={:.3}{unit} max={:.3}{unit}",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

fn cfg(role: Role, bootstrap: Vec<libp2p::Multiaddr>) -> (SecKey, Config) {
    let sk = SecKey::generate();
    let mut c = Config::new(sk.clone(), role);
    c.reachability = Reachability::Public;
    c.bootstrap = bootstrap;
    c.bootstrap_retry = Duration::from_secs(2);
    c.advert_interval = Duration::from_secs(5);
    // Benchmarks hammer single peers; production limits would throttle them.
    c.max_requests_per_peer = u32::MAX;
    c.max_kad_requests_per_peer = u32::MAX;
    c.max_items_per_peer = u32::MAX;
    (sk, c)
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    mut f: impl FnMut() -> F,
    max: Duration,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < max {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn salt(s: &str) -> Salt {
    Salt::new(s.as_bytes().to_vec()).unwrap()
}

async fn bench_read() {
    let (_, fc) = cfg(Role::Full, vec![]);
    let (full, _ft) = Node::spawn(fc).await.unwrap();
    let boot = vec![full.listen_addrs()[0].clone()];
    let (wsk, wc) = cfg(Role::Regular, boot.clone());
    let (writer, _wt) = Node::spawn(wc).await.unwrap();
    let (_, rc) = cfg(Role::Regular, boot);
    let (reader, _rt) = Node::spawn(rc).await.unwrap();
    assert!(
        wait_for(
            || async {
                !reader.find_full_nodes().await.is_empty()
                    && !writer.find_full_nodes().await.is_empty()
            },
            Duration::from_secs(30)
        )
        .await
    );
    writer.put(salt("bench"), b"value".to_vec()).await.unwrap();
    let pk = wsk.pubkey();
    assert!(
        wait_for(
            || async {
                reader
                    .get_with(&pk, &salt("bench"), ReadMode::FullNodesOnly)
                    .await
                    .unwrap()
                    .item
                    .is_some()
            },
            Duration::from_secs(30)
        )
        .await
    );
    for _ in 0..100 {
        reader
            .get_with(&pk, &salt("bench"), ReadMode::FullNodesOnly)
            .await
            .unwrap();
    }
    let mut lat = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let out = reader
            .get_with(&pk, &salt("bench"), ReadMode::Auto)
            .await
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(out.path, ReadPath::FullNode);
    }
    summary(
        "read via full node (1 RTT, loopback, incl. handle->actor hop)",
        "ms",
        lat,
    );
}

async fn bench_lookup(n: usize) {
    println!("lookup network: spawning {n} nodes (all regular, server mode) ...");
    let t0 = Instant::now();
    let mut nodes: Vec<(SecKey, Node)> = Vec::with_capacity(n);
    let mut rng = rand::rng();
    for i in 0..n {
        // Each node bootstraps from up to 3 random earlier nodes.
        let boot: Vec<libp2p::Multiaddr> = if i == 0 {
            vec![]
        } else {
            nodes[..i]
                .choose_multiple(&mut rng, 3)
                .map(|(_, nd)| nd.listen_addrs()[0].clone())
                .collect()
        };
        let (sk, mut c) = cfg(Role::Regular, boot);
        // Short-lived connections keep the process under its fd limit (both ends of every
        // connection live in this process); lookups then include dialing, as on a real network.
        c.idle_connection_timeout = Duration::from_secs(2);
        if let Some(q) = std::env::var("SKYMESH_BENCH_QUORUM")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            c.lookup_quorum = q;
        }
        let (node, _t) = match Node::spawn(c).await {
            Ok(x) => x,
            Err(e) => {
                println!("spawn failed at node {i}: {e}; continuing with {i} nodes");
                break;
            }
        };
        nodes.push((sk, node));
        if i % 100 == 99 {
            println!("  {} nodes up ({:.1}s)", i + 1, t0.elapsed().as_secs_f64());
        }
    }
    let n = nodes.len();
    // Let routing tables fill: sample 50 random nodes every 5 s until each holds at least
    // min(20, n-1) peers (at most 180 s).
    let want = 20.min(n - 1);
    let warm = Instant::now();
    loop {
        let mut sample = Vec::new();
        for (_, nd) in nodes.choose_multiple(&mut rng, 50.min(n)) {
            let rt = tokio::time::timeout(Duration::from_secs(10), nd.info())
                .await
                .ok()
                .flatten()
                .map(|i| i.routing_table)
                .unwrap_or(0);
            sample.push(rt);
        }
        let min = sample.iter().copied().min().unwrap_or(0);
        println!(
            "  warm-up {:.0}s: sampled routing table min {min}, mean {:.1}",
            warm.elapsed().as_secs_f64(),
            sample.iter().sum::<usize>() as f64 / sample.len().max(1) as f64
        );
        if min >= want || warm.elapsed() > Duration::from_secs(180) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    println!("network ready after {:.1}s", t0.elapsed().as_secs_f64());

    // 100 items put from random nodes, each read by a random other node with a lookup only.
    let items = 100;
    let mut writers = Vec::new();
    for k in 0..items {
        let (sk, nd) = nodes.choose(&mut rng).unwrap();
        nd.put(salt(&format!("lookup-{k}")), b"v".to_vec())
            .await
            .unwrap();
        writers.push((sk.pubkey(), k));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut reqs, mut rounds, mut lat) = (Vec::new(), Vec::new(), Vec::new());
    let mut missing = 0;
    for (pk, k) in &writers {
        let (_, reader) = nodes.choose(&mut rng).unwrap();
        let t = Instant::now();
        let Ok(Ok(out)) = tokio::time::timeout(
            Duration::from_secs(60),
            reader.get_with(pk, &salt(&format!("lookup-{k}")), ReadMode::LookupOnly),
        )
        .await
        else {
            missing += 1;
            continue;
        };
        if out.item.is_none() {
            missing += 1;
            continue;
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        reqs.push(f64::from(out.lookup_requests));
        rounds.push(f64::from(out.lookup_rounds));
    }
    println!(
        "lookups in a {n}-node network: {} found, {missing} missing",
        lat.len()
    );
    summary("  lookup requests per read", "", reqs);
    summary(
        "  lookup rounds per read (est. ceil(requests/alpha=3))",
        "",
        rounds,
    );
    summary("  lookup latency (incl. dials)", "ms", lat);
    for (_, nd) in &nodes {
        nd.shutdown().await;
    }
}

async fn bench_put() {
    let (_, fc) = cfg(Role::Full, vec![]);
    let (full, _ft) = Node::spawn(fc).await.unwrap();
    let boot = vec![full.listen_addrs()[0].clone()];
    let mut others = Vec::new();
    for _ in 0..9 {
        let (_, c) = cfg(Role::Regular, boot.clone());
        others.push(Node::spawn(c).await.unwrap().0);
    }
    let writer = others[0].clone();
    assert!(
        wait_for(
            || async {
                !writer.find_full_nodes().await.is_empty()
                    && writer.info().await.unwrap().routing_table >= 5
            },
            Duration::from_secs(30)
        )
        .await
    );
    let n = 500;
    let t = Instant::now();
    for k in 0..n {
        writer
            .put(salt(&format!("p{}", k % 30)), format!("{k}").into_bytes())
            .await
            .unwrap();
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "puts sequential (10-node net, each put replicated to full node + k closest): {n} in {dt:.2}s = {:.0} puts/s",
        n as f64 / dt
    );
    let t = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..n {
        let w = others[k % others.len()].clone();
        tasks.push(tokio::spawn(async move {
            w.put(salt(&format!("c{}", k % 60)), format!("{k}").into_bytes())
                .await
                .is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() {
            ok += 1;
        }
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "puts concurrent (10 writers, {n} in flight): {ok} ok in {dt:.2}s = {:.0} puts/s",
        ok as f64 / dt
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let only = std::env::var("SKYMESH_BENCH_ONLY").unwrap_or_default();
    let n: usize = std::env::var("SKYMESH_BENCH_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if only.is_empty() || only == "read" {
            bench_read().await;
        }
        if only.is_empty() || only == "put" {
            bench_put().await;
        }
        if only.is_empty() || only == "lookup" {
            bench_lookup(n).await;
        }
    });
}
