//! Starting devnet's nodes: real `skymesh node` child processes on loopback, every listener on
//! port 0. Each node writes the addresses it bound to `DATA/node.addrs.json`
//! (`commands/node/addrs.rs`); devnet waits for that file and reads the ports back, so no port
//! is picked in advance (a pre-picked port could be taken by anyone's outgoing connection before
//! the node bound it).
//!
//! Full nodes start one after another: each bootstraps from the deployment file naming those
//! already up, and meshes with the other full nodes' keys through the DHT (`--mesh-dht
//! --mesh-allow`). Visors then start together with the final deployment file.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keys::SecKey;

use super::Args;
use crate::commands::node::addrs::{self, BoundAddrs};

/// How long a node may take to bind its listeners and write its address file.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often devnet mesh servers re-read the published servers (the mesh forms within seconds
/// of the last full node starting).
const MESH_REFRESH_MS: &str = "2000";

/// One child `skymesh node`.
pub(super) struct Member {
    pub(super) name: String,
    pub(super) full: bool,
    pub(super) pk: String,
    /// Admin API base URL.
    pub(super) http: String,
    /// libp2p address with `/p2p/<peer id>`.
    pub(super) p2p: String,
    /// The DMSG server's advertised address (full nodes).
    pub(super) dmsg: Option<String>,
    pub(super) child: Child,
    /// How to start it again (`--check` restarts a visor), on the ports it got first.
    pub(super) launch: Launch,
}

/// A member's command line, key, data directory and log file.
pub(super) struct Launch {
    exe: PathBuf,
    args: Vec<OsString>,
    sk_hex: String,
    data: PathBuf,
    log: PathBuf,
}

impl Launch {
    /// Starts the node (appending to its log).
    pub(super) fn spawn(&self) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        Ok(Command::new(&self.exe)
            .args(&self.args)
            .env("SKYMESH_SK", &self.sk_hex)
            .env_remove("SKYDEPLOY")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    }

