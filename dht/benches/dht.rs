#![allow(clippy::unwrap_used, missing_docs)]
//! Figures for the data model and stores: items verified/s, store puts/s (memory; redb with an
//! fsync per put, batched, and refresh-only re-puts), list-from-cursor throughput.
//!
//! Run: `cargo bench -p skymesh-dht --bench dht`
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dht::value::{ServiceEntries, ServiceEntry, ValueFormat};
use dht::{Config, Cursor, Item, MemoryStore, RedbStore, Salt, SaltKind, Store, Timestamp, rules};
use keys::SecKey;

fn items(n: usize) -> Vec<Item> {
    let keys: Vec<SecKey> = (0..64)
        .map(|i| SecKey::from_seed(format!("bench-{i}").as_bytes()))
        .collect();
    let value = ServiceEntries {
        v: 1,
        services: vec![ServiceEntry {
            kind: "vpn".into(),
            port: 3,
            addrs: vec!["203.0.113.7:7000".into()],
            version: "1.3.0".into(),
        }],
    }
    .encode();
    (0..n)
        .map(|i| {
            let sk = &keys[i % keys.len()];
            // Distinct targets: one svc item per key, then opaque salts.
            let salt = if i < keys.len() {
                Salt::of_kind(SaltKind::Svc)
            } else {
                Salt::new(format!("s{i}").into_bytes()).unwrap()
            };
            Item::sign(sk, salt, i as u64 + 1, value.clone()).unwrap()
        })
        .collect()
}

fn cfg() -> Config {
    let mut c = Config::default();
    c.max_items_per_key = u32::MAX;
    c
}

fn now() -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000)
}

fn bench(c: &mut Criterion) {
    let pool = items(2000);

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    let it = pool[0].clone();
    g.bench_function("signature", |b| b.iter(|| it.verify_signature().unwrap()));
    let c0 = cfg();
    g.bench_function("rules_validate_svc", |b| {
        b.iter(|| rules::validate(&c0, &it).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("put");
    let n = 1000;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("memory", |b| {
        b.iter_batched(
            || (MemoryStore::new(cfg()), pool[..n].to_vec()),
            |(mut s, v)| {
                for it in v {
                    s.put(it, now()).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    let per_put = 50;
    g.throughput(Throughput::Elements(per_put as u64));
    g.bench_function("redb_fsync_each", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir().unwrap();
                let s = RedbStore::open(d.path().join("b.redb"), cfg()).unwrap();
                (d, s, pool[..per_put].to_vec())
            },
            |(_d, mut s, v)| {
                for it in v {
                    s.put(it, now()).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("redb_batch_1000", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir().unwrap();
                let s = RedbStore::open(d.path().join("b.redb"), cfg()).unwrap();
                (d, s, pool[..n].to_vec())
            },
            |(_d, mut s, v)| {
                for r in s.put_batch(v, now()).unwrap() {
                    r.unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    // Re-putting identical items (publishers' periodic refresh): no fsync, see RedbStore docs.
    g.throughput(Throughput::Elements(per_put as u64));
    let dir = tempfile::tempdir().unwrap();
    let mut fresh = RedbStore::open(dir.path().join("r.redb"), cfg()).unwrap();
    for r in fresh.put_batch(pool[..per_put].to_vec(), now()).unwrap() {
        r.unwrap();
    }
    g.bench_function("redb_refresh", |b| {
        b.iter_batched(
            || pool[..per_put].to_vec(),
            |v| {
                for it in v {
                    fresh.put(it, now()).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("list_since");
    let total = pool.len();
    g.throughput(Throughput::Elements(total as u64));
    let mut mem = MemoryStore::new(cfg());
    let dir = tempfile::tempdir().unwrap();
    let mut red = RedbStore::open(dir.path().join("l.redb"), cfg()).unwrap();
    for r in red.put_batch(pool.clone(), now()).unwrap() {
        r.unwrap();
    }
    for it in pool.clone() {
        mem.put(it, now()).unwrap();
    }
    let stores: [(&str, &dyn Store); 2] = [("memory", &mem), ("redb", &red)];
    for (name, s) in stores {
        g.bench_function(format!("{name}_pages_of_500"), |b| {
            b.iter(|| {
                let mut cursor = Cursor::START;
                let mut seen = 0;
                loop {
                    let p = s.list_since(None, cursor, 500).unwrap();
                    seen += p.items.len();
                    cursor = p.next_cursor;
                    if !p.has_more {
                        break;
                    }
                }
                assert_eq!(seen, total);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
