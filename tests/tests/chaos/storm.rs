//! Scenario 1, reconnect storm: one DMSG server holds sessions of many clients (in a few
//! `chaos_swarm` processes), is killed with SIGKILL and restarted on the same port and key.
//! Must hold: every client is back (p99 ≤ 5 s after the restart), reconnects are spread over
//! time (no 100 ms window holds more than half of them), the server's CPU and RSS stay bounded
//! during the storm and it goes quiet afterwards, and every client's discovery entry names the
//! server again.
use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::Proc;
use skymesh_tests::chaos::{Sampler, cpu_seconds, percentile, unix_ms};

use crate::common::{discovery, entry, metric, server_plan, start_server, wait_entry};

/// Longest wait for every client to hold a session (first start and after the restart).
const ALL_UP: Duration = Duration::from_secs(120);
/// Longest wait for every client to notice the kill.
const ALL_DOWN: Duration = Duration::from_secs(30);
/// The bound on the 99th percentile of reconnect times after the restart.
const P99_LIMIT_MS: f64 = 5_000.0;

/// One `chaos_swarm` process and the lines it prints.
struct Swarm {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
    base: usize,
}

fn swarm(disc: &str, n: usize, seed: &str, base: usize) -> Swarm {
    let mut proc = Proc::spawn(
        seed,
        Command::new(env!("CARGO_BIN_EXE_chaos_swarm"))
            .args([disc, &n.to_string(), seed])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .unwrap();
    let out = proc.child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Swarm {
        _proc: proc,
        lines,
        base,
    }
}

/// Collects `up`/`down` events of every swarm until `done(state)` or `deadline`; returns the
/// time (Unix ms) of each client's last transition to `want_up`.
fn collect(
    swarms: &[Swarm],
    state: &mut [bool],
    want_up: bool,
    deadline: Duration,
) -> Result<HashMap<usize, u64>, String> {
    let start = Instant::now();
    let mut at = HashMap::new();
    while state.iter().any(|s| *s != want_up) {
        if start.elapsed() > deadline {
            let missing = state.iter().filter(|s| **s != want_up).count();
            return Err(format!(
                "{missing} of {} clients not {} after {deadline:?}",
                state.len(),
                if want_up { "up" } else { "down" }
            ));
        }
        let mut got = false;
        for s in swarms {
            while let Ok(l) = s.lines.try_recv() {
                got = true;
                let f: Vec<&str> = l.split_whitespace().collect();
                let (Some(kind), Some(i), Some(ms)) = (f.first(), f.get(1), f.get(2)) else {
                    continue;
                };
                let (Ok(i), Ok(ms)) = (i.parse::<usize>(), ms.parse::<u64>()) else {
                    continue;
                };
                let up = *kind == "up";
                state[s.base + i] = up;
                if up == want_up {
                    at.insert(s.base + i, ms);
                }
            }
        }
        if !got {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(at)
}

struct Figures {
    clients: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    busiest_100ms: usize,
    cpu_storm_pct: f64,
    cpu_after_pct: f64,
    rss_max_mib: f64,
}

fn storm(clients: usize, procs: usize, down_for: Duration) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let (_disc, disc_url, disc_port) = discovery(dir.path());
    let ssk = SecKey::generate();
    let plan = server_plan(dir.path(), "server", &disc_url, &ssk, 4096);
    let mut server = start_server(dir.path(), "server", &plan);
    wait_entry(disc_port, &plan.pk, "the server's entry", |e| {
        e["server"]["address"].is_string()
    });

    let per = clients.div_ceil(procs);
    let swarms: Vec<Swarm> = (0..procs)
        .map(|p| {
            let n = per.min(clients - p * per);
            swarm(&disc_url, n, &format!("storm{p}"), p * per)
        })
        .collect();
    let mut state = vec![false; clients];
    collect(&swarms, &mut state, true, ALL_UP).unwrap();
    let sessions = |_: ()| metric(plan.health, "skymesh_dmsg_sessions").map(|n| n as u64);
    eprintln!(
        "storm: {clients} clients up; server reports {:?} sessions",
        sessions(())
    );

    server.kill();
    collect(&swarms, &mut state, false, ALL_DOWN).unwrap();
    std::thread::sleep(down_for);
    let restarted = unix_ms();
    let server = start_server(dir.path(), "server", &plan);
    let pid = server.child.id();
    let sampler = Sampler::start(vec![("server".into(), pid)], Duration::from_millis(100));
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let back = collect(&swarms, &mut state, true, ALL_UP).unwrap();
    let storm_wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let cpu2 = cpu_seconds(pid).unwrap();
    let samples = sampler.stop().remove("server").unwrap_or_default();

    let delays: Vec<f64> = back
        .values()
        .map(|ms| ms.saturating_sub(restarted) as f64)
        .collect();
    let mut buckets: HashMap<u64, usize> = HashMap::new();
    for ms in back.values() {
        *buckets.entry(ms / 100).or_default() += 1;
    }
    let figures = Figures {
        clients,
        p50_ms: percentile(&delays, 50.0).unwrap(),
        p99_ms: percentile(&delays, 99.0).unwrap(),
        max_ms: percentile(&delays, 100.0).unwrap(),
        busiest_100ms: buckets.values().copied().max().unwrap_or(0),
        cpu_storm_pct: 100.0 * (cpu1 - cpu0) / storm_wall.max(0.001),
        cpu_after_pct: 100.0 * (cpu2 - cpu1) / 2.0,
        rss_max_mib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
    };
    eprintln!(
        "storm: {} clients, down {down_for:?}: back p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms after the restart; busiest 100 ms window {} reconnects; server CPU {:.0} % during the storm ({storm_wall:.1} s), {:.1} % in the 2 s after; RSS max {:.1} MiB",
        figures.clients,
        figures.p50_ms,
        figures.p99_ms,
        figures.max_ms,
        figures.busiest_100ms,
        figures.cpu_storm_pct,
        figures.cpu_after_pct,
        figures.rss_max_mib
    );

    // The server holds every session again and every client's entry names it.
    skymesh_tests::poll("the server counts every session", ALL_UP, || {
        sessions(()).filter(|n| *n as usize == clients)
    });
    for p in 0..procs {
        for i in 0..per.min(clients - p * per) {
            let pk = SecKey::from_seed(format!("storm{p}-{i}").as_bytes())
                .pubkey()
                .to_hex();
            let e = entry(disc_port, &pk).unwrap_or_else(|| panic!("no entry for client {pk}"));
            assert_eq!(
                e["client"]["delegated_servers"],
                serde_json::json!([plan.pk]),
                "client {pk}'s entry after the storm: {e}"
            );
        }
    }
    let e = entry(disc_port, &plan.pk).unwrap();
    assert_eq!(
        e["server"]["address"],
        format!("127.0.0.1:{}", plan.port),
        "{e}"
    );
    figures
}

fn check(f: &Figures) {
    assert!(
        f.p99_ms <= P99_LIMIT_MS,
        "p99 reconnect {:.0} ms > {P99_LIMIT_MS} ms",
        f.p99_ms
    );
    assert!(
        f.busiest_100ms * 2 <= f.clients,
        "{} of {} clients reconnected within one 100 ms window: no jitter",
        f.busiest_100ms,
        f.clients
    );
    // 2 cores: the restarted server may use both while the storm lasts, not more, and must
    // be quiet once every client is back (the Go discovery stayed at 190 % CPU).
    assert!(
        f.cpu_storm_pct <= 200.0,
        "server CPU {:.0} % during the storm",
        f.cpu_storm_pct
    );
    assert!(
        f.cpu_after_pct <= 25.0,
        "server CPU {:.0} % after the storm",
        f.cpu_after_pct
    );
    // Sessions cost well under 100 KiB each; 512 MiB bounds 2,000 of them with room.
    assert!(
        f.rss_max_mib <= 512.0,
        "server RSS {:.0} MiB",
        f.rss_max_mib
    );
}

#[test]
fn reconnect_storm_short() {
    check(&storm(300, 2, Duration::from_secs(1)));
}

/// `cargo test -p skymesh-tests --test chaos -- --ignored reconnect_storm_2000 --nocapture`
#[test]
#[ignore = "long: 2,000 sessions; run by the command in docs/reliability.md"]
fn reconnect_storm_2000() {
    check(&storm(2000, 4, Duration::from_secs(3)));
}
