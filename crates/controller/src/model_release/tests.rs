//! Table tests of the pure parts: run gate, lineage, registration, conditions, cleanup.

use std::collections::{BTreeMap, BTreeSet};

use edgetrain_api::{
    DeletionPolicy, ModelReleaseSpec, ModelReleaseStatus, TrainingRun,
    model_release::{ModelSpec, Referrer},
};
use edgetrain_azure::ml::ModelVersion;
use serde_json::json;

use super::{decide::*, desired::*};

fn run(status: serde_json::Value) -> TrainingRun {
    serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": "train", "namespace": "ml", "uid": "u-1"},
        "spec": {
            "computeTargetRef": {"name": "edge"}, "code": {}, "environment": {},
            "command": "python train.py",
            "data": {"endpoint": "https://x.blob.local", "container": "c",
                     "credentialsSecretRef": {"name": "s"}}
        },
        "status": status,
    }))
    .expect("valid TrainingRun")
}

fn succeeded() -> serde_json::Value {
    json!({
        "phase": "Succeeded", "jobName": "job-1",
        "outputs": {"model": "azureml://jobs/job-1/outputs/model"},
        "codeDigest": "sha256:c0de", "dataFingerprint": "sha256:da7a", "dataBlobCount": 3,
        "completionTime": "2026-01-02T03:04:05Z"
    })
}

fn lineage() -> Lineage {
    match run_state(Some(&run(succeeded())), "model") {
        RunState::Releasable(l) => l,
        other => panic!("expected releasable, got {other:?}"),
    }
}

fn spec() -> ModelSpec {
    ModelSpec {
        name: "churn".into(),
        output_name: "model".into(),
        tags: BTreeMap::from([("team".into(), "a".into())]),
        ..Default::default()
    }
}

fn digests() -> PlannedDigests {
    PlannedDigests {
        artifact: "sha256:aa".into(),
        image: Some("sha256:bb".into()),
    }
}

fn desired() -> ModelVersion {
    model_version(&spec(), &lineage(), &digests(), "ml/rel/r-1")
}

