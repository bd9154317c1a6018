#![allow(clippy::unwrap_used)]
//! Property test: random puts/refreshes/expiries applied to the memory and the redb store give
//! the same verdicts and the same listings, and a reader paging from a kept cursor never misses a
//! write, whatever the seqs.
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use dht::{
    Config, Cursor, Item, MemoryStore, PutOutcome, RedbStore, Salt, Store, Target, Timestamp,
};
use keys::SecKey;
use proptest::prelude::*;

const KEYS: usize = 4;
const SALTS: usize = 3;
const SEQS: usize = 6;

/// Pre-signed items indexed by (key, salt, seq, variant).
fn pool() -> &'static Vec<Item> {
    static POOL: OnceLock<Vec<Item>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut v = Vec::new();
        for k in 0..KEYS {
            let sk = SecKey::from_seed(format!("model-{k}").as_bytes());
            for s in 0..SALTS {
                for q in 0..SEQS {
                    for var in 0..2 {
                        let salt = Salt::new(format!("salt{s}").into_bytes()).unwrap();
                        v.push(Item::sign(&sk, salt, q as u64, vec![var as u8; 3]).unwrap());
                    }
                }
            }
        }
        v
    })
}

fn pick(k: usize, s: usize, q: usize, var: usize) -> Item {
    pool()[((k * SALTS + s) * SEQS + q) * 2 + var].clone()
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        k: usize,
        s: usize,
        q: usize,
        var: usize,
    },
    Advance {
        secs: u64,
    },
    Expire,
    Read {
        limit: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS, 0..SALTS, 0..SEQS, 0..2usize).prop_map(|(k, s, q, var)| Op::Put { k, s, q, var }),
        1 => (1..8u64).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Expire),
        2 => (1..5usize).prop_map(|limit| Op::Read { limit }),
    ]
}

fn verdict(r: &Result<PutOutcome, dht::PutError>) -> String {
    match r {
        Ok(o) => format!("{o:?}"),
        Err(e) => {
            let s = format!("{e:?}");
            s.split([' ', '{', '('])
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    }
}

fn page_all(s: &dyn Store, from: Cursor, limit: usize) -> (Vec<Item>, Cursor) {
    let mut cursor = from;
    let mut out = Vec::new();
    loop {
        let p = s.list_since(None, cursor, limit).unwrap();
        out.extend(p.items);
        cursor = p.next_cursor;
        if !p.has_more {
            return (out, cursor);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_redb_agree_and_readers_miss_nothing(ops in proptest::collection::vec(op(), 1..40)) {
        let mut cfg = Config::default();
        cfg.ttl = Duration::from_secs(10);
        cfg.max_items_per_key = 2;
        cfg.max_items = 8;
        let dir = tempfile::tempdir().unwrap();
        let mut mem = MemoryStore::new(cfg.clone());
        let mut red = RedbStore::open(dir.path().join("m.redb"), cfg).unwrap();
        let mut now = 1_000_000u64;
        // The reader's view: target -> item, built only from pages after its cursor.
        let mut reader: HashMap<Target, Item> = HashMap::new();
        let mut cursor = Cursor::START;
        let mut written_since_read: HashSet<Target> = HashSet::new();
        for op in ops {
            match op {
                Op::Put { k, s, q, var } => {
                    let item = pick(k, s, q, var);
                    let a = mem.put(item.clone(), Timestamp::from_unix_millis(now));
                    let b = red.put(item.clone(), Timestamp::from_unix_millis(now));
                    prop_assert_eq!(verdict(&a), verdict(&b));
                    if let Ok(PutOutcome::Inserted { .. } | PutOutcome::Replaced { .. }) = a {
                        written_since_read.insert(item.target());
                    }
                }
                Op::Advance { secs } => now += secs * 1000,
                Op::Expire => {
                    let a = mem.expire(Timestamp::from_unix_millis(now)).unwrap();
                    let b = red.expire(Timestamp::from_unix_millis(now)).unwrap();
                    let ta: HashSet<_> = a.iter().map(|e| e.target).collect();
                    let tb: HashSet<_> = b.iter().map(|e| e.target).collect();
                    prop_assert_eq!(&ta, &tb);
                    for t in ta {
                        reader.remove(&t);
                        written_since_read.remove(&t);
                    }
                }
                Op::Read { limit } => {
                    let (items, next) = page_all(&mem, cursor, limit);
                    let (items_r, next_r) = page_all(&red, cursor, limit);
                    prop_assert_eq!(&items, &items_r);
                    prop_assert_eq!(next, next_r);
                    let seen: HashSet<Target> = items.iter().map(Item::target).collect();
                    // Every write since the last read is in this read (unless expired since).
                    for t in &written_since_read {
                        prop_assert!(seen.contains(t), "missed {:?}", t);
                    }
                    written_since_read.clear();
                    for it in items {
                        reader.insert(it.target(), it);
                    }
                    cursor = next;
                    // The incremental view equals the store's content.
                    for (t, it) in &reader {
                        let got = mem.get(t).unwrap();
                        prop_assert_eq!(got.as_ref(), Some(it));
                    }
                    prop_assert_eq!(reader.len() as u64, mem.stats().items);
                }
            }
            prop_assert_eq!(mem.stats(), red.stats());
        }
        let (all, _) = page_all(&mem, Cursor::START, 3);
        let targets: HashSet<Target> = all.iter().map(Item::target).collect();
        prop_assert_eq!(targets.len(), all.len());
        prop_assert_eq!(all.len() as u64, mem.stats().items);
        prop_assert_eq!(page_all(&red, Cursor::START, 1000).0, page_all(&mem, Cursor::START, 1000).0);
    }
}
