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
        "modelVersion": "3", "artifactDigest": format!("r.example/m/churn@{DIGEST_A}"),
        "imageDigest": format!("r.example/m/churn@{DIGEST_I}"),
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

    // lineage: consistent chain, yaml output (status only: r.example is no registry; the
    // registry side is in the test below).
    let r = tokio::task::block_in_place(|| {
        plugin(w, &["lineage", "churn", "-o", "yaml", "--no-registry"])
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    let l: Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(l["imageDigest"], format!("r.example/m/churn@{DIGEST_I}"));
    assert_eq!(l["jobName"], "job-train-1");
    assert_eq!(l["dataFingerprint"], "sha256:da7a");
    assert_eq!(l["mismatches"], json!([]));

    // lineage of a release from a failed run: printed, but loud and non-zero.
    let r = tokio::task::block_in_place(|| plugin(w, &["lineage", "bad", "--no-registry"]));
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

// ---- `logs` and `lineage`: real jobs and releases by the operator against the Azure
// simulator (with Azurite and the registry) ----

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const PRINCIPALS: [(&str, &str, &str); 2] = [
    (
        "hub-sp",
        "stackhub-operator",
        "hub-client-secret-value-7f3a9",
    ),
    ("ml-sp", "azureml-operator", "ml-client-secret-value-c41b2"),
];

/// Polls `f` until it returns Some; panics after `secs` with `what`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn apply<K>(client: &Client, obj: Value)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    Api::<K>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}

fn training_run(name: &str, target: &str, data: &str, command: &str) -> Value {
    json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "computeTargetRef": {"name": target},
            "experimentName": "logs",
            "code": {"configMapRef": {"name": "code"}},
            "environment": {"image": "python:3.12"},
            "command": command,
            "data": {"endpoint": data, "container": "telemetry", "prefix": "churn/",
                     "credentialsSecretRef": {"name": "storage"}},
            "backoffLimit": 0
        }
    })
}

async fn run_status(client: &Client, name: &str) -> Option<edgetrain_api::TrainingRunStatus> {
    Api::<TrainingRun>::namespaced(client.clone(), "default")
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|r| r.status)
}

