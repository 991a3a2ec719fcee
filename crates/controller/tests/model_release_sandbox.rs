//! ModelRelease against the in-process API server + Azure simulator. The TrainingRun's status
//! is set by the test (the TrainingRun controller is not needed).

mod common;

use std::time::Duration;

use common::*;
use edgetrain_api::{ModelRelease, TrainingRun};
use edgetrain_controller::metrics::Metrics;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

async fn create_run(w: &World, name: &str, status: serde_json::Value) {
    let api: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    let run: TrainingRun = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": w.ns},
        "spec": {
            "computeTargetRef": {"name": "edge"},
            "code": {"blobUri": "https://code.blob.local/c/train.zip"},
            "environment": {"image": "python:3.11"},
            "command": "python train.py",
            "data": {"endpoint": "https://data.blob.local", "container": "train",
                     "credentialsSecretRef": {"name": "data-key"}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &run).await.unwrap();
    set_run_status(w, name, status).await;
}

async fn set_run_status(w: &World, name: &str, status: serde_json::Value) {
    let api: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
}

async fn create_release(w: &World, name: &str, run: &str, secret: &str) {
    let api: Api<ModelRelease> = Api::namespaced(w.client.clone(), &w.ns);
    let mr: ModelRelease = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
        "metadata": {"name": name, "namespace": w.ns},
        "spec": {
            "trainingRunRef": {"name": run},
            "model": {"name": "churn"},
            "registry": {"loginServer": "127.0.0.1:5000", "repository": "models/churn",
                         "credentialsSecretRef": {"name": secret}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &mr).await.unwrap();
}

/// `(status, reason, message)` of a condition of release `name`.
async fn release_condition(w: &World, name: &str, type_: &str) -> Option<(String, String, String)> {
    let api: Api<ModelRelease> = Api::namespaced(w.client.clone(), &w.ns);
    let mr = api.get_opt(name).await.ok()??;
    let s = mr.status?;
    edgetrain_api::conditions::find(&s.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn event_for(w: &World, object: &str, reason: &str) -> Event {
    wait_event(w, object, reason, 30).await
}

#[tokio::test]
async fn a_run_that_exfiltrated_data_is_never_released() {
    let w = world(0).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create_run(
        &w,
        "leaky",
        json!({"phase": "Failed", "jobName": "job-leaky",
               "outputs": {"model": "azureml://datastores/workspaceblobstore/paths/x/"},
               "conditions": [{"type": "Ready", "status": "False", "reason": "DataExfiltration",
                               "message": "output model.bin equals input blob a.csv",
                               "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    )
    .await;
    create_release(&w, "leaky-release", "leaky", "registry-creds").await;
    let (status, reason, message) = eventually(30, "Stalled", || async {
        let c = release_condition(&w, "leaky-release", "Stalled").await?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "RunNotReleasable")
    );
    assert!(message.contains("DataExfiltration"), "{message}");
    let registered = release_condition(&w, "leaky-release", "Registered")
        .await
        .unwrap();
    assert_eq!(
        (registered.0.as_str(), registered.1.as_str()),
        ("False", "RunNotReleasable")
    );
    let ready = release_condition(&w, "leaky-release", "Ready")
        .await
        .unwrap();
    assert_eq!(ready.0, "False");
    let ev = event_for(&w, "leaky-release", "RunNotReleasable").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert!(
        w.sim
            .inventory()
            .iter()
            .all(|i| !i.resource_type.contains("models")),
        "no model registered"
    );
    ctl.abort();
}

#[tokio::test]
async fn waits_for_the_run_then_a_missing_registry_secret_is_a_clear_stalled_condition() {
    let w = world(0).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(&w, ect_json(&w, "edge", json!({}))).await;
    create_run(&w, "train", json!({"phase": "Running", "jobName": "job-1"})).await;
    create_release(&w, "rel", "train", "no-such-secret").await;
    let (_, reason, message) = eventually(30, "Ready=False waiting for the run", || async {
        let c = release_condition(&w, "rel", "Ready").await?;
        (c.0 == "False" && c.1 == "TrainingRunNotSucceeded").then_some(c)
    })
    .await;
    assert_eq!(reason, "TrainingRunNotSucceeded");
    assert!(message.contains("Running"), "{message}");
    // Waiting is progress, not a stall.
    assert_ne!(
        release_condition(&w, "rel", "Stalled")
            .await
            .map(|c| c.0)
            .as_deref(),
        Some("True")
    );
    let ev = event_for(&w, "rel", "TrainingRunNotSucceeded").await;
    assert_eq!(ev.type_.as_deref(), Some("Normal"));

    // The run succeeds: the release moves on by itself and stops at the missing Secret.
    set_run_status(
        &w,
        "train",
        json!({"phase": "Succeeded",
               "outputs": {"model": "azureml://datastores/workspaceblobstore/paths/azureml/job-1/model/"},
               "codeDigest": "sha256:c0de", "dataFingerprint": "sha256:da7a", "dataBlobCount": 2}),
    )
    .await;
    let (_, reason, message) = eventually(60, "Stalled SecretNotFound", || async {
        let c = release_condition(&w, "rel", "Stalled").await?;
        (c.0 == "True" && c.1 == "SecretNotFound").then_some(c)
    })
    .await;
    assert_eq!(reason, "SecretNotFound");
    assert!(message.contains("no-such-secret"), "{message}");
    assert_eq!(
        release_condition(&w, "rel", "Ready").await.unwrap().0,
        "False"
    );
    let ev = event_for(&w, "rel", "SecretNotFound").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    ctl.abort();
}

/// The simulator with Azurite and the registry, and a controller trusting the sandbox CA.
async fn world_with_storage_and_registry() -> (World, tempfile::TempDir) {
    world_with_faults(Default::default()).await
}

/// [`world_with_storage_and_registry`] with the simulator injecting `faults`.
async fn world_with_faults(
    faults: edgetrain_sandbox_azure::FaultConfig,
) -> (World, tempfile::TempDir) {
    let mut w = world(0).await;
    // The default world has no Azurite or registry: start a second simulator that has both
    // and point the ARM endpoints at it.
    let dir = tempfile::tempdir().unwrap();
    let sim = edgetrain_sandbox_azure::AzureSim::start(edgetrain_sandbox_azure::Config {
        state_dir: dir.path().to_owned(),
        tenant_id: TENANT.into(),
        azurite: true,
        registry: edgetrain_sandbox_azure::RegistryConfig {
            enabled: true,
            users: vec![
                edgetrain_sandbox_azure::RegistryUser {
                    username: "skopeo".into(),
                    password: edgetrain_sandbox_azure::Secret::new("skopeo-password"),
                    pull_only: true,
                    no_delete: false,
                },
                // ACR's AcrPush role: pushes, cannot delete.
                edgetrain_sandbox_azure::RegistryUser {
                    username: "pusher".into(),
                    password: edgetrain_sandbox_azure::Secret::new("pusher-password"),
                    pull_only: false,
                    no_delete: true,
                },
            ],
            ..Default::default()
        },
        service_principals: vec![edgetrain_sandbox_azure::ServicePrincipal::new(
            TENANT, ML_CLIENT, ML_SECRET,
        )],
        workspaces: vec![edgetrain_sandbox_azure::WorkspaceConfig::new(
            SUB,
            "rg1",
            "ws1",
            "westeurope",
        )],
        faults,
        ..Default::default()
    })
    .await
    .unwrap();
    let old = std::mem::replace(&mut w.sim, sim);
    old.shutdown().await;
    (w, dir)
}

async fn release_status(w: &World, name: &str) -> Option<edgetrain_api::ModelReleaseStatus> {
    let api: Api<ModelRelease> = Api::namespaced(w.client.clone(), &w.ns);
    api.get_opt(name).await.ok()??.status
}

/// A trained model in the datastore, the EdgeComputeTarget `edge`, the Succeeded TrainingRun
/// `train` and the registry Secret `acr` (the operator's Azure ML principal, which the sandbox
/// ACR token service accepts). No controller yet.
struct Trained {
    w: World,
    _dir: tempfile::TempDir,
    reg: edgetrain_sandbox_azure::RegistryEndpoints,
    model: Vec<u8>,
}

async fn trained() -> Trained {
    let (w, dir) = world_with_storage_and_registry().await;
    trained_with(w, dir, vec![("model.onnx", fake_model())]).await
}

fn fake_model() -> Vec<u8> {
    b"tiny model weights \x00\x01\x02".repeat(1000)
}

/// [`trained`] with the job's output `files` (the first one is `Trained::model`).
async fn trained_with(w: World, dir: tempfile::TempDir, files: Vec<(&str, Vec<u8>)>) -> Trained {
    let storage = w.sim.storage_endpoints().unwrap();
    let reg = w.sim.registry().unwrap().clone();
    let model = files[0].1.clone();
    for (name, bytes) in files {
        w.sim
            .seed_blob(
                &storage.datastore_account,
                &storage.datastore_container,
                &format!("azureml/job-1/model/{name}"),
                bytes,
            )
            .await
            .unwrap();
    }
    create(&w, ect_json(&w, "edge", json!({}))).await;
    create_run(
        &w,
        "train",
        json!({"phase": "Succeeded", "jobName": "job-1",
               "completionTime": "2026-01-02T03:04:05Z",
               "outputs": {"model": "azureml://datastores/workspaceblobstore/paths/azureml/job-1/model/"},
               "codeDigest": "sha256:c0de", "dataFingerprint": "sha256:da7a", "dataBlobCount": 2}),
    )
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(w.client.clone(), &w.ns);
    let s = serde_json::from_value(json!({
        "metadata": {"name": "acr"},
        "stringData": {"tenantId": TENANT, "clientId": ML_CLIENT, "clientSecret": ML_SECRET}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    Trained {
        w,
        _dir: dir,
        reg,
        model,
    }
}

impl Trained {
    /// The in-process controller with the real clients, trusting the sandbox CA.
    fn controller(&self) -> tokio::task::JoinHandle<edgetrain_controller::Result<()>> {
        let mut cfg = config(&self.w, Duration::from_secs(300), Metrics::default());
        let http = edgetrain_azure::transport::HttpConfig {
            extra_ca_bundle: Some(self.reg.ca_pem_path.clone()),
            ..Default::default()
        };
        cfg.factories = Some(
            edgetrain_controller::runtime::factory::Factories::real(
                &Metrics::default(),
                http,
                Default::default(),
            )
            .unwrap(),
        );
        spawn(cfg)
    }

    /// Creates release `name` with `spec` plus the registry part (`models/churn`, Secret `acr`).
    async fn release(&self, name: &str, mut spec: serde_json::Value) {
        spec["registry"] = json!({"loginServer": self.reg.host, "repository": "models/churn",
                                  "credentialsSecretRef": {"name": "acr"}});
        let api: Api<ModelRelease> = Api::namespaced(self.w.client.clone(), &self.w.ns);
        let mr: ModelRelease = serde_json::from_value(json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
            "metadata": {"name": name, "namespace": self.w.ns},
            "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &mr).await.unwrap();
    }

    async fn ready(&self, name: &str, secs: u64) -> edgetrain_api::ModelReleaseStatus {
        eventually(secs, &format!("{name} Ready"), || async {
            let c = release_condition(&self.w, name, "Ready").await?;
            (c.0 == "True").then_some(())
        })
        .await;
        release_status(&self.w, name).await.unwrap()
    }

    /// A client of the sandbox registry as the pull-only user.
    fn reader(&self) -> edgetrain_registry::Registry {
        edgetrain_registry::Registry::new(
            self.reg.url.parse().unwrap(),
            edgetrain_azure::transport::HttpConfig {
                extra_ca_bundle: Some(self.reg.ca_pem_path.clone()),
                ..Default::default()
            }
            .build()
            .unwrap(),
            edgetrain_registry::Credential::Basic {
                username: "skopeo".into(),
                password: edgetrain_registry::Secret::new("skopeo-password"),
            },
            Default::default(),
            Default::default(),
        )
        .unwrap()
    }

    /// `skopeo` as the pull-only user, trusting the sandbox CA; panics on failure. Async: the
    /// token service it calls runs on this test's runtime.
    async fn skopeo(&self, args: &[&str]) -> Vec<u8> {
        let cert_dir = self.reg.cert_dir.display().to_string();
        let out = tokio::process::Command::new("skopeo")
            .args(args)
            .args(match args[0] {
                "copy" => ["--src-cert-dir", &cert_dir, "--src-creds", SKOPEO_CREDS],
                _ => ["--cert-dir", &cert_dir, "--creds", SKOPEO_CREDS],
            })
            .output()
            .await
            .expect("skopeo installed (scripts/install-tools.sh)");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

const SKOPEO_CREDS: &str = "skopeo:skopeo-password";

#[tokio::test]
async fn a_succeeded_run_is_registered_pushed_and_a_second_release_uploads_nothing() {
    let t = trained().await;
    let (w, reg, model) = (&t.w, &t.reg, &t.model);
    let ctl = t.controller();
    let mut statuses = Vec::new();
    for name in ["first", "second"] {
        t.release(
            name,
            json!({"trainingRunRef": {"name": "train"}, "model": {"name": "churn", "version": "1"}}),
        )
        .await;
        statuses.push(t.ready(name, 90).await);
    }
    let (first, second) = (&statuses[0], &statuses[1]);
    assert_eq!(first.model_version.as_deref(), Some("1"));
    let artifact = first.artifact_digest.clone().unwrap();
    assert!(
        artifact.starts_with(&format!("{}/models/churn@sha256:", reg.host)),
        "{artifact}"
    );
    assert_eq!(first.referrers.len(), 1);
    assert!(first.bytes_uploaded.unwrap() >= model.len() as i64);
    // The same run, version and content: adopted, identical digests, nothing uploaded.
    assert_eq!(second.artifact_digest, first.artifact_digest);
    assert_eq!(second.model_id, first.model_id);
    assert_eq!(second.bytes_uploaded, Some(0));
    assert!(second.bytes_reused.unwrap() >= model.len() as i64);
    ev_ok(w, "first", "Registered").await;
    ev_ok(w, "second", "Adopted").await;
    ev_ok(w, "first", "Pushed").await;

    // What the registry holds at that digest hashes to it (read back as a pull-only user).
    let digest = artifact.rsplit_once('@').unwrap().1;
    let reader = t.reader();
    let m = reader
        .get_manifest("models/churn", "churn-1")
        .await
        .unwrap();
    assert_eq!(m.digest, digest);

    // A different run under the same version is a conflict, never Ready.
    create_run(
        w,
        "train2",
        json!({"phase": "Succeeded", "jobName": "job-2",
               "outputs": {"model": "azureml://datastores/workspaceblobstore/paths/azureml/job-1/model/"}}),
    )
    .await;
    t.release(
        "conflict",
        json!({"trainingRunRef": {"name": "train2"}, "model": {"name": "churn", "version": "1"}}),
    )
    .await;
    let (_, reason, message) = eventually(60, "Stalled VersionConflict", || async {
        let c = release_condition(w, "conflict", "Stalled").await?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(reason, "VersionConflict");
    assert!(message.contains("jobName"), "{message}");
    assert_eq!(
        release_condition(w, "conflict", "Ready").await.unwrap().0,
        "False"
    );
    let ev = event_for(w, "conflict", "VersionConflict").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));

    // An existing Azure ML model version, without a TrainingRun: shipped with the lineage its
    // properties carry.
    let existing = |version: &str| {
        json!({"existingModel": {"name": "churn", "version": version,
                                 "computeTargetRef": {"name": "edge"}},
               "model": {"name": "churn"}})
    };
    t.release("existing", existing("1")).await;
    let shipped = t.ready("existing", 90).await;
    assert_eq!(shipped.model_id, first.model_id);
    assert_eq!(shipped.model_version.as_deref(), Some("1"));
    // The same version is the same artifact whoever releases it (the model's time travels in
    // the version's properties): no second artifact for one version, nothing uploaded.
    assert_eq!(shipped.artifact_digest, first.artifact_digest);
    assert_eq!(shipped.bytes_uploaded, Some(0));
    let shipped_artifact = shipped.artifact_digest.clone().unwrap();
    let m: serde_json::Value = serde_json::from_slice(
        &reader
            .get_manifest("models/churn", digest_of(&shipped_artifact))
            .await
            .unwrap()
            .bytes,
    )
    .unwrap();
    let a = &m["annotations"];
    assert_eq!(
        a["edgetrain.dev/training-run"],
        format!("{}/train", w.ns),
        "{m}"
    );
    assert_eq!(a["edgetrain.dev/job-name"], "job-1");
    assert_eq!(a["edgetrain.dev/code-digest"], "sha256:c0de");
    assert_eq!(a["edgetrain.dev/data-fingerprint"], "sha256:da7a");
    let refs = reader
        .referrers("models/churn", digest_of(&shipped_artifact))
        .await
        .unwrap();
    assert_eq!(refs.len(), 1);
    let referrer = reader
        .get_manifest("models/churn", refs[0].digest().as_ref())
        .await
        .unwrap();
    let referrer: serde_json::Value = serde_json::from_slice(&referrer.bytes).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(
        &reader
            .get_small_blob(
                "models/churn",
                referrer["layers"][0]["digest"].as_str().unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let params = &statement["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["job"], "job-1");
    assert_eq!(params["trainingRun"], format!("{}/train", w.ns));
    assert_eq!(params["codeDigest"], "sha256:c0de");
    assert_eq!(params["model"], first.model_id.clone().unwrap().as_str());
    // Still one version: an existing model is never registered again.
    let versions = w
        .sim
        .inventory()
        .iter()
        .filter(|i| i.resource_type.ends_with("models/versions"))
        .count();
    assert_eq!(versions, 1);
    // A version that does not exist is a clear stall.
    t.release("missing", existing("9")).await;
    let (_, reason, message) = eventually(60, "Stalled ModelNotFound", || async {
        let c = release_condition(w, "missing", "Stalled").await?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(reason, "ModelNotFound");
    assert!(message.contains("version 9"), "{message}");
    ctl.abort();
}

fn digest_of(reference: &str) -> &str {
    reference.rsplit_once('@').unwrap().1
}

async fn ev_ok(w: &World, object: &str, reason: &str) {
    let ev = event_for(w, object, reason).await;
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
}

fn sha256(bytes: &[u8]) -> String {
    edgetrain_registry::sha256_digest(bytes)
}

/// The sandbox's built-in base, pinned by digest.
fn tiny_base(reg: &edgetrain_sandbox_azure::RegistryEndpoints) -> (String, String) {
    let (_, _, digest) = reg
        .base_images
        .iter()
        .find(|(r, t, _)| {
            r == edgetrain_sandbox_azure::TINY_BASE_REPOSITORY
                && t == edgetrain_sandbox_azure::TINY_BASE_TAG
        })
        .expect("the built-in base is loaded")
        .clone();
    (
        format!(
            "{}/{}@{digest}",
            reg.host,
            edgetrain_sandbox_azure::TINY_BASE_REPOSITORY
        ),
        digest,
    )
}

/// A real model: examples/training/train.py, run by the host's python3 (the tools venv) as
/// the job would run it, on churn CSVs in the Stack Hub account read through a container SAS.
/// Returns the files of its output folder (`model.onnx` first), which is left in `out/model`.
async fn train_real_model(w: &World, out: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    let storage = w.sim.storage_endpoints().unwrap();
    let account = &storage.stack_hub_account;
    w.sim
        .seed_blob(
            account,
            "telemetry",
            "churn/part-1.csv",
            edgetrain_sandbox_azure::churn_csv(1, 600),
        )
        .await
        .unwrap();
    let sas = edgetrain_sandbox_azure::sign_service_sas(
        &edgetrain_sandbox_azure::SasFields {
            account,
            container: "telemetry",
            blob: None,
            permissions: "rl",
            start: None,
            expiry: "2099-01-01T00:00:00Z",
            ip: None,
            protocol: Some("https"),
        },
        &storage.stack_hub_key,
    )
    .unwrap();
    let data = format!(
        "{}/telemetry/churn/?{}",
        storage.path_style(account),
        sas.expose()
    );
    let train = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/training/train.py"
    );
    let run = tokio::process::Command::new("python3")
        .arg(train)
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(out.join("model"))
        .current_dir(out)
        .env("SSL_CERT_FILE", &storage.ca_pem_path)
        // No Azure ML run here: MLflow logs to a local file store (deprecated, hence the opt-in).
        .env(
            "MLFLOW_TRACKING_URI",
            format!("file://{}/mlruns", out.display()),
        )
        .env("MLFLOW_ALLOW_FILE_STORE", "true")
        .output()
        .await
        .expect("python3 with examples/training/requirements.txt on PATH (make tools)");
    assert!(
        run.status.success(),
        "train.py: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    ["model.onnx", "features.json"]
        .into_iter()
        .map(|f| (f, std::fs::read(out.join("model").join(f)).unwrap()))
        .collect()
}

/// The process an unpacked image bundle describes (umoci's OCI runtime `config.json`: args,
/// env, cwd), started without a container runtime (there is none on the test machine). The
/// base ships no Python interpreter, so the entrypoint script runs under the host's python3
/// (its shebang, checked, names python3), with every image path re-rooted into the rootfs:
/// the script, the working directory and env values that are paths in the image
/// (`AZUREML_MODEL_DIR`). The image's PATH is not used: the interpreter is the host's. Bound to
/// 127.0.0.1 on a port the OS picks (`PORT=0`; the scorer prints the address it bound).
struct Served {
    _child: tokio::process::Child,
    url: String,
    env: Vec<String>,
}

async fn serve_bundle(bundle: &std::path::Path) -> Served {
    use tokio::io::AsyncBufReadExt;
    let runtime: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let rootfs = bundle.join(runtime["root"]["path"].as_str().unwrap());
    let inside = |p: &str| rootfs.join(p.trim_start_matches('/'));
    let process = &runtime["process"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let (args, env) = (strings(&process["args"]), strings(&process["env"]));
    let entrypoint = inside(&args[0]);
    let script = std::fs::read_to_string(&entrypoint).unwrap();
    assert!(
        script.starts_with("#!/usr/bin/env python3\n"),
        "{args:?} is not a python3 script"
    );
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(&entrypoint)
        .args(&args[1..])
        .current_dir(inside(process["cwd"].as_str().unwrap_or("/")));
    for kv in &env {
        let (k, v) = kv.split_once('=').unwrap();
        if k == "PATH" {
            continue;
        }
        let v = if v.starts_with('/') && inside(v).exists() {
            inside(v).display().to_string()
        } else {
            v.to_string()
        };
        cmd.env(k, v);
    }
    let mut child = cmd
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The scorer's first line, once it has loaded the model and bound: "serving DIR on ADDR".
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .expect("the entrypoint serves")
        .unwrap()
        .unwrap_or_else(|| panic!("the entrypoint exited before serving"));
    let addr = line.rsplit(' ').next().unwrap().to_string();
    Served {
        _child: child,
        url: format!("http://{addr}"),
        env,
    }
}

/// What the model predicts for `rows` (arrays in features.json order), computed on the host by
/// onnx's reference evaluator from the trained model file.
async fn host_predictions(
    model_dir: &std::path::Path,
    rows: &serde_json::Value,
) -> serde_json::Value {
    const SCRIPT: &str = "import json, sys\n\
        import numpy as np\n\
        from onnx.reference import ReferenceEvaluator\n\
        ev = ReferenceEvaluator(sys.argv[1])\n\
        x = np.array(json.loads(sys.argv[2]), dtype=np.float32)\n\
        label, proba = ev.run(None, {ev.input_names[0]: x})[:2]\n\
        print(json.dumps({'predictions': label.tolist(), 'probabilities': proba.tolist()}))\n";
    let out = tokio::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(model_dir.join("model.onnx"))
        .arg(rows.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn a_serving_image_on_the_pinned_base_is_read_back_by_skopeo_and_umoci_with_provenance() {
    let (w, dir) = world_with_storage_and_registry().await;
    let training = tempfile::tempdir().unwrap();
    let files = train_real_model(&w, training.path()).await;
    let t = trained_with(w, dir, files).await;
    let (w, reg) = (&t.w, &t.reg);
    let ctl = t.controller();
    let (base, base_digest) = tiny_base(reg);
    t.release(
        "served",
        json!({"trainingRunRef": {"name": "train"}, "model": {"name": "churn", "version": "1"},
               "image": {"base": base, "modelPath": "/opt/model"}, "deletionPolicy": "Delete"}),
    )
    .await;
    let st = t.ready("served", 90).await;
    let artifact = st.artifact_digest.clone().unwrap();
    let image = st.image_digest.clone().expect("the image digest in status");
    let digest_of = |r: &str| r.rsplit_once('@').unwrap().1.to_string();
    let (artifact_digest, image_digest) = (digest_of(&artifact), digest_of(&image));
    assert!(image.starts_with(&format!("{}/models/churn@sha256:", reg.host)));

    // skopeo (no code shared with us) reads the bytes at the digests status names.
    let raw = |d: &str| format!("docker://{}/models/churn@{d}", reg.host);
    let artifact_raw = t
        .skopeo(&["inspect", "--raw", &raw(&artifact_digest)])
        .await;
    let image_raw = t.skopeo(&["inspect", "--raw", &raw(&image_digest)]).await;
    assert_eq!(sha256(&artifact_raw), artifact_digest);
    assert_eq!(sha256(&image_raw), image_digest);
    let artifact_m: serde_json::Value = serde_json::from_slice(&artifact_raw).unwrap();
    let image_m: serde_json::Value = serde_json::from_slice(&image_raw).unwrap();
    let base_m: serde_json::Value = serde_json::from_slice(
        &t.skopeo(&["inspect", "--raw", &format!("docker://{base}")])
            .await,
    )
    .unwrap();
    let layer_digests = |m: &serde_json::Value| -> Vec<String> {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    // The image: the base's layers, then the model's layers (the artifact's own blobs: the
    // weights file alone, the small files packed together).
    let (image_layers, base_layers) = (layer_digests(&image_m), layer_digests(&base_m));
    assert_eq!(image_layers.len(), base_layers.len() + 2, "{image_m}");
    assert_eq!(image_layers[..base_layers.len()], base_layers[..]);
    assert_eq!(
        layer_digests(&artifact_m),
        image_layers[base_layers.len()..]
    );
    // Base layers were mounted from base/tiny, never uploaded again.
    let log = std::fs::read_to_string(&reg.log_path).unwrap();
    for layer in &base_layers {
        assert!(
            !log.lines()
                .any(|l| l.contains("\"PUT /v2/") && l.contains(layer.as_str())),
            "base layer {layer} was uploaded"
        );
    }
    let config: serde_json::Value = serde_json::from_slice(
        &t.skopeo(&["inspect", "--config", &format!("docker://{image}")])
            .await,
    )
    .unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "1", "{config}");
    assert_eq!(labels["org.opencontainers.image.title"], "churn");
    assert_eq!(labels["edgetrain.dev/job-name"], "job-1");
    assert_eq!(labels["edgetrain.dev/code-digest"], "sha256:c0de");
    assert_eq!(labels["edgetrain.dev/data-fingerprint"], "sha256:da7a");

    // Copied to an OCI layout and unpacked: the model at modelPath, the base's files intact.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    t.skopeo(&[
        "copy",
        &format!("docker://{image}"),
        &format!("oci:{}:img", layout.display()),
    ])
    .await;
    let bundle = dir.path().join("bundle");
    let out = tokio::process::Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:img", layout.display()))
        .arg(&bundle)
        .output()
        .await
        .expect("umoci installed (scripts/install-tools.sh)");
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("opt/model/model.onnx")).unwrap(),
        t.model
    );
    assert_eq!(
        edgetrain_sandbox_azure::tiny_base_differences(&rootfs),
        Vec::<String>::new(),
        "the base image's files, intact"
    );
    let runtime: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert!(
        runtime["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "AZUREML_MODEL_DIR=/opt/model"),
        "{runtime}"
    );

    // The image answers predictions, run as its own config says.
    let served = serve_bundle(&bundle).await;
    assert!(
        served.env.iter().any(|e| e == "PORT=5001"),
        "{:?}",
        served.env
    );
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/", served.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<String>().await.unwrap(), "Healthy");
    let rows = json!([
        {"tenure": 2, "monthly": 70, "support_calls": 5},
        {"tenure": 50, "monthly": 70, "support_calls": 0},
        {"tenure": 5, "monthly": 30, "support_calls": 4},
        {"tenure": 40, "monthly": 90, "support_calls": 1},
    ]);
    let answer: serde_json::Value = http
        .post(format!("{}/score", served.url))
        .json(&json!({"rows": rows}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["predictions"], json!([1, 0, 1, 0]), "{answer}");
    // The same as the model's own predictions on the host (rows in features.json order).
    let features: serde_json::Value = serde_json::from_slice(
        &std::fs::read(training.path().join("model/features.json")).unwrap(),
    )
    .unwrap();
    let matrix: Vec<Vec<f64>> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            features["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| r[f.as_str().unwrap()].as_f64().unwrap())
                .collect()
        })
        .collect();
    let host = host_predictions(&training.path().join("model"), &json!(matrix)).await;
    assert_eq!(answer["predictions"], host["predictions"]);
    let probabilities = |v: &serde_json::Value| -> Vec<f64> {
        v["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|p| p.as_f64().unwrap()))
            .collect()
    };
    let (served_p, host_p) = (probabilities(&answer), probabilities(&host));
    assert_eq!(served_p.len(), 8, "{answer}");
    assert_eq!(served_p, host_p);
    // A row without a feature the model needs is a clear 400.
    let bad = http
        .post(format!("{}/score", served.url))
        .json(&json!({"rows": [{"tenure": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("support_calls"));
    drop(served);

    // One provenance referrer per digest, found from each (tag-schema fallback here); its
    // statement names both digests, the model version, job, code digest and data fingerprint.
    let reader = t.reader();
    assert_eq!(st.referrers.len(), 2);
    for subject in [&artifact_digest, &image_digest] {
        let refs = reader.referrers("models/churn", subject).await.unwrap();
        assert_eq!(refs.len(), 1, "{subject}");
        let referrer = refs[0].digest().to_string();
        assert!(
            st.referrers
                .iter()
                .any(|r| r.digest == referrer && &r.subject == subject),
            "{referrer} of {subject} not in status {:?}",
            st.referrers
        );
        let m: serde_json::Value = serde_json::from_slice(
            &reader
                .get_manifest("models/churn", &referrer)
                .await
                .unwrap()
                .bytes,
        )
        .unwrap();
        assert_eq!(m["subject"]["digest"], subject.as_str());
        let statement: serde_json::Value = serde_json::from_slice(
            &reader
                .get_small_blob("models/churn", m["layers"][0]["digest"].as_str().unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        let names: Vec<&str> = statement["subject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [artifact.as_str(), image.as_str()]);
        let params = &statement["predicate"]["buildDefinition"]["externalParameters"];
        assert_eq!(params["model"], st.model_id.clone().unwrap().as_str());
        assert!(
            params["model"]
                .as_str()
                .unwrap()
                .ends_with("/models/churn/versions/1")
        );
        assert_eq!(params["job"], "job-1");
        assert_eq!(params["codeDigest"], "sha256:c0de");
        assert_eq!(params["dataFingerprint"], "sha256:da7a");
        let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"].to_string();
        assert!(
            deps.contains(base_digest.trim_start_matches("sha256:")),
            "{deps}"
        );
    }
    ev_ok(w, "served", "Pushed").await;

    // Another release of the same repository (version 2, Retain): deleting `served` must
    // leave it, and the base, alone.
    t.release(
        "keeper",
        json!({"trainingRunRef": {"name": "train"}, "model": {"name": "churn", "version": "2"}}),
    )
    .await;
    let keeper = t.ready("keeper", 90).await;
    let keeper_artifact = keeper.artifact_digest.clone().unwrap();

    // Deleting with a credential that may push but not delete (ACR's AcrPush role) fails,
    // named as a refused delete: a condition and a Warning event, and the object stays
    // (finalizer) with everything in place.
    set_secret(
        w,
        "push-only",
        json!({"username": "pusher", "password": "pusher-password"}),
    )
    .await;
    let api: Api<ModelRelease> = Api::namespaced(w.client.clone(), &w.ns);
    api.patch(
        "served",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"registry": {"credentialsSecretRef": {"name": "push-only"}}}}),
        ),
    )
    .await
    .unwrap();
    api.delete("served", &Default::default()).await.unwrap();
    let ev = event_for(w, "served", "RegistryDeleteDenied").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    let (_, reason, message) = eventually(30, "served Stalled on the refused delete", || async {
        let c = release_condition(w, "served", "Stalled").await?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(reason, "RegistryDeleteDenied", "{message}");
    assert!(message.contains("AcrDelete"), "{message}");
    assert!(!message.contains("pusher-password"), "{message}");
    assert!(api.get_opt("served").await.unwrap().is_some());
    t.skopeo(&["inspect", "--raw", &raw(&image_digest)]).await;

    // With a credential that may delete, the cleanup completes and the object goes.
    api.patch(
        "served",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"registry": {"credentialsSecretRef": {"name": "acr"}}}})),
    )
    .await
    .unwrap();
    eventually(60, "served deleted", || async {
        api.get_opt("served").await.unwrap().is_none().then_some(())
    })
    .await;
    ev_ok(w, "served", "Deleted").await;
    ev_ok(w, "served", "Archived").await;
    // Its manifests, tags and referrers are gone...
    for d in [&artifact_digest, &image_digest] {
        assert!(matches!(
            reader.get_manifest("models/churn", d).await,
            Err(edgetrain_registry::Error::NotFound { .. })
        ));
        assert_eq!(reader.referrers("models/churn", d).await.unwrap(), vec![]);
    }
    for r in &st.referrers {
        assert!(
            reader
                .get_manifest("models/churn", &r.digest)
                .await
                .is_err()
        );
    }
    for tag in ["churn-1", "churn-1-serving"] {
        assert!(
            matches!(
                reader.get_manifest("models/churn", tag).await,
                Err(edgetrain_registry::Error::NotFound { .. })
            ),
            "{tag}"
        );
    }
    // ...what it did not push is intact: the base, and the other release's artifact.
    t.skopeo(&["inspect", "--raw", &format!("docker://{base}")])
        .await;
    t.skopeo(&["inspect", "--raw", &format!("docker://{keeper_artifact}")])
        .await;
    assert_eq!(
        reader
            .get_manifest("models/churn", "churn-2")
            .await
            .unwrap()
            .digest,
        keeper_artifact.rsplit_once('@').unwrap().1
    );
    // Version 1 is archived (kept: versions are immutable), version 2 is not.
    let version = |id: &str| w.sim.resource(id).expect("the version is kept");
    assert_eq!(
        version(st.model_id.as_deref().unwrap())["properties"]["isArchived"],
        true
    );
    assert_ne!(
        version(keeper.model_id.as_deref().unwrap())["properties"]["isArchived"],
        true
    );
    ctl.abort();
}

/// `PUT …/blobs/uploads/…?digest=…` lines of the registry's access log (completed blob
/// uploads), as the digests they carry.
fn uploads_in(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"PUT /v2/models/churn/blobs/uploads/"))
        .filter_map(|l| {
            let d = l.split("digest=").nth(1)?;
            let d = d.split([' ', '&', '"']).next()?;
            Some(d.replace("%3A", ":"))
        })
        .collect()
}

/// The controller process SIGKILLed in the middle of the push, after some blobs reached the
/// registry and while others were still being sent: the restarted process sends none of the
/// finished blobs again, ends with the digests planned (and registered) before the kill, and
/// there is one model version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_mid_push_resumes_without_resending_blobs_and_keeps_one_version() {
    let t = trained().await;
    let w = &t.w;
    let storage = w.sim.storage_endpoints().unwrap();
    // A large weight file: its upload is still running when a small blob has finished.
    let big: Vec<u8> = (0..96u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    w.sim
        .seed_blob(
            &storage.datastore_account,
            &storage.datastore_container,
            "azureml/job-1/model/weights.bin",
            big,
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let process = ControllerProcess::start(w, dir.path(), 1);
    // No version in the spec: the restarted process must find the one it registered.
    t.release(
        "killed",
        json!({"trainingRunRef": {"name": "train"}, "model": {"name": "churn"}}),
    )
    .await;
    let log_path = t.reg.log_path.clone();
    let before = eventually(120, "a first blob upload completed", || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        async move { (!uploads_in(&log).is_empty()).then_some(log) }
    })
    .await;
    // Killed mid-push, nothing cleaned up: any local copy of the model would still be there.
    let left_on_disk = process.temp_entries();
    let controller_log = process.kill();
    assert!(
        left_on_disk.is_empty(),
        "the model was copied to disk (it must be read from the datastore): {left_on_disk:?}"
    );
    let done_before = uploads_in(&before);
    let registered = release_status(w, "killed").await.unwrap_or_default();
    assert!(
        release_condition(w, "killed", "Ready").await.map(|c| c.0) != Some("True".into()),
        "the push was not finished at the kill:\n{controller_log}"
    );
    let cut = before.len();

    let process = ControllerProcess::start(w, dir.path(), 2);
    let st = t.ready("killed", 180).await;
    assert_eq!(process.temp_entries(), Vec::<std::path::PathBuf>::new());
    drop(process);
    let after = std::fs::read_to_string(&log_path).unwrap();
    let done_after = uploads_in(&after[cut.min(after.len())..]);
    // The kill came mid-push: something was still to be uploaded after the restart...
    assert!(
        !done_after.is_empty(),
        "nothing was left to upload: {done_before:?}"
    );
    // ...and nothing that had reached the registry was sent again.
    for d in &done_before {
        assert!(
            !done_after.contains(d),
            "{d} uploaded again after the restart"
        );
    }
    assert!(st.bytes_reused.unwrap() > 0, "{st:?}");
    // One version, and the digests are the ones planned and registered before the kill.
    assert_one_version_with_the_artifact_of(w, &st);
    if let Some(v) = registered.model_version {
        assert_eq!(Some(v), st.model_version);
    }
    let m = t
        .reader()
        .get_manifest(
            "models/churn",
            digest_of(st.artifact_digest.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(m.digest, digest_of(st.artifact_digest.as_deref().unwrap()));
}

/// The controller process SIGKILLed while its model version PUT is in flight (held by the
/// simulator, seen in its fault counter, not guessed by a timer): the restarted process ends
/// with one model version and the same digests as an undisturbed release of the same model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_during_registration_keeps_one_version_and_the_digests() {
    // Only the version PUT is held, long enough that the kill surely lands inside it; a PUT
    // of the restarted process is held as long, then goes through.
    let (w, dir) = world_with_faults(edgetrain_sandbox_azure::FaultConfig {
        latency_ms: 4000,
        methods: vec!["PUT".into()],
        path_contains: vec!["/models/churn/versions/".into()],
        ..Default::default()
    })
    .await;
    let t = trained_with(w, dir, vec![("model.onnx", fake_model())]).await;
    let w = &t.w;
    let work = tempfile::tempdir().unwrap();
    let process = ControllerProcess::start(w, work.path(), 1);
    // No version in the spec: the restarted process picks it again and must not take a second.
    t.release(
        "killed",
        json!({"trainingRunRef": {"name": "train"}, "model": {"name": "churn"}}),
    )
    .await;
    let held = || w.sim.faults_injected().get("latency").copied().unwrap_or(0);
    eventually(120, "the model version PUT held in flight", || async {
        (held() >= 1).then_some(())
    })
    .await;
    let controller_log = process.kill();
    assert_ne!(
        release_condition(w, "killed", "Registered")
            .await
            .map(|c| c.0)
            .as_deref(),
        Some("True"),
        "the registration was not finished at the kill:\n{controller_log}"
    );

    let process = ControllerProcess::start(w, work.path(), 2);
    let st = t.ready("killed", 180).await;
    assert_eq!(process.temp_entries(), Vec::<std::path::PathBuf>::new());
    drop(process);
    assert_one_version_with_the_artifact_of(w, &st);

    // An undisturbed in-process release of the same run and version: the same digest.
    let ctl = t.controller();
    t.release(
        "again",
        json!({"trainingRunRef": {"name": "train"}, "model": {"name": "churn", "version": "1"}}),
    )
    .await;
    let again = t.ready("again", 90).await;
    ctl.abort();
    assert_eq!(again.artifact_digest, st.artifact_digest);
    assert_eq!(again.model_id, st.model_id);
    assert_eq!(again.bytes_uploaded, Some(0));
}

/// Exactly one model version exists at the simulator, version 1, and its lineage properties
/// name the artifact digest the release reports.
fn assert_one_version_with_the_artifact_of(w: &World, st: &edgetrain_api::ModelReleaseStatus) {
    let versions: Vec<_> = w
        .sim
        .inventory()
        .into_iter()
        .filter(|i| i.resource_type.ends_with("models/versions"))
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(st.model_version.as_deref(), Some("1"));
    let version = w.sim.resource(&versions[0].id).unwrap();
    assert_eq!(
        version["properties"]["properties"]["edgetrain.dev/artifact-digest"],
        digest_of(st.artifact_digest.as_deref().unwrap())
    );
}

/// A registry that refuses the push (the Secret is a pull-only user): Stalled
/// `RegistryPushDenied` with a Warning event; neither Pushed nor Ready is ever True, and nothing
/// is in the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_that_refuses_the_push_stalls_and_is_never_ready() {
    let t = trained().await;
    let w = &t.w;
    let ctl = t.controller();
    set_secret(
        w,
        "pull-only",
        json!({"username": "skopeo", "password": "skopeo-password"}),
    )
    .await;
    // Created with the pull-only Secret from the start: no push with another credential first.
    let api: Api<ModelRelease> = Api::namespaced(w.client.clone(), &w.ns);
    let mr: ModelRelease = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
        "metadata": {"name": "refused", "namespace": w.ns},
        "spec": {"trainingRunRef": {"name": "train"}, "model": {"name": "churn", "version": "1"},
                 "registry": {"loginServer": t.reg.host, "repository": "models/churn",
                              "credentialsSecretRef": {"name": "pull-only"}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &mr).await.unwrap();
    let (_, reason, message) = eventually(60, "refused Stalled", || async {
        let c = release_condition(w, "refused", "Stalled").await?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(reason, "RegistryPushDenied", "{message}");
    assert!(!message.contains("skopeo-password"), "{message}");
    let ev = event_for(w, "refused", "RegistryPushDenied").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    for type_ in ["Pushed", "Ready"] {
        let c = release_condition(w, "refused", type_).await.unwrap();
        assert_eq!(c.0, "False", "{type_}: {c:?}");
    }
    let st = release_status(w, "refused").await.unwrap();
    assert_eq!(st.artifact_digest, None, "{st:?}");
    // The version tag the release would push does not exist.
    assert!(
        t.reader()
            .get_manifest("models/churn", "churn-1")
            .await
            .is_err(),
        "nothing pushed under churn-1"
    );
    ctl.abort();
}

/// Issue 11: the release's model files are the datastore blobs themselves. The artifact
/// digested from them (through the controller's listing and the real blob client) equals the
/// one from the same files on disk, and a blob overwritten after the listing fails the pass
/// with an error naming it instead of yielding bytes that do not match a digest.
#[tokio::test]
async fn model_files_from_the_datastore_digest_like_local_files_and_a_changed_blob_is_refused() {
    use std::sync::Arc;

    use edgetrain_azure::blob::{AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint};
    use edgetrain_controller::model_release::observe::model_files;
    use edgetrain_registry::{ModelMeta, PackOptions, files_in_dir, model_artifact};

    let state = tempfile::tempdir().unwrap();
    let sim = edgetrain_sandbox_azure::AzureSim::start(edgetrain_sandbox_azure::Config {
        state_dir: state.path().to_owned(),
        azurite: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let storage = sim.storage_endpoints().unwrap();
    let container = storage.datastore_container.clone();
    // Larger than one read chunk, not a multiple of the tar block.
    let weights: Vec<u8> = (0..(3u32 << 20) + 5)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let local = tempfile::tempdir().unwrap();
    for (name, data) in [
        ("w.onnx", weights.clone()),
        ("cfg/labels.txt", b"churn\nstay\n".to_vec()),
    ] {
        sim.seed_blob(
            &storage.datastore_account,
            &container,
            &format!("azureml/job-9/model/{name}"),
            data.clone(),
        )
        .await
        .unwrap();
        let path = local.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let http = edgetrain_azure::transport::HttpConfig {
        extra_ca_bundle: Some(storage.ca_pem_path.clone()),
        ..Default::default()
    }
    .build()
    .unwrap();
    let blob: Arc<dyn BlobApi> = Arc::new(BlobClient::new(
        http,
        BlobEndpoint::parse(&format!(
            "{}/{}",
            storage.path_style, storage.datastore_account
        ))
        .unwrap(),
        BlobAuth::SharedKey(AccountKey::from_base64(storage.datastore_key.expose()).unwrap()),
    ));
    let meta = ModelMeta {
        name: "churn".into(),
        version: "1".into(),
        created: 1_764_000_000,
        format: None,
        description: None,
        annotations: Default::default(),
    };
    let listed = model_files(blob.clone(), &container, "azureml/job-9/model")
        .await
        .unwrap();
    let paths: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["cfg/labels.txt", "w.onnx"]);
    let from_store = model_artifact(&listed, &meta, &PackOptions::default())
        .await
        .unwrap();
    let from_disk = model_artifact(
        &files_in_dir(local.path()).unwrap(),
        &meta,
        &PackOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(from_store.manifest.digest, from_disk.manifest.digest);

    // Overwritten after the listing, same size: the old listing's reads are refused.
    let mut changed = weights;
    changed[0] ^= 0xff;
    sim.seed_blob(
        &storage.datastore_account,
        &container,
        "azureml/job-9/model/w.onnx",
        changed,
    )
    .await
    .unwrap();
    let err = model_artifact(&listed, &meta, &PackOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("azureml/job-9/model/w.onnx"), "{text}");
    assert!(text.contains("changed after it was listed"), "{text}");
    assert!(err.is_transient(), "a fresh listing may succeed: {text}");
    // A listing of the new content digests the new bytes.
    let relisted = model_files(blob.clone(), &container, "azureml/job-9/model")
        .await
        .unwrap();
    let again = model_artifact(&relisted, &meta, &PackOptions::default())
        .await
        .unwrap();
    assert_ne!(again.manifest.digest, from_disk.manifest.digest);

    let none = model_files(blob, &container, "azureml/job-0/model")
        .await
        .unwrap_err();
    assert_eq!(none.reason(), "OutputNotFound");
    sim.shutdown().await;
}
