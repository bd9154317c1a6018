//! The Redis mirror against a real `redis-server` (started per test on a free loopback port).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dht::{Item, Salt, Target};
use keys::SecKey;
use mirror::{FeedConfig, MirrorConfig, MirrorError, MirrorFeed, RedisMirror, WriteOutcome};
use skymesh_tests::RedisServer;
use tokio::sync::mpsc;

/// A value that parses for salt `svc` (the rules check it), built with the dht crate's typed
/// format so this test doesn't hard-code the encoding.
fn svc_value(n: u64) -> Vec<u8> {
    use dht::value::{ServiceEntries, ServiceEntry, ValueFormat};
    ServiceEntries {
        v: dht::value::FORMAT_VERSION,
        services: vec![ServiceEntry {
            kind: "vpn".into(),
            port: 44,
            addrs: vec![format!("127.0.0.1:{}", 1000 + n % 60000)],
            version: format!("v{n}"),
        }],
    }
    .encode()
}

fn svc() -> Salt {
    Salt::new("svc").unwrap()
}

async fn recv_until(
    rx: &mut mpsc::Receiver<Item>,
    deadline: Duration,
    mut done: impl FnMut(&Item) -> bool,
) -> Option<Item> {
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(item)) if done(&item) => return Some(item),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_is_delivered_live_within_one_second() {
    let redis = RedisServer::start();
    let (tx, mut rx) = mpsc::channel(1024);
    let _feed =
        MirrorFeed::start(&redis.url(), FeedConfig::new(dht::Config::default()), tx).unwrap();
    // Let the feed finish its initial (empty) scan, then write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = RedisMirror::start(
        &redis.url(),
        SecKey::from_seed(b"svc-a"),
        MirrorConfig::default(),
    )
    .unwrap();
    let t0 = Instant::now();
    let out = m.put(svc(), svc_value(1), None).await.unwrap();
    assert!(matches!(out, WriteOutcome::Written { .. }));
    let want = Target::of(&m.public_key(), &svc());
    let got = recv_until(&mut rx, Duration::from_secs(1), |i| i.target() == want).await;
    assert!(got.is_some(), "item not delivered within 1 s");
    eprintln!("write→feed latency: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_written_before_start_are_scanned() {
    let redis = RedisServer::start();
    let m = RedisMirror::start(
        &redis.url(),
        SecKey::from_seed(b"svc-b"),
        MirrorConfig::default(),
    )
    .unwrap();
    let mut subjects = Vec::new();
    for i in 0..50u32 {
        let subject = SecKey::from_seed(format!("visor-{i}").as_bytes()).pubkey();
        subjects.push(subject);
        m.put(svc(), svc_value(u64::from(i)), Some(subject))
            .await
            .unwrap();
    }
    let mut rules = dht::Config::default();
    rules.trusted_writers.insert(m.public_key());
    let (tx, mut rx) = mpsc::channel(1024);
    let feed = MirrorFeed::start(&redis.url(), FeedConfig::new(rules), tx).unwrap();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < subjects.len() {
        let item = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.writer, Some(m.public_key()));
        seen.insert(item.pk);
    }
    assert_eq!(
        feed.stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_items_are_refused_when_the_writer_is_not_trusted() {
    let redis = RedisServer::start();
    let m = RedisMirror::start(
        &redis.url(),
        SecKey::from_seed(b"svc-c"),
        MirrorConfig::default(),
    )
    .unwrap();
    let subject = SecKey::from_seed(b"someone").pubkey();
    m.put(svc(), svc_value(7), Some(subject)).await.unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let feed =
        MirrorFeed::start(&redis.url(), FeedConfig::new(dht::Config::default()), tx).unwrap();
    let got = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await;
    assert!(got.is_err(), "untrusted delegated item was delivered");
    assert_eq!(
        feed.stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_cannot_regress_a_seq() {
    let redis = RedisServer::start();
    let sk = SecKey::from_seed(b"svc-shared");
    let a = RedisMirror::start(&redis.url(), sk.clone(), MirrorConfig::default()).unwrap();
    let b = RedisMirror::start(&redis.url(), sk.clone(), MirrorConfig::default()).unwrap();
    // Pre-signed items with interleaved seqs, written by both writers at once.
    let mut futs = Vec::new();
    for seq in (1..=400u64).rev() {
        let item = Item::sign(&sk, svc(), seq, svc_value(seq)).unwrap();
        let w = if seq % 2 == 0 { &a } else { &b };
        futs.push(w.put_item(item));
    }
    let results = futures::future::join_all(futs).await;
    let mut max_ok = 0;
    for (i, r) in results.iter().enumerate() {
        let seq = 400 - i as u64;
        match r {
            Ok(_) => max_ok = max_ok.max(seq),
            Err(MirrorError::Stale {
                stored_seq,
                offered_seq,
                ..
            }) => {
                assert!(stored_seq > offered_seq)
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(max_ok, 400, "the highest seq must win");
    // Lower seqs after the fact are refused.
    let low = Item::sign(&sk, svc(), 5, svc_value(5)).unwrap();
    assert!(matches!(
        a.put_item(low).await,
        Err(MirrorError::Stale {
            stored_seq: 400,
            ..
        })
    ));
    // Same seq, different content: conflict; same seq, same content: no-op.
    let diff = Item::sign(&sk, svc(), 400, svc_value(999)).unwrap();
    assert!(matches!(
        b.put_item(diff).await,
        Err(MirrorError::SeqConflict { .. })
    ));
    let same = Item::sign(&sk, svc(), 400, svc_value(400)).unwrap();
    assert_eq!(b.put_item(same).await.unwrap(), WriteOutcome::Unchanged);
    // And what a feed sees is seq 400.
    let (tx, mut rx) = mpsc::channel(16);
    let _feed =
        MirrorFeed::start(&redis.url(), FeedConfig::new(dht::Config::default()), tx).unwrap();
    let item = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.seq, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_items_in_redis_are_never_served() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let victim = SecKey::from_seed(b"victim");
    let attacker = SecKey::from_seed(b"attacker");
    let salt = svc();
    let target = Target::of(&victim.pubkey(), &salt);
    // 1. the victim's slot holding an item signed by the attacker (pk rewritten)
    let mut forged = Item::sign(&attacker, salt.clone(), 9, svc_value(9)).unwrap();
    forged.pk = victim.pubkey();
    // 2. a valid item of the attacker stored under the victim's target
    let misplaced = Item::sign(&attacker, salt.clone(), 10, svc_value(10)).unwrap();
    // 3. garbage bytes
    let writes: Vec<(Target, Vec<u8>)> = vec![
        (target, forged.encode()),
        (target, misplaced.encode()),
        (
            Target::of(&attacker.pubkey(), &Salt::new("x").unwrap()),
            b"garbage".to_vec(),
        ),
    ];
    let (tx, mut rx) = mpsc::channel(16);
    let feed =
        MirrorFeed::start(&redis.url(), FeedConfig::new(dht::Config::default()), tx).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (t, bytes) in writes {
        let shard = mirror::keys::shard_of(&t);
        let _: () = redis::cmd("HSET")
            .arg(mirror::keys::items_key(shard))
            .arg(t.to_hex())
            .arg(bytes)
            .query_async(&mut con)
            .await
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(mirror::keys::changes_key(shard))
            .arg("*")
            .arg("t")
            .arg(t.to_hex())
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let got = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await;
    assert!(got.is_err(), "a forged item was delivered: {got:?}");
    assert!(
        feed.stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_during_writes_loses_no_acknowledged_write() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let cfg = MirrorConfig {
        put_timeout: Duration::from_secs(20),
        ..MirrorConfig::default()
    };
    let sk = SecKey::from_seed(b"svc-restart");
    let m = std::sync::Arc::new(RedisMirror::start(&redis.url(), sk.clone(), cfg).unwrap());
    let writer = {
        let m = m.clone();
        tokio::spawn(async move {
            let mut acked: HashMap<keys::PubKey, u64> = HashMap::new();
            for i in 0..300u64 {
                let subject = SecKey::from_seed(format!("s{i}").as_bytes()).pubkey();
                let seq = 1000 + i;
                let item = Item::sign_for(&sk, subject, svc(), seq, svc_value(i)).unwrap();
                if m.put_item(item).await.is_ok() {
                    acked.insert(subject, seq);
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let _redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        std::thread::sleep(Duration::from_millis(500));
        redis.restart();
        redis
    })
    .await
    .unwrap();
    eprintln!("redis restarted in {:?}", t.elapsed());
    let acked = writer.await.unwrap();
    assert!(
        acked.len() >= 250,
        "too few writes acknowledged: {}",
        acked.len()
    );
    // Every acknowledged write is there after the restart.
    let mut rules = dht::Config::default();
    rules.trusted_writers.insert(m.public_key());
    let (tx, mut rx) = mpsc::channel(1024);
    let _feed = MirrorFeed::start(&url, FeedConfig::new(rules), tx).unwrap();
    let mut seen: HashMap<keys::PubKey, u64> = HashMap::new();
    let end = Instant::now() + Duration::from_secs(10);
    while seen.len() < acked.len() && Instant::now() < end {
        if let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            seen.insert(item.pk, item.seq);
        }
    }
    for (pk, seq) in &acked {
        assert_eq!(
            seen.get(pk),
            Some(seq),
            "acknowledged write for {pk} missing after restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_loudly_when_redis_is_down_and_the_buffer_is_full() {
    // Nothing listens on this port.
    let port = skymesh_tests::free_port();
    let cfg = MirrorConfig {
        queue: 8,
        put_timeout: Duration::from_millis(300),
        ..MirrorConfig::default()
    };
    let sk = SecKey::from_seed(b"svc-down");
    let m = RedisMirror::start(&format!("redis://127.0.0.1:{port}/"), sk.clone(), cfg).unwrap();
    let mut full = 0;
    let mut pending = Vec::new();
    for seq in 1..=40u64 {
        let item = Item::sign(&sk, svc(), seq, svc_value(seq)).unwrap();
        match m.submit(item) {
            Ok(rx) => pending.push(rx),
            Err(MirrorError::BufferFull { bound: 8 }) => full += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full >= 30, "buffer bound not enforced ({full} refused)");
    let item = Item::sign(&sk, svc(), 100, svc_value(100)).unwrap();
    let r = m.put_item(item).await;
    assert!(
        matches!(
            r,
            Err(MirrorError::Timeout { .. }) | Err(MirrorError::BufferFull { .. })
        ),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_keeps_running_through_a_redis_outage_and_catches_up() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let sk = SecKey::from_seed(b"svc-outage");
    let m = RedisMirror::start(&url, sk.clone(), MirrorConfig::default()).unwrap();
    m.put(svc(), svc_value(1), None).await.unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let feed = MirrorFeed::start(&url, FeedConfig::new(dht::Config::default()), tx).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.pk, sk.pubkey());
    // Redis goes away for a while; the feed keeps trying and does not end.
    let redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        std::thread::sleep(Duration::from_millis(1500));
        redis.restart();
        redis
    })
    .await
    .unwrap();
    assert!(
        feed.stats()
            .redis_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // A write made after Redis is back reaches the same feed without restarting it.
    let later = Item::sign(&sk, svc(), first.seq + 10, svc_value(2)).unwrap();
    m.put_item(later).await.unwrap();
    let got = recv_until(&mut rx, Duration::from_secs(10), |i| {
        i.seq == first.seq + 10
    })
    .await;
    assert!(got.is_some(), "feed did not catch up after the outage");
    drop(redis);
}
