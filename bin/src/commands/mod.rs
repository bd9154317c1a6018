//! One module per subcommand; `run` dispatches.
pub(crate) mod keygen;

use crate::cli::Command;

/// Runs one subcommand to completion.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen(args) => keygen::run(args),
    }
}
