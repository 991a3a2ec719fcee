//! Every body the builders produce is checked against the saved official OpenAPI files.

mod common;

use std::{collections::BTreeMap, time::Duration};

use azure_core::credentials::Secret;
use common::openapi::Specs;
use edgetrain_azure::{ml, stackhub};
use serde_json::{Value, json};

const COMPUTE: &str =
    "specification/compute/resource-manager/Microsoft.Compute/stable/2020-06-01/compute.json";
const NET: &str = "specification/network/resource-manager/Microsoft.Network/stable/2018-11-01";
const ML: &str = "specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2025-12-01";

fn ok(specs: &Specs, file: &str, def: &str, body: &Value) {
    let errors = specs.check(file, def, body);
    assert!(
        errors.is_empty(),
        "{def} body does not match the spec:\n{}\n{body:#}",
        errors.join("\n")
    );
}

fn tags() -> BTreeMap<String, String> {
    BTreeMap::from([("edgetrain.dev/owner".into(), "ns.name".into())])
}

#[test]
fn stack_hub_bodies_match_compute_and_network_specs() {
    let s = Specs::new();
    let vm = stackhub::vm_body(&stackhub::VmSpec {
        location: "local".into(),
        computer_name: "vm1".into(),
        size: "Standard_DS2_v2".into(),
        image: stackhub::ImageReference {
            publisher: Some("Canonical".into()),
            offer: Some("UbuntuServer".into()),
            sku: Some("18.04-LTS".into()),
            version: Some("latest".into()),
        },
        os_disk_size_gb: Some(64),
        os_disk_storage_type: Some("Standard_LRS".into()),
        admin_username: "azureuser".into(),
        ssh_public_key: "ssh-rsa AAAA".into(),
        cloud_init: Some("#cloud-config\n".into()),
        nic_id:
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic"
                .into(),
        tags: tags(),
    })
    .unwrap();
    ok(
        &s,
        COMPUTE,
        "VirtualMachine",
        &serde_json::to_value(vm).unwrap(),
    );

    let nsg = stackhub::ssh_nsg_body(
        "local",
        &["10.0.0.0/8".into(), "203.0.113.7".into()],
        22,
        &tags(),
    )
    .unwrap();
    ok(
        &s,
        &format!("{NET}/networkSecurityGroup.json"),
        "NetworkSecurityGroup",
        &serde_json::to_value(nsg).unwrap(),
    );
    let pip = stackhub::public_ip_body("local", Some("etvm"), &tags()).unwrap();
    ok(
        &s,
        &format!("{NET}/publicIpAddress.json"),
        "PublicIPAddress",
        &serde_json::to_value(pip).unwrap(),
    );
    let nic =
        stackhub::nic_body("local", "/sub/snet", Some("/pip"), Some("/nsg"), &tags()).unwrap();
    ok(
        &s,
        &format!("{NET}/networkInterface.json"),
        "NetworkInterface",
        &serde_json::to_value(nic).unwrap(),
    );
    let vnet = stackhub::vnet_body(
        "local",
        "10.10.0.0/16",
        "default",
        "10.10.1.0/24",
        Some("/nsg"),
        &tags(),
    )
    .unwrap();
    ok(
        &s,
        &format!("{NET}/virtualNetwork.json"),
        "VirtualNetwork",
        &serde_json::to_value(vnet).unwrap(),
    );
    let subnet = stackhub::subnet_body("10.10.2.0/24", None).unwrap();
    ok(
        &s,
        &format!("{NET}/virtualNetwork.json"),
        "Subnet",
        &serde_json::to_value(subnet).unwrap(),
    );
}