/// The plugin's `run` in-process (so that its HTTP client can resolve the datastore's
/// `*.blob.localhost` names to Azurite, as DNS would): exit status and stdout.
async fn plugin_in_process(
    client: &Client,
    azure: &edgetrain_controller::runtime::factory::AzureClients,
    args: &[&str],
) -> (Result<(), kubectl_edgetrain::Error>, String) {
    use clap::Parser;
    let cli = kubectl_edgetrain::Cli::parse_from(
        std::iter::once("kubectl-edgetrain").chain(args.iter().copied()),
    );
    let mut out = Vec::new();
    let r = kubectl_edgetrain::run(&cli, client, "default", azure, &mut out).await;
    (r, String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_and_lineage_of_real_runs_and_releases() {
    use edgetrain_controller::{
        metrics::Metrics,
        runtime::factory::{AzureClients, Factories, http_config_from_env},
    };
    use edgetrain_sandbox_azure::{AzureSim, LroConfig, ServicePrincipal, WorkspaceConfig};
    let dir = tempfile::tempdir().unwrap();
    let sim = AzureSim::start(edgetrain_sandbox_azure::Config {
        state_dir: dir.path().join("azure"),
        tenant_id: TENANT.into(),
        azurite: true,
        service_principals: PRINCIPALS
            .iter()
            .map(|(_, id, secret)| ServicePrincipal::new(TENANT, id, secret))
            .collect(),
        lro: LroConfig {
            duration_ms: 200,
            retry_after_secs: 1,
            fail_resource_names: vec![],
        },
        allowed_vm_sizes: vec!["Standard_DS2_v2".into()],
        registry: edgetrain_sandbox_azure::RegistryConfig {
            enabled: true,
            ..Default::default()
        },
        workspaces: vec![WorkspaceConfig::new(SUB, "rg1", "ws1", "westeurope")],
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world().await;
    let client = w.client.clone();
    let storage = sim.storage_endpoints().expect("azurite");
    sim.seed_blob(
        &storage.stack_hub_account,
        "telemetry",
        "churn/part-1.csv",
        b"a,b\n1,2\n".to_vec(),
    )
    .await
    .unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    let mut secret_bodies: Vec<Value> = PRINCIPALS
        .iter()
        .map(|(name, id, secret)| {
            json!({"metadata": {"name": name},
                   "stringData": {"tenantId": TENANT, "clientId": id, "clientSecret": secret}})
        })
        .collect();
    secret_bodies.push(json!({"metadata": {"name": "storage"},
        "stringData": {"accountName": storage.stack_hub_account,
                       "accountKey": storage.stack_hub_key.expose()}}));
    for s in secret_bodies {
        secrets
            .create(&PostParams::default(), &serde_json::from_value(s).unwrap())
            .await
            .unwrap();
    }
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "code"}, "data": {"train.py": "print('unused')\n"}
    }))
    .unwrap();
    Api::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    // The operator and the plugin each get an HTTP client that trusts the sandbox CA and
    // resolves the datastore's host-style names to Azurite (this test's DNS).
    let http = || {
        let mut config = http_config_from_env();
        config.extra_ca_bundle = Some(storage.ca_pem_path.clone());
        storage
            .resolve_host_style(config.builder().unwrap())
            .build()
            .unwrap()
    };
    let metrics = Metrics::default();
    let controller = tokio::spawn(edgetrain_controller::run(edgetrain_controller::Config {
        client: client.clone(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        default_deletion_policy: edgetrain_api::DeletionPolicy::Retain,
        watch_namespaces: vec![],
        resync: std::time::Duration::from_secs(300),
        max_concurrent_reconciles: edgetrain_controller::DEFAULT_MAX_CONCURRENT_RECONCILES,
        azure_ml_list_pages_per_minute:
            edgetrain_controller::training_run::listing::DEFAULT_PAGES_PER_MINUTE,
        leader: None,
        instance: "test".into(),
        metrics: metrics.clone(),
        factories: Some(Factories::over(&metrics, http(), Default::default())),
        workload_identity: None,
        endpoint_policy: Default::default(),
        stack_hub_rate_limits: Default::default(),
        clock: None,
    }));
    let azure = AzureClients::from_client(&Metrics::default(), http(), Default::default());

    apply::<EdgeComputeTarget>(
        &client,
        json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "EdgeComputeTarget",
            "metadata": {"name": "edge"},
            "spec": {
                "stackHub": {"armEndpoint": sim.base_url(), "location": "local",
                    "subscriptionId": SUB, "resourceGroup": "rg1",
                    "credentialsSecretRef": {"name": "hub-sp"}},
                "vm": {"size": "Standard_DS2_v2",
                    "image": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
                    "allowedSshSources": ["203.0.113.0/24"]},
                "azureML": {"armEndpoint": sim.base_url(), "subscriptionId": SUB,
                    "resourceGroup": "rg1", "workspace": "ws1", "computeName": "c-edge",
                    "credentialsSecretRef": {"name": "ml-sp"}}
            }
        }),
    )
    .await;
    let data = storage.path_style(&storage.stack_hub_account);
    // The job waits for a file the test writes once `--follow` has started, so the job is
    // still running when the follow begins.
    let gate = dir.path().join("gate");
    apply::<TrainingRun>(
        &client,
        training_run(
            "ok",
            "edge",
            &data,
            &format!(
                "echo first line; while [ ! -e {} ]; do sleep 0.2; done; echo second line; \
                 mkdir -p ${{{{outputs.model}}}} && echo weights > ${{{{outputs.model}}}}/model.onnx",
                gate.display()
            ),
        ),
    )
    .await;
    apply::<TrainingRun>(
        &client,
        training_run("fails", "edge", &data, "echo about to fail >&2; exit 3"),
    )
    .await;
    // A run whose target does not exist never gets a job.
    apply::<TrainingRun>(&client, training_run("waiting", "nowhere", &data, "true")).await;

    // Missing run and a run without a job: clear errors from the binary, nothing on stdout.
    let r = tokio::task::block_in_place(|| plugin(&w, &["logs", "nope"]));
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.trim(), "error: TrainingRun default/nope not found");
    let r = tokio::task::block_in_place(|| plugin(&w, &["logs", "waiting"]));
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("TrainingRun default/waiting has no Azure ML job yet (phase Pending)"),
        "{}",
        r.stderr
    );

    // --follow from while the job runs to the end of the run.
    eventually(240, "run ok Running", || async {
        run_status(&client, "ok")
            .await
            .filter(|s| s.phase == edgetrain_api::TrainingRunPhase::Running)
    })
    .await;
    // The log is readable while the job runs (the gate is still closed): what it printed so far.
    let running: Value = eventually(60, "the running job's log so far", || async {
        let (result, out) = plugin_in_process(&client, &azure, &["logs", "ok", "-o", "json"]).await;
        let v: Value = serde_json::from_str(&out).ok().filter(|_| result.is_ok())?;
        (v["log"] == "first line\n").then_some(v)
    })
    .await;
    assert_eq!(running["jobStatus"], "Running", "{running}");
    let follow = {
        let (client, azure) = (client.clone(), &azure);
        async move {
            plugin_in_process(
                &client,
                azure,
                &["logs", "ok", "--follow", "--poll-seconds", "1"],
            )
            .await
        }
    };
    let open_gate = async {
        std::fs::write(&gate, b"").unwrap();
    };
    let ((result, out), ()) = tokio::join!(follow, open_gate);
    result.unwrap();
    assert_eq!(out, "first line\nsecond line\n");
    assert_eq!(
        run_status(&client, "ok").await.unwrap().phase,
        edgetrain_api::TrainingRunPhase::Succeeded,
        "--follow stops only when the run has ended"
    );
    // Without --follow, as JSON.
    let (result, out) = plugin_in_process(&client, &azure, &["logs", "ok", "-o", "json"]).await;
    result.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["log"], "first line\nsecond line\n");
    assert_eq!(v["jobStatus"], "Completed");
    assert!(
        v["logUri"]
            .as_str()
            .unwrap()
            .ends_with("/artifacts/user_logs/std_log.txt"),
        "{v}"
    );

    // lineage of a real release of that run: status and the registry's provenance agree.
    let reg = sim.registry().unwrap().clone();
    let (_, _, base_digest) = reg.base_images[0].clone();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "acr"},
                "stringData": {"tenantId": TENANT, "clientId": PRINCIPALS[1].1,
                               "clientSecret": PRINCIPALS[1].2}}))
            .unwrap(),
        )
        .await
        .unwrap();
    apply::<ModelRelease>(
        &client,
        json!({
            "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
            "metadata": {"name": "release"},
            "spec": {
                "trainingRunRef": {"name": "ok"},
                "model": {"name": "churn"},
                "registry": {"loginServer": reg.host, "repository": "models/churn",
                             "credentialsSecretRef": {"name": "acr"}},
                "image": {"base": format!("{}/base/tiny@{base_digest}", reg.host)}
            }
        }),
    )
    .await;
    let releases: Api<ModelRelease> = Api::namespaced(client.clone(), "default");
    let released = eventually(180, "release Ready", || async {
        let st = releases.get_opt("release").await.unwrap()?.status?;
        let ready = edgetrain_api::conditions::find(&st.conditions, "Ready")
            .is_some_and(|c| c.status == "True");
        ready.then_some(st)
    })
    .await;
    let (result, out) =
        plugin_in_process(&client, &azure, &["lineage", "release", "-o", "json"]).await;
    result.unwrap();
    let l: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(l["mismatches"], json!([]), "{l:#}");
    let provenance = l["registryProvenance"].as_array().unwrap();
    assert_eq!(
        provenance.len(),
        2,
        "artifact and image each carry one: {l:#}"
    );
    let ok = run_status(&client, "ok").await.unwrap();
    assert_eq!(provenance[1]["dataFingerprint"], json!(ok.data_fingerprint));
    assert_eq!(provenance[1]["codeDigest"], json!(ok.code_digest));
    assert_eq!(provenance[1]["jobName"], json!(ok.job_name));
    let (result, out) = plugin_in_process(&client, &azure, &["lineage", "release"]).await;
    result.unwrap();
    assert!(out.contains("(checked)"), "{out}");
    // Status that no longer matches the registry: printed, and a mismatch.
    let mut referrers = serde_json::to_value(&released.referrers).unwrap();
    referrers[0]["digest"] = json!(DIGEST_A);
    releases
        .patch_status(
            "release",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"referrers": referrers}})),
        )
        .await
        .unwrap();
    let (result, out) = plugin_in_process(&client, &azure, &["lineage", "release"]).await;
    assert!(out.contains("STEP"), "the chain is still printed: {out}");
    match result {
        Err(kubectl_edgetrain::Error::LineageMismatch { mismatches, .. }) => assert_eq!(
            mismatches,
            [format!(
                "status records referrer {DIGEST_A} of {}, which the registry does not list",
                released.referrers[0].subject
            )]
        ),
        other => panic!("expected a lineage mismatch, got {other:?}"),
    }

    // A failed run: its log, then an error that says so.
    eventually(240, "run fails Failed", || async {
        run_status(&client, "fails")
            .await
            .filter(|s| s.phase == edgetrain_api::TrainingRunPhase::Failed)
    })
    .await;
    let (result, out) = plugin_in_process(&client, &azure, &["logs", "fails"]).await;
    assert!(out.contains("about to fail\n"), "{out}");
    let e = result.expect_err("a failed run is an error after its log");
    assert!(
        e.to_string()
            .starts_with("TrainingRun default/fails Failed (job "),
        "{e}"
    );
    // explain-failure of the same real run: the operator's reason and what to do.
    let (result, out) = plugin_in_process(
        &client,
        &azure,
        &["explain-failure", "tr/fails", "-o", "json"],
    )
    .await;
    result.unwrap();
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["reason"], "BackoffLimitExceeded", "{e:#}");
    assert!(
        e["message"].as_str().unwrap().contains("about to fail"),
        "the log tail is in the message: {e:#}"
    );
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("kubectl edgetrain logs"),
        "{e:#}"
    );

    controller.abort();
    sim.shutdown().await;
}
