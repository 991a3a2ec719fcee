//! Admission-time validation of the three CRDs, as the API server applies it: the OpenAPI schema
//! (types, required fields, enums, patterns, bounds) and the CEL rules (including transition
//! rules with `oldSelf`, evaluated by kube's CEL library). The admission code is the sandbox API
//! server's, so these tests and the sandbox can never disagree. Every rejected input is checked
//! for the message a user would see.

use edgetrain_api::crdgen;
use serde_json::{Value, json};

/// The openAPIV3Schema of a kind, as generated.
fn schema(kind: &str) -> Value {
    let crd = crdgen::all()
        .into_iter()
        .map(|(_, crd)| crd)
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Every message the API server would answer for `obj` (an update when `old` is given).
fn rejections(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<String> {
    match edgetrain_sandbox_kube::admit_custom_resource(&schema(kind), obj, old) {
        Ok(_) => vec![],
        Err(causes) => causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect(),
    }
}

fn assert_valid(kind: &str, obj: &Value, old: Option<&Value>) {
    let r = rejections(kind, obj, old);
    assert!(r.is_empty(), "{kind} should be accepted, got: {r:#?}");
}

fn assert_rejected(kind: &str, obj: &Value, old: Option<&Value>, needle: &str) {
    let r = rejections(kind, obj, old);
    assert!(
        r.iter().any(|m| m.contains(needle)),
        "{kind} should be rejected with a message containing {needle:?}, got: {r:#?}"
    );
}

fn ect() -> Value {
    json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "EdgeComputeTarget",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "stackHub": {
                "armEndpoint": "https://management.local.azurestack.external",
                "location": "local",
                "subscriptionId": "11111111-2222-3333-4444-555555555555",
                "resourceGroup": "edge",
                "credentialsSecretRef": {"name": "sh"}
            },
            "vm": {
                "size": "Standard_DS3_v2",
                "image": {"publisher": "Canonical", "offer": "ubuntu", "sku": "22_04-lts"},
                "allowedSshSources": ["203.0.113.0/24"]
            },
            "azureML": {
                "subscriptionId": "66666666-7777-8888-9999-000000000000",
                "resourceGroup": "ml", "workspace": "ws1", "computeName": "edge01",
                "credentialsSecretRef": {"name": "ml"}
            }
        }
    })
}

fn tr() -> Value {
    json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {
            "computeTargetRef": {"name": "t"},
            "code": {"configMapRef": {"name": "code"}},
            "environment": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"},
            "command": "python train.py --data ${{inputs.training_data}}",
            "data": {
                "endpoint": "https://data.blob.local.azurestack.external",
                "container": "telemetry",
                "credentialsSecretRef": {"name": "st"}
            }
        }
    })
}

fn mr() -> Value {
    json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "ModelRelease",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {
            "trainingRunRef": {"name": "r"},
            "model": {"name": "churn"},
            "registry": {
                "loginServer": "contoso.azurecr.io", "repository": "models/churn",
                "credentialsSecretRef": {"name": "acr"}
            }
        }
    })
}

/// `obj` with the JSON pointer `path` set to `value` (created if absent).
fn with(mut obj: Value, path: &str, value: Value) -> Value {
    let (parent, key) = path.rsplit_once('/').unwrap();
    obj.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.to_string(), value);
    obj
}

/// `obj` without the field at `path`.
fn without(mut obj: Value, path: &str) -> Value {
    let (parent, key) = path.rsplit_once('/').unwrap();
    obj.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    obj
}

#[test]
fn minimal_objects_are_accepted() {
    assert_valid("EdgeComputeTarget", &ect(), None);
    assert_valid("TrainingRun", &tr(), None);
    assert_valid("ModelRelease", &mr(), None);
}

#[test]
fn the_examples_are_accepted() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for file in [
        "edgecomputetarget.yaml",
        "trainingrun.yaml",
        "modelrelease.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let obj: Value = serde_yaml::from_str(&text).unwrap();
        let kind = obj["kind"].as_str().unwrap().to_string();
        assert_valid(&kind, &obj, None);
        seen += 1;
    }
    assert_eq!(seen, 3);
}

// ---- EdgeComputeTarget ----

#[test]
fn ect_missing_vm_is_rejected() {
    assert_rejected(
        "EdgeComputeTarget",
        &without(ect(), "/spec/vm"),
        None,
        "spec.vm: Required value",
    );
}