#[test]
fn run_state_table() {
    let failed_with = |reason: &str| {
        json!({"phase": "Failed", "conditions": [{
            "type": "Ready", "status": "False", "reason": reason, "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    };
    type Case<'a> = (Option<TrainingRun>, &'a str, fn(&RunState) -> bool);
    let cases: Vec<Case> = vec![
        (None, "model", |s| matches!(s, RunState::Waiting(_))),
        (
            Some(run(json!({"phase": "Running"}))),
            "model",
            |s| matches!(s, RunState::Waiting(m) if m.contains("Running")),
        ),
        (
            Some(run(failed_with("DataExfiltration"))),
            "model",
            |s| matches!(s, RunState::NotReleasable(m) if m.contains("DataExfiltration")),
        ),
        (
            Some(run(failed_with("OutputPolicyViolation"))),
            "model",
            |s| matches!(s, RunState::NotReleasable(_)),
        ),
        // Any other end is "not Succeeded" (a new run or spec change may follow), not forbidden.
        (Some(run(failed_with("JobFailed"))), "model", |s| {
            matches!(s, RunState::Waiting(_))
        }),
        (
            Some(run(succeeded())),
            "weights",
            |s| matches!(s, RunState::Incomplete(m) if m.contains("weights")),
        ),
        (Some(run(succeeded())), "model", |s| {
            matches!(s, RunState::Releasable(_))
        }),
    ];
    for (i, (r, output, ok)) in cases.into_iter().enumerate() {
        let s = run_state(r.as_ref(), output);
        assert!(ok(&s), "case {i}: {s:?}");
    }
}

#[test]
fn gates_wait_or_stall_with_the_issue_reasons() {
    assert!(matches!(
        run_gate(&RunState::Waiting("x".into())),
        Some(Gate::Wait {
            reason: "TrainingRunNotSucceeded",
            ..
        })
    ));
    assert!(matches!(
        run_gate(&RunState::NotReleasable("x".into())),
        Some(Gate::Stall {
            reason: "RunNotReleasable",
            ..
        })
    ));
    assert_eq!(run_gate(&RunState::Releasable(lineage())), None);
}

#[test]
fn model_version_carries_lineage_in_properties_and_tags() {
    let v = desired();
    let p = v.properties.as_ref().unwrap();
    assert_eq!(p["edgetrain.dev/training-run"], "ml/train");
    assert_eq!(p["edgetrain.dev/training-run-uid"], "u-1");
    assert_eq!(p["edgetrain.dev/job-name"], "job-1");
    assert_eq!(p["edgetrain.dev/code-digest"], "sha256:c0de");
    assert_eq!(p["edgetrain.dev/data-fingerprint"], "sha256:da7a");
    assert_eq!(p["edgetrain.dev/data-blob-count"], "3");
    assert_eq!(p["edgetrain.dev/artifact-digest"], "sha256:aa");
    assert_eq!(p["edgetrain.dev/image-digest"], "sha256:bb");
    // The run's end as the model's time (2026-01-02T03:04:05Z), a property only.
    assert_eq!(p["edgetrain.dev/model-time"], "1767323045");
    let t = v.tags.as_ref().unwrap();
    assert!(!t.contains_key("edgetrain.dev/model-time"), "{t:?}");
    assert_eq!(t["team"], "a");
    assert_eq!(t["edgetrain.dev/job-name"], "job-1");
    assert_eq!(t[RELEASED_BY], "ml/rel/r-1");
    assert_eq!(
        v.model_uri.as_deref(),
        Some("azureml://jobs/job-1/outputs/model")
    );
    assert_eq!(v.model_type.as_deref(), Some("custom_model"));
    assert_eq!(v.job_name.as_deref(), Some("job-1"));
}

#[test]
fn registration_table() {
    let same = desired();
    // Edited tags and description do not make content differ.
    let mut retagged = desired();
    retagged.tags = Some(BTreeMap::from([("x".into(), "y".into())]));
    retagged.description = Some("edited".into());
    let mut other_image = desired();
    other_image
        .properties
        .as_mut()
        .unwrap()
        .insert("edgetrain.dev/image-digest".into(), "sha256:cc".into());
    let mut other_uri = desired();
    other_uri.model_uri = Some("azureml://jobs/job-2/outputs/model".into());
    // Registered before the model's time was recorded: same content by its artifact digest.
    let mut untimed = desired();
    untimed
        .properties
        .as_mut()
        .unwrap()
        .remove("edgetrain.dev/model-time");
    let mut other_time = desired();
    other_time
        .properties
        .as_mut()
        .unwrap()
        .insert("edgetrain.dev/model-time".into(), "1".into());
    let v = |n: &str, m: &ModelVersion| (n.to_string(), m.clone());
    assert_eq!(registration("5", &same, &[]), Registration::Create);
    assert_eq!(
        registration("5", &same, &[v("4", &other_uri)]),
        Registration::Create
    );
    assert_eq!(
        registration("5", &same, &[v("5", &retagged)]),
        Registration::Adopt
    );
    assert_eq!(
        registration("5", &same, &[v("5", &untimed)]),
        Registration::Adopt
    );
    for (what, conflicting) in [
        ("image-digest", other_image),
        ("modelUri", other_uri),
        ("model-time", other_time),
    ] {
        match registration("5", &same, &[v("5", &conflicting)]) {
            Registration::Conflict(message) => {
                assert!(message.contains(what), "{message}");
                assert!(message.contains("version 5"), "{message}");
            }
            other => panic!("{what}: expected a conflict, got {other:?}"),
        }
    }
}

#[test]
fn version_choice_table() {
    let ours = desired(); // released_by ml/rel/r-1
    let unrelated = ModelVersion::default();
    let v = |n: &str, m: &ModelVersion| (n.to_string(), m.clone());
    let all = vec![
        v("1", &unrelated),
        v("7", &unrelated),
        v("beta", &unrelated),
    ];
    let cases = [
        (Some("9"), Some("2"), vec![], "9"),
        (None, Some("2"), all.clone(), "2"),
        (None, None, vec![], "1"),
        (None, None, all.clone(), "8"),
        // Registered before a restart lost the status write: found again by its tag.
        (
            None,
            None,
            vec![v("1", &unrelated), v("2", &ours), v("3", &unrelated)],
            "2",
        ),
    ];
    for (i, (requested, recorded, existing, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            choose_version(requested, recorded, &existing, "ml/rel/r-1"),
            want,
            "case {i}"
        );
    }
    // Another release's version is not ours.
    assert_eq!(
        choose_version(None, None, &[v("2", &ours)], "ml/other/r-9"),
        "3"
    );
}

#[test]
fn tags_identity_first_then_spec_tags_without_duplicates() {
    let mut s = ModelReleaseSpec {
        training_run_ref: None,
        existing_model: None,
        model: spec(),
        registry: Default::default(),
        image: None,
        deletion_policy: None,
    };
    s.registry.tags = vec!["latest".into(), "churn-3".into(), "prod".into()];
    assert_eq!(oci_tags(&s, "3").unwrap(), ["churn-3", "latest", "prod"]);
    s.model.name = "m".repeat(127);
    assert!(oci_tags(&s, "3").unwrap_err().contains("longer than 128"));
}

#[test]
fn conditions_are_ready_only_when_pushed() {
    let (r, p, progress) = conditions(&Stage::Pushed {
        version: "3".into(),
    });
    assert!(r.status && p.status);
    assert_eq!(
        progress,
        edgetrain_api::conditions::Progress::ready("Released", "model version 3 released")
    );
    for stage in [
        Stage::Registered {
            version: "3".into(),
        },
        Stage::VersionConflict("c".into()),
        Stage::Gated(Gate::Stall {
            reason: "RunNotReleasable",
            message: "m".into(),
        }),
        Stage::Gated(Gate::Wait {
            reason: "TrainingRunNotSucceeded",
            message: "m".into(),
        }),
    ] {
        let (_, pushed, progress) = conditions(&stage);
        assert!(!pushed.status, "{stage:?}");
        assert!(
            !matches!(progress, edgetrain_api::conditions::Progress::Ready { .. }),
            "{stage:?}"
        );
    }
    let (reg, _, progress) = conditions(&Stage::VersionConflict("c".into()));
    assert_eq!(reg.reason, "VersionConflict");
    assert!(matches!(
        progress,
        edgetrain_api::conditions::Progress::Stalled { .. }
    ));
}

fn pushed_status() -> ModelReleaseStatus {
    ModelReleaseStatus {
        model_version: Some("3".into()),
        artifact_digest: Some("r.io/m@sha256:aa".into()),
        image_digest: Some("r.io/m@sha256:bb".into()),
        referrers: vec![
            Referrer {
                artifact_type: "application/vnd.in-toto+json".into(),
                digest: "sha256:r1".into(),
                subject: "sha256:aa".into(),
            },
            Referrer {
                artifact_type: "application/vnd.in-toto+json".into(),
                digest: "sha256:r2".into(),
                subject: "sha256:bb".into(),
            },
        ],
        ..Default::default()
    }
}

#[test]
fn cleanup_table() {
    let s = ModelReleaseStatus {
        model_id: Some(WS_MODEL.into()),
        ..pushed_status()
    };
    let ours = BTreeMap::from([(RELEASED_BY.to_string(), "ml/rel/r-1".to_string())]);
    let theirs = BTreeMap::from([(RELEASED_BY.to_string(), "ml/other/r-2".to_string())]);
    let none = BTreeSet::new();
    assert_eq!(
        cleanup_plan(DeletionPolicy::Retain, &s, Some(&ours), "ml/rel/r-1", &none),
        vec![]
    );
    let referrer = |d: &str, subject: &str| CleanupStep::DeleteReferrer {
        digest: d.into(),
        subject: subject.into(),
    };
    let manifests = vec![
        referrer("sha256:r1", "sha256:aa"),
        referrer("sha256:r2", "sha256:bb"),
        CleanupStep::DeleteManifest("sha256:bb".into()),
        CleanupStep::DeleteManifest("sha256:aa".into()),
    ];
    let mut with_archive = manifests.clone();
    with_archive.push(CleanupStep::Archive("3".into()));
    assert_eq!(
        cleanup_plan(DeletionPolicy::Delete, &s, Some(&ours), "ml/rel/r-1", &none),
        with_archive
    );
    // Registered by another release (adopted here): never archived by this one.
    assert_eq!(
        cleanup_plan(
            DeletionPolicy::Delete,
            &s,
            Some(&theirs),
            "ml/rel/r-1",
            &none
        ),
        manifests
    );
    assert_eq!(
        cleanup_plan(DeletionPolicy::Delete, &s, None, "ml/rel/r-1", &none),
        manifests
    );
    // Another release of the same repository still ships the image and the version: only
    // what nobody else lists goes.
    let shared = BTreeSet::from([
        "sha256:bb".to_string(),
        "sha256:r2".to_string(),
        WS_MODEL.to_string(),
    ]);
    assert_eq!(
        cleanup_plan(
            DeletionPolicy::Delete,
            &s,
            Some(&ours),
            "ml/rel/r-1",
            &shared
        ),
        vec![
            referrer("sha256:r1", "sha256:aa"),
            CleanupStep::DeleteManifest("sha256:aa".into()),
        ]
    );
    assert_eq!(
        cleanup_plan(
            DeletionPolicy::Delete,
            &ModelReleaseStatus::default(),
            None,
            "x",
            &none
        ),
        vec![]
    );
}

const WS_MODEL: &str = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1/models/churn/versions/3";

#[test]
fn a_model_id_belongs_to_its_workspace_only() {
    assert!(in_workspace(WS_MODEL, "s1", "rg1", "ws1"));
    assert!(in_workspace(&WS_MODEL.to_lowercase(), "s1", "RG1", "ws1"));
    assert!(!in_workspace(WS_MODEL, "s1", "rg1", "ws"));
    assert!(!in_workspace(WS_MODEL, "s2", "rg1", "ws1"));
    assert!(!in_workspace("", "s1", "rg1", "ws1"));
}

fn secret(pairs: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("reg".into()),
            namespace: Some("ml".into()),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Default::default()
    }
}

#[test]
fn registry_secret_is_a_principal_or_a_password_and_never_printed() {
    use super::observe::registry_credentials;
    use crate::runtime::factory::RegistryCredentials;
    let sp = secret(&[
        ("tenantId", "t"),
        ("clientId", "c"),
        ("clientSecret", "s3cr3t-value"),
    ]);
    match registry_credentials(&sp, "https://management.local").unwrap() {
        c @ RegistryCredentials::AzureAd { .. } => {
            assert!(!format!("{c:?}").contains("s3cr3t-value"))
        }
        other => panic!("{other:?}"),
    }
    let basic = secret(&[("username", "u"), ("password", "pw-s3cr3t")]);
    let c = registry_credentials(&basic, "x").unwrap();
    assert!(!format!("{c:?}").contains("pw-s3cr3t"));
    assert!(matches!(c, RegistryCredentials::Basic { username, .. } if username == "u"));
    let half = secret(&[("username", "u")]);
    assert!(registry_credentials(&half, "x").is_err());
    let e = registry_credentials(&secret(&[("token", "t")]), "x").unwrap_err();
    assert_eq!(e.reason(), "SecretInvalid");
}

#[test]
fn only_datastore_uris_without_dot_dot_are_read() {
    use super::observe::datastore_path;
    assert_eq!(
        datastore_path("azureml://datastores/workspaceblobstore/paths/azureml/job-1/model/")
            .unwrap(),
        ("workspaceblobstore", "azureml/job-1/model/")
    );
    for bad in [
        "azureml://jobs/job-1/outputs/model",
        "azureml://datastores//paths/x",
        "azureml://datastores/ds/paths/a/../b",
        "https://acct.blob.core.windows.net/c/x",
    ] {
        let e = datastore_path(bad).unwrap_err();
        assert_eq!(e.reason(), "UnsupportedOutputUri", "{bad}");
    }
}

#[test]
fn output_blob_names_become_paths_inside_the_model_or_are_refused() {
    use super::observe::model_path;
    let prefix = "azureml/job-1/model/";
    assert_eq!(
        model_path(prefix, "azureml/job-1/model/sub/w.onnx").unwrap(),
        "sub/w.onnx"
    );
    for bad in [
        "azureml/job-1/model/",
        "azureml/job-1/model/../x",
        "azureml/job-1/model/a//b",
        "azureml/job-1/model/./a",
        "azureml/job-1/model/a/",
    ] {
        let e = model_path(prefix, bad).unwrap_err();
        assert_eq!(e.reason(), "InvalidSpec", "{bad}");
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn datastore_endpoints_are_host_style_except_on_loopback() {
    use super::observe::blob_endpoint;
    assert_eq!(
        blob_endpoint("https", "ws1", "core.windows.net"),
        "https://ws1.blob.core.windows.net"
    );
    assert_eq!(
        blob_endpoint("https", "ws1", "localhost:10000"),
        "https://localhost:10000/ws1"
    );
    assert_eq!(
        blob_endpoint("https", "ws1", "127.0.0.1:10000"),
        "https://127.0.0.1:10000/ws1"
    );
    assert_eq!(
        blob_endpoint("https", "ws1", "10.0.0.1"),
        "https://ws1.blob.10.0.0.1"
    );
}
