//! Run the simulator in the foreground, like `edgetrain-sandbox azure` will.

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    azure: edgetrain_sandbox_azure::AzureArgs,
}

#[tokio::main]
async fn main() -> Result<(), edgetrain_sandbox_azure::Error> {
    edgetrain_sandbox_azure::run(Cli::parse().azure).await
}
