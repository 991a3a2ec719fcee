//! `edgetrain-bench`: the figures of issue 15, each ours beside a peer (or the physical bound)
//! on the same input in the same run, merged into `target/bench/results.json` (see
//! BENCHMARKS.md). Not a test: nothing here fails on a time.

mod ect;
mod error;
mod figure;
mod measure;
mod world;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::error::{Error, Result};
use crate::figure::Figure;

#[derive(Debug, Parser)]
#[command(name = "edgetrain-bench")]
struct Cli {
    /// The results file; figures of the same name are replaced, others kept.
    #[arg(long, global = true, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Small inputs (the whole run in under 5 minutes).
    #[arg(long, global = true)]
    quick: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every figure group below, then the table of everything in the results file.
    All,
    /// `ect-requests`.
    EctRequests,
    /// `steady-writes`, `steady-reads`.
    Steady,
    /// Print the results file as a Markdown table.
    Table,
}

fn steady_cycles(quick: bool) -> u32 {
    if quick { 10 } else { 60 }
}

async fn figures(cmd: &Cmd, quick: bool) -> Result<Vec<Figure>> {
    Ok(match cmd {
        Cmd::All => {
            let mut all = ect::ect_requests().await?;
            all.extend(ect::steady(steady_cycles(quick)).await?);
            all
        }
        Cmd::EctRequests => ect::ect_requests().await?,
        Cmd::Steady => ect::steady(steady_cycles(quick)).await?,
        Cmd::Table => Vec::new(),
    })
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let run = async {
        let new = figures(&cli.command, cli.quick).await?;
        let all = figure::save(&cli.out, new)?;
        println!("{}", figure::table(&all));
        Ok::<_, Error>(())
    };
    if let Err(e) = run.await {
        eprintln!("edgetrain-bench: {e}");
        std::process::exit(1);
    }
}