#[test]
fn ect_unknown_deletion_policy_is_rejected() {
    let obj = with(ect(), "/spec/deletionPolicy", json!("Destroy"));
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "spec.deletionPolicy: Unsupported value: \"Destroy\"",
    );
}

#[test]
fn ect_unknown_api_profile_is_rejected() {
    let obj = with(
        ect(),
        "/spec/stackHub/apiProfile",
        json!("2018-03-01-hybrid"),
    );
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "spec.stackHub.apiProfile: Unsupported value",
    );
}

#[test]
fn ect_bad_cidr_is_rejected() {
    let obj = with(
        ect(),
        "/spec/vm/allowedSshSources",
        json!(["10.0.0.300/24"]),
    );
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "allowedSshSources must be CIDRs",
    );
}

#[test]
fn ect_empty_ssh_sources_are_rejected() {
    let obj = with(ect(), "/spec/vm/allowedSshSources", json!([]));
    assert_rejected("EdgeComputeTarget", &obj, None, "allowedSshSources");
}

#[test]
fn ect_idle_timeout_below_minimum_is_rejected() {
    let obj = with(ect(), "/spec/idleTimeout", json!("1m"));
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "idleTimeout must be at least 5m",
    );
    assert_valid(
        "EdgeComputeTarget",
        &with(ect(), "/spec/idleTimeout", json!("1h30m")),
        None,
    );
}

#[test]
fn ect_idle_timeout_that_is_no_duration_is_rejected() {
    let obj = with(ect(), "/spec/idleTimeout", json!("ten minutes"));
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "spec.idleTimeout in body should match",
    );
}

#[test]
fn ect_plain_http_endpoint_is_rejected_unless_loopback() {
    let obj = with(
        ect(),
        "/spec/stackHub/armEndpoint",
        json!("http://management.example.com"),
    );
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "armEndpoint must be an https URL",
    );
    let local = with(
        ect(),
        "/spec/stackHub/armEndpoint",
        json!("http://127.0.0.1:8443"),
    );
    assert_valid("EdgeComputeTarget", &local, None);
}

#[test]
fn ect_image_change_is_rejected() {
    let old = ect();
    let new = with(ect(), "/spec/vm/image/sku", json!("24_04-lts"));
    assert_rejected(
        "EdgeComputeTarget",
        &new,
        Some(&old),
        "vm.image is immutable",
    );
}

#[test]
fn ect_size_change_is_allowed() {
    let old = ect();
    let new = with(ect(), "/spec/vm/size", json!("Standard_DS4_v2"));
    assert_valid("EdgeComputeTarget", &new, Some(&old));
}

#[test]
fn ect_subscription_change_is_rejected() {
    let old = ect();
    let new = with(ect(), "/spec/stackHub/resourceGroup", json!("other"));
    assert_rejected("EdgeComputeTarget", &new, Some(&old), "immutable");
}

#[test]
fn ect_compute_name_change_is_rejected() {
    let old = ect();
    let new = with(ect(), "/spec/azureML/computeName", json!("edge02"));
    assert_rejected(
        "EdgeComputeTarget",
        &new,
        Some(&old),
        "azureML workspace, computeName",
    );
}

#[test]
fn ect_reserved_admin_name_is_rejected() {
    let obj = with(ect(), "/spec/vm/adminUsername", json!("root"));
    assert_rejected("EdgeComputeTarget", &obj, None, "reserved name");
}

#[test]
fn ect_subnet_and_address_prefix_together_are_rejected() {
    let obj = with(
        ect(),
        "/spec/vm/network",
        json!({
            "subnetId": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/a",
            "addressPrefix": "10.1.0.0/24"
        }),
    );
    assert_rejected("EdgeComputeTarget", &obj, None, "either subnetId");
}

#[test]
fn ect_tiny_address_prefix_is_rejected() {
    let obj = with(
        ect(),
        "/spec/vm/network",
        json!({"addressPrefix": "10.1.0.0/30"}),
    );
    assert_rejected("EdgeComputeTarget", &obj, None, "/29 or larger");
}

#[test]
fn ect_bad_subscription_id_is_rejected() {
    let obj = with(ect(), "/spec/stackHub/subscriptionId", json!("not-a-guid"));
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "subscriptionId in body should match",
    );
}

