//! Contract tests against the simulator's OpenAPI validator (`edgetrain_sandbox_azure::Specs`,
//! the one validator of the project, over the spec files vendored in crates/sandbox-azure):
//! every body the builders produce and every request the clients send is accepted with client
//! strictness (no read-only members, no undeclared query parameters), and wrong bodies are
//! rejected with ARM-shaped errors.

mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use azure_core::credentials::Secret;
use edgetrain_azure::{
    arm::{ApiProfile, ArmClient, RetryPolicy},
    ml::{self, MlApi, MlClient, Workspace},
    stackhub::{self, ResourceGroup, StackHubApi, StackHubClient, VmAction},
    transport::HttpConfig,
};
use edgetrain_sandbox_azure::{ArmError, Specs};
use serde::Serialize;
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const COMPUTE_API: &str = "2020-06-01";
const NETWORK_API: &str = "2018-11-01";
const ML_API: &str = "2025-12-01";

fn rg() -> ResourceGroup {
    ResourceGroup {
        subscription_id: SUB.into(),
        resource_group: "rg".into(),
    }
}

fn workspace() -> Workspace {
    Workspace {
        subscription_id: SUB.into(),
        resource_group: "rg".into(),
        name: "edge-ws".into(),
    }
}

fn with_version(id: &str, api: &str) -> String {
    format!("{id}?api-version={api}")
}

/// Assert the validator accepts `body` sent as `method path_and_query`, with client strictness.
fn accepted(specs: &Specs, method: &str, path_and_query: &str, body: &impl Serialize) {
    let value = serde_json::to_value(body).unwrap();
    let bytes = serde_json::to_vec(&value).unwrap();
    if let Err(e) = specs.check_client_request(method, path_and_query, &bytes) {
        panic!(
            "{method} {path_and_query} rejected: {}\n{value:#}",
            e.body()
        );
    }
}

