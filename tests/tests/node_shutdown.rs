//! A node stopped with SIGTERM shuts down in order (`bin/src/daemon.rs`) and, when it runs a
//! DMSG server, withdraws its DMSG entry like `skymesh dmsg server` does: the other full nodes
//! then answer `/dmsg-discovery/entry/PK` with the server holding no free sessions (the DHT
//! withdrawal, `overlay::DhtDiscovery::withdraw`), so visors stop choosing it.
//!
//! Real `skymesh node` processes on 127.0.0.1; the signal is sent with `kill -TERM`.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use keys::SecKey;
use serde_json::Value;
use skymesh_tests::{free_port, get_json, multiaddr, poll, spawn_member};

/// Generous for a 2-core CI machine running other tests.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long a stopped node may take to exit: HTTP grace (5 s) + deregistration (10 s at most)
/// + the rest, with slack.
const EXIT_WITHIN: Duration = Duration::from_secs(25);

/// The free sessions `port`'s discovery API reports for the server `pk`.
fn available_sessions(port: u16, pk: &str) -> Option<i64> {
    let e: Value = get_json(port, &format!("/dmsg-discovery/entry/{pk}"))?;
    e["server"]["availableSessions"].as_i64()
}

#[test]
fn sigterm_withdraws_the_dmsg_entry_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let plans: Vec<(String, SecKey, u16)> = (0..2)
        .map(|i| (format!("full-{i}"), SecKey::generate(), free_port()))
        .collect();
    let bootstrap: Vec<String> = plans.iter().map(|(_, sk, p)| multiaddr(sk, *p)).collect();
    let deploy = dir.path().join("deploy.json");
    std::fs::write(
        &deploy,
        serde_json::json!({"v": 1, "name": "shutdown", "dht_bootstrap": bootstrap}).to_string(),
    )
    .unwrap();
    let mut nodes: Vec<_> = plans
        .into_iter()
        .map(|(name, sk, p2p)| spawn_member(dir.path(), &deploy, &name, sk, p2p, true, &[]))
        .collect();
    for m in &nodes {
        poll(&format!("{} healthy", m.name), DEADLINE, || {
            get_json(m.http, "/health")
        });
    }
    let (stopping, other) = (&nodes[0], &nodes[1]);
    let pk = stopping.pk();
    let free = poll(
        "the other full node serves the entry with free sessions",
        DEADLINE,
        || available_sessions(other.http, &pk).filter(|n| *n > 0),
    );
    assert!(free > 0);

    let pid = nodes[0].proc.child.id().to_string();
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
    let exit = poll("the node exits after SIGTERM", EXIT_WITHIN, || {
        nodes[0].proc.child.try_wait().unwrap()
    });
    assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
    eprintln!("exited {:?} after SIGTERM", sent.elapsed());

    let (stopped, other) = (&nodes[0], &nodes[1]);
    let left = available_sessions(other.http, &stopped.pk());
    assert_eq!(
        left,
        Some(0),
        "the other full node still offers the stopped server (entry withdrawn before exit)"
    );
    nodes.clear();
}
