#![allow(clippy::unwrap_used)]
//! Store behaviour, run against every backend; redb persistence across reopen.
use std::collections::HashSet;
use std::time::Duration;

use dht::store::MAX_LIST_LIMIT;
use dht::{
    Config, Cursor, Item, MemoryStore, PutError, PutOutcome, RedbStore, Salt, Store, StoreEvent,
    Target, Timestamp,
};
use keys::SecKey;

fn sk(i: u32) -> SecKey {
    SecKey::from_seed(format!("key-{i}").as_bytes())
}

fn blob(signer: &SecKey, salt: &str, seq: u64) -> Item {
    Item::sign(
        signer,
        Salt::new(salt.as_bytes()).unwrap(),
        seq,
        format!("v{seq}").into_bytes(),
    )
    .unwrap()
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn backends(cfg: Config) -> Vec<(&'static str, Box<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(dir.path().join("s.redb"), cfg.clone()).unwrap();
    vec![
        ("memory", Box::new(MemoryStore::new(cfg)), None),
        ("redb", Box::new(redb), Some(dir)),
    ]
}

#[test]
fn put_get_outcomes_and_events() {
    for (name, mut s, _d) in backends(Config::default()) {
        let a = sk(1);
        let i1 = blob(&a, "x", 1);
        let target = i1.target();
        let o = s.put(i1.clone(), t(0)).unwrap();
        assert_eq!(
            o,
            PutOutcome::Inserted {
                target,
                change: Cursor::from_u64(1)
            },
            "{name}"
        );
        assert!(matches!(
            o.event(&i1),
            Some(StoreEvent::Accepted { seq: 1, .. })
        ));
        assert_eq!(s.get(&target).unwrap(), Some(i1.clone()));
        assert_eq!(
            s.put(i1.clone(), t(1)).unwrap(),
            PutOutcome::Unchanged { target }
        );
        assert_eq!(PutOutcome::Unchanged { target }.event(&i1), None);
        let i2 = blob(&a, "x", 2);
        let o = s.put(i2.clone(), t(2)).unwrap();
        assert_eq!(
            o,
            PutOutcome::Replaced {
                target,
                change: Cursor::from_u64(2),
                previous_seq: 1
            }
        );
        assert!(matches!(
            o.event(&i2),
            Some(StoreEvent::Replaced {
                previous_seq: 1,
                ..
            })
        ));
        assert!(matches!(
            s.put(i1.clone(), t(3)),
            Err(PutError::Stale { .. })
        ));
        assert_eq!(s.get(&target).unwrap(), Some(i2.clone()));
        assert_eq!(s.get(&Target::from_bytes([7; 32])).unwrap(), None);
        let st = s.stats();
        assert_eq!(
            (st.items, st.bytes, st.last_change),
            (1, i2.encoded_len() as u64, Cursor::from_u64(2))
        );
        // Invalid items never reach the store.
        let mut bad = blob(&a, "y", 1);
        bad.value = b"other".to_vec();
        assert!(matches!(s.put(bad, t(4)), Err(PutError::Invalid { .. })));
        assert_eq!(s.stats().items, 1);
    }
}

#[test]
fn expiry_respects_refresh() {
    let mut cfg = Config::default();
    cfg.ttl = Duration::from_secs(10);
    for (name, mut s, _d) in backends(cfg) {
        let a = sk(1);
        let b = sk(2);
        let ia = blob(&a, "x", 1);
        let ib = blob(&b, "x", 1);
        s.put(ia.clone(), t(0)).unwrap();
        s.put(ib.clone(), t(0)).unwrap();
        assert!(
            s.expire(t(10_000)).unwrap().is_empty(),
            "{name}: exactly TTL old stays"
        );
        s.put(ia.clone(), t(5_000)).unwrap(); // refresh
        let gone = s.expire(t(10_001)).unwrap();
        assert_eq!(gone.len(), 1, "{name}");
        assert_eq!(gone[0].target, ib.target());
        assert!(matches!(
            StoreEvent::from(gone[0].clone()),
            StoreEvent::Expired { .. }
        ));
        assert_eq!(s.get(&ib.target()).unwrap(), None);
        assert_eq!(s.get(&ia.target()).unwrap(), Some(ia.clone()));
        assert_eq!(s.stats().items, 1);
        let gone = s.expire(t(15_001)).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(
            s.stats(),
            dht::StoreStats {
                items: 0,
                bytes: 0,
                last_change: Cursor::from_u64(2)
            }
        );
        // After expiry the slot can be written again, even with a lower seq.
        s.put(blob(&b, "x", 0), t(20_000)).unwrap();
        assert_eq!(
            s.list_since(None, Cursor::START, 10).unwrap().items.len(),
            1
        );
    }
}

#[test]
fn quota_and_capacity_refusals() {
    let mut cfg = Config::default();
    cfg.max_items_per_key = 3;
    cfg.max_items = 5;
    for (name, mut s, _d) in backends(cfg.clone()) {
        let a = sk(1);
        for i in 0..3 {
            s.put(blob(&a, &format!("s{i}"), 1), t(0)).unwrap();
        }
        assert!(
            matches!(
                s.put(blob(&a, "s3", 1), t(0)),
                Err(PutError::Quota { max: 3, .. })
            ),
            "{name}"
        );
        s.put(blob(&a, "s0", 2), t(0)).unwrap(); // replacing is not a new target
        s.put(blob(&sk(2), "x", 1), t(0)).unwrap();
        s.put(blob(&sk(3), "x", 1), t(0)).unwrap();
        assert!(
            matches!(
                s.put(blob(&sk(4), "x", 1), t(0)),
                Err(PutError::Capacity { .. })
            ),
            "{name}"
        );
        assert_eq!(s.stats().items, 5);
        // Expiry frees quota and capacity.
        s.expire(t(u64::MAX)).unwrap();
        s.put(blob(&sk(4), "x", 1), t(0)).unwrap();
    }
    let mut cfg = Config::default();
    cfg.max_bytes = 300;
    for (name, mut s, _d) in backends(cfg) {
        s.put(blob(&sk(1), "x", 1), t(0)).unwrap();
        s.put(blob(&sk(2), "x", 1), t(0)).unwrap();
        assert!(
            matches!(
                s.put(blob(&sk(3), "x", 1), t(0)),
                Err(PutError::Capacity { .. })
            ),
            "{name}"
        );
    }
}

fn drain(
    s: &dyn Store,
    salt: Option<&Salt>,
    mut cursor: Cursor,
    limit: usize,
) -> (Vec<Item>, Cursor) {
    let mut out = Vec::new();
    loop {
        let p = s.list_since(salt, cursor, limit).unwrap();
        assert!(p.items.len() <= limit);
        out.extend(p.items);
        assert!(p.next_cursor >= cursor);
        cursor = p.next_cursor;
        if !p.has_more {
            return (out, cursor);
        }
    }
}

#[test]
fn cursor_paging_skips_nothing() {
    for (name, mut s, _d) in backends(Config::default()) {
        let mut expected = HashSet::new();
        for i in 0..25 {
            let salt = if i % 2 == 0 { "alpha" } else { "blob" };
            let it = blob(&sk(i), salt, 1_000_000 + u64::from(i));
            expected.insert(it.target());
            s.put(it, t(0)).unwrap();
        }
        let (all, cur) = drain(s.as_ref(), None, Cursor::START, 4);
        assert_eq!(all.len(), 25, "{name}");
        assert_eq!(
            all.iter().map(Item::target).collect::<HashSet<_>>(),
            expected
        );
        let dmsg = Salt::new(b"alpha".to_vec()).unwrap();
        let (only, dcur) = drain(s.as_ref(), Some(&dmsg), Cursor::START, 3);
        assert_eq!(only.len(), 13);
        assert!(only.iter().all(|i| i.salt == dmsg));
        // After the cursor: a *new publisher* with a tiny seq, and a replacement.
        let newbie = blob(&sk(100), "alpha", 1);
        s.put(newbie.clone(), t(1)).unwrap();
        let replaced = blob(&sk(0), "alpha", 2_000_000);
        s.put(replaced.clone(), t(1)).unwrap();
        let (more, _) = drain(s.as_ref(), None, cur, 4);
        assert_eq!(more, vec![newbie.clone(), replaced.clone()], "{name}");
        let (more, _) = drain(s.as_ref(), Some(&dmsg), dcur, 1);
        assert_eq!(more, vec![newbie, replaced]);
        // The replaced item moved: a full listing still has each target once.
        let (all, _) = drain(s.as_ref(), None, Cursor::START, 1000);
        assert_eq!(all.len(), 26);
        // Empty page keeps the cursor; limits are clamped.
        let p = s.list_since(None, Cursor::from_u64(10_000), 0).unwrap();
        assert!(p.items.is_empty() && !p.has_more && p.next_cursor == Cursor::from_u64(10_000));
        let p = s.list_since(None, Cursor::START, usize::MAX).unwrap();
        assert!(p.items.len() <= MAX_LIST_LIMIT);
        let p = s.list_since(None, Cursor::START, 0).unwrap();
        assert_eq!(p.items.len(), 1);
        assert!(p.has_more);
    }
}

#[test]
fn put_batch_gives_each_item_a_verdict() {
    for (name, mut s, _d) in backends(Config::default()) {
        let a = sk(1);
        let mut bad = blob(&a, "b", 1);
        bad.seq = 9;
        let r = s
            .put_batch(
                vec![
                    blob(&a, "a", 1),
                    bad,
                    blob(&a, "a", 1),
                    blob(&sk(2), "a", 1),
                ],
                t(0),
            )
            .unwrap();
        assert!(matches!(r[0], Ok(PutOutcome::Inserted { .. })), "{name}");
        assert!(matches!(r[1], Err(PutError::Invalid { .. })));
        assert!(matches!(r[2], Ok(PutOutcome::Unchanged { .. })));
        assert!(matches!(r[3], Ok(PutOutcome::Inserted { .. })));
        assert_eq!(s.stats().items, 2);
        assert_eq!(s.stats().last_change, Cursor::from_u64(2));
    }
}

#[test]
fn redb_reopen_keeps_items_counters_and_change_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let mut items = Vec::new();
    {
        let mut s = RedbStore::open(&path, Config::default()).unwrap();
        for i in 0..10 {
            let it = blob(&sk(i), "x", 5);
            s.put(it.clone(), t(0)).unwrap();
            items.push(it);
        }
    }
    let mut s = RedbStore::open(&path, Config::default()).unwrap();
    for it in &items {
        assert_eq!(s.get(&it.target()).unwrap().as_ref(), Some(it));
    }
    assert_eq!(s.stats().items, 10);
    assert_eq!(s.stats().last_change, Cursor::from_u64(10));
    // Seq rules hold across the restart and change numbers continue.
    assert!(matches!(
        s.put(blob(&sk(0), "x", 4), t(1)),
        Err(PutError::Stale { .. })
    ));
    let o = s.put(blob(&sk(0), "x", 6), t(1)).unwrap();
    assert!(matches!(o, PutOutcome::Replaced { change, .. } if change == Cursor::from_u64(11)));
    // Opening the same file twice in one process is refused, not corrupted.
    assert!(RedbStore::open(&path, Config::default()).is_err());
}

#[test]
fn own_seq_survives_restart_even_when_the_clock_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("own.redb");
    let me = sk(42);
    let salt = Salt::new(b"fullnode-ish".to_vec()).unwrap();
    let target = Target::of(&me.pubkey(), &salt);
    let publish = |s: &mut RedbStore, now: u64| {
        let high = s.get(&target).unwrap().map_or(0, |i| i.seq);
        let mut clock = dht::SeqClock::new(high);
        let seq = clock.next(t(now));
        s.put(Item::sign(&me, salt.clone(), seq, vec![1]).unwrap(), t(now))
            .unwrap();
        seq
    };
    let first = {
        let mut s = RedbStore::open(&path, Config::default()).unwrap();
        publish(&mut s, 1_000_000)
    };
    // Restart with the wall clock 10 minutes behind: still a higher seq, accepted.
    let mut s = RedbStore::open(&path, Config::default()).unwrap();
    let second = publish(&mut s, 400_000);
    assert!(second > first);
    assert_eq!(s.get(&target).unwrap().unwrap().seq, second);
}
