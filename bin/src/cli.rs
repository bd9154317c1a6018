//! The command line: global flags and the subcommand tree.
use clap::{Args, Parser, Subcommand};

use crate::commands;

/// skymesh: a Kademlia DHT node and DMSG relay for the Skywire overlay network.
#[derive(Debug, Parser)]
#[command(name = "skymesh", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// More log output (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only log errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Log line format on stderr: `text` (colours only on a terminal) or `json` (one object
    /// per line, for log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub(crate) log_format: crate::telemetry::LogFormat,
}

/// Every subcommand. Each variant's arguments live next to its `run` in `commands/`.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Generate a secp256k1 key pair (random, or deterministic from --seed like the Go tools).
    Keygen(commands::keygen::Args),
    /// Sign or verify a DHT item (JSON in/out).
    Item(commands::item::Args),
    /// Run a DHT node (daemon) with its HTTP admin API, /health and /metrics.
    Node(Box<commands::node::Args>),
    /// Talk to a running node: put, get, info, sync.
    Dht(commands::dht::Args),
    /// DMSG network: server, discovery, http, get.
    Dmsg(commands::dmsg::Args),
    /// Mirror role: write signed items straight into Redis for full nodes to serve.
    Mirror(commands::mirror::Args),
    /// Store-and-forward messages of a visor: send, inbox, sent (docs/mailbox.md).
    Msg(commands::msg::Args),
    /// Transports of a visor: add, ls, rm; all transports known (`tp all`).
    Tp(commands::tp::Args),
    /// Start a local network (full nodes that are DMSG servers + visors) and show its status;
    /// `--check` verifies it and exits.
    Devnet(commands::devnet::Args),
    /// Print a shell completion script: bash, zsh, fish, powershell or elvish.
    Completions(commands::completions::Args),
    /// Print the man page (or write one per subcommand with --out DIR).
    Man(commands::completions::ManArgs),
}
