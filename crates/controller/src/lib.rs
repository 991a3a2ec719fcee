//! The edgetrain operator daemon. `run(Config)` serves metrics and probes, takes the leader
//! Lease when configured, and runs the EdgeComputeTarget controller until it ends.

pub mod context;
pub mod ect;
mod error;
pub mod leader;
pub mod metrics;
pub mod model_release;
pub mod runtime;
mod server;
pub mod ssh;
pub mod training_run;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use edgetrain_api::{DeletionPolicy, EdgeComputeTarget, ModelRelease, TrainingRun};
pub use edgetrain_azure::identity::EndpointPolicy;
pub use error::{Error, Handling, Result};
use futures::FutureExt;
use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource,
    api::ListParams,
    runtime::events::{Recorder, Reporter},
};

use crate::{
    context::{Clock, Context, ControllerSettings, Settings, SystemClock},
    metrics::Metrics,
    runtime::{
        controller,
        factory::{ClientSettings, Factories, WorkloadIdentity, http_config_from_env},
        stores::Wiring,
    },
};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Namespace of the Lease (the pod's namespace).
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
}

/// Reconciles of one kind running at once unless configured otherwise: enough to keep a
/// Stack Hub stamp's request budget busy, few enough that thousands of objects queue.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 32;

/// Everything `run` needs.
pub struct Config {
    pub client: Client,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    pub default_deletion_policy: DeletionPolicy,
    /// Namespaces to watch; empty means all.
    pub watch_namespaces: Vec<String>,
    /// How often a settled object is re-read from Azure (drift, idle timeout).
    pub resync: Duration,
    /// Reconciles of one kind running at once (0: unbounded).
    pub max_concurrent_reconciles: u16,
    /// Azure ML job listing pages per minute per workspace
    /// ([`training_run::listing::DEFAULT_PAGES_PER_MINUTE`] unless configured).
    pub azure_ml_list_pages_per_minute: u32,
    pub leader: Option<LeaderConfig>,
    /// Reporting identity for Events (the pod name).
    pub instance: String,
    pub metrics: Metrics,
    /// Azure client factories; `None` builds the real ones.
    pub factories: Option<Factories>,
    /// Workload identity for Azure ML (used by the real factories); `None`: service principals
    /// only.
    pub workload_identity: Option<WorkloadIdentity>,
    /// Which ARM endpoints and login authorities may receive credentials (used by the real
    /// factories).
    pub endpoint_policy: EndpointPolicy,
    /// Client-side ARM budget per Stack Hub stamp, subscription and principal (used by the
    /// real factories).
    pub stack_hub_rate_limits: edgetrain_azure::arm::RateLimits,
    /// Clock for idle-timeout and key-age decisions; `None` is the system clock.
    pub clock: Option<Arc<dyn Clock>>,
}

/// Fails with a hint when a CRD is missing. Lists in the first watched namespace when
/// namespaces are given (the chart then grants no cluster-wide list).
async fn check_crds(client: &Client, namespaces: &[String]) -> Result<()> {
    async fn check<K>(client: &Client, ns: Option<&str>) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::Startup(format!(
                "the {} CRD is not installed: kubectl apply -f crds/",
                K::kind(&())
            ))),
            Err(e) => Err(Error::kube(format!("checking the {} CRD", K::kind(&())), e)),
        }
    }
    let ns = namespaces.first().map(String::as_str);
    check::<EdgeComputeTarget>(client, ns).await?;
    check::<TrainingRun>(client, ns).await?;
    check::<ModelRelease>(client, ns).await
}

/// Runs until the controllers stop (shutdown signal) or leadership is lost (an error).
pub async fn run(config: Config) -> Result<()> {
    let ready = server::Readiness::default();
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|e| Error::Startup(format!("binding {}: {e}", config.metrics_addr)))?;
    tracing::info!(addr = %listener.local_addr().map_err(|e| Error::Startup(e.to_string()))?, "serving /metrics, /healthz, /readyz");
    let http = tokio::spawn(server::serve(
        listener,
        config.metrics.clone(),
        ready.clone(),
    ));
    let result = run_controllers(config, ready).await;
    http.abort();
    result
}

async fn run_controllers(mut config: Config, ready: server::Readiness) -> Result<()> {
    // With leader election, every Kubernetes write of the controllers goes through the
    // elector's fence; the elector itself keeps the unguarded client.
    let elector = config.leader.as_ref().map(|l| {
        leader::Elector::new(
            config.client.clone(),
            &l.namespace,
            &l.lease_name,
            &l.identity,
            leader::Timing::for_lease(l.lease_duration),
        )
    });
    if let Some(e) = &elector {
        config.client = e.fence().guard(config.client.clone());
    }
    check_crds(&config.client, &config.watch_namespaces).await?;
    ready.set(true);
    let factories = match config.factories.clone() {
        Some(f) => f,
        None => Factories::real(
            &config.metrics,
            http_config_from_env(),
            ClientSettings {
                workload: config.workload_identity.clone(),
                policy: config.endpoint_policy.clone(),
                stack_hub_limits: config.stack_hub_rate_limits,
            },
        )?,
    };
    match (&config.leader, elector) {
        (Some(l), Some(elector)) => {
            tracing::info!(identity = %l.identity, lease = %l.lease_name, "waiting for leadership");
            elector.acquire().await?;
            tracing::info!(identity = %l.identity, "acquired leadership");
            let result = tokio::select! {
                r = controllers(&config, factories) => r,
                r = elector.keep() => r,
            };
            if result.is_ok() {
                // A graceful stop (SIGTERM): hand over at once instead of after expiry.
                elector.release().await?;
                tracing::info!(identity = %l.identity, "released leadership");
            }
            result
        }
        _ => controllers(&config, factories).await,
    }
}

/// One set of shared watches, one context and the controllers per watched scope.
async fn controllers(config: &Config, factories: Factories) -> Result<()> {
    let scopes: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let settings = Settings {
        azure_ml_list_pages_per_minute: config.azure_ml_list_pages_per_minute,
        ..Settings::uniform(ControllerSettings {
            resync: config.resync,
            default_deletion_policy: config.default_deletion_policy,
            max_concurrent_reconciles: config.max_concurrent_reconciles,
        })
    };
    let recorder = Recorder::new(
        config.client.clone(),
        Reporter {
            controller: "edgetrain-controller".into(),
            instance: Some(config.instance.clone()),
        },
    );
    let clock = config
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(SystemClock));
    let runs = scopes.into_iter().map(|scope| {
        let wiring = Wiring::default();
        let ctx = Arc::new(Context::new(
            config.client.clone(),
            recorder.clone(),
            config.metrics.clone(),
            clock.clone(),
            factories.clone(),
            settings.clone(),
            wiring.stores(),
        ));
        // Controllers subscribe to the shared watches before these start.
        // One line per kind; each subscribes to the shared watches it needs.
        let kinds = vec![
            controller::run::<EdgeComputeTarget>(&wiring, ctx.clone()).boxed(),
            controller::run::<TrainingRun>(&wiring, ctx.clone()).boxed(),
            controller::run::<ModelRelease>(&wiring, ctx.clone()).boxed(),
        ];
        let watches = wiring.start(&config.client, scope.as_deref());
        async move {
            let controllers = async {
                // Decisions read neighbours from the caches: never act on a partial list.
                if ctx.stores.wait_until_ready().await.is_ok() {
                    futures::future::join_all(kinds).await;
                }
            };
            tokio::select! {
                () = controllers => {},
                () = watches => {},
            }
        }
    });
    futures::future::join_all(runs).await;
    Ok(())
}
