//! Table tests of the pure TrainingRun decision.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use edgetrain_api::{
    TrainingRunPhase, TrainingRunSpec, TrainingRunStatus,
    conditions::{READY, find},
    training_run::OutputPolicy,
};
use edgetrain_azure::ml::JobStatus;
use serde_json::json;

use super::{decide::*, desired};

const NS: &str = "ml";
const NAME: &str = "churn";
const UID: &str = "0b6c-uid";

fn meta() -> Meta<'static> {
    Meta {
        namespace: NS,
        name: NAME,
        uid: UID,
        generation: Some(1),
    }
}

fn spec() -> TrainingRunSpec {
    serde_json::from_value(json!({
        "computeTargetRef": {"name": "edge"},
        "experimentName": "churn",
        "code": {"configMapRef": {"name": "code"}},
        "environment": {"image": "python:3.11"},
        "command": "python train.py --data ${{inputs.training_data}} --model ${{outputs.model}}",
        "data": {"endpoint": "https://data.blob.local", "container": "telemetry", "prefix": "churn/",
                 "credentialsSecretRef": {"name": "storage"}},
        "backoffLimit": 1
    }))
    .unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 8, 0, 0).unwrap()
}

fn ready() -> Target {
    Target::Ready(ReadyTarget {
        compute_id: "/ws/computes/edge".into(),
        vm_address: "203.0.113.7".into(),
    })
}

fn name(attempt: i32) -> String {
    desired::job_name(NS, NAME, UID, attempt)
}

fn job(status: JobStatus) -> JobView {
    JobView {
        status,
        studio_url: Some("https://ml.azure.com/runs/x".into()),
        outputs: BTreeMap::from([
            (
                "model".into(),
                "azureml://datastores/workspaceblobstore/paths/azureml/x/model/".into(),
            ),
            (
                "artifacts".into(),
                "azureml://datastores/workspaceblobstore/paths/azureml/x/artifacts/".into(),
            ),
        ]),
    }
}

fn listing(at: DateTime<Utc>, jobs: &[(String, JobStatus)]) -> Option<Arc<Snapshot>> {
    Some(Arc::new(Snapshot {
        taken_at: at,
        jobs: jobs
            .iter()
            .map(|(n, s)| (n.clone(), job(s.clone())))
            .collect(),
    }))
}

fn observed(now: DateTime<Utc>) -> Observed {
    Observed {
        now,
        target: ready(),
        jobs: listing(now - chrono::Duration::seconds(1), &[]),
        fingerprint: Some(DataFingerprint {
            sha256: "ab".repeat(32),
            blob_count: 3,
            total_bytes: 300,
            unverifiable: 0,
        }),
        assets: Some(Assets {
            code_digest: "cd".repeat(32),
            code_id: "/ws/codes/cd/versions/1".into(),
            environment_id: "/ws/environments/e/versions/1".into(),
        }),
        verification: None,
        failure_log: None,
    }
}

fn plan(step: Step) -> Plan {
    match step {
        Step::Plan(p) => *p,
        Step::Need(n) => panic!("expected a plan, got need {n:?}"),
    }
}

fn reason(s: &TrainingRunStatus) -> String {
    find(&s.conditions, READY).unwrap().reason.clone()
}

fn ready_message(s: &TrainingRunStatus) -> String {
    find(&s.conditions, READY).unwrap().message.clone()
}

/// A status after attempt `attempt` was submitted at t0.
fn submitted(attempt: i32) -> TrainingRunStatus {
    let s = plan(decide(
        &spec(),
        &meta(),
        &TrainingRunStatus::default(),
        &observed(t0()),
    ))
    .status;
    TrainingRunStatus {
        attempts: attempt,
        job_name: Some(name(attempt)),
        ..s
    }
}

#[test]
fn waits_for_a_target_that_is_not_ready_and_names_a_missing_one() {
    let mut obs = observed(t0());
    obs.target = Target::NotReady {
        reason: "Idle".into(),
        message: "VM deallocated".into(),
    };
    let p = plan(decide(
        &spec(),
        &meta(),
        &TrainingRunStatus::default(),
        &obs,
    ));
    assert!(p.actions.is_empty());
    assert_eq!(p.status.phase, TrainingRunPhase::Pending);
    assert_eq!(reason(&p.status), "ComputeTargetNotReady");
    assert!(ready_message(&p.status).contains("Idle"));

    obs.target = Target::Missing;
    let p = plan(decide(
        &spec(),
        &meta(),
        &TrainingRunStatus::default(),
        &obs,
    ));
    assert!(p.actions.is_empty());
    assert_eq!(reason(&p.status), "ComputeTargetNotFound");
    assert!(find(&p.status.conditions, "Stalled").unwrap().status == "True");
}

