//! One module per subcommand; `run` dispatches.
pub(crate) mod completions;
pub(crate) mod devnet;
pub(crate) mod dht;
pub(crate) mod dmsg;
pub(crate) mod item;
pub(crate) mod keygen;
pub(crate) mod mirror;
pub(crate) mod msg;
pub(crate) mod node;
pub(crate) mod tp;

use crate::cli::Command;

/// Runs one subcommand to completion.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen(args) => keygen::run(args),
        Command::Item(args) => item::run(args),
        Command::Node(args) => node::run(crate::config::NodeConfig::from_args(*args)?),
        Command::Dht(args) => dht::run(args),
        Command::Dmsg(args) => dmsg::run(args),
        Command::Mirror(args) => mirror::run(args),
        Command::Msg(args) => msg::run(args),
        Command::Tp(args) => tp::run(args),
        Command::Devnet(args) => devnet::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => completions::man(args),
    }
}

/// Runs an admin API client to completion on a current-thread runtime (`dht`, `tp`, `msg`).
pub(crate) fn block_on(
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?
        .block_on(fut)
}
