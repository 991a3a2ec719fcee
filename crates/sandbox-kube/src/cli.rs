//! `edgetrain-sandbox kube-api`: serve in the foreground until SIGTERM/SIGINT.

use std::{net::SocketAddr, path::PathBuf};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    error::{Error, Result},
    server::{Options, SandboxKube},
};

/// Arguments of the `kube-api` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeApiArgs {
    /// Address to listen on (plain HTTP; use a loopback address).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Write a kubeconfig for this server here.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch history length (events); older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 1000)]
    pub history: usize,
    /// Dump every stored object as JSON to this file at exit.
    #[arg(long)]
    pub dump_state: Option<PathBuf>,
    /// Register every CRD found in the *.yaml files of this directory at start.
    #[arg(long)]
    pub crds: Option<PathBuf>,
}

/// Runs the API server until SIGTERM or SIGINT, then shuts down cleanly.
pub async fn run(args: KubeApiArgs) -> Result<()> {
    // Signal handlers first, so a signal sent as soon as the kubeconfig exists is not lost.
    let signal_err = |source| Error::Io {
        path: PathBuf::from("<signal handler>"),
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(signal_err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_err)?;
    let server = SandboxKube::start(Options {
        listen: args.listen,
        history: args.history,
        dump_state: args.dump_state,
        ..Options::default()
    })
    .await?;
    if let Some(dir) = &args.crds {
        let names = server.register_crds(dir)?;
        tracing::info!(count = names.len(), "registered CRDs");
    }
    if let Some(path) = &args.kubeconfig {
        server.write_kubeconfig(path)?;
    }
    tracing::info!(url = %server.url(), "sandbox Kubernetes API listening");
    println!("{}", server.url());
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    server.shutdown().await
}
