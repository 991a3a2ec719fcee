//! `edgetrain-sandbox`: the world the operator is developed and tested against, on one machine.
//! Each subcommand serves in the foreground until SIGTERM or Ctrl-C.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "edgetrain-sandbox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An in-process Kubernetes API server that kubectl and kube-rs controllers accept.
    KubeApi(edgetrain_sandbox_kube::KubeApiArgs),
    /// The Azure simulator: token endpoints, Stack Hub ARM, Azure ML, with Azurite behind it.
    Azure(edgetrain_sandbox_azure::AzureArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::KubeApi(args) => edgetrain_sandbox_kube::run(args).await?,
        Command::Azure(args) => edgetrain_sandbox_azure::run(args).await?,
    }
    Ok(())
}
