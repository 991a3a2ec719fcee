//! The generic OpenAPI validator: deliberately wrong requests are rejected with ARM-shaped
//! errors; the specs' own examples and realistic operator bodies are accepted.

mod common;

use edgetrain_sandbox_azure::{ArmError, Specs};
use serde_json::{Value, json};

const SUB: &str = "00000000-1111-2222-3333-444444444444";

fn ws() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/test-rg/providers/Microsoft.MachineLearningServices/workspaces/my-aml-workspace"
    )
}

fn compute_base() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute")
}

fn network_base() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network")
}

fn check(specs: &Specs, method: &str, path: &str, body: &Value) -> Result<(), ArmError> {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    specs.check_request(method, path, &bytes)
}

/// Assert an ARM-shaped rejection with this status/code, and that some detail targets `target`.
fn assert_rejected(
    result: Result<(), ArmError>,
    status: u16,
    code: &str,
    detail: Option<(&str, &str)>,
) {
    let err = result.expect_err("request should be rejected");
    assert_eq!(err.status.as_u16(), status, "{:?}", err.body());
    assert_eq!(err.code(), code, "{:?}", err.body());
    let body = err.body();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(body["error"]["details"].is_array());
    if let Some((detail_code, target)) = detail {
        let details = body["error"]["details"].as_array().unwrap();
        assert!(
            details
                .iter()
                .any(|d| d["code"] == detail_code && d["target"] == target),
            "no detail {detail_code} at {target}: {body}"
        );
    }
}

fn vm_body() -> Value {
    json!({
        "location": "local",
        "tags": {"edgetrain.dev/owner": "ns/name"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_DS2_v2"},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "caching": "ReadWrite", "diskSizeGB": 64,
                           "managedDisk": {"storageAccountType": "Standard_LRS"}}
            },
            "osProfile": {
                "computerName": "train1", "adminUsername": "azureuser",
                "customData": "I2Nsb3VkLWNvbmZpZwo=",
                "linuxConfiguration": {"disablePasswordAuthentication": true,
                    "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA"}]}}
            },
            "networkProfile": {"networkInterfaces": [{"id": format!("{}/networkInterfaces/nic1", network_base()), "properties": {"primary": true}}]}
        }
    })
}

fn command_job() -> Value {
    json!({
        "properties": {
            "jobType": "Command",
            "command": "python train.py --data ${{inputs.data}} --out ${{outputs.model}}",
            "environmentId": format!("{}/environments/env/versions/1", ws()),
            "computeId": format!("{}/computes/edge", ws()),
            "codeId": format!("{}/codes/c/versions/1", ws()),
            "experimentName": "edgetrain",
            "inputs": {
                "data": {"jobInputType": "uri_folder", "uri": "https://acct.blob.localhost/data/x/", "mode": "Download"},
                "lr": {"jobInputType": "literal", "value": "0.1"}
            },
            "outputs": {"model": {"jobOutputType": "uri_folder", "mode": "Upload"}},
            "environmentVariables": {"EDGETRAIN": "1"},
            "limits": {"jobLimitsType": "Command", "timeout": "PT2H"},
            "tags": {"a": "b"}
        }
    })
}

fn job_path() -> String {
    format!("{}/jobs/job-1?api-version=2025-12-01", ws())
}

fn vm_path() -> String {
    format!(
        "{}/virtualMachines/vm1?api-version=2020-06-01",
        compute_base()
    )
}

#[test]
fn rejects_wrong_discriminator() {
    let specs = Specs::load().unwrap();
    let mut body = command_job();
    body["properties"]["jobType"] = json!("Banana");
    assert_rejected(
        check(&specs, "PUT", &job_path(), &body),
        400,
        "InvalidRequestContent",
        Some(("InvalidDiscriminatorValue", "properties.jobType")),
    );
}

#[test]
fn rejects_wrong_nested_discriminators() {
    let specs = Specs::load().unwrap();
    let mut body = command_job();
    body["properties"]["inputs"]["data"]["jobInputType"] = json!("blob");
    assert_rejected(
        check(&specs, "PUT", &job_path(), &body),
        400,
        "InvalidRequestContent",
        Some((
            "InvalidDiscriminatorValue",
            "properties.inputs.data.jobInputType",
        )),
    );
    let attach = json!({"properties": {"computeType": "Toaster", "properties": {}}});
    let path = format!("{}/computes/edge?api-version=2025-12-01", ws());
    assert_rejected(
        check(&specs, "PUT", &path, &attach),
        400,
        "InvalidRequestContent",
        Some(("InvalidDiscriminatorValue", "properties.computeType")),
    );
}