/// Assert an ARM-shaped 400 with `code` and a detail (`detail_code`, `target`) for each pair.
fn rejected(result: Result<(), ArmError>, code: &str, details: &[(&str, &str)]) {
    let err = result.expect_err("request should be rejected");
    let body = err.body();
    assert_eq!(err.status.as_u16(), 400, "{body}");
    assert_eq!(err.code(), code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let got = body["error"]["details"].as_array().unwrap();
    for (detail_code, target) in details {
        assert!(
            got.iter()
                .any(|d| d["code"] == *detail_code && d["target"] == *target),
            "no detail {detail_code} at {target}: {body}"
        );
    }
}

fn tags() -> BTreeMap<String, String> {
    BTreeMap::from([("edgetrain.dev/owner".into(), "ns.name".into())])
}

fn vm() -> stackhub::VirtualMachine {
    stackhub::vm_body(&stackhub::VmSpec {
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
        nic_id: rg().nic_id("nic").unwrap(),
        tags: tags(),
    })
    .unwrap()
}

fn nsg() -> stackhub::NetworkSecurityGroup {
    stackhub::ssh_nsg_body(
        "local",
        &["10.0.0.0/8".into(), "203.0.113.7".into()],
        22,
        &tags(),
    )
    .unwrap()
}

fn public_ip() -> stackhub::PublicIpAddress {
    stackhub::public_ip_body("local", Some("etvm"), &tags()).unwrap()
}

fn nic() -> stackhub::NetworkInterface {
    stackhub::nic_body(
        "local",
        &rg().subnet_id("v", "s").unwrap(),
        Some(&rg().public_ip_id("p").unwrap()),
        Some(&rg().nsg_id("g").unwrap()),
        &tags(),
    )
    .unwrap()
}

fn vnet() -> stackhub::VirtualNetwork {
    stackhub::vnet_body(
        "local",
        "10.10.0.0/16",
        "default",
        "10.10.1.0/24",
        Some(&rg().nsg_id("g").unwrap()),
        &tags(),
    )
    .unwrap()
}

fn subnet() -> stackhub::Subnet {
    stackhub::subnet_body("10.10.2.0/24", None).unwrap()
}

fn attach() -> ml::ComputeResource {
    ml::vm_attach_body(&ml::VmAttachSpec {
        location: "westeurope".into(),
        address: "203.0.113.7".into(),
        ssh_port: 22,
        username: "azureuser".into(),
        private_key_pem: Secret::new("PRIVATE"),
        public_key: "ssh-ed25519 AAAA".into(),
        description: Some("edge VM".into()),
        vm_size: Some("Standard_DS2_v2".into()),
    })
    .unwrap()
}

/// A Command job using every input and output type the builder knows.
fn rich_job() -> ml::Job {
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
    ml::command_job_body(&ml::CommandJobSpec {
        command: "python train.py ${{inputs.lit}} ${{outputs.model}}".into(),
        code_id: Some(workspace().code_version_id("code-hash", "1").unwrap()),
        environment_id: workspace()
            .environment_version_id("train-env", "1")
            .unwrap(),
        compute_id: workspace().compute_id("edge-vm").unwrap(),
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
    .unwrap()
}

fn code_version() -> ml::Resource<ml::CodeVersion> {
    ml::Resource::new(ml::CodeVersion {
        code_uri: Some("https://a.blob.core.windows.net/c/x".into()),
        is_anonymous: Some(false),
        description: Some("d".into()),
        tags: Some(tags()),
        properties: Some(tags()),
        // Read back from the server, never sent: the body must not carry it.
        provisioning_state: Some("Succeeded".into()),
    })
}

fn environment_version() -> ml::Resource<ml::EnvironmentVersion> {
    ml::Resource::new(ml::EnvironmentVersion {
        image: Some("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest".into()),
        conda_file: Some("dependencies: [python=3.11]".into()),
        os_type: Some("Linux".into()),
        description: Some("d".into()),
        tags: Some(tags()),
        ..Default::default()
    })
}

fn model_version() -> ml::Resource<ml::ModelVersion> {
    ml::Resource::new(ml::ModelVersion {
        model_uri: Some("azureml://jobs/j/outputs/model/paths/".into()),
        model_type: Some("custom_model".into()),
        job_name: Some("j".into()),
        description: Some("d".into()),
        tags: Some(tags()),
        properties: Some(tags()),
        is_archived: None,
        provisioning_state: None,
    })
}

#[test]
fn stack_hub_bodies_match_compute_and_network_specs() {
    let s = Specs::load().unwrap();
    let rg = rg();
    let put = |id: String, api| with_version(&id, api);
    accepted(&s, "PUT", &put(rg.vm_id("vm").unwrap(), COMPUTE_API), &vm());
    accepted(
        &s,
        "PUT",
        &put(rg.nsg_id("g").unwrap(), NETWORK_API),
        &nsg(),
    );
    accepted(
        &s,
        "PUT",
        &put(rg.public_ip_id("p").unwrap(), NETWORK_API),
        &public_ip(),
    );
    accepted(
        &s,
        "PUT",
        &put(rg.nic_id("n").unwrap(), NETWORK_API),
        &nic(),
    );
    accepted(
        &s,
        "PUT",
        &put(rg.vnet_id("v").unwrap(), NETWORK_API),
        &vnet(),
    );
    accepted(
        &s,
        "PUT",
        &put(rg.subnet_id("v", "s").unwrap(), NETWORK_API),
        &subnet(),
    );
}

#[test]
fn azure_ml_bodies_match_ml_specs() {
    let s = Specs::load().unwrap();
    let ws = workspace();
    let put = |id: String| with_version(&id, ML_API);
    accepted(
        &s,
        "PUT",
        &put(ws.compute_id("edge-vm").unwrap()),
        &attach(),
    );
    accepted(
        &s,
        "PUT",
        &put(ws.job_id("edgetrain-job-1").unwrap()),
        &rich_job(),
    );
    accepted(
        &s,
        "PUT",
        &put(ws.code_version_id("code-hash", "1").unwrap()),
        &code_version(),
    );
    accepted(
        &s,
        "PUT",
        &put(ws.environment_version_id("train-env", "1").unwrap()),
        &environment_version(),
    );
    accepted(
        &s,
        "PUT",
        &put(ws.model_version_id("model-a", "1").unwrap()),
        &model_version(),
    );
    let pending = ml::PendingUploadRequest {
        pending_upload_id: None,
        pending_upload_type: "TemporaryBlobReference".into(),
    };
    accepted(
        &s,
        "POST",
        &with_version(
            &format!(
                "{}/startPendingUpload",
                ws.code_version_id("code-hash", "1").unwrap()
            ),
            ML_API,
        ),
        &pending,
    );
}

/// The validator itself can fail: deliberately wrong bodies and requests are rejected with the
/// ARM error envelope, each naming what is wrong.
#[test]
fn validator_rejects_wrong_bodies() {
    let s = Specs::load().unwrap();
    let job = with_version(&workspace().job_id("edgetrain-job-1").unwrap(), ML_API);
    let check = |path: &str, body: Value| {
        s.check_client_request("PUT", path, &serde_json::to_vec(&body).unwrap())
    };
    let cases = [
        (
            json!({"properties": {"jobType": "Command", "command": "x"}}),
            ("RequiredPropertyMissing", "properties.environmentId"),
        ),
        (
            json!({"properties": {"jobType": "Commando", "command": "x", "environmentId": "e"}}),
            ("InvalidDiscriminatorValue", "properties.jobType"),
        ),
        (
            json!({"properties": {"jobType": "Command", "command": 3, "environmentId": "e"}}),
            ("InvalidPropertyType", "properties.command"),
        ),
        (
            json!({"properties": {"jobType": "Command", "command": "x", "environmentId": "e", "colour": "red"}}),
            ("UnknownProperty", "properties.colour"),
        ),
        (
            json!({"properties": {"jobType": "Command", "command": "x", "environmentId": "e", "status": "Running"}}),
            ("ReadOnlyProperty", "properties.status"),
        ),
        (
            json!({"properties": {"jobType": "Command", "command": "x", "environmentId": "e",
            "inputs": {"a": {"jobInputType": "uri_folder"}}}}),
            ("RequiredPropertyMissing", "properties.inputs.a.uri"),
        ),
    ];
    for (body, detail) in cases {
        rejected(check(&job, body), "InvalidRequestContent", &[detail]);
    }

    let vm_path = with_version(&rg().vm_id("vm").unwrap(), COMPUTE_API);
    let disk = json!({"location": "l", "properties": {"storageProfile": {"osDisk": {"diskSizeGB": "big"}}}});
    rejected(
        check(&vm_path, disk),
        "InvalidRequestContent",
        &[
            (
                "RequiredPropertyMissing",
                "properties.storageProfile.osDisk.createOption",
            ),
            (
                "InvalidPropertyType",
                "properties.storageProfile.osDisk.diskSizeGB",
            ),
        ],
    );
    let deep = json!({"location": "l", "properties": {"osProfile": {"linuxConfiguration": {"ssh": {"publicKeys": [{"path": "/p", "keyData": "k", "extra": 1}]}}}}});
    rejected(
        check(&vm_path, deep),
        "InvalidRequestContent",
        &[(
            "UnknownProperty",
            "properties.osProfile.linuxConfiguration.ssh.publicKeys[0].extra",
        )],
    );
    let attach = json!({"location": "l", "properties": {"computeType": "VirtualMachine",
        "properties": {"address": "a", "sshPort": "22", "administratorAccount": {"username": "u", "privateKey": "x"}}}});
    rejected(
        check(
            &with_version(&workspace().compute_id("edge-vm").unwrap(), ML_API),
            attach,
        ),
        "InvalidRequestContent",
        &[
            ("InvalidPropertyType", "properties.properties.sshPort"),
            (
                "UnknownProperty",
                "properties.properties.administratorAccount.privateKey",
            ),
        ],
    );
    let rule = json!({"location": "l", "properties": {"securityRules": [{"name": "r", "properties": {"protocol": "Tcp", "access": "Allow"}}]}});
    rejected(
        check(&with_version(&rg().nsg_id("g").unwrap(), NETWORK_API), rule),
        "InvalidRequestContent",
        &[(
            "RequiredPropertyMissing",
            "properties.securityRules[0].properties.direction",
        )],
    );
    // A good body at an api-version the Stack Hub stamp does not offer.
    let public_azure = with_version(&rg().vm_id("vm").unwrap(), "2024-07-01");
    let err = check(&public_azure, serde_json::to_value(vm()).unwrap()).unwrap_err();
    assert_eq!(err.code(), "NoRegisteredProviderFound", "{}", err.body());

    // Paths and query parameters.
    let vm_id = rg().vm_id("vm").unwrap();
    let get = |pq: String| s.check_client_request("GET", &pq, b"");
    get(format!(
        "{vm_id}?api-version={COMPUTE_API}&$expand=instanceView"
    ))
    .unwrap();
    rejected(
        get(format!("{vm_id}?api-version={COMPUTE_API}&$bogus=1")),
        "InvalidParameter",
        &[("UnknownQueryParameter", "$bogus")],
    );
    let explode = s
        .check_client_request(
            "POST",
            &format!("{vm_id}/explode?api-version={COMPUTE_API}"),
            b"",
        )
        .unwrap_err();
    assert_eq!(explode.status.as_u16(), 404, "{}", explode.body());
    let put_view = s
        .check_client_request(
            "PUT",
            &format!("{vm_id}/instanceView?api-version={COMPUTE_API}"),
            b"{}",
        )
        .unwrap_err();
    assert_eq!(put_view.status.as_u16(), 405, "{}", put_view.body());
}

/// Every request the clients make, sent with the builders' bodies, is accepted as a whole
/// (method, path, query parameters, api-version, body) by the validator. The recording fake
/// answers 404 to everything: only the requests matter here.
#[tokio::test]
async fn every_client_request_is_accepted_by_the_validator() {
    use common::fake::{Fake, Reply, StaticCredential};

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
    let rg = rg();
    let sh = StackHubClient::new(arm.clone(), ApiProfile::default());
    let vm_id = rg.vm_id("vm").unwrap();
    let _ = sh.get_vm(&vm_id, true).await;
    let _ = sh.get_vm_instance_view(&vm_id).await;
    let _ = sh.put_vm(&vm_id, &vm()).await;
    let _ = sh.patch_vm_size(&vm_id, "Standard_DS3_v2").await;
    for a in [
        VmAction::Start,
        VmAction::Deallocate,
        VmAction::PowerOff,
        VmAction::Restart,
    ] {
        let _ = sh.vm_action(&vm_id, a).await;
    }
    let _ = sh.delete(&vm_id).await;
    let (nic_id, pip_id, nsg_id, vnet_id, snet_id) = (
        rg.nic_id("n").unwrap(),
        rg.public_ip_id("p").unwrap(),
        rg.nsg_id("g").unwrap(),
        rg.vnet_id("v").unwrap(),
        rg.subnet_id("v", "s").unwrap(),
    );
    let _ = sh.get_nic(&nic_id).await;
    let _ = sh.put_nic(&nic_id, &nic()).await;
    let _ = sh.get_public_ip(&pip_id).await;
    let _ = sh.put_public_ip(&pip_id, &public_ip()).await;
    let _ = sh.get_nsg(&nsg_id).await;
    let _ = sh.put_nsg(&nsg_id, &nsg()).await;
    let _ = sh.get_vnet(&vnet_id).await;
    let _ = sh.put_vnet(&vnet_id, &vnet()).await;
    let _ = sh.get_subnet(&snet_id).await;
    let _ = sh.put_subnet(&snet_id, &subnet()).await;
    for id in [&nic_id, &pip_id, &nsg_id, &vnet_id, &snet_id] {
        let _ = sh.delete(id).await;
    }

    let ml = MlClient::new(arm, workspace());
    let _ = ml.get_compute("edge-vm").await;
    let _ = ml.attach_compute("edge-vm", &attach()).await;
    let _ = ml.detach_compute("edge-vm").await;
    let _ = ml.get_code_version("code-hash", "1").await;
    let _ = ml.start_pending_upload("code-hash", "1").await;
    let _ = ml.put_code_version("code-hash", "1", &code_version()).await;
    let _ = ml.get_environment_version("train-env", "1").await;
    let _ = ml
        .put_environment_version("train-env", "1", &environment_version())
        .await;
    let _ = ml.create_job("edgetrain-job-1", &rich_job()).await;
    let _ = ml.get_job("edgetrain-job-1").await;
    let _ = ml
        .list_jobs_page(None, Some(ml::ListViewType::ActiveOnly))
        .await;
    let _ = ml.cancel_job("edgetrain-job-1").await;
    let _ = ml.put_model_version("model-a", "1", &model_version()).await;
    let _ = ml.get_model_version("model-a", "1").await;
    let _ = ml.list_model_versions_page("model-a", None).await;
    let _ = ml.default_datastore().await;
    let _ = ml.datastore_secrets("workspaceblobstore").await;

    let s = Specs::load().unwrap();
    let reqs = fake.requests();
    assert_eq!(
        reqs.len(),
        24 + 17,
        "every call above made exactly one request"
    );
    let mut problems = Vec::new();
    for r in &reqs {
        let path_and_query = format!("{}?{}", r.path, r.query);
        if let Err(e) = s.check_client_request(&r.method, &path_and_query, r.body.as_bytes()) {
            problems.push(format!("{} {path_and_query}: {}", r.method, e.body()));
        }
        let want = if r.path.contains("/Microsoft.Compute/") {
            COMPUTE_API
        } else if r.path.contains("/Microsoft.Network/") {
            NETWORK_API
        } else {
            ML_API
        };
        let version = r.query_value("api-version").unwrap_or_default();
        if version != want {
            problems.push(format!(
                "{} {}: api-version {version}, spec is {want}",
                r.method, r.path
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
