//! The edgetrain operator daemon. `run(Config)` serves metrics and probes, takes the leader
//! Lease when configured, and runs the EdgeComputeTarget controller until it ends.

pub mod context;
pub mod ect;
mod error;
pub mod leader;
pub mod metrics;
mod server;
pub mod ssh;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use edgetrain_api::{DeletionPolicy, EdgeComputeTarget, TrainingRun};
pub use edgetrain_azure::identity::EndpointPolicy;
pub use error::{Error, Handling, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    runtime::{
        Controller,
        events::{Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};

use crate::{
    context::{ArmFactory, AzureFactory, Clock, Context, SystemClock},
    metrics::Metrics,
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

/// Everything `run` needs.
pub struct Config {
    pub client: Client,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    pub default_deletion_policy: DeletionPolicy,
    /// Namespaces to watch; empty means all.
    pub watch_namespaces: Vec<String>,
    /// How often a settled target is re-read from Azure (drift, idle timeout).
    pub resync: Duration,
    pub leader: Option<LeaderConfig>,
    /// Reporting identity for Events (the pod name).
    pub instance: String,
    pub metrics: Metrics,
    /// Which ARM endpoints and login authorities may receive credentials (used by the real
    /// Azure client factory).
    pub endpoint_policy: EndpointPolicy,
    /// Azure client factory; `None` builds the real one.
    pub azure: Option<Arc<dyn AzureFactory>>,
    /// Clock for idle-timeout and key-age decisions; `None` is the system clock.
    pub clock: Option<Arc<dyn Clock>>,
}

/// Fails with a hint when the CRDs are missing. Lists in the first watched namespace when
/// namespaces are given (the chart then grants no cluster-wide list).
async fn check_crds(client: &Client, namespaces: &[String]) -> Result<()> {
    let api: Api<EdgeComputeTarget> = api(client, namespaces.first().map(String::as_str));
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::Startup(
            "the EdgeComputeTarget CRD is not installed: kubectl apply -f crds/".into(),
        )),
        Err(e) => Err(Error::kube("checking the CRDs", e)),
    }
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

async fn run_controllers(config: Config, ready: server::Readiness) -> Result<()> {
    check_crds(&config.client, &config.watch_namespaces).await?;
    ready.set(true);
    let azure: Arc<dyn AzureFactory> = match config.azure.clone() {
        Some(f) => f,
        None => Arc::new(ArmFactory::new(
            &config.metrics,
            config.endpoint_policy.clone(),
        )?),
    };
    let ctx = Arc::new(Context {
        clock: config
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock)),
        client: config.client.clone(),
        recorder: Recorder::new(
            config.client.clone(),
            Reporter {
                controller: "edgetrain-controller".into(),
                instance: Some(config.instance.clone()),
            },
        ),
        metrics: config.metrics.clone(),
        azure,
        default_deletion_policy: config.default_deletion_policy,
        resync: config.resync,
        failures: Default::default(),
    });
    match &config.leader {
        None => controllers(&config, ctx).await,
        Some(l) => {
            let elector = leader::Elector::new(
                config.client.clone(),
                &l.namespace,
                &l.lease_name,
                &l.identity,
                l.lease_duration,
            );
            tracing::info!(identity = %l.identity, lease = %l.lease_name, "waiting for leadership");
            elector.acquire(l.lease_duration / 4).await?;
            tracing::info!(identity = %l.identity, "acquired leadership");
            tokio::select! {
                r = controllers(&config, ctx) => r,
                r = elector.keep() => r,
            }
        }
    }
}

async fn controllers(config: &Config, ctx: Arc<Context>) -> Result<()> {
    let namespaces: Vec<Option<String>> = if config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let runs = namespaces
        .into_iter()
        .map(|ns| ect_controller(config.client.clone(), ns, ctx.clone()));
    futures::future::join_all(runs).await;
    Ok(())
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn ect_controller(client: Client, ns: Option<String>, ctx: Arc<Context>) {
    let ns = ns.as_deref();
    let controller = Controller::new(
        api::<EdgeComputeTarget>(&client, ns),
        watcher::Config::default(),
    );
    let store = controller.store();
    controller
        // A rotated or newly created credentials Secret re-reconciles the targets naming it.
        .watches(
            api::<Secret>(&client, ns),
            watcher::Config::default(),
            move |secret: Secret| {
                let name = secret.name_any();
                let sns = secret.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(|t| {
                        t.namespace() == sns
                            && (t.spec.stack_hub.credentials_secret_ref.name == name
                                || t.spec.azure_ml.credentials_secret_ref.name == name)
                    })
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
        )
        // A TrainingRun appearing or changing phase may need its target's VM started.
        .watches(
            api::<TrainingRun>(&client, ns),
            watcher::Config::default(),
            |run: TrainingRun| {
                let ns = run.namespace().unwrap_or_default();
                Some(ObjectRef::new(&run.spec.compute_target_ref.name).within(&ns))
            },
        )
        .shutdown_on_signal()
        .run(ect::reconcile::reconcile, ect::reconcile::error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((obj, _)) => tracing::debug!(object = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
}
