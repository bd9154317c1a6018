//! Transports (issue #9) with real processes on 127.0.0.1: one full node (DMSG server) and three
//! visors meeting through the DHT. Visor A adds transports to B and C; `skymesh tp all` on the
//! full node lists both, confirmed by both ends; killing C marks A–C down in A's published item;
//! `tp rm` removes A–B from both ends' items; nothing is republished while nothing changes.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use keys::SecKey;
use serde_json::Value;
use skymesh_tests::{Member, free_port, get_json, http_request, poll, run_skymesh, spawn_member};

const DEADLINE: Duration = Duration::from_secs(120);
/// The bound from `tp add` to "listed and confirmed by both ends" on the full node.
const CONFIRM_BOUND: Duration = Duration::from_secs(2);

fn tp(args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["tp"];
    all.extend_from_slice(args);
    let out = run_skymesh(&all, None);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tp_json(args: &[&str]) -> Option<Value> {
    let (ok, out, _) = tp(args);
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

fn all(m: &Member) -> Option<Value> {
    tp_json(&["all", "--node", &m.url(), "--json"])
}

/// The transport `id` in a `tp all` answer.
fn find<'a>(cat: &'a Value, id: &str) -> Option<&'a Value> {
    cat["transports"]
        .as_array()?
        .iter()
        .find(|t| t["id"].as_str() == Some(id))
}

/// `state` as listed by `pk` for transport `id`.
fn listed_state(cat: &Value, id: &str, pk: &str) -> Option<String> {
    find(cat, id)?["listed_by"][pk].as_str().map(String::from)
}

