//! The plugin binary against the in-process API server, with statuses written by the test.

use std::{path::PathBuf, process::Command};

use edgetrain_api::{EdgeComputeTarget, ModelRelease, TrainingRun};
use edgetrain_sandbox_kube::{Options, SandboxKube};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_I: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// `apply_progress` writes the same message into Ready and Stalled.
const DENIED: &str = "HTTP 403: AuthorizationFailed: the client has no role (x-ms-request-id: 0f1e2d3c-aaaa-bbbb-cccc-0123456789ab)";

struct World {
    _kube: SandboxKube,
    client: Client,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let kube = SandboxKube::start(Options::default()).await.unwrap();
    kube.register_crds(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig).unwrap();
    World {
        client: kube.client().unwrap(),
        _kube: kube,
        kubeconfig,
        _dir: dir,
    }
}

/// Creates `obj` and writes `status` through the status subresource, as a controller would.
async fn create<K>(w: &World, obj: Value, status: Value)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(w.client.clone(), "default");
    let obj: K = serde_json::from_value(obj).unwrap();
    let name = obj.meta().name.clone().unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

async fn seed(w: &World) {
    create::<EdgeComputeTarget>(
        w,
        json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "EdgeComputeTarget",
            "metadata": {"name": "edge"},
            "spec": {
                "stackHub": {"armEndpoint": "https://management.local.azurestack.external",
                    "location": "local", "subscriptionId": "00000000-0000-0000-0000-0000000000aa",
                    "resourceGroup": "rg", "credentialsSecretRef": {"name": "hub"}},
                "vm": {"size": "Standard_DS2_v2",
                    "image": {"publisher": "Canonical", "offer": "ubuntu", "sku": "22_04-lts"},
                    "allowedSshSources": ["10.0.0.0/8"]},
                "azureML": {"subscriptionId": "00000000-0000-0000-0000-0000000000bb",
                    "resourceGroup": "rg", "workspace": "ws1", "computeName": "edge1",
                    "credentialsSecretRef": {"name": "ml"}}
            }
        }),
        json!({"powerState": "Running", "publicIP": "203.0.113.7",
               "conditions": [cond("Ready", "True", "Ready", "VM running and attached to Azure ML")]}),
    )
    .await;
    let run = |name: &str| {
        json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name},
            "spec": {
                "computeTargetRef": {"name": "edge"},
                "code": {"configMapRef": {"name": "code"}},
                "environment": {"image": "python:3.12"},
                "command": "python train.py",
                "data": {"endpoint": "https://d.blob.example", "container": "data",
                         "credentialsSecretRef": {"name": "d"}}
            }
        })
    };
    create::<TrainingRun>(
        w,
        run("train"),
        json!({"phase": "Succeeded", "attempts": 1, "jobName": "job-train-1",
               "codeDigest": "sha256:c0de", "dataFingerprint": "sha256:da7a",
               "conditions": [cond("Ready", "True", "Succeeded", "job completed")]}),
    )
    .await;
    create::<TrainingRun>(
        w,
        run("broken"),
        json!({"phase": "Failed", "attempts": 1, "jobName": "job-broken-1",
        "conditions": [
            cond("Ready", "False", "AuthorizationFailed", DENIED),
            cond("Reconciling", "False", "NotReconciling", ""),
            cond("Stalled", "True", "AuthorizationFailed", DENIED),
        ]}),
    )
    .await;
    let release = |name: &str, run: &str| {
        json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
            "metadata": {"name": name},
            "spec": {
                "trainingRunRef": {"name": run},
                "model": {"name": "churn"},
                "registry": {"loginServer": "r.example", "repository": "m/churn",
                             "credentialsSecretRef": {"name": "acr"}}
            }
        })
    };
    let released = json!({
        "modelId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1/models/churn/versions/3",
        "modelVersion": "3", "artifactDigest": DIGEST_A, "imageDigest": DIGEST_I,
        "referrers": [{"artifactType": "application/vnd.in-toto+json", "digest": "sha256:cc", "subject": DIGEST_I}],
        "conditions": [cond("Ready", "True", "Pushed", "")]
    });
    create::<ModelRelease>(w, release("churn", "train"), released.clone()).await;
    create::<ModelRelease>(w, release("bad", "broken"), released).await;
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn plugin(w: &World, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-edgetrain"))
        .arg("--kubeconfig")
        .arg(&w.kubeconfig)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_commands_against_the_sandbox() {
    let w = world().await;
    seed(&w).await;
    let w = &w;

    // status: one table with all three kinds and their reasons.
    let r = tokio::task::block_in_place(|| plugin(w, &["status"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in [
        "EdgeComputeTarget   default/edge",
        "TrainingRun         default/broken   False   AuthorizationFailed   Failed",
        "TrainingRun         default/train    True    Succeeded",
        "ModelRelease        default/churn    True    Pushed",
    ] {
        assert!(r.stdout.contains(line), "{line:?} missing in\n{}", r.stdout);
    }
    let r = tokio::task::block_in_place(|| plugin(w, &["status", "-A", "-o", "json"]));
    let rows: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.len(), 5, "{}", r.stdout);
    assert_eq!(rows[0]["details"]["address"], "203.0.113.7");
    let r = tokio::task::block_in_place(|| plugin(w, &["status", "-n", "elsewhere"]));
    assert_eq!(r.stdout.lines().count(), 1, "only the header: {}", r.stdout);

    // lineage: consistent chain, yaml output.
    let r = tokio::task::block_in_place(|| plugin(w, &["lineage", "churn", "-o", "yaml"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let l: Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(l["imageDigest"], DIGEST_I);
    assert_eq!(l["jobName"], "job-train-1");
    assert_eq!(l["dataFingerprint"], "sha256:da7a");
    assert_eq!(l["mismatches"], json!([]));

    // lineage of a release from a failed run: printed, but loud and non-zero.
    let r = tokio::task::block_in_place(|| plugin(w, &["lineage", "bad"]));
    assert_eq!(r.code, 2);
    assert!(r.stdout.contains("job-broken-1"), "{}", r.stdout);
    assert!(r.stderr.contains("LINEAGE MISMATCH"), "{}", r.stderr);
    assert!(r.stderr.contains("phase is Failed"), "{}", r.stderr);

    // explain-failure of the failed run: code, request id, hint.
    let r = tokio::task::block_in_place(|| plugin(w, &["explain-failure", "broken"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("reason:     AuthorizationFailed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("azureCode:  AuthorizationFailed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("requestId:  0f1e2d3c-aaaa-bbbb-cccc-0123456789ab"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("grant it Contributor"), "{}", r.stdout);
    let r =
        tokio::task::block_in_place(|| plugin(w, &["explain-failure", "ect/edge", "-o", "json"]));
    let e: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(e["condition"], Value::Null, "{}", r.stdout);

    // Missing resources: a clear message and a non-zero exit.
    let r = tokio::task::block_in_place(|| plugin(w, &["lineage", "nope"]));
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr.trim(),
        "error: ModelRelease default/nope not found"
    );
    let r = tokio::task::block_in_place(|| plugin(w, &["explain-failure", "tr/nope"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("no EdgeComputeTarget, TrainingRun or ModelRelease named default/nope"),
        "{}",
        r.stderr
    );
    let r = tokio::task::block_in_place(|| plugin(w, &["explain-failure", "pod/x"]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown kind \"pod\""), "{}", r.stderr);
    let r = tokio::task::block_in_place(|| plugin(w, &["--context", "nosuch", "status"]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("kubeconfig"), "{}", r.stderr);
}