#[test]
fn asks_for_fingerprint_then_assets_before_submitting() {
    let mut obs = observed(t0());
    obs.fingerprint = None;
    obs.assets = None;
    let before = TrainingRunStatus::default();
    assert_eq!(
        decide(&spec(), &meta(), &before, &obs),
        Step::Need(Need::Fingerprint)
    );
    obs.fingerprint = observed(t0()).fingerprint;
    assert_eq!(
        decide(&spec(), &meta(), &before, &obs),
        Step::Need(Need::Assets)
    );
    // Recorded fingerprint and assets are not asked for again.
    let p = plan(decide(&spec(), &meta(), &before, &observed(t0())));
    let mut obs = observed(t0());
    obs.fingerprint = None;
    obs.assets = None;
    let again = TrainingRunStatus {
        job_name: None,
        ..p.status.clone()
    };
    assert!(matches!(
        decide(&spec(), &meta(), &again, &obs),
        Step::Plan(_)
    ));
    assert_eq!(p.status.data_blob_count, Some(3));
    assert_eq!(p.status.data_total_bytes, Some(300));
    assert_eq!(p.status.code_digest.as_deref(), Some(&*"cd".repeat(32)));
}

#[test]
fn submits_exactly_once_and_waits_for_the_listing() {
    let p = plan(decide(
        &spec(),
        &meta(),
        &TrainingRunStatus::default(),
        &observed(t0()),
    ));
    assert_eq!(
        p.actions,
        vec![Action::Submit {
            job: name(1),
            attempt: 1,
            target: match ready() {
                Target::Ready(t) => t,
                _ => unreachable!(),
            },
        }]
    );
    assert_eq!(p.status.attempts, 1);
    assert_eq!(p.status.phase, TrainingRunPhase::Submitted);
    assert!(p.status.start_time.is_some());
    assert!(p.events.iter().any(|e| e.reason == "JobSubmitted"));
    // Next reconcile, the listing predates the submission: no second PUT.
    let mut obs = observed(t0() + chrono::Duration::seconds(2));
    obs.jobs = listing(t0() - chrono::Duration::seconds(1), &[]);
    let p2 = plan(decide(&spec(), &meta(), &p.status, &obs));
    assert!(p2.actions.is_empty(), "{:?}", p2.actions);
    assert_eq!(p2.status.attempts, 1);
    // A listing after the submission without the job: the same name again (a PUT is idempotent).
    obs.jobs = listing(t0() + chrono::Duration::seconds(1), &[]);
    let p3 = plan(decide(&spec(), &meta(), &p.status, &obs));
    assert!(matches!(&p3.actions[..], [Action::Submit { job, attempt: 1, .. }] if *job == name(1)));
}

#[test]
fn a_listing_in_the_second_of_the_submission_proves_nothing_missing() {
    let p = plan(decide(
        &spec(),
        &meta(),
        &TrainingRunStatus::default(),
        &observed(t0()),
    ));
    // The submission is recorded in whole seconds: a listing begun later in that second may
    // have begun before the PUT returned, so it is no proof that the job is missing.
    let mut obs = observed(t0() + chrono::Duration::seconds(5));
    obs.jobs = listing(t0() + chrono::Duration::milliseconds(900), &[]);
    let p2 = plan(decide(&spec(), &meta(), &p.status, &obs));
    assert!(p2.actions.is_empty(), "{:?}", p2.actions);
    assert_eq!(
        decide_cleanup(&p.status, obs.jobs.as_deref()),
        Cleanup::Wait,
        "a deletion waits for a listing that proves the job gone"
    );
    obs.jobs = listing(t0() + chrono::Duration::seconds(1), &[]);
    let p3 = plan(decide(&spec(), &meta(), &p.status, &obs));
    assert_eq!(p3.actions.len(), 1, "{:?}", p3.actions);
    assert_eq!(
        decide_cleanup(&p.status, obs.jobs.as_deref()),
        Cleanup::Done
    );
}

#[test]
fn adopts_an_existing_job_instead_of_submitting_another() {
    // The status was lost (or the PUT's answer was): the listing already has attempt 1.
    let mut obs = observed(t0());
    obs.jobs = listing(t0(), &[(name(1), JobStatus::Running)]);
    let p = plan(decide(
        &spec(),
        &meta(),
        &TrainingRunStatus::default(),
        &obs,
    ));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.status.job_name, Some(name(1)));
    assert_eq!(p.status.attempts, 1);
    assert_eq!(p.status.phase, TrainingRunPhase::Running);
}

