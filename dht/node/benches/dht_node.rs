//! Benchmarks of the networked node on 127.0.0.1 (real TCP + Noise + yamux), printing figures:
//!
//! 1. read latency of a one-round-trip read via a full node (`/skymesh/get/1`);
//! 2. Kademlia lookup hops (a measured upper bound, see `dhtnode::hops`), requests, the
//!    `requests / α` estimate and latency in a large in-process network
//!    (`SKYMESH_BENCH_NODES`, default 1000) with lookup-only reads, and where the copies landed;
//! 3. puts per second (sequential and with many puts in flight).
//!
//! Run: `cargo bench -p skymesh-dht-node --bench dht_node` (env `SKYMESH_BENCH_NODES=N` sets the
//! size of the lookup network, `SKYMESH_BENCH_QUORUM=N` the lookup quorum (default 2),
//! `SKYMESH_BENCH_READERS=N` how many random nodes read each of the 100 items (default 5),
//! `SKYMESH_BENCH_ONLY=read|lookup|put` runs one part, `SKYMESH_BENCH_TRANSPORT=memory` runs the
//! lookup network over libp2p's in-process memory transport instead of loopback TCP, so it
//! can grow to thousands of nodes without file descriptors; the lookup part prints the
//! process's RSS growth per node). `SKYMESH_BENCH_PUT_EARLY=1` puts the items right after the
//! nodes spawn, while routing tables still fill, and reads them once tables settled; half of
//! them from nodes that re-put after routing-table changes (the default) and half from nodes
//! with `Config::reput_on_table_change` off, so both are measured in the same network).
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
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} min={:.3}{unit} p50={:.3}{unit} p90={:.3}{unit} p99={:.3}{unit} max={:.3}{unit}",
        v.len(),
        v.first().copied().unwrap_or(f64::NAN),
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

/// Resident set size of this process in KiB (Linux `/proc/self/status`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// RSS per node of `n` nodes that know nobody (memory transport): the fixed cost of a node
/// (actor, swarm, behaviours, channels), without routing tables or connections.
async fn bench_idle_rss(n: usize) {
    let before = rss_kib();
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, mut c) = cfg(Role::Regular, Vec::new());
        c.transport = dhtnode::config::Transport::Memory;
        c.listen = vec!["/memory/0".parse().unwrap()];
        nodes.push(Node::spawn(c).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib();
    println!(
        "idle nodes: {n} nodes that know nobody: RSS {:.1} MiB, {:.0} KiB per node",
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / n as f64
    );
}

/// Puts 100 items from random nodes, all at once (item `k` from a node with `k % 2 == i % 2`
/// when `split`); returns (writer key, item number, acks).
async fn put_items(nodes: &[(SecKey, Node)], split: bool) -> Vec<(keys::PubKey, usize, u32)> {
    let puts = (0..100).map(|k| {
        let (sk, nd) = loop {
            let i = rand::random_range(0..nodes.len());
            if !split || i % 2 == k % 2 {
                break &nodes[i];
            }
        };
        async move {
            let report = nd
                .put(salt(&format!("lookup-{k}")), b"v".to_vec())
                .await
                .unwrap();
            (sk.pubkey(), k, report.acks)
        }
    });
    futures::future::join_all(puts).await
}

/// Placement and lookup figures of one group of items.
#[derive(Default)]
struct Figures {
    copies: Vec<f64>,
    in_closest: Vec<f64>,
    reqs: Vec<f64>,
    rounds: Vec<f64>,
    hops: Vec<f64>,
    lat: Vec<f64>,
    missing: usize,
}

/// Which half of the items a figure is about (`SKYMESH_BENCH_PUT_EARLY`).
fn group_name(k: usize, split: bool) -> &'static str {
    match (split, k % 2) {
        (false, _) => "all items",
        (true, 0) => "put early, re-put on table change (default)",
        (true, _) => "put early, re-put off (before)",
    }
}

