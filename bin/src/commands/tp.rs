//! `skymesh tp add|ls|rm|all --node URL …`: a visor's transports, through the node's admin API
//! (routes in `commands/node/tp.rs`).
//!
//! - `tp add --node URL PK`: configure a DMSG transport to the visor PK; prints the transport.
//! - `tp ls --node URL [--json]`: this visor's transports (id, peer, state, uptime, bytes,
//!   reconnects, last error).
//! - `tp rm --node URL ID`: remove a transport here and at the peer.
//! - `tp all --node URL [--json]`: every transport known, from the node's local store (full
//!   node), else DHT lookups, else the deployment's transport discovery; the first line says
//!   which source answered; each transport is `confirmed` (listed by both ends) or `claimed`.
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::{self, ErrorBody};

/// Time limit for one admin API call: `tp all` on a visor may run many DHT reads (each bounded
/// by the node's 30 s query timeout, 8 at a time) and then the HTTP fallback (20 s).
const HTTP_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `skymesh tp`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    conn: crate::admin::NodeArgs,
    #[command(subcommand)]
    command: TpCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TpCommand {
    /// Configure a DMSG transport from the node (a visor) to the visor PK.
    Add {
        /// The other visor's public key (hex).
        pk: String,
    },
    /// List the node's transports.
    Ls {
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a transport (here and at the peer).
    Rm {
        /// Transport id (UUID).
        id: String,
    },
    /// Every transport known to the network (local store, DHT lookups, or HTTP fallback).
    All {
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `skymesh tp …`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    super::block_on(run_async(args.conn, args.command))
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

async fn call(
    req: reqwest::RequestBuilder,
    node: &str,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let res = req
        .send()
        .await
        .with_context(|| format!("contacting {node}"))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.context("reading the answer")?;
    if !status.is_success() {
        bail!(
            "{what} failed ({status}): {}",
            ErrorBody::of(&body).error.as_deref().unwrap_or("-")
        );
    }
    Ok(body)
}

async fn run_async(conn: crate::admin::NodeArgs, cmd: TpCommand) -> anyhow::Result<()> {
    let client = conn.client(Some(HTTP_TIMEOUT))?;
    let node = conn.node.clone();
    match cmd {
        TpCommand::Add { pk } => {
            let req = client
                .post(format!("{}{}", base(&node), api::TP))
                .json(&api::TpAddRequest { pk });
            let body = call(req, &node, "tp add").await?;
            println!("{body}");
        }
        TpCommand::Ls { json } => {
            let req = client.get(format!("{}{}", base(&node), api::TP));
            let body = call(req, &node, "tp ls").await?;
            if json {
                println!("{body}");
            } else {
                print_ls(&serde_json::from_value(body).context("reading the answer")?);
            }
        }
        TpCommand::Rm { id } => {
            let req = client.delete(format!("{}{}", base(&node), api::tp_one(id.trim())));
            let body = call(req, &node, "tp rm").await?;
            println!("{body}");
        }
        TpCommand::All { json } => {
            let req = client.get(format!("{}{}", base(&node), api::TP_ALL));
            let body = call(req, &node, "tp all").await?;
            if json {
                println!("{body}");
            } else {
                print_all(&serde_json::from_value(body).context("reading the answer")?);
            }
        }
    }
    Ok(())
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn short(pk: &serde_json::Value) -> String {
    let p = s(pk);
    p.get(..12).map_or(p.clone(), |h| format!("{h}…"))
}

fn print_ls(v: &api::TpList<serde_json::Value>) {
    println!("visor: {}", v.public_key);
    println!(
        "{:<36}  {:<13}  {:<5}  {:<4}  {:>8}  {:>10}  {:>10}  {:>5}  last error",
        "id", "peer", "kind", "up", "uptime_s", "sent", "received", "recon"
    );
    for t in &v.transports {
        println!(
            "{:<36}  {:<13}  {:<5}  {:<4}  {:>8}  {:>10}  {:>10}  {:>5}  {}",
            s(&t["id"]),
            short(&t["remote"]),
            s(&t["kind"]),
            s(&t["state"]),
            s(&t["uptime_secs"]),
            s(&t["bytes_sent"]),
            s(&t["bytes_received"]),
            s(&t["reconnects"]),
            s(&t["last_error"]),
        );
    }
}

fn print_all(v: &api::CatalogView) {
    let confirmed = v
        .transports
        .iter()
        .filter(|t| t["confirmed"] == true)
        .count();
    println!(
        "source: {} ({} items read, {} refused; {} transports, {} confirmed by both ends)",
        v.source.as_deref().unwrap_or("-"),
        v.items,
        v.refused,
        v.transports.len(),
        confirmed
    );
    if let Some(e) = &v.fallback_error {
        println!("http fallback failed: {e}");
    }
    for t in &v.transports {
        let states: Vec<String> = t["listed_by"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(pk, st)| format!("{}={}", pk.get(..12).unwrap_or(pk), s(st)))
            .collect();
        println!(
            "{:<36}  {:<5}  {}  {}  {:<9}  {}",
            s(&t["id"]),
            s(&t["kind"]),
            short(&t["edges"][0]),
            short(&t["edges"][1]),
            if t["confirmed"] == true {
                "confirmed"
            } else {
                "claimed"
            },
            states.join(" ")
        );
    }
}