#[test]
fn job_states_map_to_phases() {
    for (state, phase, why) in [
        (
            JobStatus::NotStarted,
            TrainingRunPhase::Submitted,
            "JobSubmitted",
        ),
        (JobStatus::Preparing, TrainingRunPhase::Queued, "JobQueued"),
        (JobStatus::Queued, TrainingRunPhase::Queued, "JobQueued"),
        (JobStatus::Running, TrainingRunPhase::Running, "JobRunning"),
        (
            JobStatus::Finalizing,
            TrainingRunPhase::Running,
            "JobRunning",
        ),
    ] {
        let mut obs = observed(t0() + chrono::Duration::seconds(10));
        obs.jobs = listing(obs.now, &[(name(1), state.clone())]);
        let p = plan(decide(&spec(), &meta(), &submitted(1), &obs));
        assert_eq!(p.status.phase, phase, "{state:?}");
        assert_eq!(reason(&p.status), why, "{state:?}");
        assert!(p.actions.is_empty());
        assert_eq!(
            p.status.studio_url.as_deref(),
            Some("https://ml.azure.com/runs/x")
        );
    }
}

#[test]
fn a_failed_attempt_is_retried_until_backoff_limit_with_the_log_tail() {
    let mut obs = observed(t0() + chrono::Duration::seconds(30));
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Failed)]);
    // The log is needed first.
    assert!(matches!(
        decide(&spec(), &meta(), &submitted(1), &obs),
        Step::Need(Need::FailureLog { job, artifacts: Some(_) }) if job == name(1)
    ));
    obs.failure_log = Some("Traceback...\nValueError: no CSV rows found\n".into());
    let p = plan(decide(&spec(), &meta(), &submitted(1), &obs));
    assert_eq!(p.status.failed_attempts, 1);
    assert_eq!(p.status.attempts, 2);
    assert!(matches!(&p.actions[..], [Action::Submit { job, attempt: 2, .. }] if *job == name(2)));
    let ev = p
        .events
        .iter()
        .find(|e| e.reason == "AttemptFailed")
        .unwrap();
    assert!(ev.warning && ev.message.contains("no CSV rows found"));

    // Attempt 2 fails too: backoffLimit 1 allows 2 attempts, so the run fails.
    let mut obs2 = observed(t0() + chrono::Duration::seconds(60));
    obs2.jobs = listing(
        obs2.now,
        &[(name(1), JobStatus::Failed), (name(2), JobStatus::Failed)],
    );
    obs2.failure_log = Some("ValueError: still no rows\n".into());
    let p2 = plan(decide(&spec(), &meta(), &p.status, &obs2));
    assert!(p2.actions.is_empty(), "{:?}", p2.actions);
    assert_eq!(p2.status.phase, TrainingRunPhase::Failed);
    assert_eq!(p2.status.attempts, 2);
    assert_eq!(reason(&p2.status), "BackoffLimitExceeded");
    assert!(ready_message(&p2.status).contains("still no rows"));
    assert!(p2.status.completion_time.is_some());
    let ev = p2
        .events
        .iter()
        .find(|e| e.reason == "BackoffLimitExceeded")
        .unwrap();
    assert!(ev.warning && ev.message.contains("still no rows"));
}

#[test]
fn a_lost_status_write_after_a_retry_submit_adopts_instead_of_resubmitting() {
    // Status still names the failed attempt 1, but attempt 2 exists already.
    let mut obs = observed(t0() + chrono::Duration::seconds(30));
    obs.jobs = listing(
        obs.now,
        &[(name(1), JobStatus::Failed), (name(2), JobStatus::Queued)],
    );
    obs.failure_log = Some("boom".into());
    let p = plan(decide(&spec(), &meta(), &submitted(1), &obs));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.status.job_name, Some(name(2)));
    assert_eq!(p.status.failed_attempts, 1);
    assert_eq!(p.status.phase, TrainingRunPhase::Queued);
}

