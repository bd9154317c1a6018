//! `skymesh item sign|verify`: make and check signed items from the shell, as JSON (the form is
//! specified in `dht::json` and `docs/protocols/items.md`).
//!
//! - `item sign --sk SK --salt S --value TEXT [--seq N] [--for PK]`: prints the signed item. The
//!   default seq is the current Unix time in milliseconds (what a node's `SeqClock` would issue).
//!   With `--for PK` the key SK writes for PK as a trusted writer (the item carries `writer`).
//!   The item is checked with the acceptance rules before it is printed (the writer counts as
//!   trusted for that check).
//! - `item verify [--file F] [--trusted-writer PK …]`: reads an item (stdin by default), prints
//!   `{"valid": true, …}` or `{"valid": false, "error": …}`; exit status 1 when invalid. A
//!   delegated item's writer is checked against `--trusted-writer` when any is given; otherwise
//!   only its signature is checked and the verdict says `"writer_trust": "not-checked"`.
use std::io::Read;
use std::time::SystemTime;

use anyhow::{Context, bail};
use dht::{Config, Item, Salt, Timestamp, rules};
use keys::{PubKey, SecKey};

/// Arguments of `skymesh item`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: ItemCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ItemCommand {
    /// Sign an item and print it as JSON.
    Sign(SignArgs),
    /// Check an item (JSON on stdin or --file); exit 1 when invalid.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    /// Secret key (64 hex chars) of the signer.
    #[arg(long, env = "SKYMESH_SK", hide_env_values = true)]
    sk: String,
    /// Salt (slot name) as text, e.g. `dmsg`.
    #[arg(
        long,
        conflicts_with = "salt_hex",
        required_unless_present = "salt_hex"
    )]
    salt: Option<String>,
    /// Salt as hex, for non-UTF-8 salts.
    #[arg(long)]
    salt_hex: Option<String>,
    /// Value as text (for known salts, the format's canonical JSON).
    #[arg(
        long,
        conflicts_with = "value_hex",
        required_unless_present = "value_hex"
    )]
    value: Option<String>,
    /// Value as hex, for binary values.
    #[arg(long)]
    value_hex: Option<String>,
    /// Seq; default: now in Unix milliseconds.
    #[arg(long)]
    seq: Option<u64>,
    /// Write for this subject key as a trusted writer instead of for the signer's own key.
    #[arg(long = "for", value_name = "PK", value_parser = crate::config::public_key)]
    for_pk: Option<PubKey>,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Read the item from this file instead of stdin.
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// A writer to trust for delegated items (repeatable).
    #[arg(long = "trusted-writer", value_name = "PK", value_parser = crate::config::public_key)]
    trusted_writers: Vec<PubKey>,
    /// Largest value accepted, bytes.
    #[arg(long, default_value_t = dht::config::DEFAULT_MAX_VALUE_LEN)]
    max_value_len: usize,
}

/// Runs `skymesh item …`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ItemCommand::Sign(a) => {
            let item = sign(a)?;
            println!("{}", dht::json::to_json(&item));
            Ok(())
        }
        ItemCommand::Verify(a) => {
            let text = match &a.file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading stdin")?;
                    s
                }
            };
            let verdict = verify(&text, &a);
            println!("{verdict}");
            if verdict["valid"] != serde_json::Value::Bool(true) {
                bail!("invalid item");
            }
            Ok(())
        }
    }
}

fn bytes(text: Option<String>, hex_: Option<String>, what: &str) -> anyhow::Result<Vec<u8>> {
    match (text, hex_) {
        (Some(t), _) => Ok(t.into_bytes()),
        (None, Some(h)) => hex::decode(h.trim()).with_context(|| format!("{what} is not hex")),
        (None, None) => bail!("{what} is required"),
    }
}