fn metric(m: &Member, name: &str) -> f64 {
    let (_, text) = http_request(m.http, "GET", "/metrics", None).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn visors_publish_transports_full_node_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let full_sk = SecKey::generate();
    let full_p2p = free_port();
    let peer = dhtnode::identity::peer_id(&full_sk.pubkey()).unwrap();
    let deploy = dir.path().join("deploy.json");
    std::fs::write(
        &deploy,
        serde_json::json!({
            "v": 1,
            "name": "tp-e2e",
            "dht_bootstrap": [format!("/ip4/127.0.0.1/tcp/{full_p2p}/p2p/{peer}")],
        })
        .to_string(),
    )
    .unwrap();
    let full = spawn_member(dir.path(), &deploy, "full", full_sk, full_p2p, true, &[]);
    // A's republish timer ticks every second (instead of 30 min), so the idle window below
    // shows the node's timer leaving the unchanged `tp` item alone too.
    let a = spawn_member(
        dir.path(),
        &deploy,
        "a",
        SecKey::generate(),
        free_port(),
        false,
        &["--republish-interval-ms".as_ref(), "1000".as_ref()],
    );
    let b = spawn_member(
        dir.path(),
        &deploy,
        "b",
        SecKey::generate(),
        free_port(),
        false,
        &[],
    );
    let mut c = spawn_member(
        dir.path(),
        &deploy,
        "c",
        SecKey::generate(),
        free_port(),
        false,
        &[],
    );
    for m in [&full, &a, &b, &c] {
        poll(&format!("{} healthy", m.name), DEADLINE, || {
            get_json(m.http, "/health")
        });
    }
    for v in [&a, &b, &c] {
        poll(
            &format!("{} holds a DMSG session", v.name),
            DEADLINE,
            || {
                let d = get_json(v.http, "/api/v1/dmsg")?;
                (!d["client"]["servers"].as_array()?.is_empty()).then_some(())
            },
        );
        // Each visor published its (empty) list at start.
        poll(
            &format!("{} published its tp item", v.name),
            DEADLINE,
            || (metric(v, "skymesh_tp_publishes_total{outcome=\"ok\"}") >= 1.0).then_some(()),
        );
    }
    // The full node refuses transport commands (it has no manager) but answers `tp all`.
    let (ok, _, err) = tp(&["ls", "--node", &full.url()]);
    assert!(!ok && err.contains("--dmsg"), "{err}");

    // Peers reachable over DMSG first (their client entries are in the DHT), so the measured
    // time is the transports' own.
    for v in [&b, &c] {
        poll(&format!("a reaches {} over DMSG", v.name), DEADLINE, || {
            let path = format!("/api/v1/dmsg/fetch?url=dmsg://{}:80/", v.pk());
            // 404 / refused are fine: the point is that the dial path resolves.
            http_request(a.http, "GET", &path, None).map(|_| ())
        });
    }

    let t0 = Instant::now();
    let ab = tp_json(&["add", "--node", &a.url(), &b.pk()]).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ac = tp_json(&["add", "--node", &a.url(), &c.pk()]).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirmed = poll(
        "both transports confirmed on the full node",
        DEADLINE,
        || {
            let cat = all(&full)?;
            let ok = [&ab, &ac].iter().all(|id| {
                find(&cat, id).is_some_and(|t| {
                    t["confirmed"] == true
                        && t["listed_by"]
                            .as_object()
                            .is_some_and(|m| m.values().all(|s| s == "up"))
                })
            });
            ok.then_some(t0.elapsed())
        },
    );
    println!("tp add → confirmed by both ends on the full node: {confirmed:?}");
    assert!(
        confirmed <= CONFIRM_BOUND,
        "{confirmed:?} > {CONFIRM_BOUND:?}"
    );
    let cat = all(&full).unwrap();
    assert_eq!(cat["source"], "local-store");
    let (ok, text, _) = tp(&["all", "--node", &full.url()]);
    assert!(ok && text.starts_with("source: local-store"), "{text}");
    assert!(text.contains(&ab) && text.contains("confirmed"), "{text}");
    // A visor without the dataset answers through DHT lookups.
    let cat = poll("tp all on visor b", DEADLINE, || {
        let cat = all(&b)?;
        (find(&cat, &ab)?["confirmed"] == true && find(&cat, &ac)?["confirmed"] == true)
            .then_some(cat)
    });
    assert_eq!(cat["source"], "dht");
    // After a `dht sync` the visor holds the dataset and answers from its own store.
    let out = run_skymesh(&["dht", "sync", "--node", &b.url()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cat = all(&b).unwrap();
    assert_eq!(cat["source"], "local-store", "{cat}");
    assert!(
        find(&cat, &ab).is_some_and(|t| t["confirmed"] == true),
        "{cat}"
    );
    let ls = tp_json(&["ls", "--node", &b.url(), "--json"]).unwrap();
    assert_eq!(ls["transports"][0]["id"], ab.as_str());
    assert_eq!(ls["transports"][0]["initiator"], false);

    // No republish while nothing changes (keepalives keep flowing).
    let window = Duration::from_secs(6);
    let before = (
        metric(&a, "skymesh_tp_publishes_total"),
        metric(&a, "skymesh_dht_puts_total"),
        metric(&a, "skymesh_tp_bytes_total{direction=\"received\"}"),
    );
    std::thread::sleep(window);
    let after = (
        metric(&a, "skymesh_tp_publishes_total"),
        metric(&a, "skymesh_dht_puts_total"),
        metric(&a, "skymesh_tp_bytes_total{direction=\"received\"}"),
    );
    println!(
        "{window:?} idle window on a: (tp publishes, dht puts, link bytes received) {before:?} → {after:?}"
    );
    assert_eq!(
        (before.0, before.1),
        (after.0, after.1),
        "puts while nothing changed"
    );
    assert_eq!(metric(&a, "skymesh_dht_republished_total"), 0.0);
    assert!(after.2 > before.2, "keepalives must flow");
    assert_eq!(metric(&a, "skymesh_tp_transports{state=\"up\"}"), 2.0);

    // Kill C: A marks A–C down and its published item changes.
    let t1 = Instant::now();
    c.proc.kill();
    let a_pk = a.pk();
    poll("a–c down in a's item on the full node", DEADLINE, || {
        let cat = all(&full)?;
        (listed_state(&cat, &ac, &a_pk)? == "down").then_some(())
    });
    println!(
        "c killed → a–c down in a's published item: {:?}",
        t1.elapsed()
    );
    let ls = tp_json(&["ls", "--node", &a.url(), "--json"]).unwrap();
    let down = ls["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ac.as_str())
        .unwrap();
    assert_eq!(down["state"], "down");
    assert!(down["last_error"].is_string());
    assert_eq!(
        listed_state(&all(&full).unwrap(), &ab, &a_pk).unwrap(),
        "up"
    );

    // `tp rm` removes A–B everywhere: both ends' items drop it.
    let t2 = Instant::now();
    let (ok, _, err) = tp(&["rm", "--node", &a.url(), &ab]);
    assert!(ok, "{err}");
    poll("a–b gone from every item", DEADLINE, || {
        let cat = all(&full)?;
        find(&cat, &ab).is_none().then_some(())
    });
    println!("tp rm → gone from both ends' items: {:?}", t2.elapsed());
    let ls = tp_json(&["ls", "--node", &b.url(), "--json"]).unwrap();
    assert!(ls["transports"].as_array().unwrap().is_empty(), "{ls}");
    let (ok, _, err) = tp(&["rm", "--node", &a.url(), &ab]);
    assert!(!ok && err.contains("no transport"), "{err}");
    let (ok, _, _) = tp(&["rm", "--node", &a.url(), "not-an-id"]);
    assert!(!ok);

    // A restarted visor keeps the transports it configured (A–C, still down: C is dead).
    let (a_sk, a_p2p) = (a.sk.clone(), a.p2p);
    drop(a);
    let a = spawn_member(dir.path(), &deploy, "a", a_sk, a_p2p, false, &[]);
    let ls = poll("a's transports after a restart", DEADLINE, || {
        tp_json(&["ls", "--node", &a.url(), "--json"])
    });
    let ids: Vec<&str> = ls["transports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [ac.as_str()], "{ls}");
}
