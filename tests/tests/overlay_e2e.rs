//! DMSG without central discovery (issue "DMSG without central discovery"): real `skymesh node`
//! processes on 127.0.0.1 — full nodes that are DMSG servers and visors with DMSG clients —
//! meeting only through the DHT. No discovery URL anywhere. Polls use generous deadlines (2-core
//! CI) except the failover bound the issue sets (10 s).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keys::SecKey;
use serde_json::Value;
use skymesh_tests::{
    Member, Proc, free_port, get_json, http_request, multiaddr, poll, run_skymesh, skymesh_bin,
    spawn_member,
};

const DEADLINE: Duration = Duration::from_secs(120);
const FAILOVER: Duration = Duration::from_secs(10);

/// Full nodes and visors sharing one generated deployment file (the full nodes are its
/// bootstrap peers); visors serve `index.html` naming themselves over DMSG-HTTP, odd-numbered
/// visors over smux sessions, the others over yamux.
fn start_network(dir: &Path, fulls: usize, visors: usize) -> (Vec<Member>, Vec<Member>) {
    let plan = |prefix: &str, n: usize| -> Vec<(String, SecKey, u16)> {
        (0..n)
            .map(|i| (format!("{prefix}-{i}"), SecKey::generate(), free_port()))
            .collect()
    };
    let full_plan = plan("full", fulls);
    let visor_plan = plan("visor", visors);
    let bootstrap: Vec<String> = full_plan
        .iter()
        .map(|(_, sk, p2p)| multiaddr(sk, *p2p))
        .collect();
    let deploy = dir.join("deploy.json");
    std::fs::write(
        &deploy,
        serde_json::json!({"v": 1, "name": "e2e", "dht_bootstrap": bootstrap}).to_string(),
    )
    .unwrap();
    let spawn = |(name, sk, p2p): (String, SecKey, u16), full: bool| {
        if full {
            return spawn_member(dir, &deploy, &name, sk, p2p, true, &[]);
        }
        let www = dir.join(&name).join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), format!("visor {}\n", sk.pubkey())).unwrap();
        // Every other visor speaks smux (a 2026 client), the rest yamux: both kinds share the
        // servers and reach each other (issue 16).
        let odd = name.ends_with(['1', '3', '5', '7', '9']);
        let protocol = if odd { "smux" } else { "yamux" };
        spawn_member(
            dir,
            &deploy,
            &name,
            sk,
            p2p,
            false,
            &[
                "--dmsg-http-dir".as_ref(),
                www.as_os_str(),
                "--dmsg-protocol".as_ref(),
                protocol.as_ref(),
            ],
        )
    };
    let fulls: Vec<Member> = full_plan.into_iter().map(|p| spawn(p, true)).collect();
    let visors: Vec<Member> = visor_plan.into_iter().map(|p| spawn(p, false)).collect();
    for m in fulls.iter().chain(&visors) {
        poll(&format!("{} healthy", m.name), DEADLINE, || {
            get_json(m.http, "/health")
        });
    }
    (fulls, visors)
}