#[test]
fn rejects_missing_required_property() {
    let specs = Specs::load().unwrap();
    let mut body = command_job();
    body["properties"]
        .as_object_mut()
        .unwrap()
        .remove("command");
    assert_rejected(
        check(&specs, "PUT", &job_path(), &body),
        400,
        "InvalidRequestContent",
        Some(("RequiredPropertyMissing", "properties.command")),
    );
    let mut vm = vm_body();
    vm.as_object_mut().unwrap().remove("location");
    assert_rejected(
        check(&specs, "PUT", &vm_path(), &vm),
        400,
        "InvalidRequestContent",
        Some(("RequiredPropertyMissing", "location")),
    );
}

#[test]
fn rejects_wrong_types() {
    let specs = Specs::load().unwrap();
    let mut vm = vm_body();
    vm["properties"]["storageProfile"]["osDisk"]["diskSizeGB"] = json!("64");
    assert_rejected(
        check(&specs, "PUT", &vm_path(), &vm),
        400,
        "InvalidRequestContent",
        Some((
            "InvalidPropertyType",
            "properties.storageProfile.osDisk.diskSizeGB",
        )),
    );
    let mut job = command_job();
    job["properties"]["environmentVariables"]["N"] = json!(1);
    assert_rejected(
        check(&specs, "PUT", &job_path(), &job),
        400,
        "InvalidRequestContent",
        Some(("InvalidPropertyType", "properties.environmentVariables.N")),
    );
}

#[test]
fn rejects_unknown_property() {
    let specs = Specs::load().unwrap();
    let mut vm = vm_body();
    vm["properties"]["hardwareProfile"]["gpuCount"] = json!(2);
    assert_rejected(
        check(&specs, "PUT", &vm_path(), &vm),
        400,
        "InvalidRequestContent",
        Some(("UnknownProperty", "properties.hardwareProfile.gpuCount")),
    );
}

#[test]
fn rejects_bad_enum_but_accepts_model_as_string() {
    let specs = Specs::load().unwrap();
    let mut vm = vm_body();
    vm["properties"]["storageProfile"]["osDisk"]["caching"] = json!("Sometimes");
    assert_rejected(
        check(&specs, "PUT", &vm_path(), &vm),
        400,
        "InvalidRequestContent",
        Some((
            "InvalidPropertyValue",
            "properties.storageProfile.osDisk.caching",
        )),
    );
    // vmSize is an x-ms-enum with modelAsString=true: any string passes the schema.
    let mut vm = vm_body();
    vm["properties"]["hardwareProfile"]["vmSize"] = json!("Custom_Size_v9");
    check(&specs, "PUT", &vm_path(), &vm).unwrap();
}

#[test]
fn rejects_bad_format_and_bounds() {
    let specs = Specs::load().unwrap();
    let mut job = command_job();
    job["properties"]["limits"]["timeout"] = json!("2 hours");
    assert_rejected(
        check(&specs, "PUT", &job_path(), &job),
        400,
        "InvalidRequestContent",
        Some(("InvalidPropertyValue", "properties.limits.timeout")),
    );
    let nsg = json!({"location": "local", "properties": {"securityRules": [
        {"name": "ssh", "properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound",
         "priority": "100", "sourceAddressPrefix": "10.0.0.0/8", "sourcePortRange": "*",
         "destinationAddressPrefix": "*", "destinationPortRange": "22"}}]}});
    let path = format!(
        "{}/networkSecurityGroups/nsg1?api-version=2018-11-01",
        network_base()
    );
    assert_rejected(
        check(&specs, "PUT", &path, &nsg),
        400,
        "InvalidRequestContent",
        Some((
            "InvalidPropertyType",
            "properties.securityRules[0].properties.priority",
        )),
    );
}

