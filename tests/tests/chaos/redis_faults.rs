//! Scenario 3, Redis faults: `skymesh mirror put` writes one item after another into a real
//! `redis-server` (AOF, `appendfsync always`) that a full node follows (`--redis`), while Redis is
//! paused (`DEBUG SLEEP`) and then killed and restarted. Must hold: every write the writer
//! acknowledged (exit 0) is served by the node afterwards; the node answers `/health` and serves
//! an item written before the faults throughout; the feed reconnects and resumes from its stream
//! position (no rescan); a write that could not be acknowledged exits non-zero with the
//! documented error (docs/mirror.md: Redis unreachable / timeout), never 0.
use std::process::Command;
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::{RedisServer, http_request, poll, run_skymesh};

use crate::common::{full_node, metric};

/// Longest wait for the node to serve every acknowledged write after the faults.
const CATCH_UP: Duration = Duration::from_secs(60);
/// Longest a single `mirror put` may take (its own acknowledgement timeout is 30 s).
const PUT_LIMIT: Duration = Duration::from_secs(40);

struct Put {
    i: usize,
    ok: bool,
    took: Duration,
    stderr: String,
}

fn put(redis: &str, service: &SecKey, i: usize) -> Put {
    let subject = SecKey::from_seed(format!("redis-fault-subject-{i}").as_bytes()).pubkey();
    let t = Instant::now();
    let out = run_skymesh(
        &[
            "mirror",
            "put",
            "--redis",
            redis,
            "--sk",
            &service.to_hex(),
            "--salt",
            "chaos",
            "--value",
            &format!("write {i}"),
            "--for",
            &subject.to_hex(),
        ],
        None,
    );
    Put {
        i,
        ok: out.status.success(),
        took: t.elapsed(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn served(http: u16, i: usize) -> bool {
    let pk = SecKey::from_seed(format!("redis-fault-subject-{i}").as_bytes()).pubkey();
    let path = format!("/api/v1/get?pk={}&salt=chaos", pk.to_hex());
    matches!(http_request(http, "GET", &path, None), Some((200, body)) if body.contains(&format!("write {i}")))
}

#[test]
fn redis_pause_and_restart_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start();
    let service = SecKey::from_seed(b"redis-fault-service");
    let node = full_node(
        dir.path(),
        "full",
        SecKey::generate(),
        &[
            "--redis",
            &redis.url(),
            "--trusted-writer",
            &service.pubkey().to_hex(),
        ],
    );
    let url = redis.url();
    let mut puts = vec![put(&url, &service, 0)];
    assert!(puts[0].ok, "first write: {}", puts[0].stderr);
    poll("the first write served", CATCH_UP, || {
        served(node.http, 0).then_some(())
    });

    // The node must keep answering while Redis misbehaves: probed from a thread.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (stop, http) = (stop.clone(), node.http);
        std::thread::spawn(move || {
            let (mut n, mut failed, mut worst) = (0, 0, Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let ok = http_request(http, "GET", "/health", None).is_some_and(|r| r.0 == 200)
                    && served(http, 0);
                worst = worst.max(t.elapsed());
                n += 1;
                failed += usize::from(!ok);
                std::thread::sleep(Duration::from_millis(100));
            }
            (n, failed, worst)
        })
    };

    let mut i = 1;
    let mut write_until = |puts: &mut Vec<Put>, until: Instant| {
        while Instant::now() < until {
            let p = put(&url, &service, i);
            assert!(p.took < PUT_LIMIT, "mirror put {i} took {:?}", p.took);
            puts.push(p);
            i += 1;
        }
    };
    // The faults run on their own thread while this one keeps writing:
    // 1. Redis stops answering for 3 s (DEBUG SLEEP blocks its event loop);
    // 2. 2 s later it is killed (SIGKILL) and restarted 2 s after that, same port and AOF.
    let port = redis.port;
    let faults = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "DEBUG", "SLEEP", "3"])
            .output()
            .expect("run redis-cli (package redis-tools)");
        assert!(out.status.success(), "DEBUG SLEEP");
        std::thread::sleep(Duration::from_secs(2));
        redis.kill();
        std::thread::sleep(Duration::from_secs(2));
        redis.restart();
        redis
    });
    while !faults.is_finished() {
        write_until(&mut puts, Instant::now() + Duration::from_millis(100));
    }
    let _redis = faults.join().unwrap();
    write_until(&mut puts, Instant::now() + Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (probes, probe_failures, worst) = prober.join().unwrap();

    let acked: Vec<&Put> = puts.iter().filter(|p| p.ok).collect();
    let failed: Vec<&Put> = puts.iter().filter(|p| !p.ok).collect();
    for p in &failed {
        eprintln!("failed write {} after {:?}:\n{}", p.i, p.took, p.stderr);
        assert!(
            p.stderr.contains("Redis") || p.stderr.contains("redis"),
            "write {} failed without naming Redis: {}",
            p.i,
            p.stderr
        );
    }
    let missing = || acked.iter().filter(|p| !served(node.http, p.i)).count();
    let t = Instant::now();
    poll("every acknowledged write served", CATCH_UP, || {
        (missing() == 0).then_some(())
    });
    let slowest = puts.iter().map(|p| p.took).max().unwrap();
    let errors = metric(node.http, "skymesh_mirror_redis_errors");
    let rescans = metric(node.http, "skymesh_mirror_rescans");
    let live = metric(node.http, "skymesh_mirror_live");
    eprintln!(
        "redis faults: {} writes, {} acknowledged, {} failed (first error: {:?}); slowest put {slowest:?}; all acknowledged served {:?} after the last write; node probes {probes}, failed {probe_failures}, slowest {worst:?}; feed redis_errors {errors:?}, rescans {rescans:?}, live {live:?}",
        puts.len(),
        acked.len(),
        failed.len(),
        failed
            .first()
            .map(|p| p.stderr.lines().last().unwrap_or("").to_string()),
        t.elapsed()
    );
    assert_eq!(
        probe_failures, 0,
        "the node stopped serving during the Redis faults"
    );
    assert!(
        errors.unwrap_or(0.0) >= 1.0,
        "the feed never saw the outage: {errors:?}"
    );
    assert_eq!(
        rescans,
        Some(0.0),
        "the feed rescanned instead of resuming from its position"
    );
    poll("the feed is live again", CATCH_UP, || {
        (metric(node.http, "skymesh_mirror_live") == Some(1.0)).then_some(())
    });
}
