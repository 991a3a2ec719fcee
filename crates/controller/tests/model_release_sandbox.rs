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
    let events: Api<Event> = Api::namespaced(w.client.clone(), &w.ns);
    eventually(30, &format!("a {reason} event for {object}"), || async {
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
    })
    .await
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
