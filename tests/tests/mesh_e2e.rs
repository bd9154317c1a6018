//! The DMSG server mesh (issue #14) with real `skymesh` processes on 127.0.0.1:
//!
//! * `skymesh dmsg server` with static `peers` in its config file: servers A–B and B–C peered,
//!   A–C not. A host held only by A is fetched by a getter held only by B (content checked,
//!   and a 64 MiB file intact); a getter on A cannot reach a host held only by C and says why
//!   (one hop); C is killed (A–B forwarding goes on) and comes back (B's link returns within its
//!   backoff).
//! * `skymesh node --mesh-dht --mesh-allow`: full nodes peer with the allowed servers they find
//!   in the DHT, and only with those.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keys::SecKey;
use skymesh_tests::{
    Member, Proc, free_port, get_json, http_request, multiaddr, payload, poll, skymesh_bin,
    spawn_member,
};

const DEADLINE: Duration = Duration::from_secs(120);

fn wait_port(port: u16) {
    skymesh_tests::wait_port(port, DEADLINE);
}

fn spawn(name: &str, args: &[&str], log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(skymesh_bin());
    cmd.args(args).stdout(Stdio::null()).stderr(log);
    Proc::spawn(name, &mut cmd).unwrap()
}

struct Srv {
    proc: Proc,
    sk: SecKey,
    port: u16,
    health: u16,
    config: std::path::PathBuf,
}

