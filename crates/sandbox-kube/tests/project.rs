//! The project's own crds/ and examples/ through kubectl and kube::Api.

mod common;

use std::path::PathBuf;

use common::Kubectl;
use edgetrain_sandbox_kube::{Options, SandboxKube};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;

fn repo(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn project_crds_and_examples_apply_and_print() {
    let server = SandboxKube::start(Options::default()).await.unwrap();
    let k = Kubectl::new(&server);
    let out = k.ok(&["apply", "-f", &repo("crds")]);
    assert_eq!(out.matches("created").count(), 3, "{out}");
    // Applying again is a no-op for every CRD.
    let out = k.ok(&["apply", "-f", &repo("crds")]);
    assert_eq!(out.matches("unchanged").count(), 3, "{out}");
    // Strict field validation is on (kubectl's default): the examples must match the schemas.
    let out = k.ok(&["apply", "-k", &repo("examples")]);
    for kind in ["edgecomputetarget", "trainingrun", "modelrelease"] {
        assert!(out.contains(&format!("{kind}.edgetrain.dev/")), "{out}");
    }
    let all = k.ok(&["get", "edgetrain", "-n", "edgetrain-demo", "-o", "name"]);
    assert_eq!(all.lines().count(), 3, "{all}");
    let tr = k.ok(&["get", "tr", "-n", "edgetrain-demo"]);
    let header: Vec<&str> = tr.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header.first(), Some(&"NAME"));
    assert!(
        header.contains(&"READY") && header.last() == Some(&"AGE"),
        "{tr}"
    );
    let explain = k.ok(&["explain", "edgecomputetargets.spec.vm"]);
    assert!(explain.contains("allowedSshSources"), "{explain}");
    // Re-applying changes nothing (Secrets with stringData always report "configured",
    // on a real cluster too: stringData is never stored).
    let out = k.ok(&["apply", "-k", &repo("examples")]);
    for line in out.lines().filter(|l| l.contains("edgetrain.dev/")) {
        assert!(line.ends_with("unchanged"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn project_status_writes_and_immutability_rules() {
    let server = SandboxKube::start(Options::default()).await.unwrap();
    assert_eq!(server.register_crds(repo("crds")).unwrap().len(), 3);
    let k = Kubectl::new(&server);
    k.ok(&["apply", "-k", &repo("examples")]);
    let client = server.client().unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("edgetrain.dev", "v1alpha1", "TrainingRun"),
        "trainingruns",
    );
    let runs: Api<DynamicObject> = Api::namespaced_with(client, "edgetrain-demo", &ar);
    let status = json!({"apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun", "status": {
        "phase": "Running", "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "Running", "message": "job is running",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}});
    let o = runs
        .patch_status(
            "churn-2026-11",
            &PatchParams::apply("edgetrain-controller").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Running");
    let table = k.ok(&["get", "tr", "-n", "edgetrain-demo"]);
    assert!(table.contains("Running"), "{table}");
    let err = k.fails(&[
        "patch",
        "tr",
        "churn-2026-11",
        "-n",
        "edgetrain-demo",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"backoffLimit":5}}"#,
    ]);
    assert!(err.contains("is invalid"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_apply_of_the_crds_over_their_registration_does_not_conflict() {
    let server = SandboxKube::start(Options::default()).await.unwrap();
    // Registered from YAML that spells `minimum: 30.0`; kubectl sends `30`: the same number.
    assert_eq!(server.register_crds(repo("crds")).unwrap().len(), 3);
    let k = Kubectl::new(&server);
    let out = k.ok(&["apply", "--server-side", "-f", &repo("crds")]);
    assert_eq!(out.matches("serverside-applied").count(), 3, "{out}");
    let min = k.ok(&[
        "get",
        "crd",
        "edgecomputetargets.edgetrain.dev",
        "-o",
        "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.vm.properties.osDiskSizeGB.minimum}",
    ]);
    assert_eq!(min.parse::<f64>().ok(), Some(30.0), "{min}");
}
