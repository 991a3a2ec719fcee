//! `kubectl-edgetrain`: found by kubectl on PATH as `kubectl edgetrain`.

use clap::Parser;
use edgetrain_controller::{
    metrics::Metrics,
    runtime::factory::{AzureClients, http_config_from_env},
};
use kubectl_edgetrain::{Cli, Error, connect, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The operator's Azure client factory: same sign-in, endpoint checks and `SSL_CERT_FILE`
    // trust as the operator, with no workload identity (that is the operator's alone).
    let result = match AzureClients::new(
        &Metrics::default(),
        http_config_from_env(),
        Default::default(),
    ) {
        Ok(azure) => match connect(&cli).await {
            Ok((client, ns)) => run(&cli, &client, &ns, &azure, &mut std::io::stdout()).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(Error::Operator(e)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e @ Error::LineageMismatch { .. }) => {
            eprintln!("error: LINEAGE MISMATCH: {e}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