#[test]
fn deadline_exceeded_cancels_the_job_and_fails_the_run() {
    let mut s = spec();
    s.active_deadline_seconds = Some(600);
    let before = submitted(1);
    // Before the deadline: a requeue at the deadline.
    let mut obs = observed(t0() + chrono::Duration::seconds(100));
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Running)]);
    let p = plan(decide(&s, &meta(), &before, &obs));
    assert!(p.actions.is_empty());
    assert_eq!(p.requeue, Some(Duration::from_secs(500)));
    // At the deadline.
    obs.now = t0() + chrono::Duration::seconds(600);
    let p = plan(decide(&s, &meta(), &before, &obs));
    assert_eq!(p.actions, vec![Action::Cancel { job: name(1) }]);
    assert_eq!(p.status.phase, TrainingRunPhase::Failed);
    assert_eq!(reason(&p.status), "DeadlineExceeded");
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "DeadlineExceeded")
    );
    // Once failed, a job still running is cancelled again; CancelRequested is left alone.
    let p2 = plan(decide(&s, &meta(), &p.status, &obs));
    assert_eq!(p2.actions, vec![Action::Cancel { job: name(1) }]);
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::CancelRequested)]);
    assert!(
        plan(decide(&s, &meta(), &p.status, &obs))
            .actions
            .is_empty()
    );
}

#[test]
fn suspend_cancels_and_resume_submits_the_next_attempt_without_counting_a_failure() {
    let mut s = spec();
    s.suspend = true;
    let mut obs = observed(t0() + chrono::Duration::seconds(10));
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Running)]);
    let p = plan(decide(&s, &meta(), &submitted(1), &obs));
    assert_eq!(p.actions, vec![Action::Cancel { job: name(1) }]);
    assert_eq!(p.status.phase, TrainingRunPhase::Pending);
    assert_eq!(reason(&p.status), "Suspended");
    // Cancelled: the attempt is over, not failed; nothing is submitted while suspended.
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Canceled)]);
    let p2 = plan(decide(&s, &meta(), &p.status, &obs));
    assert!(p2.actions.is_empty());
    assert_eq!(p2.status.job_name, None);
    assert_eq!(p2.status.failed_attempts, 0);
    // Resumed: attempt 2.
    s.suspend = false;
    let p3 = plan(decide(&s, &meta(), &p2.status, &obs));
    assert!(matches!(&p3.actions[..], [Action::Submit { job, attempt: 2, .. }] if *job == name(2)));
    // Suspended before anything ran: no submission.
    s.suspend = true;
    let p4 = plan(decide(
        &s,
        &meta(),
        &TrainingRunStatus::default(),
        &observed(t0()),
    ));
    assert!(p4.actions.is_empty());
    assert_eq!(reason(&p4.status), "Suspended");
}

#[test]
fn a_job_cancelled_in_azure_ml_ends_the_run_canceled() {
    let mut obs = observed(t0() + chrono::Duration::seconds(10));
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Canceled)]);
    let mut running = submitted(1);
    running.phase = TrainingRunPhase::Running;
    let p = plan(decide(&spec(), &meta(), &running, &obs));
    assert_eq!(p.status.phase, TrainingRunPhase::Canceled);
    assert!(p.actions.is_empty());
}

fn verification(files: &[(&str, u64, &str)], copied: Option<(&str, &str)>) -> Verification {
    Verification {
        files: files
            .iter()
            .map(|(p, s, m)| OutputFile {
                path: (*p).into(),
                size: *s,
                md5: (*m).into(),
            })
            .collect(),
        copied_input: copied.map(|(a, b)| (a.into(), b.into())),
        metrics: BTreeMap::from([("accuracy".into(), 0.93)]),
    }
}

#[test]
fn completed_job_is_verified_then_succeeds_with_metrics_and_ttl() {
    let mut s = spec();
    s.ttl_seconds_after_finished = Some(120);
    let mut obs = observed(t0() + chrono::Duration::seconds(60));
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Completed)]);
    let Step::Need(Need::Verification { job, outputs }) = decide(&s, &meta(), &submitted(1), &obs)
    else {
        panic!("verification first")
    };
    assert_eq!(job, name(1));
    assert!(outputs.contains_key("model") && outputs.contains_key("artifacts"));
    obs.verification = Some(verification(&[("model/model.onnx", 900, "m1")], None));
    let p = plan(decide(&s, &meta(), &submitted(1), &obs));
    assert_eq!(p.status.phase, TrainingRunPhase::Succeeded);
    assert_eq!(p.status.metrics["accuracy"], 0.93);
    assert_eq!(p.status.outputs.len(), 2);
    assert_eq!(find(&p.status.conditions, READY).unwrap().status, "True");
    assert_eq!(p.requeue, Some(Duration::from_secs(120)));
    // TTL: requeued for the exact remaining time, then deleted.
    let mut later = observed(obs.now + chrono::Duration::seconds(100));
    later.jobs = obs.jobs.clone();
    let p2 = plan(decide(&s, &meta(), &p.status, &later));
    assert_eq!(p2.requeue, Some(Duration::from_secs(20)));
    assert!(p2.actions.is_empty());
    later.now = obs.now + chrono::Duration::seconds(120);
    let p3 = plan(decide(&s, &meta(), &p.status, &later));
    assert_eq!(p3.actions, vec![Action::Delete]);
    assert_eq!(p3.status.phase, TrainingRunPhase::Succeeded);
    assert!(p3.events.is_empty(), "no phase change, no event");
}

