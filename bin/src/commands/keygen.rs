//! `skymesh keygen [--seed TEXT] [--json]`: print a secp256k1 key pair.
//!
//! With `--seed`, the pair is derived exactly as skycoin's `GenerateDeterministicKeyPair`
//! derives it, so the same seed gives the same key in the Go tools and in skymesh.
use keys::SecKey;

/// Arguments of `skymesh keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Derive the key deterministically from this text (skycoin-compatible). Without it the key
    /// is random.
    #[arg(long)]
    seed: Option<String>,
    /// Print `{"public_key": …, "secret_key": …}` instead of two text lines.
    #[arg(long)]
    json: bool,
}

/// Prints a key pair to stdout.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let sk = match &args.seed {
        Some(seed) => SecKey::from_seed(seed.as_bytes()),
        None => SecKey::generate(),
    };
    let pk = sk.pubkey();
    if args.json {
        let v = serde_json::json!({ "public_key": pk.to_hex(), "secret_key": sk.to_hex() });
        println!("{v}");
    } else {
        println!("public_key: {pk}");
        println!("secret_key: {}", sk.to_hex());
    }
    Ok(())
}