fn sign(a: SignArgs) -> anyhow::Result<Item> {
    let sk = SecKey::from_hex(a.sk.trim()).context("--sk is not a secret key")?;
    let salt = Salt::new(bytes(a.salt, a.salt_hex, "salt")?)?;
    let value = bytes(a.value, a.value_hex, "value")?;
    let seq = a
        .seq
        .unwrap_or_else(|| Timestamp::from_system_time(SystemTime::now()).as_unix_millis());
    let item = match a.for_pk {
        Some(subject) => Item::sign_for(&sk, subject, salt, seq, value)?,
        None => Item::sign(&sk, salt, seq, value)?,
    };
    let mut cfg = Config::default();
    cfg.max_value_len = dht::item::MAX_VALUE_LEN_LIMIT;
    cfg.trusted_writers.insert(sk.pubkey());
    rules::validate(&cfg, &item).context("the signed item would be refused")?;
    Ok(item)
}

fn verify(text: &str, a: &VerifyArgs) -> serde_json::Value {
    let item = match dht::json::from_json(text) {
        Ok(i) => i,
        Err(e) => return serde_json::json!({ "valid": false, "error": error_chain(&e) }),
    };
    let mut cfg = Config::default();
    cfg.max_value_len = a.max_value_len;
    cfg.trusted_writers = a.trusted_writers.iter().copied().collect();
    let writer_trust = match item.writer {
        None => "owner",
        Some(_) if a.trusted_writers.is_empty() => {
            cfg.trusted_writers.extend(item.writer);
            "not-checked"
        }
        Some(_) => "trusted",
    };
    match rules::validate(&cfg, &item) {
        Ok(value) => serde_json::json!({
            "valid": true,
            "target": item.target().to_hex(),
            "signer": item.signer().to_hex(),
            "salt_kind": value.kind().map(|k| k.name()),
            "seq": item.seq,
            "writer_trust": writer_trust,
        }),
        Err(e) => serde_json::json!({
            "valid": false,
            "target": item.target().to_hex(),
            "error": error_chain(&e),
        }),
    }
}

/// An error with its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sign_args(value: &str, for_pk: Option<PubKey>) -> SignArgs {
        SignArgs {
            sk: SecKey::from_seed(b"cli").to_hex(),
            salt: Some("svc".into()),
            salt_hex: None,
            value: Some(value.into()),
            value_hex: None,
            seq: Some(42),
            for_pk,
        }
    }

    fn verify_args(trusted: Vec<PubKey>) -> VerifyArgs {
        VerifyArgs {
            file: None,
            trusted_writers: trusted,
            max_value_len: dht::config::DEFAULT_MAX_VALUE_LEN,
        }
    }

    const SVC: &str = r#"{"v":1,"services":[]}"#;

    #[test]
    fn sign_then_verify() {
        let item = sign(sign_args(SVC, None)).unwrap();
        let text = dht::json::to_json(&item).to_string();
        let v = verify(&text, &verify_args(vec![]));
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["salt_kind"], "svc");
        // Tampered seq: invalid.
        let tampered = text.replace("\"seq\":42", "\"seq\":43");
        let v = verify(&tampered, &verify_args(vec![]));
        assert_eq!(v["valid"], false);
        // Not a valid svc value: refused at signing.
        assert!(sign(sign_args("hello", None)).is_err());
    }

    #[test]
    fn delegated_items() {
        let subject = SecKey::from_seed(b"subject").pubkey();
        let item = sign(sign_args(SVC, Some(subject))).unwrap();
        let text = dht::json::to_json(&item).to_string();
        let v = verify(&text, &verify_args(vec![]));
        assert_eq!(v["writer_trust"], "not-checked");
        let v = verify(&text, &verify_args(vec![subject]));
        assert_eq!(v["valid"], false);
        let writer = SecKey::from_seed(b"cli").pubkey();
        let v = verify(&text, &verify_args(vec![writer]));
        assert_eq!(v["valid"], true);
        assert_eq!(v["writer_trust"], "trusted");
    }
}
