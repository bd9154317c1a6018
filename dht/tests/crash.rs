#![allow(clippy::unwrap_used)]
//! Crash safety of the redb store: a child process (this test binary re-invoked with an env var)
//! puts items and prints `ack <i>` after each `put` returns Ok; the parent SIGKILLs it mid-way,
//! reopens the file, and checks that every acknowledged item is there. Between puts the child
//! also refreshes earlier items (non-fsync'd commits), so the kill can land on either kind.
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use dht::{Config, Item, RedbStore, Salt, Store, Timestamp};
use keys::SecKey;

const CHILD_ENV: &str = "SKYMESH_DHT_CRASH_CHILD_DB";
const KILL_AFTER: usize = 40;

fn item(i: u64) -> Item {
    let sk = SecKey::from_seed(format!("crash-{}", i % 7).as_bytes());
    Item::sign(
        &sk,
        Salt::new(format!("s{i}").into_bytes()).unwrap(),
        i + 1,
        vec![b'x'; 300],
    )
    .unwrap()
}

/// The child half: runs only when re-invoked by the parent.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut cfg = Config::default();
    cfg.max_items_per_key = 10_000;
    let mut s = RedbStore::open(&path, cfg).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0..100_000u64 {
        s.put(item(i), Timestamp::from_unix_millis(i)).unwrap();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
        // A refresh of an earlier item: committed without fsync; must not endanger anything.
        if i > 0 {
            let r = s.put(item(i / 2), Timestamp::from_unix_millis(i)).unwrap();
            assert!(matches!(r, dht::PutOutcome::Unchanged { .. }));
        }
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_mid_write_keeps_every_acked_item() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if let Some(n) = line.strip_prefix("ack ") {
            acked.push(n.parse::<u64>().unwrap());
            if acked.len() == KILL_AFTER {
                child.kill().unwrap(); // SIGKILL on Unix: no destructors, no shutdown
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), KILL_AFTER, "child stopped early");
    let s = RedbStore::open(&path, Config::default()).unwrap();
    for i in &acked {
        let it = item(*i);
        assert_eq!(
            s.get(&it.target()).unwrap(),
            Some(it),
            "acked item {i} lost"
        );
    }
    assert!(s.stats().items >= KILL_AFTER as u64);
}