    /// Waits until `child` (started from this launch) wrote its address file.
    fn wait_bound(&self, name: &str, child: &mut Child) -> anyhow::Result<BoundAddrs> {
        let start = Instant::now();
        loop {
            if let Some(a) = addrs::read_for(&self.data, child.id()) {
                return Ok(a);
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited ({status}) before binding its listeners; last log lines:\n{}",
                    log_tail(&self.log, 8)
                );
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "{name} did not report its addresses within {START_TIMEOUT:?} ({}); last log lines:\n{}",
                    addrs::path(&self.data).display(),
                    log_tail(&self.log, 8)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts keep the ports the node got: its `:0` listeners become the bound ones.
    fn pin(&mut self, bound: &BoundAddrs) {
        let p2p = bound.p2p.first().map(|a| strip_p2p(a));
        for i in 1..self.args.len() {
            let value = match self.args[i - 1].to_str() {
                Some("--http") => Some(bound.http.to_string()),
                Some("--listen") => p2p.clone(),
                Some("--dmsg-listen") => bound.dmsg.map(|a| a.to_string()),
                _ => None,
            };
            if let Some(v) = value {
                self.args[i] = v.into();
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/ip4/…/tcp/P/p2p/ID` → `/ip4/…/tcp/P`.
fn strip_p2p(addr: &str) -> String {
    match addr.find("/p2p/") {
        Some(i) => addr[..i].to_string(),
        None => addr.to_string(),
    }
}

fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The deployment file naming the full nodes in `members` (DHT bootstrap peers, DMSG servers,
/// and the first one's discovery API).
fn write_deploy(path: &Path, members: &[Member]) -> anyhow::Result<()> {
    let fulls: Vec<&Member> = members.iter().filter(|m| m.full).collect();
    let servers: Vec<serde_json::Value> = fulls
        .iter()
        .filter_map(|m| Some(serde_json::json!({"pk": m.pk, "address": m.dmsg.clone()?})))
        .collect();
    let mut deploy = serde_json::json!({
        "v": 1,
        "name": "devnet",
        "dht_bootstrap": fulls.iter().map(|m| m.p2p.clone()).collect::<Vec<_>>(),
        "dmsg_servers": servers,
        "services": {},
    });
    if let Some(first) = fulls.first() {
        deploy["services"]["dmsg_discovery"] = serde_json::json!({"http": first.http});
    }
    std::fs::write(path, serde_json::to_string_pretty(&deploy)?)?;
    overlay::Deployment::load(Some(path)).context("generated deployment")?;
    Ok(())
}

/// Starts the network described by `args` with data and logs in `dir`.
pub(super) fn start(args: &Args, dir: &Path) -> anyhow::Result<Vec<Member>> {
    let exe = std::env::current_exe().context("locating the skymesh binary")?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let deploy_path = dir.join("devnet.json");
    let full_sks: Vec<SecKey> = (0..args.full)
        .map(|i| SecKey::from_seed(format!("skymesh-devnet-full-{i}").as_bytes()))
        .collect();
    let new_launch = |name: &str, full: bool, sk: &SecKey| -> anyhow::Result<Launch> {
        let data = dir.join(name);
        std::fs::create_dir_all(&data)?;
        let _ = std::fs::remove_file(addrs::path(&data));
        let mut a: Vec<OsString> = Vec::new();
        for s in ["node", "--role", if full { "full" } else { "regular" }] {
            a.push(s.into());
        }
        for s in ["--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0"] {
            a.push(s.into());
        }
        a.push("--data".into());
        a.push(data.clone().into());
        a.push("--deploy".into());
        a.push(deploy_path.clone().into());
        a.push("--watch-parent".into());
        a.push(std::process::id().to_string().into());
        Ok(Launch {
            exe: exe.clone(),
            args: a,
            sk_hex: sk.to_hex(),
            data,
            log: logs.join(format!("{name}.log")),
        })
    };
    let member = |name: String, full: bool, sk: &SecKey, launch: Launch, child: Child| {
        (name, full, sk.pubkey().to_hex(), launch, child)
    };
    let finish = |(name, full, pk, mut launch, mut child): (
        String,
        bool,
        String,
        Launch,
        Child,
    )|
     -> anyhow::Result<Member> {
        let bound = match launch.wait_bound(&name, &mut child) {
            Ok(b) => b,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        launch.pin(&bound);
        Ok(Member {
            name,
            full,
            pk,
            http: format!("http://{}", bound.http),
            p2p: bound.p2p.first().cloned().unwrap_or_default(),
            dmsg: bound.dmsg_public.clone(),
            child,
            launch,
        })
    };

    let mut members = Vec::new();
    // Full nodes one at a time: each is deployed with (bootstraps from) those already up.
    for (i, sk) in full_sks.iter().enumerate() {
        write_deploy(&deploy_path, &members)?;
        let name = format!("full-{i}");
        let mut launch = new_launch(&name, true, sk)?;
        for s in ["--dmsg-listen", "127.0.0.1:0", "--disc-test-mode"] {
            launch.args.push(s.into());
        }
        if full_sks.len() > 1 {
            for s in ["--mesh-dht", "--mesh-refresh-ms", MESH_REFRESH_MS] {
                launch.args.push(s.into());
            }
        }
        for other in full_sks.iter().filter(|o| o.pubkey() != sk.pubkey()) {
            launch.args.push("--mesh-allow".into());
            launch.args.push(other.pubkey().to_hex().into());
        }
        let child = launch.spawn().with_context(|| format!("starting {name}"))?;
        members.push(finish(member(name, true, sk, launch, child))?);
    }
    write_deploy(&deploy_path, &members)?;

    // Visors together, then each waited for.
    let mut pending = Vec::new();
    for i in 0..args.visors {
        let name = format!("visor-{i}");
        let sk = SecKey::from_seed(format!("skymesh-devnet-visor-{i}").as_bytes());
        let mut launch = new_launch(&name, false, &sk)?;
        let www = launch.data.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(
            www.join("index.html"),
            format!("hello from {name} {}\n", sk.pubkey().to_hex()),
        )?;
        for s in ["--reachability", "public", "--dmsg", "--dmsg-http-dir"] {
            launch.args.push(s.into());
        }
        launch.args.push(www.into());
        let child = launch.spawn().with_context(|| format!("starting {name}"))?;
        pending.push(member(name, false, &sk, launch, child));
    }
    for p in pending {
        members.push(finish(p)?);
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_replaces_port_zero_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Launch {
            exe: "skymesh".into(),
            args: [
                "node",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--http",
                "127.0.0.1:0",
            ]
            .into_iter()
            .chain(["--dmsg-listen", "127.0.0.1:0", "--dmsg"])
            .map(OsString::from)
            .collect(),
            sk_hex: String::new(),
            data: dir.path().into(),
            log: dir.path().join("x.log"),
        };
        l.pin(&BoundAddrs {
            pid: 1,
            http: "127.0.0.1:20001".parse().unwrap(),
            p2p: vec!["/ip4/127.0.0.1/tcp/20002/p2p/16Uiu2".into()],
            dmsg: Some("127.0.0.1:20003".parse().unwrap()),
            dmsg_public: None,
        });
        let got: Vec<String> = l
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "node",
                "--listen",
                "/ip4/127.0.0.1/tcp/20002",
                "--http",
                "127.0.0.1:20001",
                "--dmsg-listen",
                "127.0.0.1:20003",
                "--dmsg"
            ]
        );
    }
}
