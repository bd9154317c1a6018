//! Tracing setup: the only place a subscriber is installed. Logs go to stderr so that stdout
//! stays machine-readable (JSON output of commands).
//!
//! `--log-format text` (the default) writes one human line per event, with ANSI colours only
//! when stderr is a terminal (a log file or journald gets plain text); `--log-format json`
//! writes one JSON object per line (`timestamp`, `level`, `target`, `fields`, span list) for
//! log shippers.
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::cli::GlobalArgs;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The format chosen at start-up (text until [`init`] ran).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// A start-up notice for the person at the terminal ("listening on …"): a plain stderr line
/// with `--log-format text`, an `info` event with `json` (so stderr stays one JSON object per
/// line).
pub(crate) fn notice(args: std::fmt::Arguments<'_>) {
    match FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => eprintln!("{args}"),
        LogFormat::Json => tracing::info!("{args}"),
    }
}

/// Installs the global tracing subscriber. `RUST_LOG` wins over `-v`/`-q`.
pub(crate) fn init(args: &GlobalArgs) {
    let _ = FORMAT.set(args.log_format);
    let default = if args.quiet {
        "error"
    } else {
        match args.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_ansi(false)
            .try_init(),
    };
}