impl Srv {
    fn pk(&self) -> String {
        self.sk.pubkey().to_hex()
    }
    fn metrics(&self) -> String {
        http_request(self.health, "GET", "/metrics", None)
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
    fn link_up(&self, peer: &Srv) -> bool {
        self.metrics().contains(&format!(
            "skymesh_dmsg_mesh_peer_up{{peer=\"{}\"}} 1",
            peer.pk()
        ))
    }
}

/// Writes the config of a `dmsg server` (reference format plus `peers`) and starts it.
fn server(
    dir: &Path,
    name: &str,
    disc: &str,
    sk: &SecKey,
    port: u16,
    peers: &[(&SecKey, u16)],
) -> Srv {
    let health = free_port();
    let peers: Vec<serde_json::Value> = peers
        .iter()
        .map(|(k, p)| {
            serde_json::json!({"public_key": k.pubkey().to_hex(), "address": format!("127.0.0.1:{p}")})
        })
        .collect();
    let cfg = serde_json::json!({
        "public_key": sk.pubkey().to_hex(),
        "secret_key": sk.to_hex(),
        "discovery": disc,
        "public_address": format!("127.0.0.1:{port}"),
        "local_address": format!("127.0.0.1:{port}"),
        "health_endpoint_address": format!("127.0.0.1:{health}"),
        "log_level": "info",
        "update_interval": 0,
        "max_sessions": 100,
        "peers": peers,
    });
    let config = dir.join(format!("{name}.json"));
    std::fs::write(&config, cfg.to_string()).unwrap();
    let proc = start_server(dir, name, &config);
    wait_port(port);
    wait_port(health);
    Srv {
        proc,
        sk: sk.clone(),
        port,
        health,
        config,
    }
}

fn start_server(dir: &Path, name: &str, config: &Path) -> Proc {
    spawn(
        name,
        &["dmsg", "server", config.to_str().unwrap()],
        &dir.join(format!("{name}.log")),
    )
}

/// `dmsg http` held only by `server`, serving `www`.
fn host(dir: &Path, name: &str, disc: &str, server: &Srv, www: &Path) -> (Proc, SecKey) {
    let sk = SecKey::generate();
    let p = spawn(
        name,
        &[
            "dmsg",
            "http",
            "--dir",
            www.to_str().unwrap(),
            "--sk",
            &sk.to_hex(),
            "--disc",
            disc,
            "--server",
            &server.pk(),
        ],
        &dir.join(format!("{name}.log")),
    );
    let path = format!("/dmsg-discovery/entry/{}", sk.pubkey().to_hex());
    let disc_port: u16 = disc.rsplit(':').next().unwrap().parse().unwrap();
    poll(
        &format!("{name}'s entry naming its server"),
        DEADLINE,
        || {
            http_request(disc_port, "GET", &path, None)
                .filter(|(s, b)| *s == 200 && b.contains(&server.pk()))
        },
    );
    (p, sk)
}

/// `dmsg get --server VIA --out OUT dmsg://PK:80/FILE`.
fn get(disc: &str, via: &Srv, target: &SecKey, file: &str, out: &Path) -> Output {
    let url = format!("dmsg://{}:80/{file}", target.pubkey().to_hex());
    Command::new(skymesh_bin())
        .args([
            "dmsg",
            "get",
            "--disc",
            disc,
            "--server",
            &via.pk(),
            "--out",
        ])
        .arg(out)
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn static_peers_forward_one_hop_and_survive_a_peer_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dport = free_port();
    let disc = format!("http://127.0.0.1:{dport}");
    let _d = spawn(
        "discovery",
        &[
            "dmsg",
            "discovery",
            "--addr",
            &format!("127.0.0.1:{dport}"),
            "-t",
        ],
        &dir.join("discovery.log"),
    );
    wait_port(dport);
    let (ka, kb, kc) = (SecKey::generate(), SecKey::generate(), SecKey::generate());
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = server(dir, "A", &disc, &ka, pa, &[(&kb, pb)]);
    let b = server(dir, "B", &disc, &kb, pb, &[(&ka, pa), (&kc, pc)]);
    let mut c = server(dir, "C", &disc, &kc, pc, &[(&kb, pb)]);
    poll("A–B and B–C links up", DEADLINE, || {
        (a.link_up(&b) && b.link_up(&a) && b.link_up(&c) && c.link_up(&b)).then_some(())
    });
    assert!(
        !a.link_up(&c) && !a.metrics().contains(&c.pk()),
        "A must not peer with C"
    );

    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), b"hello through the mesh\n").unwrap();
    let big = payload(64 << 20);
    std::fs::write(www.join("big.bin"), &big).unwrap();
    let (_ha, host_a) = host(dir, "host-A", &disc, &a, &www);
    let (_hc, host_c) = host(dir, "host-C", &disc, &c, &www);

    // A getter held only by B fetches from the host held only by A: B forwards to A.
    let out = dir.join("got.html");
    let o = get(&disc, &b, &host_a, "index.html", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"hello through the mesh\n");
    let out_big = dir.join("big.bin");
    let o = get(&disc, &b, &host_a, "big.bin", &out_big);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&out_big).unwrap() == big,
        "64 MiB differ after the mesh"
    );
    let mb = b.metrics();
    assert!(
        mb.contains("skymesh_dmsg_mesh_forwarded_streams_total 2"),
        "{mb}"
    );
    assert!(
        a.metrics()
            .contains("skymesh_dmsg_mesh_relayed_in_streams_total 2")
    );

    // A getter held only by A cannot reach the host held only by C: two hops.
    let o = get(&disc, &a, &host_c, "index.html", &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("one hop"), "{err}");

    // Kill C: forwarding between A and B goes on.
    c.proc.kill();
    poll("B sees C down", DEADLINE, || (!b.link_up(&c)).then_some(()));
    let o = get(&disc, &b, &host_a, "index.html", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // C comes back: B's link returns within its backoff (first redial 2.5–7.5 s).
    let t0 = Instant::now();
    c.proc = start_server(dir, "C2", &c.config);
    wait_port(c.port);
    poll("B–C link restored", Duration::from_secs(30), || {
        b.link_up(&c).then_some(())
    });
    let restored = t0.elapsed();
    assert!(
        restored < Duration::from_secs(20),
        "link restored after {restored:?}"
    );
    // And the host on C is reachable from B again (it reconnects to C on its own).
    poll("host-C reachable from B", DEADLINE, || {
        get(&disc, &b, &host_c, "index.html", &out)
            .status
            .success()
            .then_some(())
    });
}

