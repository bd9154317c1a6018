//! Tracing setup: the only place a subscriber is installed. Logs go to stderr so that stdout
//! stays machine-readable (JSON output of commands).
use tracing_subscriber::EnvFilter;

use crate::cli::GlobalArgs;

/// Installs the global tracing subscriber. `RUST_LOG` wins over `-v`/`-q`.
pub(crate) fn init(args: &GlobalArgs) {
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