#[test]
fn azure_ml_bodies_match_ml_specs() {
    let s = Specs::new();
    let attach = ml::vm_attach_body(&ml::VmAttachSpec {
        location: "westeurope".into(),
        address: "203.0.113.7".into(),
        ssh_port: 22,
        username: "azureuser".into(),
        private_key_pem: Secret::new("PRIVATE"),
        public_key: "ssh-ed25519 AAAA".into(),
        description: Some("edge VM".into()),
        vm_size: Some("Standard_DS2_v2".into()),
    })
    .unwrap();
    ok(
        &s,
        &format!("{ML}/machineLearningServices.json"),
        "ComputeResource",
        &serde_json::to_value(attach).unwrap(),
    );

    let asset = |uri: &str| ml::AssetJobInput {
        uri: uri.into(),
        mode: Some("ReadOnlyMount".into()),
        description: None,
    };
    let out = ml::AssetJobOutput {
        uri: None,
        mode: Some("Upload".into()),
        description: Some("d".into()),
    };
    let job = ml::command_job_body(&ml::CommandJobSpec {
        command: "python train.py ${{inputs.lit}} ${{outputs.model}}".into(),
        code_id: Some("/ws/codes/h/versions/1".into()),
        environment_id: "/ws/environments/e/versions/1".into(),
        compute_id: "/ws/computes/edge".into(),
        inputs: BTreeMap::from([
            (
                "lit".into(),
                ml::JobInput::Literal {
                    value: "x".into(),
                    description: Some("d".into()),
                },
            ),
            (
                "file".into(),
                ml::JobInput::UriFile(asset("https://a/b.csv")),
            ),
            (
                "folder".into(),
                ml::JobInput::UriFolder(asset("https://a/b/")),
            ),
            ("table".into(), ml::JobInput::Mltable(asset("azureml:t:1"))),
            ("cm".into(), ml::JobInput::CustomModel(asset("azureml:m:1"))),
            ("mf".into(), ml::JobInput::MlflowModel(asset("azureml:m:2"))),
            ("tm".into(), ml::JobInput::TritonModel(asset("azureml:m:3"))),
        ]),
        outputs: BTreeMap::from([
            ("model".into(), ml::JobOutput::UriFolder(out.clone())),
            ("f".into(), ml::JobOutput::UriFile(out.clone())),
            ("t".into(), ml::JobOutput::Mltable(out.clone())),
            ("c".into(), ml::JobOutput::CustomModel(out.clone())),
            ("m".into(), ml::JobOutput::MlflowModel(out.clone())),
            ("tr".into(), ml::JobOutput::TritonModel(out)),
        ]),
        environment_variables: BTreeMap::from([("K".into(), "V".into())]),
        timeout: Some(Duration::from_secs(600)),
        experiment_name: "edgetrain".into(),
        display_name: Some("run".into()),
        description: Some("desc".into()),
        tags: tags(),
        properties: BTreeMap::from([("edgetrain.dev/data-fingerprint".into(), "sha256:x".into())]),
    })
    .unwrap();
    ok(
        &s,
        &format!("{ML}/mfe.json"),
        "JobBaseResource",
        &serde_json::to_value(job).unwrap(),
    );

    let code = ml::Resource::new(ml::CodeVersion {
        code_uri: Some("https://a.blob.core.windows.net/c/x".into()),
        is_anonymous: Some(false),
        description: Some("d".into()),
        tags: Some(tags()),
        properties: Some(tags()),
        provisioning_state: Some("Succeeded".into()),
    });
    ok(
        &s,
        &format!("{ML}/mfe.json"),
        "CodeVersionResource",
        &serde_json::to_value(code).unwrap(),
    );
    let env = ml::Resource::new(ml::EnvironmentVersion {
        image: Some("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest".into()),
        conda_file: Some("dependencies: [python=3.11]".into()),
        os_type: Some("Linux".into()),
        description: Some("d".into()),
        tags: Some(tags()),
        ..Default::default()
    });
    ok(
        &s,
        &format!("{ML}/mfe.json"),
        "EnvironmentVersionResource",
        &serde_json::to_value(env).unwrap(),
    );
    let model = ml::Resource::new(ml::ModelVersion {
        model_uri: Some("azureml://jobs/j/outputs/model/paths/".into()),
        model_type: Some("custom_model".into()),
        job_name: Some("j".into()),
        description: Some("d".into()),
        tags: Some(tags()),
        properties: Some(tags()),
        provisioning_state: None,
    });
    ok(
        &s,
        &format!("{ML}/mfe.json"),
        "ModelVersionResource",
        &serde_json::to_value(model).unwrap(),
    );
    let pending = ml::PendingUploadRequest {
        pending_upload_id: None,
        pending_upload_type: "TemporaryBlobReference".into(),
    };
    ok(
        &s,
        &format!("{ML}/mfe.json"),
        "PendingUploadRequestDto",
        &serde_json::to_value(pending).unwrap(),
    );
}

