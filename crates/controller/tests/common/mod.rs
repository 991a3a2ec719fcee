//! Sandbox harness: in-process Kubernetes API server + Azure simulator + the controller.
#![allow(dead_code)]

mod process;
#[allow(unused_imports)]
pub use process::ControllerProcess;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use edgetrain_api::{DeletionPolicy, EdgeComputeTarget};
use edgetrain_controller::{Config, LeaderConfig, metrics::Metrics};
use edgetrain_sandbox_azure::{AzureSim, LroConfig, ServicePrincipal, WorkspaceConfig};
use edgetrain_sandbox_kube::{Options, SandboxKube};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::{Api, Client, api::PostParams};
use serde_json::json;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const HUB_CLIENT: &str = "stackhub-operator";
pub const HUB_SECRET: &str = "hub-client-secret-value-7f3a9";
pub const ML_CLIENT: &str = "azureml-operator";
pub const ML_SECRET: &str = "ml-client-secret-value-c41b2";

/// Logs of every test in this binary, captured through a global tracing subscriber.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub fn logs() -> LogBuffer {
    static LOGS: OnceLock<LogBuffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::default();
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,tower=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buf
    })
    .clone()
}

pub struct World {
    pub kube: SandboxKube,
    pub sim: AzureSim,
    pub client: Client,
    pub ns: String,
    _dir: tempfile::TempDir,
}

pub fn crds_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

pub async fn world(lro_ms: u64) -> World {
    world_with(lro_ms, |_| {}).await
}

/// [`world`] with the simulator's configuration adjusted (faults, failing names, Azurite for
/// jobs that run, ...).
pub async fn world_with(
    lro_ms: u64,
    tweak: impl FnOnce(&mut edgetrain_sandbox_azure::Config),
) -> World {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut sim_config = edgetrain_sandbox_azure::Config {
        state_dir: dir.path().to_owned(),
        tenant_id: TENANT.into(),
        azurite: false,
        service_principals: vec![
            ServicePrincipal::new(TENANT, HUB_CLIENT, HUB_SECRET),
            ServicePrincipal::new(TENANT, ML_CLIENT, ML_SECRET),
        ],
        lro: LroConfig {
            duration_ms: lro_ms,
            retry_after_secs: 1,
            fail_resource_names: vec![],
        },
        allowed_vm_sizes: vec!["Standard_DS2_v2".into(), "Standard_DS3_v2".into()],
        workspaces: vec![WorkspaceConfig::new(SUB, "rg1", "ws1", "westeurope")],
        ..Default::default()
    };
    tweak(&mut sim_config);
    let sim = AzureSim::start(sim_config).await.unwrap();
    let kube = SandboxKube::start(Options::default()).await.unwrap();
    kube.register_crds(crds_dir()).unwrap();
    let client = kube.client().unwrap();
    let ns = "default".to_string();
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), &ns);
    for (name, id, secret) in [
        ("hub-sp", HUB_CLIENT, HUB_SECRET),
        ("ml-sp", ML_CLIENT, ML_SECRET),
    ] {
        let s: KubeSecret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"tenantId": TENANT, "clientId": id, "clientSecret": secret}
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    World {
        kube,
        sim,
        client,
        ns,
        _dir: dir,
    }
}

pub fn config(w: &World, resync: Duration, metrics: Metrics) -> Config {
    Config {
        client: w.kube.client().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        default_deletion_policy: DeletionPolicy::Retain,
        watch_namespaces: vec![],
        resync,
        max_concurrent_reconciles: edgetrain_controller::DEFAULT_MAX_CONCURRENT_RECONCILES,
        azure_ml_list_pages_per_minute:
            edgetrain_controller::training_run::listing::DEFAULT_PAGES_PER_MINUTE,
        leader: None,
        instance: "test".into(),
        metrics,
        factories: None,
        workload_identity: None,
        endpoint_policy: Default::default(),
        stack_hub_rate_limits: Default::default(),
        clock: None,
    }
}

pub fn leader(identity: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: "default".into(),
        lease_name: "edgetrain-controller".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(8),
    }
}

pub fn spawn(config: Config) -> tokio::task::JoinHandle<edgetrain_controller::Result<()>> {
    tokio::spawn(edgetrain_controller::run(config))
}

pub fn ect_json(w: &World, name: &str, extra_spec: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "apiVersion": "edgetrain.dev/v1alpha1",
        "kind": "EdgeComputeTarget",
        "metadata": {"name": name, "namespace": w.ns},
        "spec": {
            "stackHub": {
                "armEndpoint": w.sim.base_url(),
                "location": "local",
                "subscriptionId": SUB,
                "resourceGroup": "rg1",
                "credentialsSecretRef": {"name": "hub-sp"}
            },
            "vm": {
                "size": "Standard_DS2_v2",
                "image": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
                "allowedSshSources": ["203.0.113.0/24"]
            },
            "azureML": {
                "armEndpoint": w.sim.base_url(),
                "subscriptionId": SUB,
                "resourceGroup": "rg1",
                "workspace": "ws1",
                "computeName": format!("c-{name}"),
                "credentialsSecretRef": {"name": "ml-sp"}
            }
        }
    });
    merge(&mut v["spec"], extra_spec);
    v
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

