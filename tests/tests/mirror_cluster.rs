//! The Redis mirror against a real three-primary Redis Cluster on loopback: writes for subjects
//! spread over every shard (and so over all three nodes) land atomically, a feed catches up and
//! then follows live writes, and stale writes are refused.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use dht::value::{ServiceEntries, ServiceEntry, ValueFormat};
use dht::{Item, Salt};
use keys::SecKey;
use mirror::{FeedConfig, MirrorConfig, MirrorError, MirrorFeed, RedisMirror, WriteOutcome};
use skymesh_tests::RedisCluster;
use tokio::sync::mpsc;

fn value(n: u64) -> Vec<u8> {
    ServiceEntries {
        v: dht::value::FORMAT_VERSION,
        services: vec![ServiceEntry {
            kind: "vpn".into(),
            port: 44,
            addrs: vec![format!("127.0.0.1:{}", 1000 + n)],
            version: "v1".into(),
        }],
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_works_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    assert_eq!(cluster.len(), 3);
    let svc = Salt::new("svc").unwrap();
    let sk = SecKey::from_seed(b"cluster-service");
    let m = RedisMirror::start(&cluster.url(), sk.clone(), MirrorConfig::default()).unwrap();

    // 200 subjects cover all 16 shards, hence all three nodes' slot ranges.
    let subjects: Vec<_> = (0..200u64)
        .map(|i| SecKey::from_seed(format!("cluster-subject-{i}").as_bytes()).pubkey())
        .collect();
    let shards: HashSet<u8> = subjects
        .iter()
        .map(|s| mirror::keys::shard_of(&dht::Target::of(s, &svc)))
        .collect();
    assert_eq!(shards.len(), usize::from(mirror::keys::SHARDS));
    let futs = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| m.put(svc.clone(), value(i as u64), Some(*s)));
    for r in futures::future::join_all(futs).await {
        assert!(matches!(r.unwrap(), WriteOutcome::Written { .. }));
    }

    // A feed catches up with all of them…
    let mut rules = dht::Config::default();
    rules.trusted_writers.insert(sk.pubkey());
    let (tx, mut rx) = mpsc::channel(1024);
    let feed = MirrorFeed::start(&cluster.url(), FeedConfig::new(rules), tx).unwrap();
    let mut seen = HashSet::new();
    while seen.len() < subjects.len() {
        let item = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("feed stalled on the cluster")
            .unwrap();
        seen.insert(item.pk);
    }
    // …and follows a live write.
    let late = SecKey::from_seed(b"cluster-late").pubkey();
    m.put(svc.clone(), value(999), Some(late)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let item = rx.recv().await.unwrap();
            if item.pk == late {
                return item;
            }
        }
    })
    .await
    .expect("live write on the cluster not delivered within 2 s");
    assert_eq!(got.writer, Some(sk.pubkey()));
    assert_eq!(
        feed.stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // The atomic seq compare holds on the cluster too.
    let own = Item::sign(&sk, svc.clone(), 50, value(50)).unwrap();
    m.put_item(own).await.unwrap();
    let stale = Item::sign(&sk, svc.clone(), 49, value(49)).unwrap();
    assert!(matches!(
        m.put_item(stale).await,
        Err(MirrorError::Stale { stored_seq: 50, .. })
    ));
}