#[test]
fn a_copied_input_is_data_exfiltration() {
    let mut obs = observed(t0() + chrono::Duration::seconds(60));
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Completed)]);
    obs.verification = Some(verification(
        &[("model/train.csv", 100, "x")],
        Some(("model/train.csv", "churn/a.csv")),
    ));
    let p = plan(decide(&spec(), &meta(), &submitted(1), &obs));
    assert_eq!(p.status.phase, TrainingRunPhase::Failed);
    assert_eq!(reason(&p.status), "DataExfiltration");
    assert!(ready_message(&p.status).contains("churn/a.csv"));
    assert!(
        p.status.metrics.is_empty(),
        "no metrics from a rejected run"
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == "DataExfiltration")
    );
}

#[test]
fn output_policy_ceiling_and_patterns() {
    let mut s = spec();
    s.output_policy = Some(OutputPolicy {
        max_total_bytes: Some(1000),
        allowed_files: vec!["model/*.onnx".into(), "artifacts/**".into()],
    });
    let mut obs = observed(t0() + chrono::Duration::seconds(60));
    obs.jobs = listing(obs.now, &[(name(1), JobStatus::Completed)]);
    for (files, ok) in [
        (
            vec![
                ("model/m.onnx", 900, "a"),
                ("artifacts/user_logs/std_log.txt", 50, "b"),
            ],
            true,
        ),
        (
            vec![("model/m.onnx", 990, "a"), ("artifacts/x", 11, "b")],
            false,
        ),
        (vec![("model/sub/m.onnx", 10, "a")], false),
        (vec![("model/data.csv", 10, "a")], false),
    ] {
        obs.verification = Some(verification(&files, None));
        let p = plan(decide(&s, &meta(), &submitted(1), &obs));
        if ok {
            assert_eq!(p.status.phase, TrainingRunPhase::Succeeded, "{files:?}");
        } else {
            assert_eq!(reason(&p.status), "OutputPolicyViolation", "{files:?}");
            assert_eq!(p.status.phase, TrainingRunPhase::Failed);
        }
    }
}

#[test]
fn globs() {
    for (p, s, m) in [
        ("model/*.onnx", "model/m.onnx", true),
        ("model/*.onnx", "model/a/m.onnx", false),
        ("model/**", "model/a/b/c", true),
        ("**/*.json", "artifacts/outputs/metrics.json", true),
        ("**/*.json", "m.json", true),
        ("model/?.onnx", "model/ab.onnx", false),
        ("model/?.onnx", "model/a.onnx", true),
        ("model", "model/x", false),
    ] {
        assert_eq!(glob_match(p, s), m, "{p} vs {s}");
    }
}

#[test]
fn cleanup_cancels_an_active_job_and_waits_for_it() {
    let st = submitted(1);
    let snap = |s: JobStatus| Snapshot {
        taken_at: t0() + chrono::Duration::seconds(5),
        jobs: BTreeMap::from([(name(1), job(s))]),
    };
    assert_eq!(
        decide_cleanup(&st, Some(&snap(JobStatus::Running))),
        Cleanup::Cancel { job: name(1) }
    );
    assert_eq!(
        decide_cleanup(&st, Some(&snap(JobStatus::CancelRequested))),
        Cleanup::Wait
    );
    assert_eq!(
        decide_cleanup(&st, Some(&snap(JobStatus::Canceled))),
        Cleanup::Done
    );
    assert_eq!(
        decide_cleanup(&TrainingRunStatus::default(), None),
        Cleanup::Done
    );
    // Listed before the submission: it may still appear.
    let stale = Snapshot {
        taken_at: t0() - chrono::Duration::seconds(5),
        jobs: BTreeMap::new(),
    };
    assert_eq!(decide_cleanup(&st, Some(&stale)), Cleanup::Wait);
}

#[test]
fn log_tail_keeps_the_end() {
    assert_eq!(log_tail("a\nb\nc\n", 3), "b\nc");
    assert_eq!(log_tail("short", 100), "short");
    assert_eq!(log_tail("ééé", 2), "éé");
}