#[test]
fn rejects_bad_path_and_query_parameters() {
    let specs = Specs::load().unwrap();
    // Workspace names must match ^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$.
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/-x/jobs/j?api-version=2025-12-01"
    );
    assert_rejected(
        check(&specs, "PUT", &path, &command_job()),
        400,
        "InvalidParameter",
        None,
    );
    // Detach needs underlyingResourceAction.
    let path = format!("{}/computes/edge?api-version=2025-12-01", ws());
    assert_rejected(
        check(&specs, "DELETE", &path, &Value::Null),
        400,
        "InvalidParameter",
        Some(("MissingRequiredParameter", "underlyingResourceAction")),
    );
    // underlyingResourceAction is an x-ms-enum with modelAsString=true: other strings pass.
    let path = format!(
        "{}/computes/edge?api-version=2025-12-01&underlyingResourceAction=Detach",
        ws()
    );
    check(&specs, "DELETE", &path, &Value::Null).unwrap();
    // Job names: ^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$.
    let path = format!("{}/jobs/_bad?api-version=2025-12-01", ws());
    assert_rejected(
        check(&specs, "PUT", &path, &command_job()),
        400,
        "InvalidParameter",
        None,
    );
}

#[test]
fn rejects_bad_api_versions_and_paths() {
    let specs = Specs::load().unwrap();
    let vm = vm_body();
    let unsupported = format!(
        "{}/virtualMachines/vm1?api-version=2023-03-01",
        compute_base()
    );
    assert_rejected(
        check(&specs, "PUT", &unsupported, &vm),
        400,
        "NoRegisteredProviderFound",
        None,
    );
    let malformed = format!("{}/virtualMachines/vm1?api-version=latest", compute_base());
    assert_rejected(
        check(&specs, "PUT", &malformed, &vm),
        400,
        "InvalidApiVersionParameter",
        None,
    );
    let missing = format!("{}/virtualMachines/vm1", compute_base());
    assert_rejected(
        check(&specs, "PUT", &missing, &vm),
        400,
        "MissingApiVersionParameter",
        None,
    );
    let network_with_compute_version = format!(
        "{}/networkInterfaces/nic1?api-version=2020-06-01",
        network_base()
    );
    assert_rejected(
        check(&specs, "PUT", &network_with_compute_version, &json!({})),
        400,
        "NoRegisteredProviderFound",
        None,
    );
    let unknown_type = format!("{}/toasters/t1?api-version=2020-06-01", compute_base());
    assert_rejected(
        check(&specs, "PUT", &unknown_type, &json!({})),
        404,
        "InvalidResourceType",
        None,
    );
    let unknown_ns = format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Toast/t/x?api-version=2020-06-01"
    );
    assert_rejected(
        check(&specs, "GET", &unknown_ns, &Value::Null),
        404,
        "InvalidResourceNamespace",
        None,
    );
}

#[test]
fn rejects_non_json_body() {
    let specs = Specs::load().unwrap();
    let err = specs
        .check_request("PUT", &vm_path(), b"{not json")
        .unwrap_err();
    assert_eq!(err.code(), "InvalidRequestContent");
    assert_eq!(err.status.as_u16(), 400);
}

fn example(rel: &str) -> Value {
    let path = format!(
        "{}/azure-specs/specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2025-12-01/examples/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn example_path(params: &Value, tail: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}/{tail}?api-version={}",
        params["subscriptionId"].as_str().unwrap(),
        params["resourceGroupName"].as_str().unwrap(),
        params["workspaceName"].as_str().unwrap(),
        params["api-version"].as_str().unwrap()
    )
}

#[test]
fn accepts_the_specs_own_examples() {
    let specs = Specs::load().unwrap();
    let job = example("Job/CommandJob/createOrUpdate.json");
    let p = &job["parameters"];
    let path = example_path(p, &format!("jobs/{}", p["id"].as_str().unwrap()));
    // Upstream drift: the saved example still sends `parentJobName`, which the 2025-12-01
    // CommandJob schema no longer declares. It is the only thing the validator objects to.
    let err = check(&specs, "PUT", &path, &p["body"]).unwrap_err();
    let details = err.body()["error"]["details"].as_array().unwrap().clone();
    assert_eq!(details.len(), 1, "{details:?}");
    assert_eq!(details[0]["target"], "properties.parentJobName");
    let mut body = p["body"].clone();
    body["properties"]
        .as_object_mut()
        .unwrap()
        .remove("parentJobName");
    check(&specs, "PUT", &path, &body).unwrap();

    let model = example("Workspace/ModelVersion/createOrUpdate.json");
    let p = &model["parameters"];
    let path = example_path(
        p,
        &format!(
            "models/{}/versions/{}",
            p["name"].as_str().unwrap(),
            p["version"].as_str().unwrap()
        ),
    );
    check(&specs, "PUT", &path, &p["body"]).unwrap();

    let upload = example("Workspace/CodeVersion/createOrGetStartPendingUpload.json");
    let p = &upload["parameters"];
    let path = example_path(
        p,
        &format!(
            "codes/{}/versions/{}/startPendingUpload",
            p["name"].as_str().unwrap(),
            p["version"].as_str().unwrap()
        ),
    );
    check(&specs, "POST", &path, &p["body"]).unwrap();
}

