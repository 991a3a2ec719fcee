use super::*;
use edgetrain_api::{
    ModelReleaseStatus, TrainingRunStatus, common::LocalObjectReference, conditions::condition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

const ART: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const IMG: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn release() -> ModelRelease {
    let mut mr: ModelRelease = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
        "metadata": {"name": "churn", "namespace": "ml"},
        "spec": {
            "trainingRunRef": {"name": "train"},
            "model": {"name": "churn"},
            "registry": {"loginServer": "r.example", "repository": "m/churn",
                         "credentialsSecretRef": {"name": "acr"}}
        }
    }))
    .unwrap();
    mr.status = Some(ModelReleaseStatus {
        model_id: Some("/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/models/churn/versions/3".into()),
        model_version: Some("3".into()),
        // As the operator records them: full references.
        artifact_digest: Some(format!("r.example/m/churn@{ART}")),
        image_digest: Some(format!("r.example/m/churn@{IMG}")),
        referrers: vec![Referrer {
            artifact_type: "application/vnd.in-toto+json".into(),
            digest: "sha256:cc".into(),
            subject: IMG.into(),
        }],
        ..Default::default()
    });
    mr
}

fn run(phase: TrainingRunPhase) -> TrainingRun {
    let mut tr: TrainingRun = serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": "train", "namespace": "ml"},
        "spec": {
            "computeTargetRef": {"name": "edge"},
            "code": {"configMapRef": {"name": "code"}},
            "environment": {"image": "python:3.12"},
            "command": "python train.py",
            "data": {"endpoint": "https://d.blob.example", "container": "data",
                     "credentialsSecretRef": {"name": "d"}}
        }
    }))
    .unwrap();
    tr.status = Some(TrainingRunStatus {
        phase,
        job_name: Some("job-1".into()),
        code_digest: Some("sha256:c0de".into()),
        data_fingerprint: Some("sha256:da7a".into()),
        ..Default::default()
    });
    tr
}

#[test]
fn age_reads_like_kubectl() {
    assert_eq!(age(Some(t(0)), t(45)), "45s");
    assert_eq!(age(Some(t(0)), t(600)), "10m");
    assert_eq!(age(Some(t(0)), t(3 * 3600)), "3h");
    assert_eq!(age(Some(t(0)), t(5 * 86400)), "5d");
    assert_eq!(age(None, t(5)), "<unknown>");
}

#[test]
fn short_digest_keeps_algorithm_and_twelve_hex() {
    assert_eq!(short_digest(ART), "sha256:aaaaaaaaaaaa");
}

