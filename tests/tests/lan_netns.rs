//! Zero-configuration LAN DMSG (issue #16 §2) with real `skymesh` processes in two network
//! namespaces this test creates, joined by a veth pair with private addresses (10.77.0.1/24 and
//! 10.77.0.2/24). Nothing here touches the machine's own interfaces.
//!
//! * A full node in namespace A listens on `0.0.0.0:0` (libp2p and DMSG) with no bootstrap and
//!   no deployment file: the OS picks the ports and its DMSG server advertises the port it got
//!   on the namespace's private address (10.77.0.1), detected from the interfaces.
//! * A visor in namespace B, also without bootstrap or deployment file, finds the full node by
//!   mDNS, then its DMSG server through the DHT, and serves a file over DMSG-HTTP that a getter
//!   in namespace A fetches through that server.
//! * The visor saved the full node and the server it used (`known-peers.json`); restarted with
//!   mDNS off, it joins again from the saved peers alone.
//!
//! Needs root and iproute2 (`ip netns`). Where the machine does not allow network namespaces
//! the test fails saying so: it is never skipped.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use keys::SecKey;
use skymesh_tests::{Proc, poll, skymesh_bin};

const DEADLINE: Duration = Duration::from_secs(90);

/// Two namespaces joined by a veth pair; deleted on drop (which also removes the veth).
struct Lan {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lan {
    fn create() -> Lan {
        let id = std::process::id();
        let lan = Lan {
            a: format!("skymesh-lan-a-{id}"),
            b: format!("skymesh-lan-b-{id}"),
        };
        let (va, vb) = (
            format!("skla{}", id % 100_000),
            format!("sklb{}", id % 100_000),
        );
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &lan.a],
            vec!["netns", "add", &lan.b],
            vec![
                "link", "add", &va, "netns", &lan.a, "type", "veth", "peer", "name", &vb, "netns",
                &lan.b,
            ],
            vec!["-n", &lan.a, "addr", "add", "10.77.0.1/24", "dev", &va],
            vec!["-n", &lan.b, "addr", "add", "10.77.0.2/24", "dev", &vb],
            vec!["-n", &lan.a, "link", "set", "lo", "up"],
            vec!["-n", &lan.b, "link", "set", "lo", "up"],
            vec!["-n", &lan.a, "link", "set", &va, "up"],
            vec!["-n", &lan.b, "link", "set", &vb, "up"],
            // mDNS multicast (224.0.0.251) leaves through the veth: there is no default route.
            vec!["-n", &lan.a, "route", "add", "224.0.0.0/4", "dev", &va],
            vec!["-n", &lan.b, "route", "add", "224.0.0.0/4", "dev", &vb],
        ];
        for s in steps {
            if let Err(e) = ip(&s) {
                panic!(
                    "this test needs network namespaces (root and iproute2; it creates two \
                     namespaces joined by a veth pair and never touches the host's interfaces), \
                     and the machine refused: {e}"
                );
            }
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

/// `skymesh ARGS` inside namespace `ns`.
fn in_ns(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(skymesh_bin());
    c.env_remove("SKYDEPLOY");
    c
}

fn run_in(ns: &str, args: &[&str]) -> Output {
    in_ns(ns).args(args).stdin(Stdio::null()).output().unwrap()
}

/// A node in a namespace: its process and data directory.
struct NsNode {
    proc: Proc,
    data: PathBuf,
}

impl NsNode {
    fn spawn(ns: &str, name: &str, dir: &Path, sk: &SecKey, args: &[&str]) -> NsNode {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let _ = std::fs::remove_file(data.join("node.addrs.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .unwrap();
        let mut cmd = in_ns(ns);
        cmd.arg("node")
            .args(["--listen", "/ip4/0.0.0.0/tcp/0", "--http", "127.0.0.1:0"])
            .arg("--data")
            .arg(&data)
            .args(args)
            .env("SKYMESH_SK", sk.to_hex())
            .stdout(Stdio::null())
            .stderr(log);
        NsNode {
            proc: Proc::spawn(name, &mut cmd).unwrap(),
            data,
        }
    }

    /// The node's `node.addrs.json` once written (`ip netns exec` execs the node, so the pid is
    /// the child's).
    fn addrs(&self) -> serde_json::Value {
        let pid = self.proc.child.id();
        poll("the node's address file", DEADLINE, || {
            let text = std::fs::read_to_string(self.data.join("node.addrs.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            (v["pid"] == pid).then_some(v)
        })
    }
}

fn peer_id(sk: &SecKey) -> String {
    dhtnode::identity::peer_id(&sk.pubkey())
        .unwrap()
        .to_string()
}

/// Waits until the node at admin `http` inside `ns` knows the full node `full`.
fn wait_knows_full(ns: &str, http: &str, full: &str) {
    poll(&format!("{ns} to know full node {full}"), DEADLINE, || {
        let out = run_in(ns, &["dht", "info", "--node", http, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["full_nodes"]
            .as_array()?
            .iter()
            .any(|p| p == full)
            .then_some(())
    });
}

/// Fetches `url` over DMSG from inside `ns` through the full node `dht` until it answers `want`.
fn wait_fetch(ns: &str, dht: &str, url: &str, want: &str) {
    poll(&format!("{url} over DMSG"), DEADLINE, || {
        let out = run_in(ns, &["dmsg", "get", "--dht", dht, "--stdout", url]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout) == want).then_some(())
    });
}

/// Prints the tail of every log in the directory when the test fails.
struct LogsOnPanic<'a>(&'a Path);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for e in std::fs::read_dir(self.0).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- {} (last 40 lines)", p.display());
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{l}");
                }
            }
        }
    }
}

#[test]
fn lan_server_found_by_mdns_with_no_configuration_and_saved_for_the_next_start() {
    let lan = Lan::create();
    let dir = tempfile::tempdir().unwrap();
    let _logs = LogsOnPanic(dir.path());
    let full_sk = SecKey::from_seed(b"skymesh-lan-full");
    let visor_sk = SecKey::from_seed(b"skymesh-lan-visor");
    let full = NsNode::spawn(
        &lan.a,
        "full",
        dir.path(),
        &full_sk,
        &["--role", "full", "--dmsg-listen", "0.0.0.0:0"],
    );
    let fa = full.addrs();
    // The DMSG server advertises the namespace's private address with the port the OS chose.
    let bound: std::net::SocketAddr = fa["dmsg"].as_str().unwrap().parse().unwrap();
    assert_ne!(bound.port(), 0);
    assert!(bound.ip().is_unspecified(), "{fa}");
    assert_eq!(
        fa["dmsg_public"].as_str().unwrap(),
        format!("10.77.0.1:{}", bound.port()),
        "advertised address"
    );
    let full_p2p = fa["p2p"][0].as_str().unwrap().to_string();
    let full_peer = peer_id(&full_sk);

    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let page = format!("hello from the LAN visor {}\n", visor_sk.pubkey().to_hex());
    std::fs::write(www.join("index.html"), &page).unwrap();
    let visor_args = [
        "--role",
        "regular",
        "--reachability",
        "public",
        "--dmsg",
        "--dmsg-http-dir",
        www.to_str().unwrap(),
    ];
    let mut visor = NsNode::spawn(&lan.b, "visor", dir.path(), &visor_sk, &visor_args);
    let va = visor.addrs();
    let visor_http = format!("http://{}", va["http"].as_str().unwrap());
    // No bootstrap, no deployment: the full node is found on the LAN.
    wait_knows_full(&lan.b, &visor_http, &full_peer);
    let url = format!("dmsg://{}:80/index.html", visor_sk.pubkey().to_hex());
    wait_fetch(&lan.a, &full_p2p, &url, &page);

    // The visor saved what it used.
    let saved = poll("the visor's saved peers", DEADLINE, || {
        let text = std::fs::read_to_string(visor.data.join("known-peers.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let has_peer = v["dht_peers"]
            .as_array()?
            .iter()
            .any(|p| p.as_str().is_some_and(|s| s.ends_with(&full_peer)));
        let has_server = v["dmsg_servers"]
            .as_array()?
            .iter()
            .any(|s| s["pk"] == full_sk.pubkey().to_hex());
        (has_peer && has_server).then_some(v)
    });
    assert!(
        saved["dmsg_servers"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.77.0.1:"),
        "{saved}"
    );

    // Restarted without mDNS, the visor rejoins from its saved peers alone.
    visor.proc.kill();
    let mut args = visor_args.to_vec();
    args.extend(["--mdns", "off"]);
    let visor = NsNode::spawn(&lan.b, "visor", dir.path(), &visor_sk, &args);
    let va = visor.addrs();
    let visor_http = format!("http://{}", va["http"].as_str().unwrap());
    wait_knows_full(&lan.b, &visor_http, &full_peer);
    wait_fetch(&lan.a, &full_p2p, &url, &page);
    drop(visor);
    drop(full);
}