#[test]
fn ect_small_os_disk_is_rejected() {
    let obj = with(ect(), "/spec/vm/osDiskSizeGB", json!(10));
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "osDiskSizeGB in body should be greater than or equal to 30",
    );
}

#[test]
fn ect_cloud_init_must_be_cloud_config() {
    let obj = with(ect(), "/spec/vm/cloudInit", json!("#!/bin/sh\necho hi"));
    assert_rejected(
        "EdgeComputeTarget",
        &obj,
        None,
        "must start with #cloud-config",
    );
}

// ---- TrainingRun ----

#[test]
fn tr_both_code_sources_are_rejected() {
    let obj = with(
        tr(),
        "/spec/code",
        json!({"configMapRef": {"name": "c"}, "blobUri": "https://a.blob.x/c/code"}),
    );
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "exactly one of configMapRef or blobUri",
    );
}

#[test]
fn tr_no_code_source_is_rejected() {
    let obj = with(tr(), "/spec/code", json!({}));
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "exactly one of configMapRef or blobUri",
    );
}

#[test]
fn tr_image_and_environment_id_together_are_rejected() {
    let obj = with(
        tr(),
        "/spec/environment",
        json!({"image": "python:3.11", "environmentId": "azureml:env:1"}),
    );
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "exactly one of image or environmentId",
    );
}

#[test]
fn tr_conda_file_without_image_is_rejected() {
    let obj = with(
        tr(),
        "/spec/environment",
        json!({"environmentId": "azureml:env:1", "condaFile": "name: x"}),
    );
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "condaFile requires environment.image",
    );
}

#[test]
fn tr_negative_deadline_is_rejected() {
    let obj = with(tr(), "/spec/activeDeadlineSeconds", json!(-5));
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "activeDeadlineSeconds in body should be greater than or equal to 60",
    );
}

#[test]
fn tr_backoff_limit_above_maximum_is_rejected() {
    let obj = with(tr(), "/spec/backoffLimit", json!(11));
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "backoffLimit in body should be less than or equal to 10",
    );
}

#[test]
fn tr_unknown_output_type_is_rejected() {
    let obj = with(
        tr(),
        "/spec/outputs",
        json!([{"name": "model", "type": "pickle"}]),
    );
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "spec.outputs[0].type: Unsupported value: \"pickle\"",
    );
}

#[test]
fn tr_plain_http_data_endpoint_is_rejected() {
    let obj = with(
        tr(),
        "/spec/data/endpoint",
        json!("http://data.blob.local.azurestack.external"),
    );
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "data.endpoint must be an https URL",
    );
}

#[test]
fn tr_bad_environment_variable_name_is_rejected() {
    let obj = with(tr(), "/spec/environmentVariables", json!({"1BAD": "x"}));
    assert_rejected("TrainingRun", &obj, None, "environmentVariables names");
}

#[test]
fn tr_bad_container_name_is_rejected() {
    let obj = with(tr(), "/spec/data/container", json!("Telemetry_Data"));
    assert_rejected(
        "TrainingRun",
        &obj,
        None,
        "spec.data.container in body should match",
    );
}

#[test]
fn tr_missing_command_is_rejected() {
    assert_rejected(
        "TrainingRun",
        &without(tr(), "/spec/command"),
        None,
        "spec.command: Required value",
    );
}

#[test]
fn tr_command_change_is_rejected() {
    let old = tr();
    let new = with(tr(), "/spec/command", json!("python other.py"));
    assert_rejected("TrainingRun", &new, Some(&old), "command is immutable");
}

#[test]
fn tr_adding_an_optional_field_after_creation_is_rejected() {
    let old = tr();
    let new = with(tr(), "/spec/activeDeadlineSeconds", json!(600));
    assert_rejected(
        "TrainingRun",
        &new,
        Some(&old),
        "spec is immutable except suspend",
    );
}

#[test]
fn tr_suspend_may_change() {
    let old = tr();
    let new = with(tr(), "/spec/suspend", json!(true));
    assert_valid("TrainingRun", &new, Some(&old));
}

// ---- ModelRelease ----

#[test]
fn mr_both_sources_are_rejected() {
    let obj = with(
        mr(),
        "/spec/existingModel",
        json!({"name": "churn", "version": "1", "computeTargetRef": {"name": "t"}}),
    );
    assert_rejected(
        "ModelRelease",
        &obj,
        None,
        "exactly one of trainingRunRef or existingModel",
    );
}

