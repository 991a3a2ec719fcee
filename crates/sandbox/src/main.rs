//! `edgetrain-sandbox`: the world the operator is developed and tested against, on one machine.
//! `kube-api` and `azure` serve in the foreground until SIGTERM or Ctrl-C; `example-data` and
//! `upload` prepare the data a demo trains on.

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
    /// Write the example churn data set (deterministic CSV files) into a directory.
    ExampleData(edgetrain_sandbox_azure::ExampleDataArgs),
    /// Upload files into a storage account of a running simulator (key in AZURE_STORAGE_KEY).
    Upload(edgetrain_sandbox_azure::UploadArgs),
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
        Command::ExampleData(args) => {
            for file in edgetrain_sandbox_azure::write_example_data(&args)? {
                println!("{}", file.display());
            }
        }
        Command::Upload(args) => {
            let key = std::env::var(edgetrain_sandbox_azure::ACCOUNT_KEY_ENV)
                .map(edgetrain_sandbox_azure::Secret::new)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "set {} to the storage account key",
                        edgetrain_sandbox_azure::ACCOUNT_KEY_ENV
                    )
                })?;
            for (blob, bytes) in edgetrain_sandbox_azure::upload(&args, &key).await? {
                println!("uploaded {blob} ({bytes} bytes)");
            }
        }
    }
    Ok(())
}