#[test]
fn table_aligns_columns() {
    let out = table(
        &["A", "B"],
        &[
            vec!["long-cell".into(), "x".into()],
            vec!["s".into(), "".into()],
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "A           B");
    assert_eq!(lines[1], "long-cell   x");
    assert_eq!(lines[2], "s");
}

#[test]
fn status_row_of_a_failed_run_shows_phase_reason_and_job() {
    let mut tr = run(TrainingRunPhase::Failed);
    tr.status.as_mut().unwrap().conditions.push(condition(
        "Ready",
        false,
        "JobFailed",
        "exit 1",
        Some(1),
        t(0),
    ));
    let row = tr_row(&tr, t(10));
    assert_eq!(row.ready, "False");
    assert_eq!(row.reason, "JobFailed");
    assert_eq!(row.phase, "Failed");
    assert_eq!(row.details["job"], "job-1");
    assert_eq!(row.details["target"], "edge");
    let text = status_table(&[row]);
    assert!(
        text.contains("TrainingRun   ml/train   False   JobFailed   Failed"),
        "{text}"
    );
}

#[test]
fn status_row_without_conditions_is_unknown() {
    let mut mr = release();
    mr.status = None;
    let row = mr_row(&mr, t(0));
    assert_eq!(row.ready, "Unknown");
    assert_eq!(row.details["model"], "churn");
    assert!(!row.details.contains_key("artifact"));
}

#[test]
fn consistent_lineage_has_no_mismatch_and_shows_the_whole_chain() {
    let l = lineage(&release(), Some(&run(TrainingRunPhase::Succeeded)));
    assert_eq!(l.mismatches, Vec::<String>::new());
    assert_eq!(l.job_name.as_deref(), Some("job-1"));
    let text = lineage_text(&l);
    for want in [IMG, ART, "churn:3", "job-1", "sha256:c0de", "sha256:da7a"] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
}

#[test]
fn lineage_flags_a_model_id_of_another_version() {
    let mut mr = release();
    mr.status.as_mut().unwrap().model_version = Some("4".into());
    let l = lineage(&mr, Some(&run(TrainingRunPhase::Succeeded)));
    assert_eq!(l.mismatches.len(), 1, "{:?}", l.mismatches);
    assert!(l.mismatches[0].contains("version 4"), "{:?}", l.mismatches);
}

#[test]
fn lineage_flags_a_referrer_on_a_foreign_digest() {
    let mut mr = release();
    mr.status.as_mut().unwrap().referrers[0].subject = "sha256:ff".into();
    let l = lineage(&mr, Some(&run(TrainingRunPhase::Succeeded)));
    assert!(
        l.mismatches.iter().any(|m| m.contains("sha256:ff")),
        "{:?}",
        l.mismatches
    );
}

#[test]
fn lineage_flags_a_release_from_an_unfinished_or_missing_run() {
    let l = lineage(&release(), Some(&run(TrainingRunPhase::Failed)));
    assert!(
        l.mismatches.iter().any(|m| m.contains("Failed")),
        "{:?}",
        l.mismatches
    );
    let l = lineage(&release(), None);
    assert!(
        l.mismatches
            .iter()
            .any(|m| m.contains("TrainingRun train not found"))
    );
    let mut tr = run(TrainingRunPhase::Succeeded);
    tr.status.as_mut().unwrap().code_digest = None;
    let l = lineage(&release(), Some(&tr));
    assert!(
        l.mismatches.iter().any(|m| m.contains("codeDigest")),
        "{:?}",
        l.mismatches
    );
}

/// The statement the operator attaches to both digests, as the registry returns it.
fn statement(data: &str) -> serde_json::Value {
    edgetrain_registry::statement(
        &[
            ("r.example/m/churn@artifact".into(), ART.into()),
            ("r.example/m/churn@image".into(), IMG.into()),
        ],
        &edgetrain_registry::BuildFacts {
            builder_id: "https://edgetrain.dev/controller".into(),
            build_type: "https://edgetrain.dev/ModelRelease/v1".into(),
            external_parameters: json!({
                "model": release().status.unwrap().model_id,
                "job": "job-1", "trainingRun": "ml/train",
                "codeDigest": "sha256:c0de", "dataFingerprint": data,
            }),
            resolved_dependencies: vec![],
            invocation_id: "x".into(),
        },
    )
}

fn found(data: &str) -> Vec<RegistryProvenance> {
    vec![
        provenance_facts(ART, "sha256:ca", &statement(data)),
        provenance_facts(IMG, "sha256:cc", &statement(data)),
    ]
}

#[test]
fn registry_provenance_that_tells_the_same_story_checks_out() {
    let mr = release();
    let mut l = lineage(&mr, Some(&run(TrainingRunPhase::Succeeded)));
    check_registry(&mut l, mr.status.as_ref().unwrap(), found("sha256:da7a"));
    assert_eq!(l.mismatches, Vec::<String>::new());
    assert_eq!(l.registry_provenance.len(), 2);
    assert_eq!(l.registry_provenance[0].subjects, [ART, IMG]);
    assert!(
        lineage_text(&l).contains("provenance sha256:cc on"),
        "{}",
        lineage_text(&l)
    );
}

#[test]
fn registry_provenance_of_other_data_or_missing_is_a_mismatch() {
    let mr = release();
    let mut l = lineage(&mr, Some(&run(TrainingRunPhase::Succeeded)));
    check_registry(&mut l, mr.status.as_ref().unwrap(), found("sha256:0the4"));
    assert_eq!(
        l.mismatches,
        [
            "provenance sha256:ca says dataFingerprint sha256:0the4, status says sha256:da7a",
            "provenance sha256:cc says dataFingerprint sha256:0the4, status says sha256:da7a",
        ]
    );
    // Only the artifact carries a statement, and not the one status records for the image.
    let mut l = lineage(&mr, Some(&run(TrainingRunPhase::Succeeded)));
    let mut only_artifact = found("sha256:da7a");
    only_artifact.truncate(1);
    check_registry(&mut l, mr.status.as_ref().unwrap(), only_artifact);
    assert_eq!(
        l.mismatches,
        [
            format!("the registry holds no provenance attached to {IMG}"),
            format!("status records referrer sha256:cc of {IMG}, which the registry does not list"),
        ]
    );
}

#[test]
fn lineage_flags_a_version_other_than_the_pinned_one() {
    let mut mr = release();
    mr.spec.model.version = Some("7".into());
    mr.spec.training_run_ref = Some(LocalObjectReference {
        name: "train".into(),
    });
    let l = lineage(&mr, Some(&run(TrainingRunPhase::Succeeded)));
    assert!(
        l.mismatches
            .iter()
            .any(|m| m.contains("pins model version 7"))
    );
}

#[test]
fn azure_code_is_read_from_both_message_shapes() {
    assert_eq!(
        azure_code("HTTP 409: OperationNotAllowed: quota of cores exceeded").as_deref(),
        Some("OperationNotAllowed")
    );
    assert_eq!(
        azure_code("QuotaExceeded: no more cores").as_deref(),
        Some("QuotaExceeded")
    );
    assert_eq!(azure_code("Secret sp not found"), None);
    assert_eq!(azure_code("creating the VM: please wait"), None);
}

#[test]
fn request_id_is_found_after_its_key() {
    assert_eq!(
        request_id("HTTP 500: InternalServerError: boom (x-ms-request-id: 0f1e2d3c-aaaa-bbbb-cccc-0123456789ab)")
            .as_deref(),
        Some("0f1e2d3c-aaaa-bbbb-cccc-0123456789ab")
    );
    assert_eq!(request_id("request id 12"), None);
    assert_eq!(request_id("no id here"), None);
}

#[test]
fn last_failure_prefers_the_newest_then_the_most_specific() {
    let conds = vec![
        condition("Ready", false, "AttachFailed", "m", Some(1), t(10)),
        condition("Stalled", true, "AttachFailed", "m", Some(1), t(10)),
        condition("Reconciling", false, "NotReconciling", "", Some(1), t(20)),
        condition("VMReady", true, "Running", "", Some(1), t(30)),
        condition(
            "ComputeAttached",
            false,
            "AttachFailed",
            "ssh",
            Some(1),
            t(10),
        ),
        condition("DataVerified", false, "Old", "", Some(1), t(1)),
    ];
    let c = last_failure(&conds).unwrap();
    assert_eq!(c.type_, "ComputeAttached");
    let healthy = vec![condition("Ready", true, "Ready", "", Some(1), t(0))];
    assert!(last_failure(&healthy).is_none());
}

#[test]
fn explanation_carries_code_and_hint() {
    let mut c = condition(
        "Ready",
        false,
        "AuthorizationFailed",
        "HTTP 403: AuthorizationFailed: no role",
        Some(1),
        t(0),
    );
    c.last_transition_time = Time(t(0));
    let e = explain("TrainingRun/ml/x".into(), Some("Pending".into()), &[c]);
    assert_eq!(e.azure_code.as_deref(), Some("AuthorizationFailed"));
    assert!(e.hint.unwrap().contains("role"));
    let none = explain("x".into(), None, &[]);
    assert!(explanation_text(&none).contains("no failing condition"));
}

/// Every reason the hint table knows is one a controller really writes, so the table cannot
/// drift into advice for reasons that never appear.
#[test]
fn every_hint_reason_is_emitted_by_the_controller() {
    fn sources(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut text = String::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../controller/src");
    sources(&dir, &mut text);
    for (reason, _) in HINTS {
        assert!(
            text.contains(&format!("\"{reason}\"")),
            "{reason} is not a reason in crates/controller/src"
        );
    }
}
