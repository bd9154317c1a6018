//! `skymesh devnet [--full N] [--visors N] [--data DIR] [--check]`: a whole local network.
//!
//! Starts `--full` full nodes that are DMSG servers and `--visors` visors (regular DHT nodes
//! with a DMSG client serving a small directory over DMSG-HTTP), all as real `skymesh node`
//! child processes on loopback, on free ports below the ephemeral range ([`free_port`]), with
//! data (and logs) in a temporary directory unless `--data` is given. No discovery URL anywhere: everything meets through the DHT. The
//! nodes share a generated deployment file (`DATA/devnet.json`) naming the full nodes as DHT
//! bootstrap peers and DMSG servers. The DMSG servers are meshed (each lists the others with
//! `--mesh-peer`), and visor *i* holds exactly one session, with server *i mod full*
//! (`--dmsg-server`): visors on different servers reach each other through the mesh.
//!
//! Without `--check` it shows a live status table until Ctrl-C, then stops every node. With
//! `--check` it runs DHT and relay round trips, prints what it verified and exits 0 or 1.
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keys::SecKey;

use crate::api;

mod check;
use check::{check, check_mailbox};

/// Salt of the item `--check` puts and reads back.
const CHECK_SALT: &str = "devnet-check";

/// Arguments of `skymesh devnet`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Full nodes (each also a DMSG server).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    full: u16,
    /// Visors (regular nodes with a DMSG client).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(0..=64))]
    visors: u16,
    /// Keep data and logs here (default: a temporary directory removed on exit).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Verify the network (DHT and DMSG round trips), print the result and exit 0/1.
    #[arg(long)]
    check: bool,
    /// How long --check waits for the network to converge.
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    timeout: u64,
}

/// One child `skymesh node`.
struct Member {
    name: String,
    full: bool,
    pk: String,
    http: String,
    p2p: String,
    child: Child,
    /// How to start it again (`--check` restarts a visor).
    launch: Launch,
}

/// A member's command line, key and log file.
struct Launch {
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    sk_hex: String,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> anyhow::Result<Child> {
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
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lowest port handed out: above the well-known and most registered service ports.
const PORT_BASE: u32 = 10_000;
/// Ports the kernel picks for outgoing connections start here unless
/// `/proc/sys/net/ipv4/ip_local_port_range` says otherwise.
const DEFAULT_EPHEMERAL_LOW: u32 = 32_768;

/// A TCP port on 127.0.0.1 that was free a moment ago, picked the way the test harness does
/// (`tests/src/lib.rs` `free_port`).
///
/// Ports come from below the kernel's ephemeral range: a port bound to `:0` and released lies
/// inside that range, where the outgoing connections of the nodes dialing each other may take
/// it before the node told to listen there binds it. Each port is handed out at most once per
/// run (starting at an offset derived from the process id) and is checked free by binding it.
/// Where the ephemeral range leaves too little room below it, this falls back to a `:0` port.
fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW);
    if ephemeral_low > PORT_BASE + 1_000 {
        let span = ephemeral_low - PORT_BASE;
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let port = PORT_BASE + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            if let Ok(port) = u16::try_from(port)
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let (_tmp, dir) = match &args.data {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("skymesh-devnet-")
                .tempdir()
                .context("creating a temporary directory")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut members = start(&args, &dir)?;
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()?;
        wait_healthy(&http, &members).await?;
        if args.check {
            let timeout = Duration::from_secs(args.timeout);
            let mut ok = check(&http, &members, timeout).await;
            ok &= check_mailbox(&http, &mut members, timeout).await;
            return if ok {
                println!("devnet check passed");
                Ok(())
            } else {
                bail!(
                    "devnet check failed (logs in {})",
                    dir.join("logs").display()
                )
            };
        }
        print_usage(&members, &dir);
        live_table(&http, &members).await;
        Ok(())
    })
}

