//! The sandbox a figure runs against: the in-process Kubernetes API server, the Azure simulator
//! (with Azurite when TrainingRuns must run) and the controller as a task of this process —
//! the same pieces the controller's sandbox tests use, started once per figure.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use edgetrain_api::{EdgeComputeTarget, TrainingRun, TrainingRunPhase, conditions};
use edgetrain_controller::{
    Config as ControllerConfig,
    metrics::Metrics,
    runtime::factory::{Factories, http_config_from_env},
};
use edgetrain_sandbox_azure::{
    AzureSim, Config as SimConfig, LroConfig, Secret, ServicePrincipal, WorkspaceConfig,
};
use edgetrain_sandbox_kube::{Options, SandboxKube};
use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret};
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

use crate::{Error, Result};

pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
/// The Azure ML principal (client id, secret) the targets' `ml-sp` Secret names.
pub const ML_PRINCIPAL: (&str, &str) = ("azureml-operator", "bench-ml-secret");
const PRINCIPALS: [(&str, &str, &str); 2] = [
    ("hub-sp", "stackhub-operator", "bench-hub-secret"),
    ("ml-sp", ML_PRINCIPAL.0, ML_PRINCIPAL.1),
];
pub const NS: &str = "default";

pub struct World {
    pub kube: SandboxKube,
    pub sim: AzureSim,
    pub client: Client,
    _dir: tempfile::TempDir,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The simulator configuration every figure starts from; `tweak` adds faults, Azurite, ...
pub fn sim_config(dir: &Path, lro: LroConfig) -> SimConfig {
    SimConfig {
        state_dir: dir.to_owned(),
        tenant_id: TENANT.into(),
        azurite: false,
        service_principals: PRINCIPALS
            .iter()
            .map(|(_, id, secret)| ServicePrincipal {
                tenant: TENANT.into(),
                client_id: (*id).into(),
                client_secret: Secret::new(*secret),
            })
            .collect(),
        lro,
        allowed_vm_sizes: vec!["Standard_DS2_v2".into()],
        workspaces: vec![WorkspaceConfig {
            subscription_id: SUB.into(),
            resource_group: "rg1".into(),
            name: "ws1".into(),
            location: "westeurope".into(),
        }],
        ..Default::default()
    }
}

impl World {
    pub async fn start(lro: LroConfig, tweak: impl FnOnce(&mut SimConfig)) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let mut cfg = sim_config(dir.path(), lro);
        tweak(&mut cfg);
        let sim = AzureSim::start(cfg).await?;
        let kube = SandboxKube::start(Options::default()).await?;
        kube.register_crds(repo_root().join("crds"))?;
        let client = kube.client()?;
        let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), NS);
        for (name, id, secret) in PRINCIPALS {
            let s: KubeSecret = serde_json::from_value(json!({
                "metadata": {"name": name},
                "stringData": {"tenantId": TENANT, "clientId": id, "clientSecret": secret}
            }))
            .expect("secret literal");
            secrets.create(&PostParams::default(), &s).await?;
        }
        Ok(Self {
            kube,
            sim,
            client,
            _dir: dir,
        })
    }

    /// The controller as a task of this process, with `resync` between re-reads of settled
    /// objects.
    pub fn controller(
        &self,
        resync: Duration,
    ) -> Result<tokio::task::JoinHandle<edgetrain_controller::Result<()>>> {
        Ok(tokio::spawn(edgetrain_controller::run(
            self.controller_config(resync)?,
        )))
    }

    /// The controller's configuration for this sandbox. With Azurite, its HTTP client resolves
    /// the simulator's host-style storage names to loopback (client configuration, as in the
    /// controller's sandbox tests).
    pub fn controller_config(&self, resync: Duration) -> Result<ControllerConfig> {
        let metrics = Metrics::default();
        let factories = match self.sim.storage_endpoints() {
            Some(storage) => {
                let mut http = http_config_from_env();
                http.extra_ca_bundle = Some(storage.ca_pem_path.clone());
                let loopback: std::net::SocketAddr = ([127, 0, 0, 1], storage.port).into();
                let client = http
                    .builder()?
                    .resolve(
                        &format!("{}.blob.localhost", storage.datastore_account),
                        loopback,
                    )
                    .resolve(
                        &format!("{}.blob.localhost", storage.stack_hub_account),
                        loopback,
                    )
                    .build()
                    .map_err(|e| Error::Sandbox(format!("http client: {e}")))?;
                Some(Factories::over(&metrics, client, Default::default()))
            }
            None => None,
        };
        Ok(ControllerConfig {
            client: self.kube.client()?,
            metrics_addr: "127.0.0.1:0".parse().expect("loopback address"),
            default_deletion_policy: edgetrain_api::DeletionPolicy::Retain,
            watch_namespaces: vec![],
            resync,
            max_concurrent_reconciles: edgetrain_controller::DEFAULT_MAX_CONCURRENT_RECONCILES,
            azure_ml_list_pages_per_minute:
                edgetrain_controller::training_run::listing::DEFAULT_PAGES_PER_MINUTE,
            leader: None,
            instance: "bench".into(),
            metrics,
            factories,
            workload_identity: None,
            endpoint_policy: Default::default(),
            stack_hub_rate_limits: Default::default(),
            clock: None,
        })
    }

    pub async fn create_ect(&self, name: &str) -> Result<()> {
        let base = self.sim.base_url();
        let body = json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "EdgeComputeTarget",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "stackHub": {"armEndpoint": base, "location": "local", "subscriptionId": SUB,
                    "resourceGroup": "rg1", "credentialsSecretRef": {"name": "hub-sp"}},
                "vm": {"size": "Standard_DS2_v2",
                    "image": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
                    "allowedSshSources": ["203.0.113.0/24"]},
                "azureML": {"armEndpoint": base, "subscriptionId": SUB, "resourceGroup": "rg1",
                    "workspace": "ws1", "computeName": format!("c-{name}"),
                    "credentialsSecretRef": {"name": "ml-sp"}}
            }
        });
        let api: Api<EdgeComputeTarget> = Api::namespaced(self.client.clone(), NS);
        api.create(&PostParams::default(), &from_json(body)).await?;
        Ok(())
    }

    pub async fn wait_ect_ready(&self, name: &str, secs: u64) -> Result<()> {
        let api: Api<EdgeComputeTarget> = Api::namespaced(self.client.clone(), NS);
        eventually(secs, &format!("EdgeComputeTarget {name} Ready"), || async {
            let e = api.get_opt(name).await.ok()??;
            let generation = e.metadata.generation;
            e.status
                .as_ref()
                .is_some_and(|s| conditions::is_true_for(&s.conditions, "Ready", generation))
                .then_some(())
        })
        .await
    }

    /// Data, the storage Secret and the code ConfigMap a TrainingRun needs; returns the data
    /// endpoint. Needs the simulator started with Azurite.
    pub async fn training_inputs(&self) -> Result<String> {
        let storage = self
            .sim
            .storage_endpoints()
            .ok_or_else(|| Error::Sandbox("TrainingRuns need the simulator with Azurite".into()))?;
        self.sim
            .seed_blob(
                &storage.stack_hub_account,
                "telemetry",
                "data/part-1.csv",
                b"a,b\n1,2\n".to_vec(),
            )
            .await?;
        let secrets: Api<KubeSecret> = Api::namespaced(self.client.clone(), NS);
        secrets
            .create(
                &PostParams::default(),
                &from_json(json!({
                    "metadata": {"name": "storage"},
                    "stringData": {"accountName": storage.stack_hub_account,
                        "accountKey": storage.stack_hub_key.expose()}
                })),
            )
            .await?;
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), NS);
        cms.create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "code"}, "data": {"run.sh": "true\n"}})),
        )
        .await?;
        Ok(storage.path_style(&storage.stack_hub_account))
    }

    /// A TrainingRun on `target` whose job runs `command`.
    pub async fn create_run(
        &self,
        name: &str,
        target: &str,
        endpoint: &str,
        command: &str,
    ) -> Result<()> {
        let api: Api<TrainingRun> = Api::namespaced(self.client.clone(), NS);
        let run = from_json(json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name},
            "spec": {
                "computeTargetRef": {"name": target},
                "experimentName": "bench",
                "code": {"configMapRef": {"name": "code"}},
                "environment": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"},
                "command": command,
                "data": {"endpoint": endpoint, "container": "telemetry", "prefix": "data/",
                    "credentialsSecretRef": {"name": "storage"}}
            }
        }));
        api.create(&PostParams::default(), &run).await?;
        Ok(())
    }

    /// The phase of every TrainingRun (`None`: no status yet).
    pub async fn run_phases(&self) -> Result<Vec<Option<TrainingRunPhase>>> {
        let api: Api<TrainingRun> = Api::namespaced(self.client.clone(), NS);
        let list = api.list(&Default::default()).await?;
        Ok(list
            .items
            .into_iter()
            .map(|r| r.status.map(|s| s.phase))
            .collect())
    }

    /// How many TrainingRuns are in one of `phases`.
    pub async fn runs_in(&self, phases: &[TrainingRunPhase]) -> Result<usize> {
        Ok(self
            .run_phases()
            .await?
            .iter()
            .filter(|p| p.as_ref().is_some_and(|p| phases.contains(p)))
            .count())
    }

    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object literal matches its type")
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_every(Duration::from_millis(50), secs, what, f).await
}

/// [`eventually`] polling every `every`: a check that lists thousands of objects must not load
/// the machine it measures.
pub async fn eventually_every<T, F, Fut>(
    every: Duration,
    secs: u64,
    what: &str,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                what: what.into(),
                secs,
            });
        }
        tokio::time::sleep(every).await;
    }
}
