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

/// `RUST_LOG`, `EDGETRAIN_LOG_FORMAT` aside, every environment variable the operator reads
/// (the test below checks that each `env::var` in the operator's crates is listed here).
const ENVIRONMENT: &str = "\
Environment:
  RUST_LOG                    Log filter (tracing EnvFilter syntax), e.g. `info,edgetrain_controller=debug`.
                              Default: info.
  EDGETRAIN_LOG_FORMAT        Same as --log-format (the flag wins).
  POD_NAME                    This replica's identity: the leader Lease holder and the Events' reporting
                              instance. Default: edgetrain-controller. The chart sets it from the pod.
  POD_NAMESPACE               Namespace of the leader Lease. Required unless --no-leader-election.
  AZURE_FEDERATED_TOKEN_FILE  The projected service-account token for Azure ML workload identity (set by
                              the Azure Workload Identity webhook). Required with
                              --workload-identity-client-ids.
  SSL_CERT_FILE               A PEM bundle of extra CA certificates trusted for Azure, Stack Hub (its
                              private CA), storage and registry endpoints, on top of the built-in roots.
                              The chart sets it when extraCAConfigMap is given.
  KUBECONFIG                  Kubeconfig to use (else ~/.kube/config); without either, the pod's service
                              account (KUBERNETES_SERVICE_HOST/PORT and its mounted token).
  HTTPS_PROXY, HTTP_PROXY,    Proxies for Azure, storage and registry requests; NO_PROXY lists hosts that
  ALL_PROXY, NO_PROXY         go direct. The Kubernetes client also takes HTTPS_PROXY (and NO_PROXY):
                              exclude the API server in NO_PROXY when only Azure traffic should be proxied.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines.
    Text,
}

#[derive(Parser, Debug)]
#[command(
    version,
    about = "edgetrain operator: the EdgeComputeTarget, TrainingRun and ModelRelease controllers",
    after_help = ENVIRONMENT
)]
struct Args {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Deletion policy for EdgeComputeTargets and ModelReleases that leave spec.deletionPolicy
    /// unset (what each policy does is documented on that field of each kind).
    #[arg(long, value_enum, ignore_case = true, default_value = "retain")]
    default_deletion_policy: Policy,
    /// Comma-separated namespaces to watch; empty watches all.
    #[arg(long, value_delimiter = ',', default_value = "")]
    watch_namespaces: Vec<String>,
    /// Seconds between re-reads of a settled object (drift detection, idle timeout).
    #[arg(long, default_value_t = 300)]
    resync_seconds: u64,
    /// Reconciles of one kind running at once (0: unbounded); more objects than this queue.
    #[arg(long, default_value_t = edgetrain_controller::DEFAULT_MAX_CONCURRENT_RECONCILES)]
    max_concurrent_reconciles: u16,
    /// Azure ML reads per minute per workspace for following TrainingRuns' jobs, in job
    /// listing pages (at least 1): with many jobs the listing takes more pages, so it (and the
    /// runs' status) is refreshed less often; the rest of the subscription's ARM read budget
    /// stays free.
    #[arg(long, default_value_t = edgetrain_controller::training_run::listing::DEFAULT_PAGES_PER_MINUTE,
          value_parser = clap::value_parser!(u32).range(1..))]
    azure_ml_list_pages_per_minute: u32,
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
    /// Log format: `json` (one object per line, for log shippers) or `text`.
    #[arg(
        long,
        value_enum,
        ignore_case = true,
        env = "EDGETRAIN_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
}

fn non_empty(v: &[String]) -> Vec<&str> {
    v.iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect()
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
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
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        azure_ml_list_pages_per_minute: args.azure_ml_list_pages_per_minute,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn help() -> String {
        Args::command().render_long_help().to_string()
    }

    #[test]
    fn help_documents_every_flag() {
        let help = help();
        for arg in Args::command().get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let long = arg.get_long().expect("every option has a long name");
            assert!(
                help.contains(&format!("--{long}")),
                "--{long} missing:\n{help}"
            );
            let text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(text.len() > 10, "--{long} has no real help text: {text:?}");
        }
    }

    /// Every `env::var("…")` in the operator's crates is listed in `--help`.
    #[test]
    fn help_documents_every_environment_variable_the_operator_reads() {
        fn sources(dir: &std::path::Path, out: &mut String) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    sources(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut code = String::new();
        for krate in ["controller", "azure", "registry", "api"] {
            sources(&root.join(krate).join("src"), &mut code);
        }
        let needle = "env::var(\"";
        let read: std::collections::BTreeSet<&str> = code
            .match_indices(needle)
            .filter_map(|(at, _)| code[at + needle.len()..].split('"').next())
            .collect();
        assert!(
            read.contains("POD_NAMESPACE"),
            "the scan finds nothing: {read:?}"
        );
        let help = help();
        for var in read
            .iter()
            .chain(&["RUST_LOG", "KUBECONFIG", "HTTPS_PROXY", "NO_PROXY"])
        {
            assert!(
                help.contains(var),
                "{var} is read but not in --help:\n{help}"
            );
        }
    }

    #[test]
    fn log_format_flag_takes_json_or_text_only() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(
                std::iter::once("edgetrain-controller").chain(args.iter().copied()),
            )
        };
        assert_eq!(
            parse(&["--log-format", "json"]).unwrap().log_format,
            LogFormat::Json
        );
        assert_eq!(
            parse(&["--log-format", "JSON"]).unwrap().log_format,
            LogFormat::Json
        );
        assert_eq!(
            parse(&["--log-format", "text"]).unwrap().log_format,
            LogFormat::Text
        );
        assert!(parse(&["--log-format", "xml"]).is_err());
    }
}
