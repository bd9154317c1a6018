//! `dhtsim`: runs issue 19's scenario (or a smaller one) for skymesh and for the Go design and
//! prints the two reports side by side.
//!
//! `cargo run --release -p skymesh-dhtsim --bin dhtsim -- --seed 1`
//! Options: `--seed N`, `--visors N`, `--full-nodes N`, `--minutes N`, `--loss P`, `--small`,
//! `--only sky|go`.
use std::process::ExitCode;
use std::time::Instant;

use dhtsim::{Scenario, godesign, run_both, sky, table};

fn main() -> ExitCode {
    let mut sc = Scenario::internet(1);
    sc.progress = true;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        let ok = match a.as_str() {
            "--seed" => val().parse().map(|v| sc.seed = v).is_ok(),
            "--visors" => val().parse().map(|v| sc.visors = v).is_ok(),
            "--full-nodes" => val().parse().map(|v| sc.full_nodes = v).is_ok(),
            "--minutes" => val().parse().map(|v| sc.minutes = v).is_ok(),
            "--loss" => val().parse().map(|v| sc.loss = v).is_ok(),
            "--small" => {
                sc = Scenario {
                    progress: true,
                    ..Scenario::small(sc.seed)
                };
                true
            }
            "--only" => {
                only = Some(val());
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!(
                "usage: dhtsim [--seed N] [--visors N] [--full-nodes N] [--minutes N] [--loss P] [--small] [--only sky|go]"
            );
            return ExitCode::from(2);
        }
    }
    println!("{sc:?}");
    let t = Instant::now();
    let reports = match only.as_deref() {
        Some("sky") => vec![sky::run(&sc)],
        Some("go") => vec![godesign::run(&sc)],
        _ => run_both(&sc).to_vec(),
    };
    println!("{:.1} s wall", t.elapsed().as_secs_f64());
    println!("{}", table(&reports));
    ExitCode::SUCCESS
}
