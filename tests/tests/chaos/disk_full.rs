//! Scenario 4, disk full: a full node's data directory lives on a small tmpfs the test mounts
//! (root only: without the privilege to mount, the test fails saying so; it is never skipped).
//! The disk is filled up while the node takes puts. Must hold (docs/reliability.md, the
//! write-behind store of `dht/node/src/persist.rs`): puts keep being answered and served from
//! memory while the disk is full; the node keeps serving; nothing already stored is corrupted
//! (a restart loads every item stored before the disk filled up); once space returns, new puts
//! are persisted again (they survive a SIGKILL and restart).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keys::SecKey;
use skymesh_tests::{http_request, poll};

use crate::common::full_node;

/// tmpfs size: room for the node's store and key, little more.
const TMPFS: &str = "size=8m";
/// Items per phase.
const ITEMS: usize = 20;

/// A tmpfs mounted for the test; unmounted (lazily, so a straggler cannot block it) on drop.
struct Mount(PathBuf);

impl Mount {
    fn new(at: &Path) -> Mount {
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the disk-full scenario mounts a tmpfs and must run as root (it is not skipped)"
        );
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS, "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this machine lacks the privilege, e.g. CAP_SYS_ADMIN in a container): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn put(http: u16, salt: &str, value: &str) -> Option<(u16, String)> {
    let body = serde_json::json!({"salt": salt, "value": value}).to_string();
    http_request(http, "POST", "/api/v1/put", Some(&body))
}

fn get(http: u16, pk: &str, salt: &str) -> Option<String> {
    match http_request(
        http,
        "GET",
        &format!("/api/v1/get?pk={pk}&salt={salt}"),
        None,
    ) {
        Some((200, body)) => Some(body),
        _ => None,
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    // Bounded: 8 MiB of tmpfs is full after at most 128 chunks.
    for _ in 0..1024 {
        if f.write_all(&chunk).and_then(|_| f.sync_all()).is_err() {
            break;
        }
    }
    // Whatever partial block is left.
    for _ in 0..4096 {
        if f.write_all(&[0u8; 512]).and_then(|_| f.sync_all()).is_err() {
            break;
        }
    }
    path
}

#[test]
fn disk_full_keeps_serving_corrupts_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let _mount = Mount::new(&mnt);
    let sk = SecKey::generate();
    let pk = sk.pubkey().to_hex();
    let node = full_node(&mnt, "full", sk.clone(), &[]);
    for i in 0..ITEMS {
        let r = put(
            node.http,
            &format!("before-{i}"),
            "stored before the disk filled",
        );
        assert_eq!(r.as_ref().map(|r| r.0), Some(200), "{r:?}");
    }
    // The write-behind thread commits within milliseconds; give it a moment.
    std::thread::sleep(Duration::from_millis(500));

    let filler = fill(&mnt);
    let mut answers = Vec::new();
    for i in 0..ITEMS {
        let r = put(
            node.http,
            &format!("full-{i}"),
            "put while the disk is full",
        );
        answers.push(r.map(|r| r.0));
    }
    let served_full = (0..ITEMS)
        .filter(|i| get(node.http, &pk, &format!("full-{i}")).is_some())
        .count();
    let healthy = http_request(node.http, "GET", "/health", None).map(|r| r.0);
    std::fs::remove_file(&filler).unwrap();
    for i in 0..ITEMS {
        let r = put(node.http, &format!("after-{i}"), "put once space returned");
        assert_eq!(r.as_ref().map(|r| r.0), Some(200), "{r:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(mnt.join("full.log")).unwrap_or_default();
    let write_errors = log.lines().filter(|l| l.contains("write failed")).count();

    // SIGKILL and restart on the same data: what was stored is intact, the store still works.
    drop(node);
    let node = full_node(&mnt, "full", sk, &[]);
    let count = |prefix: &str| {
        (0..ITEMS)
            .filter(|i| get(node.http, &pk, &format!("{prefix}-{i}")).is_some())
            .count()
    };
    let (before, during, after) = (count("before"), count("full"), count("after"));
    eprintln!(
        "disk full: puts while full answered {answers:?}, {served_full}/{ITEMS} served from memory, /health {healthy:?}, {write_errors} disk write errors logged; after SIGKILL + restart: {before}/{ITEMS} stored before, {during}/{ITEMS} put while full, {after}/{ITEMS} put after space returned"
    );
    assert!(
        answers.iter().all(|a| *a == Some(200)),
        "puts while full: {answers:?}"
    );
    assert_eq!(
        served_full, ITEMS,
        "puts accepted while full are served from memory"
    );
    assert_eq!(healthy, Some(200));
    assert_eq!(
        before, ITEMS,
        "items stored before the disk filled were lost or damaged"
    );
    assert_eq!(after, ITEMS, "puts after space returned were not persisted");
    poll(
        "the node answers after the restart",
        Duration::from_secs(5),
        || http_request(node.http, "GET", "/health", None).filter(|r| r.0 == 200),
    );
}
