//! `skymesh msg send|inbox|sent --node URL …`: store-and-forward messages through a visor's
//! admin API (docs/mailbox.md).
//!
//! - `msg send --node URL --to PK (--text TEXT | --file FILE) [--ttl SECONDS]`: prints JSON with
//!   the message `id` and the servers that stored it (`stored_on`); exit 1 when none did.
//! - `msg inbox --node URL [--json] [--follow]`: received messages (id, from, sent and received
//!   times, size, text when printable); `--follow` keeps printing new ones until Ctrl-C.
//! - `msg sent --node URL [--json]`: sent messages and their status (stored, delivered,
//!   expired).
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::{self, ErrorBody};

/// Time limit of one call (a send waits for every mailbox server's fsync'd receipt).
const HTTP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one `--follow` poll waits on the node.
const FOLLOW_WAIT_MS: u64 = 30_000;

/// Arguments of `skymesh msg`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    conn: crate::admin::NodeArgs,
    #[command(subcommand)]
    command: MsgCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MsgCommand {
    /// Send a message to a visor, online or not (it waits on DMSG servers until delivered).
    Send {
        /// Recipient public key (hex).
        #[arg(long)]
        to: String,
        /// The message text.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        text: Option<String>,
        /// Send this file's bytes (at most 64 KiB).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Time to live in seconds (default 86400, at most 604800).
        #[arg(long)]
        ttl: Option<u32>,
    },
    /// Show the messages this visor received.
    Inbox {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Keep printing new messages until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
    /// Show the messages this visor sent and their status.
    Sent {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    super::block_on(run_async(args.conn, args.command))
}

fn url(node: &str, path: &str) -> String {
    format!("{}{path}", node.trim_end_matches('/'))
}

async fn call<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    node: &str,
) -> anyhow::Result<T> {
    let res = req
        .send()
        .await
        .with_context(|| format!("contacting {node}"))?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.context("reading the answer")?;
    if !status.is_success() {
        let e: ErrorBody = serde_json::from_value(body).unwrap_or(ErrorBody { error: None });
        bail!(
            "{node} answered {status}: {}",
            e.error.unwrap_or_else(|| "no reason given".into())
        );
    }
    serde_json::from_value(body).context("reading the answer")
}

async fn run_async(conn: crate::admin::NodeArgs, cmd: MsgCommand) -> anyhow::Result<()> {
    let http = conn.client(Some(HTTP_TIMEOUT))?;
    let node = conn.node.clone();
    match cmd {
        MsgCommand::Send {
            to,
            text,
            file,
            ttl,
        } => {
            let payload_hex = match &file {
                Some(f) => Some(hex::encode(
                    std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
                )),
                None => None,
            };
            let req = api::MsgSendRequest {
                to,
                text,
                payload_hex,
                ttl,
            };
            let out: api::MsgSent =
                call(http.post(url(&node, api::MSG_SEND)).json(&req), &node).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        MsgCommand::Inbox { json, follow } => {
            let mut shown = 0usize;
            loop {
                let mut req = http.get(url(&node, api::MSG_INBOX));
                if follow && shown > 0 {
                    req = req.query(&api::MsgInboxQuery {
                        after: Some(shown),
                        wait_ms: Some(FOLLOW_WAIT_MS),
                    });
                }
                let list: Vec<api::MsgInboxEntry> = call(req, &node).await?;
                for e in list.iter().skip(shown) {
                    if json {
                        println!("{}", serde_json::to_string(e)?);
                    } else {
                        print_inbox(e);
                    }
                }
                shown = shown.max(list.len());
                if !follow {
                    if !json && list.is_empty() {
                        eprintln!("(no messages)");
                    }
                    return Ok(());
                }
                if shown == 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        MsgCommand::Sent { json } => {
            let list: Vec<api::MsgSentEntry> =
                call(http.get(url(&node, api::MSG_SENT)), &node).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for s in &list {
                    println!(
                        "{}  to {}…  sent {}  {}  on {} server(s)",
                        s.id,
                        &s.to[..s.to.len().min(12)],
                        human_time(s.sent_ms),
                        s.status,
                        s.servers.len()
                    );
                }
            }
        }
    }
    Ok(())
}

fn print_inbox(e: &api::MsgInboxEntry) {
    let text = e
        .text
        .clone()
        .unwrap_or_else(|| format!("<{} bytes, binary>", e.size));
    println!(
        "{}  from {}…  sent {}  received {}  {} B  {}",
        e.id,
        &e.from[..e.from.len().min(12)],
        human_time(e.sent_ms),
        human_time(e.received_ms),
        e.size,
        text
    );
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix ms.
pub(crate) fn human_time(ms: u64) -> String {
    let [y, mo, d, h, mi, s] = ::dmsg::disc_server::utc_civil((ms / 1000) as i64);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_time_is_utc_calendar_time() {
        assert_eq!(super::human_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            super::human_time(1_800_000_000_000),
            "2027-01-15 08:00:00 UTC"
        );
        assert_eq!(
            super::human_time(951_782_400_000),
            "2000-02-29 00:00:00 UTC"
        );
    }
}
