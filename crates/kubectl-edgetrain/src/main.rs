//! `kubectl-edgetrain`: found by kubectl on PATH as `kubectl edgetrain`.

use clap::Parser;
use kubectl_edgetrain::{Cli, connect, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match connect(&cli).await {
        Ok((client, ns)) => run(&cli, &client, &ns).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e @ kubectl_edgetrain::Error::LineageMismatch { .. }) => {
            eprintln!("error: LINEAGE MISMATCH: {e}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
