//! `skymesh`: the Skywire peer node and its command-line tools.
//!
//! This file only wires things up: parse the command line, install tracing, run the
//! subcommand, print `Error: …` and exit 1 on failure. Each subcommand lives in
//! `commands/<name>.rs` with its `Args` next to its `run`; `config/` holds the node
//! configuration both `skymesh node` and `skymesh dmsg server` convert into, and `daemon.rs`
//! the order a running node stops in.

mod admin;
mod api;
mod cli;
mod commands;
mod config;
mod daemon;
mod http_serve;
mod observe;
mod status;
mod telemetry;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init(&cli.global);
    match commands::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