#[test]
fn accepts_realistic_operator_bodies() {
    let specs = Specs::load().unwrap();
    check(&specs, "PUT", &vm_path(), &vm_body()).unwrap();
    check(&specs, "PUT", &job_path(), &command_job()).unwrap();
    let n = network_base();
    let bodies = [
        (
            format!("{n}/virtualNetworks/vnet1"),
            json!({"location": "local", "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.1.0/24"}}]}}),
        ),
        (
            format!("{n}/publicIPAddresses/pip1"),
            json!({"location": "local", "sku": {"name": "Basic"},
            "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}),
        ),
        (
            format!("{n}/networkInterfaces/nic1"),
            json!({"location": "local", "properties": {
            "ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": format!("{n}/virtualNetworks/vnet1/subnets/default")},
                "privateIPAllocationMethod": "Dynamic",
                "publicIPAddress": {"id": format!("{n}/publicIPAddresses/pip1")}}}],
            "networkSecurityGroup": {"id": format!("{n}/networkSecurityGroups/nsg1")}}}),
        ),
    ];
    for (path, body) in bodies {
        check(
            &specs,
            "PUT",
            &format!("{path}?api-version=2018-11-01"),
            &body,
        )
        .unwrap();
    }
    let attach = json!({"location": "westeurope", "properties": {"computeType": "VirtualMachine",
        "description": "edge VM", "properties": {"address": "127.0.0.1", "sshPort": 22,
        "administratorAccount": {"username": "azureuser", "privateKeyData": "-----BEGIN OPENSSH PRIVATE KEY-----"}}}});
    check(
        &specs,
        "PUT",
        &format!("{}/computes/edge?api-version=2025-12-01", ws()),
        &attach,
    )
    .unwrap();
    let env = json!({"properties": {"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest", "osType": "Linux"}});
    check(
        &specs,
        "PUT",
        &format!(
            "{}/environments/env/versions/1?api-version=2025-12-01",
            ws()
        ),
        &env,
    )
    .unwrap();
    let code = json!({"properties": {"codeUri": "https://acct.blob.localhost/c/LocalUpload/x", "isAnonymous": false}});
    check(
        &specs,
        "PUT",
        &format!("{}/codes/c/versions/1?api-version=2025-12-01", ws()),
        &code,
    )
    .unwrap();
}

#[test]
fn read_only_properties_are_ignored_and_null_means_absent() {
    let specs = Specs::load().unwrap();
    let mut vm = vm_body();
    vm["id"] = json!("/whatever");
    vm["properties"]["provisioningState"] = json!("Succeeded");
    vm["properties"]["vmId"] = json!("not-even-a-uuid");
    vm["properties"]["licenseType"] = Value::Null;
    check(&specs, "PUT", &vm_path(), &vm).unwrap();
}

/// Client strictness: the same body ARM accepts is refused when it carries server-owned members,
/// and undeclared query parameters are refused, while a clean request passes.
#[test]
fn client_strictness_rejects_read_only_members_and_undeclared_query() {
    let specs = Specs::load().unwrap();
    let clean = serde_json::to_vec(&vm_body()).unwrap();
    specs
        .check_client_request("PUT", &vm_path(), &clean)
        .unwrap();
    let mut vm = vm_body();
    vm["properties"]["provisioningState"] = json!("Succeeded");
    let bytes = serde_json::to_vec(&vm).unwrap();
    specs.check_request("PUT", &vm_path(), &bytes).unwrap();
    assert_rejected(
        specs.check_client_request("PUT", &vm_path(), &bytes),
        400,
        "InvalidRequestContent",
        Some(("ReadOnlyProperty", "properties.provisioningState")),
    );
    let get = format!("{}&$expand=instanceView", vm_path());
    specs.check_client_request("GET", &get, b"").unwrap();
    let bogus = format!("{}&$bogus=1", vm_path());
    specs.check_request("GET", &bogus, b"").unwrap();
    assert_rejected(
        specs.check_client_request("GET", &bogus, b""),
        400,
        "InvalidParameter",
        Some(("UnknownQueryParameter", "$bogus")),
    );
}
