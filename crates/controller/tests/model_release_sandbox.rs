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
            users: vec![edgetrain_sandbox_azure::RegistryUser {
                username: "skopeo".into(),
                password: edgetrain_sandbox_azure::Secret::new("skopeo-password"),
                pull_only: true,
            }],
            ..Default::default()
        },
        service_principals: vec![edgetrain_sandbox_azure::ServicePrincipal {
            tenant: TENANT.into(),
            client_id: ML_CLIENT.into(),
            client_secret: edgetrain_sandbox_azure::Secret::new(ML_SECRET),
        }],
        workspaces: vec![edgetrain_sandbox_azure::WorkspaceConfig {
            subscription_id: SUB.into(),
            resource_group: "rg1".into(),
            name: "ws1".into(),
            location: "westeurope".into(),
        }],
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

#[tokio::test]
async fn a_succeeded_run_is_registered_pushed_and_a_second_release_uploads_nothing() {
    let (w, _dir) = world_with_storage_and_registry().await;
    let storage = w.sim.storage_endpoints().unwrap();
    let reg = w.sim.registry().unwrap().clone();
    let model = b"tiny model weights \x00\x01\x02".repeat(1000);
    w.sim
        .seed_blob(
            &storage.datastore_account,
            &storage.datastore_container,
            "azureml/job-1/model/model.onnx",
            model.clone(),
        )
        .await
        .unwrap();
    let mut cfg = config(&w, Duration::from_secs(300), Metrics::default());
    let http = edgetrain_azure::transport::HttpConfig {
        extra_ca_bundle: Some(reg.ca_pem_path.clone()),
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
    let ctl = spawn(cfg);
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
    // The registry accepts the operator's Azure ML principal (ACR AAD exchange).
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(w.client.clone(), &w.ns);
    let s = serde_json::from_value(json!({
        "metadata": {"name": "acr"},
        "stringData": {"tenantId": TENANT, "clientId": ML_CLIENT, "clientSecret": ML_SECRET}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let api: Api<ModelRelease> = Api::namespaced(w.client.clone(), &w.ns);
    for name in ["first", "second"] {
        let mr: ModelRelease = serde_json::from_value(json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
            "metadata": {"name": name, "namespace": w.ns},
            "spec": {
                "trainingRunRef": {"name": "train"},
                "model": {"name": "churn", "version": "1"},
                "registry": {"loginServer": reg.host, "repository": "models/churn",
                             "credentialsSecretRef": {"name": "acr"}}
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &mr).await.unwrap();
        eventually(90, &format!("{name} Ready"), || async {
            let c = release_condition(&w, name, "Ready").await?;
            (c.0 == "True").then_some(())
        })
        .await;
    }
    let first = release_status(&w, "first").await.unwrap();
    let second = release_status(&w, "second").await.unwrap();
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
    ev_ok(&w, "first", "Registered").await;
    ev_ok(&w, "second", "Adopted").await;
    ev_ok(&w, "first", "Pushed").await;

    // What the registry holds at that digest hashes to it (read back as a pull-only user).
    let digest = artifact.rsplit_once('@').unwrap().1;
    let reader = edgetrain_registry::Registry::new(
        reg.url.parse().unwrap(),
        edgetrain_azure::transport::HttpConfig {
            extra_ca_bundle: Some(reg.ca_pem_path.clone()),
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
    .unwrap();
    let m = reader
        .get_manifest("models/churn", "churn-1")
        .await
        .unwrap();
    assert_eq!(m.digest, digest);

    // A different run under the same version is a conflict, never Ready.
    create_run(
        &w,
        "train2",
        json!({"phase": "Succeeded", "jobName": "job-2",
               "outputs": {"model": "azureml://datastores/workspaceblobstore/paths/azureml/job-1/model/"}}),
    )
    .await;
    let mr: ModelRelease = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
        "metadata": {"name": "conflict", "namespace": w.ns},
        "spec": {
            "trainingRunRef": {"name": "train2"},
            "model": {"name": "churn", "version": "1"},
            "registry": {"loginServer": reg.host, "repository": "models/churn",
                         "credentialsSecretRef": {"name": "acr"}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &mr).await.unwrap();
    let (_, reason, message) = eventually(60, "Stalled VersionConflict", || async {
        let c = release_condition(&w, "conflict", "Stalled").await?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(reason, "VersionConflict");
    assert!(message.contains("jobName"), "{message}");
    assert_eq!(
        release_condition(&w, "conflict", "Ready").await.unwrap().0,
        "False"
    );
    let ev = event_for(&w, "conflict", "VersionConflict").await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    ctl.abort();
}

async fn ev_ok(w: &World, object: &str, reason: &str) {
    let ev = event_for(w, object, reason).await;
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
}