#[test]
fn mr_version_change_is_rejected() {
    let old = with(mr(), "/spec/model/version", json!("3"));
    let new = with(mr(), "/spec/model/version", json!("4"));
    assert_rejected(
        "ModelRelease",
        &new,
        Some(&old),
        "model.version is immutable",
    );
    let unset = without(new.clone(), "/spec/model/version");
    assert_rejected(
        "ModelRelease",
        &unset,
        Some(&old),
        "model.version is immutable",
    );
}

#[test]
fn mr_version_may_be_set_once_when_it_was_unset() {
    let old = mr();
    let new = with(mr(), "/spec/model/version", json!("7"));
    assert_valid("ModelRelease", &new, Some(&old));
}

#[test]
fn mr_base_image_by_tag_is_rejected() {
    let obj = with(
        mr(),
        "/spec/image",
        json!({"base": "contoso.azurecr.io/serving:latest"}),
    );
    assert_rejected("ModelRelease", &obj, None, "must be pinned by digest");
}

#[test]
fn mr_bad_login_server_is_rejected() {
    let obj = with(mr(), "/spec/registry/loginServer", json!("Bad_Host!"));
    assert_rejected(
        "ModelRelease",
        &obj,
        None,
        "loginServer in body should match",
    );
}

#[test]
fn mr_uppercase_repository_is_rejected() {
    let obj = with(mr(), "/spec/registry/repository", json!("Models/Churn"));
    assert_rejected(
        "ModelRelease",
        &obj,
        None,
        "repository in body should match",
    );
}

#[test]
fn mr_unknown_model_type_is_rejected() {
    let obj = with(mr(), "/spec/model/type", json!("onnx_model"));
    assert_rejected(
        "ModelRelease",
        &obj,
        None,
        "spec.model.type: Unsupported value: \"onnx_model\"",
    );
}

#[test]
fn mr_bad_tag_is_rejected() {
    let obj = with(mr(), "/spec/registry/tags", json!(["-bad tag"]));
    assert_rejected("ModelRelease", &obj, None, "valid OCI tags");
}

// ---- ids that end up in request paths (issue 9) ----

const RESOURCE_GROUPS: [&str; 2] = [
    "/spec/stackHub/resourceGroup",
    "/spec/azureML/resourceGroup",
];

#[test]
fn resource_groups_that_would_leave_their_scope_are_rejected() {
    for field in RESOURCE_GROUPS {
        let name = field.rsplit_once("/spec/").unwrap().1.replace('/', ".");
        let needle = format!("spec.{name} in body should match");
        for bad in ["..", ".", "rg.", "a/b", "rg%2F..", "", "x y"] {
            assert_rejected(
                "EdgeComputeTarget",
                &with(ect(), field, json!(bad)),
                None,
                &needle,
            );
        }
    }
}

#[test]
fn resource_groups_are_ascii_only() {
    // Rust's `\w` (the sandbox's regex engine) matches these; Go's (a real API server) does not.
    for bad in ["réseau", "データ", "rg\u{00a0}1"] {
        assert_rejected(
            "EdgeComputeTarget",
            &with(ect(), "/spec/stackHub/resourceGroup", json!(bad)),
            None,
            "resourceGroup in body should match",
        );
    }
}

#[test]
fn resource_groups_follow_arm_naming_rules() {
    let longest = "r".repeat(90);
    for ok in ["a", "rg1", "My_RG-(prod).v2", "..a", longest.as_str()] {
        for field in RESOURCE_GROUPS {
            assert_valid("EdgeComputeTarget", &with(ect(), field, json!(ok)), None);
        }
    }
    let too_long = "r".repeat(91);
    assert_rejected(
        "EdgeComputeTarget",
        &with(ect(), "/spec/stackHub/resourceGroup", json!(too_long)),
        None,
        "resourceGroup in body should match",
    );
}

