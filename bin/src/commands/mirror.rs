//! `skymesh mirror put|import`: write signed items straight into Redis for full nodes to serve
//! (the mirror role: backend services publish without running a DHT node).
//!
//! - `put --redis URL --sk SK --salt S --value TEXT [--for PK]`: sign one item (for our own key,
//!   or for `PK` as a trusted writer) with a fresh seq and write it; prints the item as JSON.
//! - `import --redis URL --sk SK FILE`: JSON lines (`-` = stdin). A line with a `sig` is a
//!   pre-signed item (the `skymesh item sign` form) and is written as is after verification;
//!   otherwise `{"salt": S, "value": TEXT | "value_hex": HEX, "for": PK?}` is signed with `--sk`.
//!   Writes are pipelined; a progress bar shows on a terminal; a summary is printed at the end.
//!   Exit code 1 if any line failed.
use std::io::{BufRead, IsTerminal};
use std::time::Instant;

use anyhow::{Context, bail};
use dht::{Item, Salt};
use keys::{PubKey, SecKey};
use mirror::{MirrorConfig, MirrorError, RedisMirror, WriteOutcome};

/// Arguments of `skymesh mirror`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Sign one item and write it into Redis.
    Put(PutArgs),
    /// Write many items from a JSON-lines file into Redis.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Redis URL, e.g. redis://127.0.0.1:6379/ (password: redis://:PASS@host:port/).
    #[arg(long, env = "SKYMESH_REDIS")]
    redis: String,
    /// The service's secret key (hex). Prefer the environment variable over the flag.
    #[arg(long, env = "SKYMESH_SK", hide_env_values = true)]
    sk: String,
}

#[derive(Debug, clap::Args)]
struct PutArgs {
    #[command(flatten)]
    common: Common,
    /// Salt (namespace): dmsg, dmsg-server, fullnode, tp, svc, or any other text.
    #[arg(long)]
    salt: String,
    /// The value as text (for known salts, their JSON format; see docs/protocols/items.md).
    #[arg(long)]
    value: String,
    /// Write for this key as a trusted writer (full nodes must list our key as trusted).
    #[arg(long = "for", value_name = "PK", value_parser = crate::config::public_key)]
    for_pk: Option<PubKey>,
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    #[command(flatten)]
    common: Common,
    /// JSON-lines file, or `-` for stdin.
    file: String,
}

/// Runs `skymesh mirror …`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        match args.command {
            Sub::Put(a) => put(a).await,
            Sub::Import(a) => import(a).await,
        }
    })
}

fn start(common: &Common) -> anyhow::Result<RedisMirror> {
    let sk = SecKey::from_hex(&common.sk).context("--sk is not a secret key (64 hex digits)")?;
    Ok(RedisMirror::start(
        &common.redis,
        sk,
        MirrorConfig::default(),
    )?)
}

async fn put(a: PutArgs) -> anyhow::Result<()> {
    let m = start(&a.common)?;
    let salt = Salt::new(a.salt.as_bytes().to_vec()).context("--salt")?;
    let subject = a.for_pk;
    let outcome = m.put(salt.clone(), a.value.into_bytes(), subject).await?;
    let change = match outcome {
        WriteOutcome::Written { change } => change,
        WriteOutcome::Unchanged => "unchanged".into(),
    };
    let pk = subject.unwrap_or_else(|| m.public_key());
    println!(
        "{}",
        serde_json::json!({ "pk": pk.to_hex(), "salt": a.salt, "writer": m.public_key().to_hex(), "change": change })
    );
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Unsigned {
    salt: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_hex: Option<String>,
    #[serde(default, rename = "for")]
    for_pk: Option<String>,
}

fn parse_line(line: &str, sk: &SecKey, seq: u64) -> anyhow::Result<Item> {
    let v: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
    if v.get("sig").is_some() {
        return Ok(dht::json::from_json(line)?);
    }
    let u: Unsigned = serde_json::from_value(v).context("not an item or {salt, value, for}")?;
    let value = match (u.value, u.value_hex) {
        (Some(t), None) => t.into_bytes(),
        (None, Some(h)) => hex::decode(h).context("value_hex")?,
        _ => bail!("exactly one of value / value_hex"),
    };
    let salt = Salt::new(u.salt.into_bytes())?;
    let item = match u.for_pk {
        Some(pk) => {
            let subject = PubKey::from_hex(&pk).context("for")?;
            if subject == sk.pubkey() {
                Item::sign(sk, salt, seq, value)?
            } else {
                Item::sign_for(sk, subject, salt, seq, value)?
            }
        }
        None => Item::sign(sk, salt, seq, value)?,
    };
    Ok(item)
}

async fn import(a: ImportArgs) -> anyhow::Result<()> {
    let m = start(&a.common)?;
    let sk = SecKey::from_hex(&a.common.sk).context("--sk")?;
    let reader: Box<dyn BufRead> = if a.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file))?,
        ))
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos} items written ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Some(b)
    } else {
        None
    };
    let started = Instant::now();
    let seq_base = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(u64::MAX);
    let (mut written, mut unchanged, mut failed, mut lines) = (0u64, 0u64, 0u64, 0u64);
    let mut pending = std::collections::VecDeque::new();
    for (no, line) in reader.lines().enumerate() {
        let line = line.context("read input")?;
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let item = match parse_line(&line, &sk, seq_base) {
            Ok(i) => i,
            Err(e) => {
                failed += 1;
                eprintln!("line {}: {e:#}", no + 1);
                continue;
            }
        };
        // Keep at most half the writer's buffer in flight; wait for the oldest beyond that.
        while pending.len() >= mirror::writer::DEFAULT_QUEUE / 2 {
            if let Some((n, rx)) = pending.pop_front() {
                tally(n, rx, &mut written, &mut unchanged, &mut failed).await;
            }
        }
        match m.submit(item) {
            Ok(rx) => pending.push_back((no + 1, rx)),
            Err(e) => {
                failed += 1;
                eprintln!("line {}: {e}", no + 1);
            }
        }
        if let Some(b) = &bar {
            b.set_position(written + unchanged);
        }
    }
    while let Some((n, rx)) = pending.pop_front() {
        tally(n, rx, &mut written, &mut unchanged, &mut failed).await;
        if let Some(b) = &bar {
            b.set_position(written + unchanged);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "imported {lines} lines in {secs:.2} s: {written} written, {unchanged} unchanged, {failed} failed"
    );
    if failed > 0 {
        bail!("{failed} of {lines} lines failed");
    }
    Ok(())
}

type Verdict = tokio::sync::oneshot::Receiver<Result<WriteOutcome, MirrorError>>;

async fn tally(line: usize, rx: Verdict, written: &mut u64, unchanged: &mut u64, failed: &mut u64) {
    match rx.await {
        Ok(Ok(WriteOutcome::Written { .. })) => *written += 1,
        Ok(Ok(WriteOutcome::Unchanged)) => *unchanged += 1,
        Ok(Err(e)) => {
            *failed += 1;
            eprintln!("line {line}: {e}");
        }
        Err(_) => {
            *failed += 1;
            eprintln!("line {line}: mirror writer stopped");
        }
    }
}