/// The checker itself can fail: wrong bodies are reported.
#[test]
fn checker_rejects_wrong_bodies() {
    let s = Specs::new();
    let mfe = format!("{ML}/mfe.json");
    let cases = [
        (
            json!({"properties": {"jobType": "Command", "command": "x"}}),
            "missing required property \"environmentId\"",
        ),
        (
            json!({"properties": {"jobType": "Commando", "command": "x", "environmentId": "e"}}),
            "discriminator value",
        ),
        (
            json!({"properties": {"jobType": "Command", "command": 3, "environmentId": "e"}}),
            "expected string",
        ),
        (
            json!({"properties": {"jobType": "Command", "command": "x", "environmentId": "e", "colour": "red"}}),
            "unknown property",
        ),
        (
            json!({"properties": {"jobType": "Command", "command": "x", "environmentId": "e", "status": "Running"}}),
            "read-only",
        ),
        (
            json!({"properties": {"jobType": "Command", "command": "x", "environmentId": "e",
            "inputs": {"a": {"jobInputType": "uri_folder"}}}}),
            "missing required property \"uri\"",
        ),
    ];
    for (body, want) in cases {
        let errors = s.check(&mfe, "JobBaseResource", &body).join("\n");
        assert!(
            errors.contains(want),
            "expected {want:?} for {body}, got:\n{errors}"
        );
    }
    let vm = json!({"location": "l", "properties": {"storageProfile": {"osDisk": {"diskSizeGB": "big"}}}});
    let errors = s.check(COMPUTE, "VirtualMachine", &vm).join("\n");
    assert!(
        errors.contains("missing required property \"createOption\"")
            && errors.contains("expected integer"),
        "{errors}"
    );
    let deep = json!({"location": "l", "properties": {"osProfile": {"linuxConfiguration": {"ssh": {"publicKeys": [{"path": "/p", "keyData": "k", "extra": 1}]}}}}});
    let errors = s.check(COMPUTE, "VirtualMachine", &deep).join("\n");
    assert!(
        errors.contains("publicKeys[0].extra: unknown property"),
        "{errors}"
    );
    let attach = json!({"location": "l", "properties": {"computeType": "VirtualMachine",
        "properties": {"address": "a", "sshPort": "22", "administratorAccount": {"username": "u", "privateKey": "x"}}}});
    let errors = s
        .check(
            &format!("{ML}/machineLearningServices.json"),
            "ComputeResource",
            &attach,
        )
        .join("\n");
    assert!(
        errors.contains("sshPort: expected integer")
            && errors.contains("privateKey: unknown property"),
        "{errors}"
    );
    let rule = json!({"location": "l", "properties": {"securityRules": [{"name": "r", "properties": {"protocol": "Tcp", "access": "Allow"}}]}});
    let errors = s
        .check(
            &format!("{NET}/networkSecurityGroup.json"),
            "NetworkSecurityGroup",
            &rule,
        )
        .join("\n");
    assert!(
        errors.contains("missing required property \"direction\""),
        "{errors}"
    );
}