fn start(args: &Args, dir: &Path) -> anyhow::Result<Vec<Member>> {
    let exe = std::env::current_exe().context("locating the skymesh binary")?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    struct Plan {
        name: String,
        full: bool,
        sk: SecKey,
        p2p_port: u16,
        http_port: u16,
        dmsg_port: u16,
    }
    let mut plans = Vec::new();
    for i in 0..args.full {
        plans.push(Plan {
            name: format!("full-{i}"),
            full: true,
            sk: SecKey::from_seed(format!("skymesh-devnet-full-{i}").as_bytes()),
            p2p_port: free_port()?,
            http_port: free_port()?,
            dmsg_port: free_port()?,
        });
    }
    for i in 0..args.visors {
        plans.push(Plan {
            name: format!("visor-{i}"),
            full: false,
            sk: SecKey::from_seed(format!("skymesh-devnet-visor-{i}").as_bytes()),
            p2p_port: free_port()?,
            http_port: free_port()?,
            dmsg_port: 0,
        });
    }
    let mut bootstrap = Vec::new();
    let mut servers = Vec::new();
    let mesh: Vec<(String, String)> = plans
        .iter()
        .filter(|p| p.full)
        .map(|p| {
            let pk = p.sk.pubkey().to_hex();
            (pk.clone(), format!("{pk}@127.0.0.1:{}", p.dmsg_port))
        })
        .collect();
    for p in plans.iter().filter(|p| p.full) {
        let peer = dhtnode::identity::peer_id(&p.sk.pubkey())?;
        bootstrap.push(format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", p.p2p_port));
        servers.push(serde_json::json!({
            "pk": p.sk.pubkey().to_hex(),
            "address": format!("127.0.0.1:{}", p.dmsg_port),
        }));
    }
    let first_http = plans.first().map(|p| p.http_port).unwrap_or(0);
    let deploy = serde_json::json!({
        "v": 1,
        "name": "devnet",
        "dht_bootstrap": bootstrap,
        "dmsg_servers": servers,
        "services": {
            "dmsg_discovery": {"http": format!("http://127.0.0.1:{first_http}")},
        },
    });
    let deploy_path = dir.join("devnet.json");
    std::fs::write(&deploy_path, serde_json::to_string_pretty(&deploy)?)?;
    overlay::Deployment::load(Some(&deploy_path)).context("generated deployment")?;

    let mut members = Vec::new();
    let mut visor_index = 0usize;
    for p in plans {
        let data = dir.join(&p.name);
        std::fs::create_dir_all(&data)?;
        let log = logs.join(format!("{}.log", p.name));
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut arg = |a: &dyn AsRef<std::ffi::OsStr>| args.push(a.as_ref().to_os_string());
        for a in [
            "node",
            "--role",
            if p.full { "full" } else { "regular" },
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{}", p.p2p_port),
            "--data",
        ] {
            arg(&a);
        }
        arg(&data);
        for a in ["--http", &format!("127.0.0.1:{}", p.http_port), "--deploy"] {
            arg(&a);
        }
        arg(&deploy_path);
        for a in ["--watch-parent", &std::process::id().to_string()] {
            arg(&a);
        }
        if p.full {
            for a in [
                "--dmsg-listen",
                &format!("127.0.0.1:{}", p.dmsg_port),
                "--disc-test-mode",
            ] {
                arg(&a);
            }
            let own = p.sk.pubkey().to_hex();
            for (pk, peer) in &mesh {
                if *pk != own {
                    arg(&"--mesh-peer");
                    arg(peer);
                }
            }
        } else {
            if !mesh.is_empty() {
                let (server, _) = &mesh[visor_index % mesh.len()];
                arg(&"--dmsg-server");
                arg(server);
            }
            visor_index += 1;
            let www = data.join("www");
            std::fs::create_dir_all(&www)?;
            std::fs::write(
                www.join("index.html"),
                format!("hello from {} {}\n", p.name, p.sk.pubkey().to_hex()),
            )?;
            for a in ["--reachability", "public", "--dmsg", "--dmsg-http-dir"] {
                arg(&a);
            }
            arg(&www);
        }
        let launch = Launch {
            exe: exe.clone(),
            args,
            sk_hex: p.sk.to_hex(),
            log,
        };
        let child = launch
            .spawn()
            .with_context(|| format!("starting {}", p.name))?;
        let peer = dhtnode::identity::peer_id(&p.sk.pubkey())?;
        members.push(Member {
            name: p.name,
            full: p.full,
            pk: p.sk.pubkey().to_hex(),
            http: format!("http://127.0.0.1:{}", p.http_port),
            p2p: format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", p.p2p_port),
            child,
            launch,
        });
    }
    Ok(members)
}

/// `GET url` decoded as `T` when the answer is a success.
async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Option<T> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// A node's DMSG status as devnet reads it.
type DmsgStatus = api::DmsgStatus<api::MeshPeerView>;

/// Mesh links up of a DMSG server.
fn links_up(s: &api::DmsgServerStatus<api::MeshPeerView>) -> usize {
    s.mesh.peers.iter().filter(|p| p.up).count()
}

async fn wait_healthy(http: &reqwest::Client, members: &[Member]) -> anyhow::Result<()> {
    let start = Instant::now();
    for m in members {
        while get_json::<api::Health>(http, &format!("{}{}", m.http, api::HEALTH))
            .await
            .is_none()
        {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("{} did not become healthy within 30 s", m.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn print_usage(members: &[Member], dir: &Path) {
    let full = members.iter().find(|m| m.full);
    let visor = members.iter().find(|m| !m.full);
    println!(
        "skymesh devnet: {} nodes, data and logs in {}",
        members.len(),
        dir.display()
    );
    if let Some(f) = full {
        println!("  DHT:        skymesh dht info --node {}", f.http);
        println!(
            "  discovery:  {} (reference /dmsg-discovery API, usable by Go dmsg programs)",
            f.http
        );
        if let Some(v) = visor {
            println!(
                "  DMSG fetch: skymesh dmsg get --dht {} --stdout dmsg://{}:80/index.html",
                f.p2p, v.pk
            );
        }
    }
    println!("Ctrl-C stops every node.\n");
}

/// One status row.
async fn row(http: &reqwest::Client, m: &Member) -> String {
    let info: Option<api::InfoView> = get_json(http, &format!("{}{}", m.http, api::INFO)).await;
    let dm: Option<DmsgStatus> = get_json(http, &format!("{}{}", m.http, api::DMSG)).await;
    let Some(info) = info else {
        return format!("{:<9} {:<7} {:<12} {}", m.name, "-", &m.pk[..10], "DOWN");
    };
    let items: u64 = info.items.values().sum();
    let dmsg = match &dm {
        Some(DmsgStatus {
            server: Some(s), ..
        }) => format!(
            "server: {} sessions, {} streams, {} B relayed; mesh {}/{} links up, {} forwarded",
            s.sessions,
            s.streams_active,
            s.bytes_relayed,
            links_up(s),
            s.mesh.peers.len(),
            s.mesh.forwarded_streams,
        ),
        Some(DmsgStatus {
            client: Some(c), ..
        }) => format!("client: {} server(s)", c.servers.len()),
        _ => "-".to_string(),
    };
    format!(
        "{:<9} {:<7} {:<12} {:>5} {:>6}  {}",
        m.name,
        if m.full { "full" } else { "visor" },
        &m.pk[..10],
        info.peers,
        items,
        dmsg
    )
}

async fn live_table(http: &reqwest::Client, members: &[Member]) {
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(if tty { 2 } else { 10 }));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::daemon::shutdown_signal() => {
                println!("\nstopping {} nodes", members.len());
                return;
            }
        }
        let rows = futures_rows(http, members).await;
        let mut out = String::new();
        if tty {
            out.push_str("\x1b[H\x1b[2J");
            print_usage_inline(&mut out, members);
        }
        out.push_str(&format!(
            "{:<9} {:<7} {:<12} {:>5} {:>6}  {}\n",
            "NODE", "ROLE", "KEY", "PEERS", "ITEMS", "DMSG"
        ));
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
}

fn print_usage_inline(out: &mut String, members: &[Member]) {
    if let (Some(f), Some(v)) = (
        members.iter().find(|m| m.full),
        members.iter().find(|m| !m.full),
    ) {
        out.push_str(&format!(
            "skymesh devnet — Ctrl-C to stop\n  skymesh dht info --node {}\n  skymesh dmsg get --dht {} --stdout dmsg://{}:80/index.html\n\n",
            f.http, f.p2p, v.pk
        ));
    }
}

async fn futures_rows(http: &reqwest::Client, members: &[Member]) -> Vec<String> {
    futures::future::join_all(members.iter().map(|m| row(http, m))).await
}
