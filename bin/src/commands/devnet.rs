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
use serde_json::Value;

use crate::api;

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

/// `Ok` when the visor holds exactly one DMSG session.
async fn one_session(http: &reqwest::Client, v: &Member) -> Result<(), String> {
    let d: DmsgStatus = get_json(http, &format!("{}{}", v.http, api::DMSG))
        .await
        .ok_or(format!("{}: no dmsg status", v.name))?;
    match d.client.map_or(0, |c| c.servers.len()) {
        1 => Ok(()),
        n => Err(format!("{} holds {n} DMSG sessions (want 1)", v.name)),
    }
}

/// Streams the full nodes forwarded to mesh peers so far.
async fn forwarded(http: &reqwest::Client, fulls: &[&Member]) -> u64 {
    let mut n = 0;
    for f in fulls {
        if let Some(d) = get_json::<DmsgStatus>(http, &format!("{}{}", f.http, api::DMSG)).await {
            n += d.server.map_or(0, |s| s.mesh.forwarded_streams);
        }
    }
    n
}

/// Retries `f` until it returns `Ok` or `deadline` passes; returns the last error.
async fn until<F, Fut>(deadline: Instant, mut f: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn report(ok: &mut bool, what: &str, r: Result<(), String>, started: Instant) {
    match r {
        Ok(()) => println!("✔ {what} ({:.1} s)", started.elapsed().as_secs_f64()),
        Err(e) => {
            *ok = false;
            println!("✘ {what}: {e}");
        }
    }
}

async fn check(http: &reqwest::Client, members: &[Member], timeout: Duration) -> bool {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut ok = true;
    let fulls: Vec<&Member> = members.iter().filter(|m| m.full).collect();
    let visors: Vec<&Member> = members.iter().filter(|m| !m.full).collect();
    println!(
        "devnet: {} full nodes (DMSG servers), {} visors; checking…",
        fulls.len(),
        visors.len()
    );

    // 1. Every node sees the full nodes.
    let r = until(deadline, || async {
        for m in members {
            let info: api::InfoView = get_json(http, &format!("{}{}", m.http, api::INFO))
                .await
                .ok_or(format!("{}: no info", m.name))?;
            let known = info.full_nodes.len();
            let want = if m.full { fulls.len() - 1 } else { fulls.len() };
            if known < want {
                return Err(format!("{} knows {known}/{want} full nodes", m.name));
            }
        }
        Ok(())
    })
    .await;
    report(&mut ok, "every node knows every full node", r, started);

    // 2. DHT round trip: a put on the first node is read back on every node.
    let value = format!("devnet-check-{}", dmsg::now_ns());
    let writer = &members[0];
    let put = http
        .post(format!("{}{}", writer.http, api::PUT))
        .json(&api::PutRequest {
            salt: CHECK_SALT.into(),
            value: value.clone(),
        })
        .send()
        .await;
    let r = match put {
        Ok(r) if r.status().is_success() => {
            until(deadline, || async {
                for m in members {
                    let url = format!("{}{}?pk={}&salt={CHECK_SALT}", m.http, api::GET, writer.pk);
                    let got: api::ItemView = get_json(http, &url)
                        .await
                        .ok_or(format!("{}: not found yet", m.name))?;
                    if got.value != value {
                        return Err(format!("{}: read {:?}", m.name, got.value));
                    }
                }
                Ok(())
            })
            .await
        }
        Ok(r) => Err(format!("put answered {}", r.status())),
        Err(e) => Err(format!("put failed: {e}")),
    };
    report(
        &mut ok,
        &format!(
            "DHT: item put on {} read back on all {} nodes",
            writer.name,
            members.len()
        ),
        r,
        started,
    );

    // 3. Every visor holds exactly one DMSG session, and the servers' mesh links are up.
    let r = until(deadline, || async {
        for v in &visors {
            one_session(http, v).await?;
        }
        for f in &fulls {
            let d: DmsgStatus = get_json(http, &format!("{}{}", f.http, api::DMSG))
                .await
                .ok_or(format!("{}: no dmsg status", f.name))?;
            let up = d.server.as_ref().map_or(0, links_up);
            if up + 1 < fulls.len() {
                return Err(format!(
                    "{}: {up}/{} mesh links up",
                    f.name,
                    fulls.len() - 1
                ));
            }
        }
        Ok(())
    })
    .await;
    report(
        &mut ok,
        "DMSG: every visor holds one session with a server found in the DHT; the servers are meshed",
        r,
        started,
    );
    let forwarded_before = forwarded(http, &fulls).await;

    // 4. Every visor fetches every other visor's page over DMSG.
    let pairs = visors.len() * visors.len().saturating_sub(1);
    let r = until(deadline, || async {
        for a in &visors {
            for b in &visors {
                if a.pk == b.pk {
                    continue;
                }
                let url = format!(
                    "{}{}?url=dmsg://{}:80/index.html",
                    a.http,
                    api::DMSG_FETCH,
                    b.pk
                );
                let resp = http.get(&url).send().await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if !status.is_success() || !body.contains(&b.pk) {
                    return Err(format!("{} → {}: {status} {body}", a.name, b.name));
                }
            }
        }
        Ok(())
    })
    .await;
    report(
        &mut ok,
        &format!("DMSG relay: {pairs} visor-to-visor fetches over DMSG-HTTP"),
        r,
        started,
    );

    // 4b. Those fetches crossed servers through the mesh: visors still hold one session each.
    let mut servers_of = Vec::new();
    for v in &visors {
        let d: Option<DmsgStatus> = get_json(http, &format!("{}{}", v.http, api::DMSG)).await;
        servers_of.push(d.and_then(|d| d.client).map(|c| c.servers));
    }
    let cross = (0..visors.len())
        .flat_map(|a| (0..visors.len()).map(move |b| (a, b)))
        .filter(|(a, b)| a != b && servers_of[*a] != servers_of[*b])
        .count();
    let r = async {
        for v in &visors {
            one_session(http, v).await?;
        }
        let fwd = forwarded(http, &fulls).await - forwarded_before;
        if cross > 0 && fwd == 0 {
            return Err("no stream was forwarded between servers".to_string());
        }
        if fulls.len() > 1 && visors.len() > 1 && cross == 0 {
            return Err("every visor is on the same server".to_string());
        }
        Ok(())
    }
    .await;
    report(
        &mut ok,
        &format!(
            "DMSG mesh: {cross} of those fetches crossed servers through the mesh; every visor still holds one session"
        ),
        r,
        started,
    );

    // 5. The legacy discovery API of every full node lists every server.
    let r = until(deadline, || async {
        for f in &fulls {
            let list: Vec<Value> = get_json(
                http,
                &format!("{}/dmsg-discovery/available_servers", f.http),
            )
            .await
            .ok_or(format!("{}: available_servers failed", f.name))?;
            let n = list.len();
            if n < fulls.len() {
                return Err(format!("{} lists {n}/{} servers", f.name, fulls.len()));
            }
        }
        Ok(())
    })
    .await;
    report(
        &mut ok,
        "discovery API: every full node lists every DMSG server at /dmsg-discovery/available_servers",
        r,
        started,
    );
    ok
}

/// Store-and-forward: a message to a visor that is stopped waits on the DMSG servers and
/// arrives exactly once after the visor is started again; the sender sees it delivered.
async fn check_mailbox(http: &reqwest::Client, members: &mut [Member], timeout: Duration) -> bool {
    let started = Instant::now();
    let deadline = started + timeout;
    let visors: Vec<usize> = (0..members.len()).filter(|i| !members[*i].full).collect();
    let (Some(&from), Some(&to)) = (visors.first(), visors.last()) else {
        return true;
    };
    if from == to {
        return true;
    }
    let mut ok = true;
    let text = format!("devnet mailbox check {}", dmsg::now_ns());
    let r = async {
        let m = &mut members[to];
        let _ = m.child.kill();
        let _ = m.child.wait();
        let (sender, rcpt) = (&members[from], &members[to]);
        let req = api::MsgSendRequest {
            to: rcpt.pk.clone(),
            text: Some(text.clone()),
            payload_hex: None,
            ttl: Some(600),
        };
        let sent: api::MsgSent = until_value(deadline, || async {
            let res = http
                .post(format!("{}{}", sender.http, api::MSG_SEND))
                .json(&req)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = res.status();
            if !status.is_success() {
                return Err(format!(
                    "send answered {status}: {}",
                    res.text().await.unwrap_or_default()
                ));
            }
            res.json().await.map_err(|e| e.to_string())
        })
        .await?;
        let m = &mut members[to];
        m.child = m
            .launch
            .spawn()
            .map_err(|e| format!("restarting {}: {e}", m.name))?;
        let rcpt = &members[to];
        until(deadline, || async {
            let inbox: Vec<api::MsgInboxEntry> =
                get_json(http, &format!("{}{}", rcpt.http, api::MSG_INBOX))
                    .await
                    .ok_or(format!("{}: no inbox yet", rcpt.name))?;
            match inbox.iter().filter(|e| e.id == sent.id).count() {
                1 if inbox
                    .iter()
                    .any(|e| e.text.as_deref() == Some(text.as_str())) =>
                {
                    Ok(())
                }
                0 => Err(format!("{} has not received it yet", rcpt.name)),
                n => Err(format!("{} received it {n} times", rcpt.name)),
            }
        })
        .await?;
        let sender = &members[from];
        until(deadline, || async {
            let list: Vec<api::MsgSentEntry> =
                get_json(http, &format!("{}{}", sender.http, api::MSG_SENT))
                    .await
                    .ok_or("no sent list")?;
            match list.iter().find(|s| s.id == sent.id) {
                Some(s) if s.status == "delivered" => Ok(()),
                Some(s) => Err(format!("status {}", s.status)),
                None => Err("not in the sent list".to_string()),
            }
        })
        .await?;
        Ok::<usize, String>(sent.stored_on.len())
    }
    .await;
    let what = format!(
        "mailbox: a message to stopped {} waited on the DMSG servers, arrived once after its restart, and {} saw it delivered",
        members[to].name, members[from].name
    );
    report(&mut ok, &what, r.map(|_| ()), started);
    ok
}

/// Retries `f` until it returns a value or `deadline` passes; returns the last error.
async fn until_value<T, F, Fut>(deadline: Instant, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
