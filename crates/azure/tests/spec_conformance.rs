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

/// Every request the clients make goes to an operation the spec declares, with declared query
/// parameters and the spec's api-version. The fake answers 404 to everything: only the requests
/// matter here.
#[tokio::test]
async fn every_request_path_and_query_is_declared_in_the_spec() {
    use common::fake::{Fake, Reply, StaticCredential};
    use edgetrain_azure::{
        arm::{ApiProfile, ArmClient, RetryPolicy},
        ml::{MlApi, MlClient, Workspace},
        stackhub::{ResourceGroup, StackHubApi, StackHubClient, VmAction},
        transport::HttpConfig,
    };
    use std::sync::Arc;

    let fake = Fake::start(|_, _| {
        Reply::json(
            404,
            json!({"error": {"code": "ResourceNotFound", "message": "x"}}),
        )
    })
    .await;
    let arm = ArmClient::new(
        HttpConfig::default().build().unwrap(),
        fake.base.clone(),
        Arc::new(StaticCredential),
        "aud",
    )
    .with_retry(RetryPolicy::none());
    let rg = ResourceGroup {
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
    };
    let sh = StackHubClient::new(arm.clone(), ApiProfile::default());
    let vm = rg.vm_id("vm").unwrap();
    let _ = sh.get_vm(&vm, true).await;
    let _ = sh.get_vm_instance_view(&vm).await;
    let _ = sh.put_vm(&vm, &Default::default()).await;
    for a in [
        VmAction::Start,
        VmAction::Deallocate,
        VmAction::PowerOff,
        VmAction::Restart,
    ] {
        let _ = sh.vm_action(&vm, a).await;
    }
    let _ = sh.delete(&vm).await;
    let (nic, pip, nsg, vnet, snet) = (
        rg.nic_id("n").unwrap(),
        rg.public_ip_id("p").unwrap(),
        rg.nsg_id("g").unwrap(),
        rg.vnet_id("v").unwrap(),
        rg.subnet_id("v", "s").unwrap(),
    );
    let _ = sh.get_nic(&nic).await;
    let _ = sh.put_nic(&nic, &Default::default()).await;
    let _ = sh.get_public_ip(&pip).await;
    let _ = sh.put_public_ip(&pip, &Default::default()).await;
    let _ = sh.get_nsg(&nsg).await;
    let _ = sh.put_nsg(&nsg, &Default::default()).await;
    let _ = sh.get_vnet(&vnet).await;
    let _ = sh.put_vnet(&vnet, &Default::default()).await;
    let _ = sh.get_subnet(&snet).await;
    let _ = sh.put_subnet(&snet, &Default::default()).await;
    for id in [&nic, &pip, &nsg, &vnet, &snet] {
        let _ = sh.delete(id).await;
    }

    let ml = MlClient::new(
        arm,
        Workspace {
            subscription_id: "sub".into(),
            resource_group: "rg".into(),
            name: "ws".into(),
        },
    );
    let attach = ml::vm_attach_body(&ml::VmAttachSpec {
        location: "l".into(),
        address: "a".into(),
        ssh_port: 22,
        username: "u".into(),
        private_key_pem: Secret::new("k"),
        public_key: "p".into(),
        description: None,
        vm_size: None,
    })
    .unwrap();
    let _ = ml.get_compute("c").await;
    let _ = ml.attach_compute("c", &attach).await;
    let _ = ml.detach_compute("c").await;
    let _ = ml.get_code_version("h", "1").await;
    let _ = ml.start_pending_upload("h", "1").await;
    let _ = ml
        .put_code_version("h", "1", &ml::Resource::new(Default::default()))
        .await;
    let env = ml::Resource::new(ml::EnvironmentVersion {
        image: Some("i".into()),
        ..Default::default()
    });
    let _ = ml.get_environment_version("e", "1").await;
    let _ = ml.put_environment_version("e", "1", &env).await;
    let job = ml::command_job_body(&ml::CommandJobSpec {
        command: "c".into(),
        environment_id: "e".into(),
        compute_id: "c".into(),
        experiment_name: "x".into(),
        ..Default::default()
    })
    .unwrap();
    let _ = ml.create_job("j", &job).await;
    let _ = ml.get_job("j").await;
    let _ = ml
        .list_jobs_page(None, Some(ml::ListViewType::ActiveOnly))
        .await;
    let _ = ml.cancel_job("j").await;
    let _ = ml
        .put_model_version("m", "1", &ml::Resource::new(Default::default()))
        .await;
    let _ = ml.get_model_version("m", "1").await;
    let _ = ml.list_model_versions_page("m", None).await;
    let _ = ml.default_datastore().await;
    let _ = ml.datastore_secrets("d").await;

    let s = Specs::new();
    let reqs = fake.requests();
    assert_eq!(
        reqs.len(),
        23 + 17,
        "every call above made exactly one request"
    );
    let mut problems = Vec::new();
    for r in &reqs {
        let version = r.query_value("api-version").unwrap_or_default();
        let files: Vec<String> = if r.path.contains("/Microsoft.Compute/") {
            vec![COMPUTE.to_string()]
        } else if r.path.contains("/Microsoft.Network/") {
            [
                "networkInterface",
                "publicIpAddress",
                "networkSecurityGroup",
                "virtualNetwork",
            ]
            .iter()
            .map(|f| format!("{NET}/{f}.json"))
            .collect()
        } else {
            vec![
                format!("{ML}/machineLearningServices.json"),
                format!("{ML}/mfe.json"),
            ]
        };
        let query: Vec<String> = r
            .query_pairs()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "api-version")
            .collect();
        let results: Vec<Result<(), String>> = files
            .iter()
            .map(|f| s.check_operation(f, &r.method, &r.path, &query))
            .collect();
        if !results.iter().any(Result::is_ok) {
            problems.push(format!(
                "{} {}?{}: {:?}",
                r.method, r.path, r.query, results
            ));
        }
        let want = if r.path.contains("/Microsoft.Compute/") {
            "2020-06-01"
        } else if r.path.contains("/Microsoft.Network/") {
            "2018-11-01"
        } else {
            "2025-12-01"
        };
        if version != want {
            problems.push(format!(
                "{} {}: api-version {version}, spec is {want}",
                r.method, r.path
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The check itself can fail.
    let vm_path =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm";
    assert!(
        s.check_operation(COMPUTE, "GET", vm_path, &["$expand".into()])
            .is_ok()
    );
    assert!(
        s.check_operation(COMPUTE, "GET", vm_path, &["$bogus".into()])
            .is_err()
    );
    assert!(
        s.check_operation(COMPUTE, "POST", &format!("{vm_path}/explode"), &[])
            .is_err()
    );
    assert!(
        s.check_operation(COMPUTE, "PUT", &format!("{vm_path}/instanceView"), &[])
            .is_err()
    );
}
