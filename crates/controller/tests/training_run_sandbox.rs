//! TrainingRun against the sandbox: in-process Kubernetes API server, the Azure simulator with
//! Azurite as Stack Hub storage and the Azure ML datastore, jobs run as real Python
//! (examples/training/train.py: scikit-learn → ONNX, metrics logged with the mlflow client).
//! Needs `azurite-blob` and a python3 with examples/training/requirements.txt on PATH (`make
//! tools`; the Makefile sets PATH).

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use edgetrain_api::{TrainingRun, TrainingRunPhase};
use edgetrain_controller::{
    metrics::Metrics,
    runtime::factory::{Factories, http_config_from_env},
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret};
use kube::{Api, api::PostParams};
use serde_json::json;

const TRAIN_PY: &str = include_str!("../../../examples/training/train.py");

async fn setup(w: &World, code: &str) -> String {
    let storage = w.sim.storage_endpoints().expect("azurite");
    // The demo's data set (`edgetrain-sandbox example-data`): two learnable churn CSV files.
    for (name, seed) in [("churn/part-1.csv", 1), ("churn/part-2.csv", 2)] {
        w.sim
            .seed_blob(
                &storage.stack_hub_account,
                "telemetry",
                name,
                edgetrain_sandbox_azure::churn_csv(seed, 200),
            )
            .await
            .unwrap();
    }
    let secrets: Api<KubeSecret> = Api::namespaced(w.client.clone(), &w.ns);
    let s: KubeSecret = serde_json::from_value(json!({
        "metadata": {"name": "storage"},
        "stringData": {"accountName": storage.stack_hub_account, "accountKey": storage.stack_hub_key.expose()}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), &w.ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "churn-code"}, "data": {"train.py": code}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    storage.path_style(&storage.stack_hub_account)
}

async fn create_training_run(w: &World, name: &str, endpoint: &str, extra: serde_json::Value) {
    let runs: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    let mut spec = json!({
        "computeTargetRef": {"name": "edge"},
        "experimentName": "churn",
        "code": {"configMapRef": {"name": "churn-code"}},
        "environment": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"},
        "command": "python3 train.py --data \"${{inputs.training_data}}\" --model ${{outputs.model}}",
        "data": {"endpoint": endpoint, "container": "telemetry", "prefix": "churn/",
                 "credentialsSecretRef": {"name": "storage"}},
        "activeDeadlineSeconds": 3600
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let run: TrainingRun = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
}

async fn run_status(w: &World, name: &str) -> Option<TrainingRun> {
    let runs: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    runs.get_opt(name).await.unwrap()
}

/// Waits for one of `phases`; on timeout, fails with the run's last status and the log tail.
async fn wait_phase(w: &World, name: &str, phases: &[TrainingRunPhase], secs: u64) -> TrainingRun {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let r = run_status(w, name).await;
        if let Some(r) = &r
            && r.status.as_ref().is_some_and(|s| phases.contains(&s.phase))
        {
            return r.clone();
        }
        if tokio::time::Instant::now() > deadline {
            let logs = logs().text();
            let tail: String = logs
                .lines()
                .filter(|l| {
                    l.contains("training") || l.contains("TrainingRun") || l.contains("WARN")
                })
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "timed out waiting for {name} in {phases:?}; status: {:#?}\nlog:\n{tail}",
                r.and_then(|r| r.status)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready_condition(r: &TrainingRun) -> (String, String, String) {
    let c = edgetrain_api::conditions::find(&r.status.as_ref().unwrap().conditions, "Ready")
        .expect("Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn start(w: &World) -> tokio::task::JoinHandle<edgetrain_controller::Result<()>> {
    start_with(w, None).await
}

async fn start_with(
    w: &World,
    clock: Option<std::sync::Arc<TestClock>>,
) -> tokio::task::JoinHandle<edgetrain_controller::Result<()>> {
    let handle = spawn_controller(w, clock);
    create(w, ect_json(w, "edge", json!({}))).await;
    wait_ready(w, "edge", 60).await;
    handle
}

/// A controller for a world whose target already exists.
fn start_again(w: &World) -> tokio::task::JoinHandle<edgetrain_controller::Result<()>> {
    spawn_controller(w, None)
}

fn spawn_controller(
    w: &World,
    clock: Option<std::sync::Arc<TestClock>>,
) -> tokio::task::JoinHandle<edgetrain_controller::Result<()>> {
    let metrics = Metrics::default();
    let mut cfg = config(w, Duration::from_secs(300), metrics.clone());
    cfg.clock = clock.map(|c| c as std::sync::Arc<dyn edgetrain_controller::context::Clock>);
    let storage = w.sim.storage_endpoints().unwrap();
    let mut http = http_config_from_env();
    http.extra_ca_bundle = Some(storage.ca_pem_path.clone());
    // Azure ML hands out host-style `{account}.blob.localhost` URLs; the test resolves them to
    // loopback (configuration of this test's client, not operator code).
    let client = storage
        .resolve_host_style(http.builder().unwrap())
        .build()
        .unwrap();
    cfg.factories = Some(Factories::over(&metrics, client, Default::default()));
    spawn(cfg)
}

fn jobs_of(w: &World) -> Vec<String> {
    w.sim
        .inventory()
        .into_iter()
        .filter(|i| i.resource_type == "Microsoft.MachineLearningServices/workspaces/jobs")
        .map(|i| i.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn example_training_run_succeeds_with_mlflow_metrics_fingerprint_and_a_narrow_sas() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, TRAIN_PY).await;
    let controller = start(&w).await;
    create_training_run(&w, "churn", &endpoint, json!({})).await;

    let run = wait_phase(
        &w,
        "churn",
        &[TrainingRunPhase::Succeeded, TrainingRunPhase::Failed],
        240,
    )
    .await;
    let st = run.status.clone().unwrap();
    assert_eq!(
        st.phase,
        TrainingRunPhase::Succeeded,
        "{:?}",
        ready_condition(&run)
    );
    assert_eq!(ready_condition(&run).0, "True");
    // Metrics come through the workspace's MLflow tracking API, as the script logged them.
    assert!(st.metrics.contains_key("accuracy"), "{:?}", st.metrics);
    assert_eq!(st.metrics["rows"], 400.0);
    let job = st.job_name.clone().unwrap();
    let ws_id = format!(
        "/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1"
    );
    assert_eq!(w.sim.mlflow_metrics(&ws_id, &job), st.metrics);
    // Lineage: fingerprint, blob count, bytes, code digest.
    let fp = st.data_fingerprint.clone().unwrap();
    assert_eq!(fp.len(), 64);
    assert_eq!(st.data_blob_count, Some(2));
    assert_eq!(st.data_unverifiable_blobs, Some(0));
    let expected_digest =
        edgetrain_azure::ml::code_content_hash(&[edgetrain_azure::ml::CodeFile {
            path: "train.py".into(),
            content: TRAIN_PY.as_bytes().to_vec().into(),
        }])
        .unwrap();
    assert_eq!(st.code_digest.as_deref(), Some(expected_digest.as_str()));
    assert_eq!(st.attempts, 1);
    assert!(st.outputs.contains_key("model"));

    // Exactly one job, and its stored definition carries a narrow SAS and no account key.
    let jobs = jobs_of(&w);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let body = w.sim.resource(&jobs[0]).unwrap();
    let text = body.to_string();
    let key = w.sim.storage_endpoints().unwrap().stack_hub_key;
    assert!(
        !text.contains(key.expose()),
        "account key in the job definition"
    );
    let url = body["properties"]["inputs"]["training_data"]["value"]
        .as_str()
        .unwrap();
    let u = url::Url::parse(url).unwrap();
    let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!(q["sp"], "rl", "read + list only");
    assert_eq!(q["sr"], "c", "one container");
    assert_eq!(q["spr"], "https");
    let target = get(&w, "edge").await.unwrap();
    let vm_ip = target.status.unwrap().public_ip.unwrap();
    assert_eq!(q["sip"], vm_ip);
    let expiry = chrono::DateTime::parse_from_rfc3339(&q["se"]).unwrap();
    let start = st.start_time.unwrap().0.as_second();
    assert!(
        expiry.timestamp() <= start + 3600 + 15 * 60,
        "expiry {expiry} past deadline + margin"
    );
    assert!(u.path().ends_with("/telemetry/churn/"), "{}", u.path());
    controller.abort();
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_that_copies_an_input_into_its_outputs_ends_data_exfiltration() {
    let w = world_with(200, |c| c.azurite = true).await;
    // The honest script, then a copy of one input blob into the model folder.
    let evil = format!(
        "{TRAIN_PY}\n\nimport shutil, urllib.request, sys\n_a = sys.argv\n_d = _a[_a.index('--data') + 1]\n_m = _a[_a.index('--model') + 1]\n_r, _c, _p, _s = split_folder_url(_d)\n_u = urllib.parse.urlsplit(_d)\n_src = urllib.parse.urlunsplit((_u.scheme, _u.netloc, f\"{{_r}}/{{_c}}/{{_p}}part-1.csv\", _s, ''))\nwith urllib.request.urlopen(_src) as _f, open(_m + '/copy.csv', 'wb') as _o:\n    shutil.copyfileobj(_f, _o)\n"
    );
    let endpoint = setup(&w, &evil).await;
    let controller = start(&w).await;
    create_training_run(&w, "evil", &endpoint, json!({})).await;
    let run = wait_phase(
        &w,
        "evil",
        &[TrainingRunPhase::Succeeded, TrainingRunPhase::Failed],
        240,
    )
    .await;
    let (status, reason, message) = ready_condition(&run);
    assert_eq!(run.status.as_ref().unwrap().phase, TrainingRunPhase::Failed);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DataExfiltration"),
        "{message}"
    );
    assert!(message.contains("churn/part-1.csv"), "{message}");
    controller.abort();
    w.sim.shutdown().await;
}

async fn events_of(w: &World, name: &str) -> Vec<(String, String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(w.client.clone(), &w.ns);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_script_fails_after_backoff_limit_plus_one_attempts_with_its_log_tail() {
    let w = world_with(200, |c| c.azurite = true).await;
    let failing = "import sys\nprint('reading the data')\nsys.exit('ValueError: column churned is missing')\n";
    let endpoint = setup(&w, failing).await;
    let controller = start(&w).await;
    create_training_run(&w, "broken", &endpoint, json!({"backoffLimit": 1})).await;
    let run = wait_phase(
        &w,
        "broken",
        &[TrainingRunPhase::Succeeded, TrainingRunPhase::Failed],
        180,
    )
    .await;
    let st = run.status.clone().unwrap();
    let (_, reason, message) = ready_condition(&run);
    assert_eq!(st.phase, TrainingRunPhase::Failed);
    assert_eq!(reason, "BackoffLimitExceeded");
    assert!(message.contains("column churned is missing"), "{message}");
    assert_eq!((st.attempts, st.failed_attempts), (2, 2));
    // One job per attempt at the simulator, no more.
    assert_eq!(jobs_of(&w).len(), 2, "{:?}", jobs_of(&w));
    let events = eventually(30, "the failure events", || async {
        let ev = events_of(&w, "broken").await;
        (ev.iter().any(|e| e.1 == "AttemptFailed")
            && ev.iter().any(|e| e.1 == "BackoffLimitExceeded"))
        .then_some(ev)
    })
    .await;
    let final_event = events
        .iter()
        .find(|e| e.1 == "BackoffLimitExceeded")
        .unwrap();
    assert_eq!(final_event.0, "Warning");
    assert!(
        final_event.2.contains("column churned is missing"),
        "{final_event:?}"
    );
    controller.abort();
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outputs_over_the_policy_ceiling_end_output_policy_violation() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, TRAIN_PY).await;
    let controller = start(&w).await;
    create_training_run(
        &w,
        "big",
        &endpoint,
        json!({"outputPolicy": {"maxTotalBytes": 64}}),
    )
    .await;
    let run = wait_phase(
        &w,
        "big",
        &[TrainingRunPhase::Succeeded, TrainingRunPhase::Failed],
        180,
    )
    .await;
    let (_, reason, message) = ready_condition(&run);
    assert_eq!(run.status.as_ref().unwrap().phase, TrainingRunPhase::Failed);
    assert_eq!(reason, "OutputPolicyViolation", "{message}");
    assert!(message.contains("maxTotalBytes 64"), "{message}");
    controller.abort();
    w.sim.shutdown().await;
}

/// A script that runs until it is cancelled.
const SLEEPER: &str =
    "import time\nprint('training for a long time', flush=True)\ntime.sleep(600)\n";

fn job_status(w: &World, job: &str) -> Option<String> {
    let id = jobs_of(w)
        .into_iter()
        .find(|j| j.ends_with(&format!("/{job}")))?;
    w.sim.resource(&id)?["properties"]["status"]
        .as_str()
        .map(str::to_string)
}

async fn patch_suspend(w: &World, name: &str, suspend: bool) {
    let runs: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    runs.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"suspend": suspend}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspend_cancels_resume_submits_the_next_attempt_and_delete_cancels_the_job_first() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, SLEEPER).await;
    let controller = start(&w).await;
    create_training_run(&w, "long", &endpoint, json!({})).await;
    let run = wait_phase(&w, "long", &[TrainingRunPhase::Running], 120).await;
    let first = run.status.unwrap().job_name.unwrap();

    patch_suspend(&w, "long", true).await;
    eventually(60, "the first job canceled", || async {
        (job_status(&w, &first).as_deref() == Some("Canceled")).then_some(())
    })
    .await;
    let run = eventually(30, "long suspended", || async {
        let r = run_status(&w, "long").await?;
        let st = r.status.clone()?;
        (st.phase == TrainingRunPhase::Pending && st.job_name.is_none()).then_some(r)
    })
    .await;
    assert_eq!(ready_condition(&run).1, "Suspended");
    assert_eq!(run.status.as_ref().unwrap().failed_attempts, 0);
    assert_eq!(jobs_of(&w).len(), 1, "nothing submitted while suspended");

    patch_suspend(&w, "long", false).await;
    let run = wait_phase(&w, "long", &[TrainingRunPhase::Running], 120).await;
    let st = run.status.unwrap();
    assert_eq!(st.attempts, 2);
    let second = st.job_name.unwrap();
    assert_ne!(first, second);

    // Deleting the run cancels its active job before the finalizer goes.
    let runs: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    runs.delete("long", &Default::default()).await.unwrap();
    eventually(60, "the second job canceled", || async {
        (job_status(&w, &second).as_deref() == Some("Canceled")).then_some(())
    })
    .await;
    eventually(60, "the TrainingRun gone", || async {
        run_status(&w, "long").await.is_none().then_some(())
    })
    .await;
    assert_eq!(jobs_of(&w).len(), 2);
    controller.abort();
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deadline_cancels_the_job_and_the_ttl_deletes_the_run() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, SLEEPER).await;
    let clock = std::sync::Arc::new(TestClock(Default::default()));
    let controller = start_with(&w, Some(clock.clone())).await;
    create_training_run(
        &w,
        "late",
        &endpoint,
        json!({"activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 1}),
    )
    .await;
    let run = wait_phase(&w, "late", &[TrainingRunPhase::Running], 120).await;
    let job = run.status.unwrap().job_name.unwrap();
    // Two minutes pass: the deadline is over.
    clock.0.store(120, std::sync::atomic::Ordering::SeqCst);
    eventually(60, "the job canceled at the deadline", || async {
        (job_status(&w, &job).as_deref() == Some("Canceled")).then_some(())
    })
    .await;
    // Failed with DeadlineExceeded (the event stays after the TTL deleted the run).
    let events = eventually(30, "the DeadlineExceeded event", || async {
        let ev = events_of(&w, "late").await;
        ev.iter().any(|e| e.1 == "DeadlineExceeded").then_some(ev)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "DeadlineExceeded")
    );
    eventually(30, "the TrainingRun deleted by its TTL", || async {
        run_status(&w, "late").await.is_none().then_some(())
    })
    .await;
    assert_eq!(jobs_of(&w).len(), 1, "no new attempt after the deadline");
    controller.abort();
    w.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_running_runs_share_one_job_listing_per_workspace() {
    const RUNS: usize = 200;
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, TRAIN_PY).await;
    let controller = start(&w).await;
    for i in 0..RUNS {
        create_training_run(
            &w,
            &format!("many-{i}"),
            &endpoint,
            json!({"command": "sleep 600"}),
        )
        .await;
    }
    let runs: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    eventually(240, "every run Running", || async {
        let list = runs.list(&Default::default()).await.ok()?;
        let running = list
            .items
            .iter()
            .filter(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.phase == TrainingRunPhase::Running)
            })
            .count();
        (running == RUNS).then_some(())
    })
    .await;
    assert_eq!(jobs_of(&w).len(), RUNS, "one job per run");
    // Azure ML reads over 30 s of steady running: whole listings (every page), at most one per
    // listing interval — not one read per run per requeue (200 runs × 30 s / 20 s = 300).
    let reads = || {
        w.sim
            .counters()
            .get("GET", "Microsoft.MachineLearningServices")
    };
    let before = reads();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = reads() - before;
    let pages = RUNS.div_ceil(w.sim.config().list_page_size) as u64;
    let listings_max = 30 / 5 + 1;
    assert!(
        during <= listings_max * pages,
        "{during} Azure ML reads in 30 s with {RUNS} runs; at most {listings_max} listings of {pages} pages expected"
    );
    assert!(
        during >= pages,
        "the runs are still watched ({during} reads)"
    );
    controller.abort();
    w.sim.shutdown().await;
}

/// The controller stopped without warning (its task aborted, as a SIGKILL would stop it) and
/// started again: as soon as the job exists at the simulator (possibly before the status write
/// that records it), and again while it runs. Still exactly one job, and the run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_stopped_right_after_submit_and_while_running_leaves_one_job() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, TRAIN_PY).await;
    let controller = start(&w).await;
    create_training_run(&w, "restart", &endpoint, json!({})).await;
    eventually(120, "the job at the simulator", || async {
        (!jobs_of(&w).is_empty()).then_some(())
    })
    .await;
    controller.abort();
    let _ = controller.await;
    let controller = start_again(&w);
    wait_phase(
        &w,
        "restart",
        &[TrainingRunPhase::Running, TrainingRunPhase::Succeeded],
        120,
    )
    .await;
    controller.abort();
    let _ = controller.await;
    let controller = start_again(&w);
    let run = wait_phase(
        &w,
        "restart",
        &[TrainingRunPhase::Succeeded, TrainingRunPhase::Failed],
        180,
    )
    .await;
    let st = run.status.unwrap();
    assert_eq!(st.phase, TrainingRunPhase::Succeeded);
    assert_eq!(st.attempts, 1);
    assert_eq!(jobs_of(&w).len(), 1, "{:?}", jobs_of(&w));
    controller.abort();
    w.sim.shutdown().await;
}

fn codes_of(w: &World) -> usize {
    w.sim
        .inventory()
        .iter()
        .filter(|i| {
            i.resource_type == "Microsoft.MachineLearningServices/workspaces/codes/versions"
        })
        .count()
}

/// The real controller process SIGKILLed and started again at issue 10's five points: before
/// the fingerprint, after the code upload, right after the submit, while the job runs, and (a
/// second run, deleted) while its job is being cancelled. Each point is observed in state
/// (status, simulator inventory, job state), not timed. One job per attempt, one code version;
/// the first run succeeds, the second's job ends Canceled and the run is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_controller_process_at_five_points_leaves_one_job_per_attempt() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, TRAIN_PY).await;
    let dir = tempfile::tempdir().unwrap();
    let mut starts = 0;
    let mut start = |w: &World| {
        starts += 1;
        ControllerProcess::start(w, dir.path(), starts)
    };

    // 1. Before the fingerprint: the run waits for its target, which is still provisioning.
    let p = start(&w);
    create(&w, ect_json(&w, "edge", json!({}))).await;
    // The job sleeps first, so that "running" is a state the test can see.
    create_training_run(
        &w,
        "restart",
        &endpoint,
        json!({"command": "sleep 5 && python3 train.py --data \"${{inputs.training_data}}\" --model ${{outputs.model}}"}),
    )
    .await;
    eventually(120, "restart waiting for its target", || async {
        let st = run_status(&w, "restart").await?.status?;
        let ready = edgetrain_api::conditions::find(&st.conditions, "Ready")?;
        (ready.reason == "ComputeTargetNotReady").then_some(())
    })
    .await;
    let log = p.kill();
    let st = run_status(&w, "restart").await.unwrap().status.unwrap();
    assert!(
        st.data_fingerprint.is_none(),
        "killed before the fingerprint\n{log}"
    );
    assert_eq!(codes_of(&w), 0);

    // 2. After the code upload.
    let p = start(&w);
    eventually(180, "the code version at the simulator", || async {
        (codes_of(&w) > 0).then_some(())
    })
    .await;
    let log = p.kill();
    assert!(jobs_of(&w).len() <= 1, "{log}");

    // 3. Right after the submit: the job exists (its status write may not).
    let p = start(&w);
    let job = eventually(120, "the job at the simulator", || async {
        jobs_of(&w).into_iter().next()
    })
    .await;
    let job = job.rsplit('/').next().unwrap().to_string();
    p.kill();

    // 4. While the job runs.
    let p = start(&w);
    eventually(120, "the job running", || async {
        (job_status(&w, &job).as_deref() == Some("Running")).then_some(())
    })
    .await;
    p.kill();

    let p = start(&w);
    let run = wait_phase(
        &w,
        "restart",
        &[TrainingRunPhase::Succeeded, TrainingRunPhase::Failed],
        240,
    )
    .await;
    let st = run.status.unwrap();
    assert_eq!(st.phase, TrainingRunPhase::Succeeded, "{:?}", st.conditions);
    assert_eq!(st.attempts, 1);
    assert_eq!(st.job_name.as_deref(), Some(job.as_str()));
    assert!(st.data_fingerprint.is_some() && st.code_digest.is_some());
    assert_eq!(jobs_of(&w).len(), 1, "{:?}", jobs_of(&w));
    assert_eq!(codes_of(&w), 1);

    // 5. While cancelling: a second run, deleted while its job runs; the process is killed as
    // soon as the simulator has the cancel request. The restarted controller ends the deletion
    // from what it finds (the job cancelled, never a second job).
    create_training_run(&w, "cancel", &endpoint, json!({"command": "sleep 600"})).await;
    let run = wait_phase(&w, "cancel", &[TrainingRunPhase::Running], 120).await;
    let long = run.status.unwrap().job_name.unwrap();
    let runs: Api<TrainingRun> = Api::namespaced(w.client.clone(), &w.ns);
    runs.delete("cancel", &Default::default()).await.unwrap();
    let requested = tokio::time::timeout(Duration::from_secs(120), async {
        while !matches!(
            job_status(&w, &long).as_deref(),
            Some("CancelRequested" | "Canceled")
        ) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(requested.is_ok(), "no cancel requested\n{}", p.log());
    let log = p.kill();
    let p = start(&w);
    eventually(120, "the TrainingRun gone", || async {
        run_status(&w, "cancel").await.is_none().then_some(())
    })
    .await;
    assert_eq!(job_status(&w, &long).as_deref(), Some("Canceled"), "{log}");
    assert_eq!(jobs_of(&w).len(), 2, "{:?}", jobs_of(&w));

    drop(p);
    w.sim.shutdown().await;
}

/// A TrainingRun whose code is the folder `code/{folder}` of the Stack Hub account, read with
/// the `storage` Secret.
fn blob_code(w: &World, folder: &str) -> serde_json::Value {
    let storage = w.sim.storage_endpoints().unwrap();
    json!({"code": {
        "blobUri": format!("{}/code/{folder}", storage.host_style(&storage.stack_hub_account)),
        "credentialsSecretRef": {"name": "storage"}
    }})
}

/// `code.blobUri`: the script uploaded into a Stack Hub blob folder trains like the ConfigMap
/// example, with the same code digest, and the ConfigMap run after it re-uses the one code
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_from_a_blob_folder_succeeds_with_the_digest_and_code_version_of_a_configmap() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, TRAIN_PY).await;
    let storage = w.sim.storage_endpoints().unwrap();
    w.sim
        .seed_blob(
            &storage.stack_hub_account,
            "code",
            "churn/v1/train.py",
            TRAIN_PY.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    // Outside the folder: not part of the code.
    w.sim
        .seed_blob(
            &storage.stack_hub_account,
            "code",
            "churn/v10/other.py",
            b"raise SystemExit(1)".to_vec(),
        )
        .await
        .unwrap();
    let controller = start(&w).await;
    create_training_run(&w, "from-blob", &endpoint, blob_code(&w, "churn/v1")).await;
    let phases = [TrainingRunPhase::Succeeded, TrainingRunPhase::Failed];
    let blob_run = wait_phase(&w, "from-blob", &phases, 240).await;
    let st = blob_run.status.clone().unwrap();
    assert_eq!(
        st.phase,
        TrainingRunPhase::Succeeded,
        "{:?}",
        ready_condition(&blob_run)
    );
    let expected_digest =
        edgetrain_azure::ml::code_content_hash(&[edgetrain_azure::ml::CodeFile {
            path: "train.py".into(),
            content: TRAIN_PY.as_bytes().to_vec().into(),
        }])
        .unwrap();
    assert_eq!(st.code_digest.as_deref(), Some(expected_digest.as_str()));
    assert_eq!(codes_of(&w), 1);

    create_training_run(&w, "from-configmap", &endpoint, json!({})).await;
    let cm_run = wait_phase(&w, "from-configmap", &phases, 240).await;
    let cm = cm_run.status.clone().unwrap();
    assert_eq!(cm.phase, TrainingRunPhase::Succeeded);
    assert_eq!(cm.code_digest, st.code_digest);
    assert_eq!(
        codes_of(&w),
        1,
        "the ConfigMap run re-uses the code version"
    );
    assert_eq!(jobs_of(&w).len(), 2);
    controller.abort();
    w.sim.shutdown().await;
}

/// An empty code folder is a clear `InvalidSpec` stall; nothing is submitted or uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_code_blob_folder_stalls_with_invalid_spec_and_submits_nothing() {
    let w = world_with(200, |c| c.azurite = true).await;
    let endpoint = setup(&w, TRAIN_PY).await;
    let storage = w.sim.storage_endpoints().unwrap();
    // The container exists, the folder holds nothing.
    w.sim
        .seed_blob(
            &storage.stack_hub_account,
            "code",
            "elsewhere/train.py",
            TRAIN_PY.as_bytes().to_vec(),
        )
        .await
        .unwrap();
    let controller = start(&w).await;
    create_training_run(&w, "empty", &endpoint, blob_code(&w, "churn/v1/")).await;
    let (_, reason, message) = eventually(60, "empty Stalled", || async {
        let r = run_status(&w, "empty").await?;
        let c = edgetrain_api::conditions::find(&r.status?.conditions, "Stalled")?.clone();
        (c.status == "True").then_some((c.status, c.reason, c.message))
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("code/churn/v1/") && message.contains("holds no files"),
        "{message}"
    );
    assert!(jobs_of(&w).is_empty(), "{:?}", jobs_of(&w));
    assert_eq!(codes_of(&w), 0);
    controller.abort();
    w.sim.shutdown().await;
}
