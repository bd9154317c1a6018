//! `skymesh completions SHELL` and `skymesh man [--out DIR]`: shell completion scripts
//! (clap_complete) and man pages (clap_mangen), generated from the same clap definitions the
//! binary parses with, so they never drift from the flags.
//!
//! - `skymesh completions bash > /etc/bash_completion.d/skymesh` (or `zsh`, `fish`,
//!   `powershell`; `elvish` too).
//! - `skymesh man` prints `skymesh.1`; `skymesh man --out DIR` writes `skymesh.1` and one page
//!   per subcommand (`skymesh-node.1`, `skymesh-dmsg-get.1`, …) into DIR.
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

/// Arguments of `skymesh completions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell to generate the completion script for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Arguments of `skymesh man`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Write skymesh.1 and one page per subcommand into this directory (default: print
    /// skymesh.1 to stdout).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints the completion script.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = crate::cli::Cli::command();
    // Into a buffer first: clap_complete panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "skymesh", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")
}

/// Prints or writes the man pages.
pub(crate) fn man(args: ManArgs) -> anyhow::Result<()> {
    let cmd = crate::cli::Cli::command();
    match args.out {
        None => {
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let n = write_pages(&dir, cmd.clone(), "skymesh")?;
            eprintln!("wrote {n} man pages to {}", dir.display());
        }
    }
    Ok(())
}

/// Writes the page of `cmd` (named `name`) and of each visible subcommand; returns the count.
fn write_pages(dir: &Path, mut cmd: clap::Command, name: &str) -> anyhow::Result<usize> {
    cmd.build();
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name)
        .render(&mut out)
        .context("rendering a man page")?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        n += write_pages(dir, sub.clone(), &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(n)
}
