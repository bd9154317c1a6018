//! `skymesh devnet [--full N] [--visors N] [--data DIR] [--check]`: a whole local network.
//!
//! Starts `--full` full nodes that are DMSG servers and `--visors` visors (regular DHT nodes
//! with a DMSG client serving a small directory over DMSG-HTTP), all as real `skymesh node`
//! child processes on loopback, with data (and logs) in a temporary directory unless `--data`
//! is given. Every listener binds port 0 and each node reports what it got (see
//! [`launch`]). No discovery URL anywhere: everything meets through the DHT. The nodes share a
//! generated deployment file (`DATA/devnet.json`) naming the full nodes as DHT bootstrap peers
//! and DMSG servers. The DMSG servers mesh with each other through the DHT (`--mesh-dht`,
//! allowing only each other's keys), and each visor holds one session with a server it chose
//! itself (RTT, load, random near-ties: visors started together spread over the servers):
//! visors on different servers reach each other through the mesh.
//!
//! Without `--check` it shows a live status table until Ctrl-C, then stops every node
//! (`--json`: one JSON document of the network per line instead, see [`json`]). With
//! `--check` it runs DHT and relay round trips, prints what it verified and exits 0 or 1.
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::api;

mod check;
mod json;
mod launch;
use check::{check, check_mailbox, check_spread};
use launch::{Member, start};

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
    /// Print the network's state as one JSON document per line every 2 s instead of the live
    /// table (nodes with their keys, addresses, status page URLs and their own API answers).
    #[arg(long, conflicts_with = "check")]
    json: bool,
    /// How long --check waits for the network to converge.
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    timeout: u64,
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
            ok &= check_spread(&http, &mut members, timeout).await;
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
        if args.json {
            json::live_json(&http, &members, &dir).await;
            return Ok(());
        }
        print_usage(&members, &dir);
        live_table(&http, &members).await;
        Ok(())
    })
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
                "  DMSG fetch: skymesh dmsg get --bootstrap {} --stdout dmsg://{}:80/index.html",
                f.p2p, v.pk
            );
        }
    }
    println!("  status pages (open in a browser):");
    for m in members {
        println!("    {:<9} {}/", m.name, m.http.trim_end_matches('/'));
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
            "skymesh devnet — Ctrl-C to stop\n  skymesh dht info --node {}\n  skymesh dmsg get --bootstrap {} --stdout dmsg://{}:80/index.html\n\n",
            f.http, f.p2p, v.pk
        ));
    }
}

async fn futures_rows(http: &reqwest::Client, members: &[Member]) -> Vec<String> {
    futures::future::join_all(members.iter().map(|m| row(http, m))).await
}
