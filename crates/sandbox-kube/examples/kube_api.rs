//! Runs the sandbox API server in the foreground, as `edgetrain-sandbox kube-api` will:
//! `cargo run -p edgetrain-sandbox-kube --example kube_api -- --kubeconfig /tmp/kc`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: edgetrain_sandbox_kube::KubeApiArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    edgetrain_sandbox_kube::run(Cli::parse().args).await?;
    Ok(())
}