pub async fn create(w: &World, body: serde_json::Value) -> EdgeComputeTarget {
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), &w.ns);
    let obj: EdgeComputeTarget = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

pub async fn get(w: &World, name: &str) -> Option<EdgeComputeTarget> {
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), &w.ns);
    api.get_opt(name).await.unwrap()
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn condition(ect: &EdgeComputeTarget, type_: &str) -> Option<(String, String, String)> {
    ect.status.as_ref().and_then(|s| {
        edgetrain_api::conditions::find(&s.conditions, type_)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    })
}

pub async fn wait_ready(w: &World, name: &str, secs: u64) -> EdgeComputeTarget {
    eventually(secs, &format!("{name} Ready"), || async {
        let e = get(w, name).await?;
        let generation = e.metadata.generation;
        let ready = e.status.as_ref().is_some_and(|s| {
            edgetrain_api::conditions::is_true_for(&s.conditions, "Ready", generation)
        });
        ready.then_some(e)
    })
    .await
}

/// Stack Hub resources (Compute/Network) and ML computes in the simulator.
pub fn inventory(w: &World) -> Vec<(String, String)> {
    w.sim
        .inventory()
        .into_iter()
        .filter(|i| i.resource_type != "Microsoft.MachineLearningServices/workspaces")
        .map(|i| (i.resource_type, i.id))
        .collect()
}

pub fn count(w: &World, method: &str, provider: &str) -> u64 {
    w.sim.counters().get(method, provider)
}

/// A TrainingRun on `target` (no status yet: Pending, which counts as active).
pub async fn create_run(w: &World, name: &str, target: &str) {
    let runs: Api<edgetrain_api::TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    let run: edgetrain_api::TrainingRun = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "computeTargetRef": {"name": target},
            "experimentName": "exp",
            "code": {"configMapRef": {"name": "code"}},
            "environment": {"image": "python:3.12"},
            "command": "python train.py --data ${{inputs.training_data}}",
            "data": {"endpoint": "https://data.blob.local.azurestack.external", "container": "telemetry",
                "prefix": "p/", "credentialsSecretRef": {"name": "storage"}, "inputName": "training_data"}
        }
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
}

/// Every request the simulator answered (ARM, tokens, metadata).
pub fn requests(w: &World) -> u64 {
    w.sim.counters().0.values().sum()
}

pub fn reconciles(m: &Metrics) -> u64 {
    m.reconciles
        .get_or_create(&Metrics::kind("EdgeComputeTarget"))
        .get()
}

/// The Stalled condition once it is True.
pub async fn wait_stalled(w: &World, name: &str, secs: u64) -> (String, String, String) {
    eventually(secs, &format!("{name} Stalled"), || async {
        let e = get(w, name).await?;
        let c = condition(&e, "Stalled")?;
        (c.0 == "True").then_some(c)
    })
    .await
}

/// The first Event about `object` with `reason`.
pub async fn wait_event(
    w: &World,
    object: &str,
    reason: &str,
    secs: u64,
) -> k8s_openapi::api::events::v1::Event {
    wait_event_in(w, &w.ns, object, reason, secs).await
}

/// The first Event about `object` in namespace `ns` with `reason`.
pub async fn wait_event_in(
    w: &World,
    ns: &str,
    object: &str,
    reason: &str,
    secs: u64,
) -> k8s_openapi::api::events::v1::Event {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.client.clone(), ns);
    eventually(
        secs,
        &format!("a {reason} event about {ns}/{object}"),
        || async {
            events
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
                })
        },
    )
    .await
}

/// Changes Secret `name` (an annotation) without changing its data: a new resourceVersion.
pub async fn touch_secret(w: &World, name: &str, value: &str) {
    let secrets: Api<KubeSecret> = Api::namespaced(w.client.clone(), &w.ns);
    secrets
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"touched": value}}})),
        )
        .await
        .unwrap();
}

/// Replaces the data of Secret `name`.
pub async fn set_secret(w: &World, name: &str, data: serde_json::Value) {
    let secrets: Api<KubeSecret> = Api::namespaced(w.client.clone(), &w.ns);
    let s: KubeSecret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    match secrets.get_opt(name).await.unwrap() {
        Some(_) => {
            secrets
                .patch(
                    name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"stringData": data})),
                )
                .await
                .unwrap();
        }
        None => {
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
    }
}

/// A clock the test moves forward (seconds added to the system clock).
pub struct TestClock(pub std::sync::atomic::AtomicI64);

impl edgetrain_controller::context::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::seconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}