#[test]
fn dht_peers_are_the_allowed_published_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keys: Vec<SecKey> = (0..3).map(|_| SecKey::generate()).collect();
    let p2p: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let bootstrap: Vec<String> = keys
        .iter()
        .zip(&p2p)
        .map(|(k, p)| multiaddr(k, *p))
        .collect();
    let deploy = dir.join("deploy.json");
    std::fs::write(
        &deploy,
        serde_json::json!({"v": 1, "name": "mesh-e2e", "dht_bootstrap": bootstrap}).to_string(),
    )
    .unwrap();
    // full-0 and full-1 allow each other; full-2 runs a server nobody allows.
    let allow = |i: usize| keys[1 - i].pubkey().to_hex();
    let fulls: Vec<Member> = (0..3)
        .map(|i| {
            let mut extra: Vec<String> = vec![];
            if i < 2 {
                extra = vec![
                    "--mesh-dht".into(),
                    "--mesh-allow".into(),
                    allow(i),
                    "--mesh-refresh-ms".into(),
                    "500".into(),
                ];
            }
            let extra: Vec<&std::ffi::OsStr> = extra.iter().map(|s| s.as_ref()).collect();
            spawn_member(
                dir,
                &deploy,
                &format!("full-{i}"),
                keys[i].clone(),
                p2p[i],
                true,
                &extra,
            )
        })
        .collect();
    for m in &fulls {
        poll(&format!("{} healthy", m.name), DEADLINE, || {
            get_json(m.http, "/health")
        });
    }
    let peers_of = |m: &Member| -> Vec<(String, bool, String)> {
        get_json(m.http, "/api/v1/dmsg")
            .and_then(|d| d["server"]["mesh"]["peers"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|p| {
                (
                    p["pk"].as_str().unwrap_or("").to_string(),
                    p["up"] == true,
                    p["source"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    poll("full-0 and full-1 meshed through the DHT", DEADLINE, || {
        let p0 = peers_of(&fulls[0]);
        let p1 = peers_of(&fulls[1]);
        (p0 == vec![(fulls[1].pk(), true, "dht".to_string())]
            && p1 == vec![(fulls[0].pk(), true, "dht".to_string())])
        .then_some(())
    });
    // Visors on different servers reach each other through the mesh.
    let visor = |i: usize, server: &Member| {
        let sk = SecKey::generate();
        let www = dir.join(format!("visor-{i}-www"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), format!("visor {}\n", sk.pubkey())).unwrap();
        let pk = server.pk();
        let args: Vec<&std::ffi::OsStr> = vec![
            "--dmsg-http-dir".as_ref(),
            www.as_os_str(),
            "--dmsg-server".as_ref(),
            pk.as_ref(),
        ];
        spawn_member(
            dir,
            &deploy,
            &format!("visor-{i}"),
            sk,
            free_port(),
            false,
            &args,
        )
    };
    let v0 = visor(0, &fulls[0]);
    let v1 = visor(1, &fulls[1]);
    for v in [&v0, &v1] {
        poll(&format!("{} holds its session", v.name), DEADLINE, || {
            get_json(v.http, "/api/v1/dmsg").filter(|d| {
                d["client"]["servers"]
                    .as_array()
                    .is_some_and(|a| a.len() == 1)
            })
        });
    }
    let path = format!("/api/v1/dmsg/fetch?url=dmsg://{}:80/index.html", v1.pk());
    let body = poll("visor-0 fetches from visor-1", DEADLINE, || {
        http_request(v0.http, "GET", &path, None).filter(|(s, _)| *s == 200)
    })
    .1;
    assert!(body.contains(&v1.sk.pubkey().to_string()), "{body}");
    let d = get_json(v0.http, "/api/v1/dmsg").unwrap();
    assert_eq!(d["client"]["servers"], serde_json::json!([fulls[0].pk()]));
    let d = get_json(fulls[0].http, "/api/v1/dmsg").unwrap();
    assert!(
        d["server"]["mesh"]["forwarded_streams"].as_u64().unwrap() >= 1,
        "{d}"
    );
    // The server nobody allowed is nobody's peer.
    assert!(peers_of(&fulls[2]).is_empty());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert!(
            peers_of(&fulls[0])
                .iter()
                .all(|(pk, _, _)| *pk != fulls[2].pk())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
