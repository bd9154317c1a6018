//! Mirror write throughput against a raw pipelined `SET` baseline, measured in the same run on
//! the same private `redis-server` (started on a free loopback port, AOF off so that the disk
//! does not decide the figure for either side).
//!
//! Run: `cargo bench -p skymesh-tests --bench mirror` (needs `redis-server`).
//! Figures printed:
//! - raw: `SET key value` pipelined 256 per round trip, one pipeline in flight (the writer's model);
//! - mirror/write-path: `RedisMirror::submit` of pre-signed items with signature re-verification
//!   off (what Redis and the writer cost: atomic seq compare, change stream);
//! - mirror/put_item: the same with verification on (the default for untrusted input);
//! - mirror/put: signing included (`RedisMirror::put`, a service publishing its own items).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use dht::value::{ServiceEntries, ServiceEntry, ValueFormat};
use dht::{Item, Salt};
use keys::SecKey;
use mirror::{MirrorConfig, RedisMirror};
use skymesh_tests::RedisServer;

fn value(n: u64) -> Vec<u8> {
    ServiceEntries {
        v: dht::value::FORMAT_VERSION,
        services: vec![ServiceEntry {
            kind: "vpn".into(),
            port: 44,
            addrs: vec![format!("10.0.{}.{}:3435", n % 250, n % 200)],
            version: "v1.3.0".into(),
        }],
    }
    .encode()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("MIRROR_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let batch: usize = std::env::var("MIRROR_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(mirror::writer::DEFAULT_BATCH);
    let redis = RedisServer::start_volatile();
    let url = redis.url();
    let writer_sk = SecKey::from_seed(b"bench-writer");
    let salt = Salt::new("svc").unwrap();
    // Pre-signed delegated items for n subjects (signing is not part of the write-path figures).
    eprintln!("signing {n} items…");
    let items: Vec<Item> = (0..n as u64)
        .map(|i| {
            let subject = SecKey::from_seed(format!("subject-{i}").as_bytes()).pubkey();
            Item::sign_for(&writer_sk, subject, salt.clone(), 1, value(i)).unwrap()
        })
        .collect();
    let avg_len = items.iter().map(|i| i.encoded_len()).sum::<usize>() / n;

    // Baseline: raw pipelined SET of values of the same size.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let t = Instant::now();
    for chunk in items.chunks(batch) {
        let mut pipe = redis::pipe();
        for it in chunk {
            pipe.cmd("SET")
                .arg(format!("raw:{}", it.target().to_hex()))
                .arg(it.encode())
                .ignore();
        }
        let _: () = pipe.query_async(&mut con).await.unwrap();
    }
    let raw = rate(n, t.elapsed());
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();

    let run = |verify: bool, items: Vec<Item>| {
        let url = url.clone();
        let sk = writer_sk.clone();
        async move {
            let cfg = MirrorConfig {
                queue: items.len() + 1,
                batch,
                verify_signatures: verify,
                ..MirrorConfig::default()
            };
            let m = RedisMirror::start(&url, sk, cfg).unwrap();
            let t = Instant::now();
            let mut rxs = Vec::with_capacity(items.len());
            for it in items {
                rxs.push(m.submit(it).unwrap());
            }
            for rx in rxs {
                rx.await.unwrap().unwrap();
            }
            t.elapsed()
        }
    };
    let write_path = rate(n, run(false, items.clone()).await);
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    let checked = rate(n, run(true, items.clone()).await);
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();

    // put(): sign + write, own items of one service under distinct salts is not realistic; use
    // delegated items for distinct subjects, awaited in windows of 256 concurrent puts.
    let m = std::sync::Arc::new(
        RedisMirror::start(&url, writer_sk.clone(), MirrorConfig::default()).unwrap(),
    );
    let subjects: Vec<_> = (0..n as u64)
        .map(|i| SecKey::from_seed(format!("subject-{i}").as_bytes()).pubkey())
        .collect();
    let t = Instant::now();
    for chunk in subjects.chunks(256) {
        let futs = chunk.iter().enumerate().map(|(i, s)| {
            let m = m.clone();
            let salt = salt.clone();
            async move { m.put(salt, value(i as u64), Some(*s)).await.unwrap() }
        });
        futures::future::join_all(futs).await;
    }
    let put = rate(n, t.elapsed());

    println!(
        "mirror bench: {n} items, avg encoded item {avg_len} bytes, pipelines of {batch}, one redis-server on loopback"
    );
    println!("  raw pipelined SET            {raw:>10.0} writes/s   (baseline)");
    println!(
        "  mirror write path (no re-verify) {write_path:>10.0} writes/s   {:.0}% of raw",
        100.0 * write_path / raw
    );
    println!(
        "  mirror put_item (verify sig)  {checked:>10.0} writes/s   {:.0}% of raw",
        100.0 * checked / raw
    );
    println!(
        "  mirror put (sign + write)     {put:>10.0} writes/s   {:.0}% of raw",
        100.0 * put / raw
    );
}
