//! Scenario 2, churn soak: 3 full nodes (DMSG servers) while visors (`skymesh node --role
//! regular --dmsg`) join and leave every few seconds, DHT puts go to every node and DMSG
//! streams (`skymesh dmsg get … dmsg://SERVER:80/health`) cross the servers. Open fds, TCP
//! sockets by state, threads and RSS of the full nodes are sampled on a fixed period, printed
//! as a table and checked: no upward trend once warmed up, and no CLOSE_WAIT pile-up.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::chaos::{Sampler, check_flat, table};
use skymesh_tests::{http_request, skymesh_bin};

use crate::common::{Full, full_node, node};

/// Longest a `dmsg get` may take before it counts as failed (and is killed).
const GET_LIMIT: Duration = Duration::from_secs(20);

/// Runs `skymesh ARGS` with a deadline; `true` when it exited 0 in time.
fn run_bounded(args: &[&str], limit: Duration) -> bool {
    let Ok(mut child) = Command::new(skymesh_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn churn(duration: Duration, every: Duration, sample_every: Duration, warmup: usize) {
    let dir = tempfile::tempdir().unwrap();
    let first = full_node(dir.path(), "full-0", SecKey::generate(), &[]);
    let boot = first.multiaddr();
    let mesh = ["--mesh-dht", "--mesh-allow", "any"];
    let mut fulls: Vec<Full> = vec![first];
    for i in 1..3 {
        let mut extra = vec!["--bootstrap", boot.as_str()];
        extra.extend(mesh);
        fulls.push(full_node(
            dir.path(),
            &format!("full-{i}"),
            SecKey::generate(),
            &extra,
        ));
    }
    let procs = fulls
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("full-{i}"), f.proc.child.id()))
        .collect();
    let sampler = Sampler::start(procs, sample_every);
    let start = Instant::now();
    let mut visors: std::collections::VecDeque<Full> = Default::default();
    let (mut joined, mut puts_ok, mut puts, mut gets_ok, mut gets) = (0, 0, 0, 0, 0);
    let mut round = 0usize;
    while start.elapsed() < duration {
        let t = Instant::now();
        // One visor joins, the oldest leaves (SIGKILL or SIGTERM, alternately) beyond three.
        let f = &fulls[round % 3];
        let v = node(
            dir.path(),
            &format!("visor-{round}"),
            "regular",
            SecKey::generate(),
            &["--bootstrap", &f.multiaddr(), "--dmsg"],
        );
        joined += 1;
        visors.push_back(v);
        if visors.len() > 3
            && let Some(mut old) = visors.pop_front()
        {
            if round.is_multiple_of(2) {
                old.proc.kill();
            } else {
                let _ = Command::new("kill")
                    .args(["-TERM", &old.proc.child.id().to_string()])
                    .status();
                let _ = old.proc.child.wait();
            }
        }
        // DHT puts on every full node and on the newest visor.
        for n in fulls.iter().chain(visors.back()) {
            let body = serde_json::json!({"salt": format!("churn-{}", round % 8), "value": format!("round {round}")}).to_string();
            puts += 1;
            if http_request(n.http, "POST", "/api/v1/put", Some(&body)).is_some_and(|r| r.0 == 200)
            {
                puts_ok += 1;
            }
        }
        // A DMSG stream to another server's own key, found through the DHT.
        let target = &fulls[(round + 1) % 3];
        let url = format!("dmsg://{}:80/health", target.sk.pubkey().to_hex());
        gets += 1;
        if run_bounded(
            &["dmsg", "get", "--dht", &f.multiaddr(), "--stdout", &url],
            GET_LIMIT,
        ) {
            gets_ok += 1;
        }
        round += 1;
        if let Some(rest) = every.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let samples = sampler.stop();
    // Items held, to tell store growth (departed visors' items live until their 2 h expiry)
    // from a leak when RSS rises.
    for (i, f) in fulls.iter().enumerate() {
        let items = skymesh_tests::get_json(f.http, "/api/v1/info").map(|v| v["items"].clone());
        eprintln!("churn: full-{i} holds items by salt {items:?}");
    }
    eprintln!(
        "churn: {:?}, {joined} visors joined, {puts_ok}/{puts} puts ok, {gets_ok}/{gets} DMSG gets ok",
        start.elapsed()
    );
    let mut failures = Vec::new();
    for (name, s) in &samples {
        eprintln!("{}", table(name, s));
        let series = |f: &dyn Fn(&skymesh_tests::chaos::Sample) -> f64| {
            s.iter().map(f).collect::<Vec<f64>>()
        };
        for r in [
            check_flat(
                &format!("{name} fds"),
                &series(&|x| x.fds as f64),
                warmup,
                0.25,
                20.0,
            ),
            check_flat(
                &format!("{name} threads"),
                &series(&|x| x.threads as f64),
                warmup,
                0.25,
                4.0,
            ),
            check_flat(
                &format!("{name} TCP sockets"),
                &series(&|x| x.tcp_total() as f64),
                warmup,
                0.25,
                20.0,
            ),
            check_flat(
                &format!("{name} RSS KiB"),
                &series(&|x| x.rss_kib as f64),
                warmup,
                0.25,
                20_480.0,
            ),
        ] {
            if let Err(e) = r {
                failures.push(e);
            }
        }
        let close_wait = s.last().map(|x| x.tcp_in("CLOSE_WAIT")).unwrap_or(0);
        if close_wait > 10 {
            failures.push(format!(
                "{name}: {close_wait} sockets in CLOSE_WAIT at the end"
            ));
        }
    }
    assert!(puts_ok * 10 >= puts * 9, "{puts_ok}/{puts} puts ok");
    assert!(gets_ok * 10 >= gets * 8, "{gets_ok}/{gets} DMSG gets ok");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn churn_soak_short() {
    churn(
        Duration::from_secs(40),
        Duration::from_secs(3),
        Duration::from_secs(4),
        3,
    );
}

/// `cargo test -p skymesh-tests --test chaos -- --ignored churn_soak_30min --nocapture`
#[test]
#[ignore = "long: 30 minutes; run by the command in docs/reliability.md"]
fn churn_soak_30min() {
    churn(
        Duration::from_secs(30 * 60),
        Duration::from_secs(4),
        Duration::from_secs(10),
        6,
    );
}