fn servers_of(v: &Member) -> Vec<String> {
    get_json(v.http, "/api/v1/dmsg")
        .and_then(|d| {
            d["client"]["servers"].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn fetch(from: &Member, to: &Member) -> Option<String> {
    let path = format!("/api/v1/dmsg/fetch?url=dmsg://{}:80/index.html", to.pk());
    match http_request(from.http, "GET", &path, None) {
        Some((200, body)) if body.contains(&to.pk()) => Some(body),
        _ => None,
    }
}

#[test]
fn three_full_nodes_ten_visors_fetch_each_other_and_survive_a_server_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut fulls, visors) = start_network(dir.path(), 3, 10);

    for v in &visors {
        poll(
            &format!("{} holds a DMSG session", v.name),
            DEADLINE,
            || (!servers_of(v).is_empty()).then_some(()),
        );
    }
    // The smux visors say so in their entries (the servers read it to pick the multiplexer).
    for v in &visors {
        let want = if v.name.ends_with(['1', '3', '5', '7', '9']) {
            Some("smux")
        } else {
            None
        };
        let path = format!("/dmsg-discovery/entry/{}", v.pk());
        let entry = poll(&format!("{}'s entry", v.name), DEADLINE, || {
            get_json(fulls[0].http, &path)
        });
        assert_eq!(entry["protocol"].as_str(), want, "{}: {entry}", v.name);
    }
    // Every visor fetches from every other visor over DMSG (90 fetches), smux and yamux mixed.
    for a in &visors {
        for b in &visors {
            if a.name != b.name {
                poll(
                    &format!("{} fetches from {}", a.name, b.name),
                    DEADLINE,
                    || fetch(a, b),
                );
            }
        }
    }

    // The CLI without any discovery URL: `skymesh dmsg get --dht`.
    let out = run_skymesh(
        &[
            "dmsg",
            "get",
            "--dht",
            &fulls[0].multiaddr(),
            "--stdout",
            &format!("dmsg://{}:80/index.html", visors[3].pk()),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "dmsg get --dht: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("visor {}\n", visors[3].sk.pubkey())
    );

    // Kill the DMSG server (full node) holding the most visors.
    let count = |f: &Member| {
        visors
            .iter()
            .filter(|v| servers_of(v).contains(&f.pk()))
            .count()
    };
    let victim = (0..fulls.len()).max_by_key(|i| count(&fulls[*i])).unwrap();
    let victim_pk = fulls[victim].pk();
    let moved: Vec<&Member> = visors
        .iter()
        .filter(|v| servers_of(v).contains(&victim_pk))
        .collect();
    assert!(!moved.is_empty());
    fulls[victim].proc.kill();
    let killed = Instant::now();

    // Its visors move to another server and stay reachable, within 10 s.
    for v in &moved {
        poll(
            &format!("{} moves off the killed server", v.name),
            FAILOVER,
            || {
                let s = servers_of(v);
                (!s.is_empty() && !s.contains(&victim_pk)).then_some(())
            },
        );
        let other = visors.iter().find(|o| o.name != v.name).unwrap();
        poll(
            &format!("{} reachable again from {}", v.name, other.name),
            FAILOVER
                .saturating_sub(killed.elapsed())
                .max(Duration::from_millis(1)),
            || fetch(other, v),
        );
    }
    eprintln!(
        "{} visors failed over in {:.2} s",
        moved.len(),
        killed.elapsed().as_secs_f64()
    );
    assert!(killed.elapsed() <= FAILOVER);
}

/// The reference discovery client's flow (GET own entry → 404, POST seq 0, GET, PutEntry with
/// seq + 1) against one full node's `/dmsg-discovery` API; the entries round-trip through the
/// DHT to another full node, byte for byte, and refusals keep the reference's codes.
#[test]
fn go_style_discovery_flow_round_trips_through_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let (fulls, _) = start_network(dir.path(), 2, 0);
    let (a, b) = (&fulls[0], &fulls[1]);
    poll("full nodes know each other", DEADLINE, || {
        let info = get_json(a.http, "/api/v1/info")?;
        (!info["full_nodes"].as_array()?.is_empty()).then_some(())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let da = dmsg::DiscClient::new(&format!("http://127.0.0.1:{}", a.http));
    let db = dmsg::DiscClient::new(&format!("http://127.0.0.1:{}", b.http));

    // A Go client: its entry does not exist yet, then it posts seq 0, then iterates.
    let client_sk = SecKey::generate();
    let client_pk = client_sk.pubkey();
    let delegated = vec![a.sk.pubkey()];
    assert!(matches!(
        rt.block_on(da.entry(&client_pk)),
        Err(dmsg::error::DiscError::NotFound { .. })
    ));
    let mut e = dmsg_proto::disc::Entry::new_client(client_pk, 0, dmsg::now_ns(), Some(delegated));
    e.sign(&client_sk);
    rt.block_on(da.post_entry(&e)).unwrap();
    let posted = rt.block_on(da.put_entry(&client_sk, e.clone())).unwrap();
    assert_eq!(posted.sequence, 1);
    let on_b = poll("the client entry on the other full node", DEADLINE, || {
        rt.block_on(db.entry(&client_pk))
            .ok()
            .filter(|x| x.sequence == 1)
    });
    assert_eq!(on_b.canonical_json(), posted.canonical_json());
    let (_, raw) = http_request(
        b.http,
        "GET",
        &format!("/dmsg-discovery/entry/{client_pk}"),
        None,
    )
    .unwrap();
    assert_eq!(raw, posted.canonical_json(), "served byte for byte");
    poll("entries lists the client", DEADLINE, || {
        let list = get_json(b.http, "/dmsg-discovery/entries")?;
        list.as_array()?
            .iter()
            .any(|k| k.as_str() == Some(&client_pk.to_hex()))
            .then_some(())
    });

    // A Go server posts its entry to A; B lists it in available_servers.
    let server_sk = SecKey::generate();
    let mut s = dmsg_proto::disc::Entry::new_server(
        server_sk.pubkey(),
        0,
        dmsg::now_ns(),
        "127.0.0.1:4242".into(),
        100,
    );
    s.sign(&server_sk);
    rt.block_on(da.post_entry(&s)).unwrap();
    poll(
        "the posted server in B's available_servers",
        DEADLINE,
        || {
            let list = rt.block_on(db.available_servers()).ok()?;
            list.iter()
                .any(|x| x.static_pk == server_sk.pubkey())
                .then_some(())
        },
    );

    // Refusals keep the reference's status codes and messages.
    let mut forged = posted.clone();
    forged.sequence = 9;
    forged.sign(&SecKey::generate());
    let (code, body) = http_request(
        a.http,
        "POST",
        "/dmsg-discovery/entry/",
        Some(&forged.canonical_json()),
    )
    .unwrap();
    assert_eq!(
        (code, body.contains("invalid signature")),
        (401, true),
        "{body}"
    );
    let mut stale = posted.clone();
    stale.sequence = 0;
    stale.signature.clear();
    stale.sign(&client_sk);
    let (code, body) = http_request(
        a.http,
        "POST",
        "/dmsg-discovery/entry/",
        Some(&stale.canonical_json()),
    )
    .unwrap();
    assert_eq!(code, 422, "{body}");
    // Nothing a refused post carried reached the DHT.
    let still = rt.block_on(db.entry(&client_pk)).unwrap();
    assert_eq!(still.canonical_json(), posted.canonical_json());
}

#[test]
fn devnet_check_passes() {
    let out = run_skymesh(&["devnet", "--check", "--full", "2", "--visors", "3"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "devnet --check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("devnet check passed"), "{stdout}");
    assert!(
        stdout.contains("visor-to-visor fetches over DMSG-HTTP"),
        "{stdout}"
    );
}

/// `skymesh dmsg server CONFIG.json` with the skymesh `dht` section runs a full node that is a
/// DMSG server publishing itself in the DHT; its health endpoint carries the admin and
/// discovery APIs.
#[test]
fn reference_server_config_with_a_dht_section_runs_a_full_node() {
    let dir = tempfile::tempdir().unwrap();
    let sk = SecKey::generate();
    let (p2p, health, dmsg_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("dmsg-server.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "public_key": sk.pubkey().to_hex(),
            "secret_key": sk.to_hex(),
            "discovery": "",
            "public_address": format!("127.0.0.1:{dmsg_port}"),
            "local_address": format!("127.0.0.1:{dmsg_port}"),
            "health_endpoint_address": format!("127.0.0.1:{health}"),
            "log_level": "info",
            "update_interval": 0,
            "max_sessions": 64,
            "dht": {
                "listen": [format!("/ip4/127.0.0.1/tcp/{p2p}")],
                "data": dir.path().join("data").to_str().unwrap(),
            }
        })
        .to_string(),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let _server = Proc::spawn(
        "dmsg-server",
        Command::new(skymesh_bin())
            .args(["dmsg", "server", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log),
    )
    .unwrap();
    let info = poll("the server's admin API", DEADLINE, || {
        get_json(health, "/api/v1/info")
    });
    assert_eq!(info["role"], "full");
    let list = poll("the server in its own available_servers", DEADLINE, || {
        get_json(health, "/dmsg-discovery/available_servers")
    });
    let entry = &list.as_array().unwrap()[0];
    assert_eq!(entry["static"], sk.pubkey().to_hex());
    assert_eq!(entry["server"]["address"], format!("127.0.0.1:{dmsg_port}"));
    assert_eq!(entry["server"]["availableSessions"], 64);
    // Its dmsg-server item carries what the reference entry cannot.
    let item = poll("the dmsg-server item", DEADLINE, || {
        get_json(
            health,
            &format!("/api/v1/get?pk={}&salt=dmsg-server", sk.pubkey()),
        )
    });
    let value: Value = serde_json::from_str(item["value"].as_str().unwrap()).unwrap();
    assert_eq!(value["max_sessions"], 64);
    assert_eq!(value["dht_bootstrap"], true);
}
