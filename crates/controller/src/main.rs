//! `edgetrain-controller`: flags mirror charts/edgetrain's Deployment.

use std::{net::SocketAddr, time::Duration};

use clap::{Parser, ValueEnum};
use edgetrain_api::DeletionPolicy;
use edgetrain_azure::arm::RateLimits;
use edgetrain_controller::{
    Config, EndpointPolicy, LeaderConfig, metrics::Metrics, run, runtime::factory::WorkloadIdentity,
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
    /// Lease duration in seconds (renew deadline 2/3 of it, retries every 2/15).
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Client-side ARM budget per Stack Hub stamp, subscription and principal, as
    /// `reads=CAPACITY/PER_SECOND,writes=…,deletes=…` (kinds left out keep the default, sized
    /// for a stamp's hourly limits: reads=600/3,writes=60/0.3,deletes=750/3.75).
    #[arg(long, default_value = "")]
    stack_hub_rate_limits: RateLimits,
    /// Comma-separated client ids an Azure ML credentials Secret may name for workload
    /// identity (a Secret with tenantId and clientId, no clientSecret). Needs the projected
    /// token at AZURE_FEDERATED_TOKEN_FILE (set by Azure Workload Identity's webhook).
    #[arg(long, value_delimiter = ',', default_value = "")]
    workload_identity_client_ids: Vec<String>,
    /// Comma-separated ARM endpoint origins (https://host[:port]) the operator uses credentials
    /// with; empty allows any https endpoint (plain http only on loopback).
    #[arg(long, value_delimiter = ',', default_value = "")]
    allowed_arm_endpoints: Vec<String>,
    /// Comma-separated login endpoint origins that may receive client secrets; empty allows any
    /// https endpoint (plain http only on loopback).
    #[arg(long, value_delimiter = ',', default_value = "")]
    allowed_authorities: Vec<String>,
}

fn non_empty(v: &[String]) -> Vec<&str> {
    v.iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect()
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
    let allowed: Vec<String> = non_empty(&args.workload_identity_client_ids)
        .into_iter()
        .map(str::to_owned)
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
    let endpoint_policy = match EndpointPolicy::new(
        &non_empty(&args.allowed_arm_endpoints),
        &non_empty(&args.allowed_authorities),
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "invalid --allowed-arm-endpoints / --allowed-authorities");
            return std::process::ExitCode::FAILURE;
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
        endpoint_policy,
        stack_hub_rate_limits: args.stack_hub_rate_limits,
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