async fn bench_lookup(n: usize) {
    let memory = std::env::var("SKYMESH_BENCH_TRANSPORT").is_ok_and(|t| t == "memory");
    let early = std::env::var("SKYMESH_BENCH_PUT_EARLY").is_ok_and(|t| t == "1");
    println!(
        "lookup network: spawning {n} nodes (all regular, server mode) over {} ...",
        if memory {
            "the memory transport"
        } else {
            "loopback TCP"
        }
    );
    let rss_before = rss_kib();
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
        if memory {
            c.transport = dhtnode::config::Transport::Memory;
            c.listen = vec!["/memory/0".parse().unwrap()];
        }
        // Short-lived connections keep the process under its fd limit (both ends of every
        // connection live in this process); lookups then include dialing, as on a real network.
        c.idle_connection_timeout = Duration::from_secs(2);
        // All nodes start within seconds, so their periodic bootstraps would fire together
        // after one interval (5 min: during the measurement) and run the process out of file
        // descriptors (both ends of every connection are here, 20k fds). The initial
        // bootstrap, its retries and the peers' own queries fill the tables.
        c.bootstrap_interval = Duration::from_secs(30 * 60);
        // Reads run one at a time, so each reader's hop count bounds its depth (dhtnode::hops).
        c.measure_lookup_hops = true;
        // Early puts: odd nodes are the baseline without re-puts.
        if early && i % 2 == 1 {
            c.reput_on_table_change = false;
        }
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
    let early_puts = if early {
        println!("putting 100 items now, while routing tables fill ...");
        Some(put_items(&nodes, true).await)
    } else {
        None
    };
    // Let routing tables settle, as in a network that has been running: every 5 s, look at the
    // same 50 random nodes until each holds at least min(20, n-1) peers and their mean table
    // size has grown by less than 2 % over the last 15 s (at most 300 s).
    let want = 20.min(n - 1);
    let warm = Instant::now();
    let mut means: Vec<f64> = Vec::new();
    let watched: Vec<&Node> = nodes
        .choose_multiple(&mut rng, 50.min(n))
        .map(|(_, nd)| nd)
        .collect();
    loop {
        let mut sample = Vec::new();
        for nd in &watched {
            let rt = tokio::time::timeout(Duration::from_secs(10), nd.info())
                .await
                .ok()
                .flatten()
                .map(|i| i.routing_table)
                .unwrap_or(0);
            sample.push(rt);
        }
        let min = sample.iter().copied().min().unwrap_or(0);
        let mean = sample.iter().sum::<usize>() as f64 / sample.len().max(1) as f64;
        println!(
            "  warm-up {:.0}s: sampled routing table min {min}, mean {mean:.1}",
            warm.elapsed().as_secs_f64(),
        );
        means.push(mean);
        let settled = means.len() > 3 && mean < means[means.len() - 4] * 1.02;
        if (min >= want && settled) || warm.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    println!("network ready after {:.1}s", t0.elapsed().as_secs_f64());
    let rss = rss_kib();
    println!(
        "memory: process RSS {:.1} MiB for {n} nodes = {:.0} KiB per node (RSS growth from before the first node, warm tables)",
        rss as f64 / 1024.0,
        rss.saturating_sub(rss_before) as f64 / n as f64
    );

    // 100 items put from random nodes (unless put early), each read by random other nodes with
    // a lookup only.
    let put = match early_puts {
        Some(p) => p,
        None => put_items(&nodes, false).await,
    };
    let acks: Vec<f64> = put.iter().map(|p| f64::from(p.2)).collect();
    let writers: Vec<(keys::PubKey, usize)> = put.iter().map(|p| (p.0, p.1)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    summary("  put acks per item", "", acks);
    // Where the copies landed: holders per item, and how many of the item's true k closest
    // nodes (by XOR distance, over every node of the network) hold it.
    let peers: Vec<libp2p::kad::KBucketKey<libp2p::PeerId>> = nodes
        .iter()
        .map(|(_, nd)| libp2p::kad::KBucketKey::from(nd.peer_id()))
        .collect();
    let mut placement = Vec::new();
    for (pk, k) in &writers {
        let s = salt(&format!("lookup-{k}"));
        let target = dht::Target::of(pk, &s);
        let key = libp2p::kad::KBucketKey::new(dhtnode::store::record_key(&target).to_vec());
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| peers[i].distance(&key));
        let held = futures::future::join_all(
            order
                .iter()
                .map(|&i| nodes[i].1.get_with(pk, &s, ReadMode::LocalOnly)),
        )
        .await;
        let mut holders = 0;
        let mut in_closest = 0;
        for (rank, held) in held.into_iter().enumerate() {
            if held.is_ok_and(|o| o.item.is_some()) {
                holders += 1;
                if rank < 20 {
                    in_closest += 1;
                }
            }
        }
        placement.push((holders, in_closest));
    }
    let mut groups: std::collections::BTreeMap<&str, Figures> = Default::default();
    for ((_, k), p) in writers.iter().zip(&placement) {
        let g = groups.entry(group_name(*k, early)).or_default();
        g.copies.push(f64::from(p.0));
        g.in_closest.push(f64::from(p.1));
    }
    // Each item is read by `SKYMESH_BENCH_READERS` (default 5) random nodes, so that the p99
    // stands on 500 lookups rather than on the two worst of 100.
    let readers: usize = std::env::var("SKYMESH_BENCH_READERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let reads: Vec<(usize, &(keys::PubKey, usize))> = writers
        .iter()
        .enumerate()
        .flat_map(|w| std::iter::repeat_n(w, readers))
        .collect();
    for (i, (pk, k)) in reads {
        let g = groups.entry(group_name(*k, early)).or_default();
        let (_, reader) = nodes.choose(&mut rng).unwrap();
        let t = Instant::now();
        let Ok(Ok(out)) = tokio::time::timeout(
            Duration::from_secs(60),
            reader.get_with(pk, &salt(&format!("lookup-{k}")), ReadMode::LookupOnly),
        )
        .await
        else {
            g.missing += 1;
            println!(
                "  item {k}: lookup failed; copies {} ({} among the 20 closest)",
                placement[i].0, placement[i].1
            );
            continue;
        };
        if out.item.is_none() || out.lookup_rounds > 6 || out.lookup_hops.is_none_or(|h| h > 6) {
            let own = reader
                .get_with(pk, &salt(&format!("lookup-{k}")), ReadMode::LocalOnly)
                .await
                .is_ok_and(|o| o.item.is_some());
            println!(
                "  item {k}: found {}, {} requests, {:?} hops, {:.1} ms, reader holds a copy: {own}; copies {} ({} among the 20 closest)",
                out.item.is_some(),
                out.lookup_requests,
                out.lookup_hops,
                out.elapsed.as_secs_f64() * 1000.0,
                placement[i].0,
                placement[i].1
            );
        }
        if out.item.is_none() {
            g.missing += 1;
            continue;
        }
        g.lat.push(t.elapsed().as_secs_f64() * 1000.0);
        g.reqs.push(f64::from(out.lookup_requests));
        g.rounds.push(f64::from(out.lookup_rounds));
        if let Some(h) = out.lookup_hops {
            g.hops.push(f64::from(h));
        }
    }
    for (name, g) in groups {
        println!(
            "lookups in a {n}-node network, {name}: {} found, {} missing",
            g.lat.len(),
            g.missing
        );
        summary("  copies per item", "", g.copies);
        summary(
            "  copies among the item's true 20 closest nodes",
            "",
            g.in_closest,
        );
        summary("  lookup requests per read", "", g.reqs);
        summary(
            "  lookup rounds per read, estimated as ceil(requests/alpha=3)",
            "",
            g.rounds,
        );
        summary(
            "  lookup hops per read, measured upper bound (hop of the answer completing the quorum)",
            "",
            g.hops,
        );
        summary("  lookup latency (incl. dials)", "ms", g.lat);
    }
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
        if only == "rss" {
            bench_idle_rss(n).await;
        }
    });
}