#[test]
fn subnet_ids_cannot_climb_out_of_their_segments() {
    let sub = "11111111-2222-3333-4444-555555555555";
    let ok = format!(
        "/subscriptions/{sub}/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet-1/subnets/default"
    );
    let set = |id: &str| with(ect(), "/spec/vm/network", json!({"subnetId": id}));
    assert_valid("EdgeComputeTarget", &set(&ok), None);
    // ARM ids are case-insensitive in their keywords.
    assert_valid("EdgeComputeTarget", &set(&ok.to_lowercase()), None);
    for bad in [
        ok.replace("net-rg", ".."),
        ok.replace("vnet-1", ".."),
        ok.replace("/default", "/.."),
        ok.replace(sub, ".."),
        ok.replace("vnet-1", "v\u{212a}"), // KELVIN SIGN: folds to k under (?i)
        format!("{ok}/../../x"),
    ] {
        assert_rejected(
            "EdgeComputeTarget",
            &set(&bad),
            None,
            "subnetId in body should match",
        );
    }
}

#[test]
fn secret_and_object_references_are_object_names() {
    for bad in ["..", ".", "UPPER", "a/b"] {
        assert_rejected(
            "EdgeComputeTarget",
            &with(
                ect(),
                "/spec/stackHub/credentialsSecretRef/name",
                json!(bad),
            ),
            None,
            "credentialsSecretRef.name in body should match",
        );
        assert_rejected(
            "TrainingRun",
            &with(tr(), "/spec/computeTargetRef/name", json!(bad)),
            None,
            "computeTargetRef.name in body should match",
        );
    }
    assert_valid(
        "EdgeComputeTarget",
        &with(
            ect(),
            "/spec/stackHub/credentialsSecretRef/name",
            json!("sp.v2-a"),
        ),
        None,
    );
}

#[test]
fn environment_ids_are_asset_references() {
    let ws = "/subscriptions/66666666-7777-8888-9999-000000000000/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws1";
    let set = |id: &str| with(tr(), "/spec/environment", json!({"environmentId": id}));
    for ok in [
        "azureml:env:1".to_string(),
        "azureml:sklearn-env@latest".to_string(),
        format!("{ws}/environments/env/versions/3"),
    ] {
        assert_valid("TrainingRun", &set(&ok), None);
    }
    for bad in [
        "azureml:../x:1".to_string(),
        "env".to_string(),
        format!("{ws}/environments/../versions/3"),
        format!("{ws}/../../x/environments/env/versions/3"),
    ] {
        assert_rejected(
            "TrainingRun",
            &set(&bad),
            None,
            "environmentId in body should match",
        );
    }
}

#[test]
fn image_tags_are_ascii_only() {
    assert_rejected(
        "TrainingRun",
        &with(tr(), "/spec/environment/image", json!("python:3.11-é")),
        None,
        "image in body should match",
    );
}

#[test]
fn tr_output_policy_is_accepted_and_immutable() {
    let obj = with(
        tr(),
        "/spec/outputPolicy",
        json!({"maxTotalBytes": 1048576, "allowedFiles": ["model.onnx", "**/*.json"]}),
    );
    assert_valid("TrainingRun", &obj, None);
    let changed = with(obj.clone(), "/spec/outputPolicy/maxTotalBytes", json!(5));
    assert_rejected(
        "TrainingRun",
        &changed,
        Some(&obj),
        "outputPolicy is immutable",
    );
    assert_rejected(
        "TrainingRun",
        &tr(),
        Some(&obj),
        "spec is immutable except suspend",
    );
    let empty_pattern = with(obj.clone(), "/spec/outputPolicy/allowedFiles", json!([""]));
    assert_rejected(
        "TrainingRun",
        &empty_pattern,
        None,
        "patterns must be 1 to 256",
    );
    let zero = with(obj, "/spec/outputPolicy/maxTotalBytes", json!(0));
    assert_rejected(
        "TrainingRun",
        &zero,
        None,
        "maxTotalBytes in body should be greater than or equal to 1",
    );
}

#[test]
fn ect_without_public_ip_must_say_the_workspace_reaches_the_private_address() {
    let obj = with(ect(), "/spec/vm/publicIP", json!(false));
    assert_rejected("EdgeComputeTarget", &obj, None, "azureML.reachVia");
    let obj = with(obj, "/spec/azureML/reachVia", json!("Private"));
    assert_valid("EdgeComputeTarget", &obj, None);
    let obj = with(ect(), "/spec/azureML/reachVia", json!("Sideways"));
    assert_rejected("EdgeComputeTarget", &obj, None, "reachVia");
}
