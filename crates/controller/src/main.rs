//! `edgetrain-controller`: flags mirror charts/edgetrain's Deployment.

use std::{net::SocketAddr, time::Duration};

use clap::{Parser, ValueEnum};
use edgetrain_api::DeletionPolicy;
use edgetrain_controller::{
    Config, LeaderConfig, metrics::Metrics, run, runtime::factory::WorkloadIdentity,
};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Policy {
    Retain,
    Delete,
}

#[derive(Parser, Debug)]
#[command(version, about = "edgetrain operator: EdgeComputeTarget controller")]
struct Args {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Deletion policy for objects that leave spec.deletionPolicy unset.
    #[arg(long, value_enum, ignore_case = true, default_value = "retain")]
    default_deletion_policy: Policy,
    /// Comma-separated namespaces to watch; empty watches all.
    #[arg(long, value_delimiter = ',', default_value = "")]
    watch_namespaces: Vec<String>,
    /// Seconds between re-reads of a settled target.
    #[arg(long, default_value_t = 300)]
    resync_seconds: u64,
    /// Disable leader election (single replica, or local runs without POD_NAMESPACE).
    #[arg(long)]
    no_leader_election: bool,
    /// Name of the leader Lease in POD_NAMESPACE.
    #[arg(long, default_value = "edgetrain-controller")]
    leader_lease: String,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Comma-separated client ids an Azure ML credentials Secret may name for workload
    /// identity (a Secret with tenantId and clientId, no clientSecret). Needs the projected
    /// token at AZURE_FEDERATED_TOKEN_FILE (set by Azure Workload Identity's webhook).
    #[arg(long, value_delimiter = ',', default_value = "")]
    workload_identity_client_ids: Vec<String>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("EDGETRAIN_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    let args = Args::parse();
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes client configuration");
            return std::process::ExitCode::FAILURE;
        }
    };
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "edgetrain-controller".into());
    let leader = if args.no_leader_election {
        None
    } else {
        match std::env::var("POD_NAMESPACE") {
            Ok(namespace) => Some(LeaderConfig {
                namespace,
                lease_name: args.leader_lease.clone(),
                identity: pod.clone(),
                lease_duration: Duration::from_secs(args.lease_seconds),
            }),
            Err(_) => {
                tracing::error!("POD_NAMESPACE is not set; set it or pass --no-leader-election");
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    let allowed: Vec<String> = args
        .workload_identity_client_ids
        .iter()
        .filter(|c| !c.is_empty())
        .cloned()
        .collect();
    let workload_identity = if allowed.is_empty() {
        None
    } else {
        match std::env::var("AZURE_FEDERATED_TOKEN_FILE") {
            Ok(file) => Some(WorkloadIdentity {
                token_file: file.into(),
                allowed_client_ids: allowed,
            }),
            Err(_) => {
                tracing::error!(
                    "--workload-identity-client-ids needs AZURE_FEDERATED_TOKEN_FILE (the projected service-account token)"
                );
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    let config = Config {
        client,
        metrics_addr: args.metrics_addr,
        default_deletion_policy: match args.default_deletion_policy {
            Policy::Retain => DeletionPolicy::Retain,
            Policy::Delete => DeletionPolicy::Delete,
        },
        watch_namespaces: args
            .watch_namespaces
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
        resync: Duration::from_secs(args.resync_seconds),
        leader,
        instance: pod,
        metrics: Metrics::default(),
        factories: None,
        workload_identity,
        clock: None,
    };
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "controller stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
