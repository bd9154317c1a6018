//! `skymesh dht put|get|info --node URL …`: talk to a running `skymesh node` over its admin API.
//!
//! - `dht put --node URL --salt S --value TEXT`: the node signs with its own key and puts; prints
//!   the put report (target, seq, acks) as JSON.
//! - `dht get --node URL --pk PK --salt S`: prints the verified item as JSON (`pk`, `salt`, `seq`,
//!   `value` as UTF-8 text when it is, else hex with `value_encoding: "hex"`); exit 1 when not
//!   found.
//! - `dht info --node URL [--json]`: role, peer id, listen addresses, peers, full nodes known,
//!   items by salt, last bootstrap.
//! - `dht sync --node URL [--bootstrap MULTIADDR] [--salt S] [--from-start] [--json]`: asks the
//!   node to pull (GetItems, `/skymesh/sync/1`) from a full node (default: one it knows; the
//!   flag is spelled like `node --bootstrap`, the former `--from` is an alias), resuming
//!   from the cursor it saved for that node; shows a progress bar on a terminal and prints a
//!   summary (items received, accepted, unchanged, refused, bytes, time). Exit 1 when the sync
//!   failed. Ctrl-C cancels the session on the node (its cursor stays saved).
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::{self, ErrorBody};

/// Time limit for one admin API call: a get may fall back to an iterative lookup bounded by the
/// node's 30 s query timeout.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `skymesh dht`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    conn: crate::admin::NodeArgs,
    #[command(subcommand)]
    command: DhtCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DhtCommand {
    /// Sign VALUE under SALT with the node's key and put it into the DHT.
    Put {
        /// Salt (slot name).
        #[arg(long)]
        salt: String,
        /// Value (text).
        #[arg(long)]
        value: String,
    },
    /// Read the item of (PK, SALT) through the node; exit 1 when not found.
    Get {
        /// Public key (hex).
        #[arg(long)]
        pk: String,
        /// Salt (slot name).
        #[arg(long)]
        salt: String,
    },
    /// Pull items from a full node into the node (bulk sync; every item is checked).
    Sync {
        /// The full node to pull from, a multiaddr ending in /p2p/<peer id> (default: a full
        /// node the node knows). Spelled like `node --bootstrap`; `--from` is still accepted.
        #[arg(long = "bootstrap", alias = "from", value_name = "MULTIADDR")]
        from: Option<libp2p::Multiaddr>,
        /// Only items with this salt.
        #[arg(long)]
        salt: Option<String>,
        /// Pull everything, ignoring the cursor saved from an earlier sync with that node.
        #[arg(long)]
        from_start: bool,
        /// Print the final status as JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Show the node's state.
    Info {
        /// Print the JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `skymesh dht …`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    super::block_on(run_async(args.conn, args.command))
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// Sends one admin API request and returns its status and JSON body.
async fn call(
    req: reqwest::RequestBuilder,
    node: &str,
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let res = req
        .send()
        .await
        .with_context(|| format!("contacting {node}"))?;
    let status = res.status();
    let body = res.json().await.context("reading the answer")?;
    Ok((status, body))
}

/// Decodes a typed answer.
fn decode<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(body).context("reading the answer")
}

async fn run_async(conn: crate::admin::NodeArgs, cmd: DhtCommand) -> anyhow::Result<()> {
    let client = conn.client(Some(HTTP_TIMEOUT))?;
    let node = conn.node.clone();
    match cmd {
        DhtCommand::Put { salt, value } => {
            let req = client
                .post(format!("{}{}", base(&node), api::PUT))
                .json(&api::PutRequest { salt, value });
            let (status, body) = call(req, &node).await?;
            if !status.is_success() {
                bail!("put failed ({status}): {}", ErrorBody::of(&body).quoted());
            }
            println!("{body}");
        }
        DhtCommand::Get { pk, salt } => {
            let req = client
                .get(format!("{}{}", base(&node), api::GET))
                .query(&api::GetQuery { pk, salt });
            let (status, body) = call(req, &node).await?;
            if status == reqwest::StatusCode::NOT_FOUND {
                bail!("not found");
            }
            if !status.is_success() {
                bail!("get failed ({status}): {}", ErrorBody::of(&body).quoted());
            }
            let item: api::ItemView = decode(body)?;
            println!("{}", serde_json::to_string_pretty(&item)?);
        }
        DhtCommand::Sync {
            from,
            salt,
            from_start,
            json,
        } => sync(&client, &node, from, salt, from_start, json).await?,
        DhtCommand::Info { json } => {
            let req = client.get(format!("{}{}", base(&node), api::INFO));
            let (status, body) = call(req, &node).await?;
            if !status.is_success() {
                bail!("info failed ({status}): {}", ErrorBody::of(&body).quoted());
            }
            if json {
                println!("{body}");
            } else {
                print_info(&decode(body)?);
            }
        }
    }
    Ok(())
}

fn print_info(v: &api::InfoView) {
    let s = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
    println!("role:           {}", s(&v.role));
    println!("public_key:     {}", s(&v.public_key));
    println!("peer_id:        {}", s(&v.peer_id));
    println!("kad_mode:       {}", s(&v.kad_mode));
    println!("listen_addrs:");
    for a in &v.listen_addrs {
        println!("  {a}");
    }
    println!("peers:          {}", v.peers);
    println!("routing_table:  {}", v.routing_table);
    println!("full_nodes:");
    for a in &v.full_nodes {
        println!("  {a}");
    }
    println!("items:");
    for (salt, n) in &v.items {
        println!("  {salt}: {n}");
    }
    match v.last_bootstrap {
        Some(ms) => println!("last_bootstrap: {}", ago(ms, now_ms())),
        None => println!("last_bootstrap: never"),
    }
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-12-04 18:28:43 UTC (12 s ago)`: a Unix-ms instant for people.
pub(crate) fn ago(ms: u64, now_ms: u64) -> String {
    let when = super::msg::human_time(ms);
    if ms > now_ms {
        return when;
    }
    format!("{when} ({} ago)", human_duration((now_ms - ms) / 1000))
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`, `4 d 3 h`.
pub(crate) fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

/// How often `dht sync` polls the session status.
const SYNC_POLL: Duration = Duration::from_millis(200);

async fn sync(
    client: &reqwest::Client,
    node: &str,
    from: Option<libp2p::Multiaddr>,
    salt: Option<String>,
    from_start: bool,
    json: bool,
) -> anyhow::Result<()> {
    let req = client
        .post(format!("{}{}", base(node), api::SYNC))
        .json(&api::SyncRequest {
            from: from.map(|a| a.to_string()),
            salt,
            from_start,
            page_limit: None,
        });
    let (status, body) = call(req, node).await?;
    if !status.is_success() {
        bail!("sync refused ({status}): {}", ErrorBody::of(&body).quoted());
    }
    let api::SyncStarted { id } = decode(body).context("no session id in the answer")?;
    let url = format!("{}{}", base(node), api::sync_session(id));
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} changes  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let last = loop {
        let poll = async {
            tokio::time::sleep(SYNC_POLL).await;
            call(client.get(&url), node).await
        };
        let (status, st) = tokio::select! {
            r = poll => r?,
            _ = tokio::signal::ctrl_c() => {
                let _ = client.delete(&url).send().await;
                bail!("interrupted; session {id} cancelled (the next sync resumes from its cursor)");
            }
        };
        if !status.is_success() {
            bail!("sync status ({status}): {}", ErrorBody::of(&st).quoted());
        }
        let view: api::SyncStatusView = decode(st.clone())?;
        if let Some(b) = &bar {
            b.set_length(view.remote_last_change);
            b.set_position(view.cursor);
            b.set_message(format!(
                "{} items, {} accepted",
                view.items_received, view.accepted
            ));
        }
        if view.state.as_deref() != Some("running") {
            break (st, view);
        }
    };
    let (last, view) = last;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json {
        println!("{last}");
    } else {
        println!(
            "sync {} from {}: {} items received, {} accepted, {} unchanged, {} refused, {}, {:.1} s",
            view.state.as_deref().unwrap_or("?"),
            view.peer.as_deref().unwrap_or("?"),
            view.items_received,
            view.accepted,
            view.unchanged,
            view.refused,
            indicatif::HumanBytes(view.bytes),
            view.elapsed_ms as f64 / 1000.0,
        );
    }
    if view.state.as_deref() != Some("done") {
        bail!(
            "sync failed: {}",
            serde_json::to_string(&view.error).unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_calendar_time_and_age() {
        assert_eq!(
            ago(1_800_000_000_000, 1_800_000_042_000),
            "2027-01-15 08:00:00 UTC (42 s ago)"
        );
        assert_eq!(human_duration(3 * 60 + 5), "3 min 5 s");
        assert_eq!(human_duration(2 * 3600 + 600), "2 h 10 min");
        assert_eq!(human_duration(4 * 86400 + 3 * 3600), "4 d 3 h");
    }
}
