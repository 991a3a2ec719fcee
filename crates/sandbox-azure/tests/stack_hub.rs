//! Stack Hub side: metadata, AAD/AD FS tokens, ARM auth, Compute/Network with long-running
//! operations, a poller that restarts mid-operation, power actions and resize.

mod common;

use common::*;
use edgetrain_sandbox_azure::{AzureSim, IdentitySystem, TEST_SSH_PUBLIC_KEY};
use serde_json::{Value, json};

async fn start_stack_hub(identity: IdentitySystem) -> (AzureSim, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), false);
    cfg.identity = identity;
    cfg.allowed_vm_sizes = vec!["Standard_DS2_v2".into(), "Standard_DS3_v2".into()];
    (AzureSim::start(cfg).await.unwrap(), dir)
}

/// Stored Compute/Network resources (the configured ML workspace is always there).
fn stack_hub_items(sim: &AzureSim) -> usize {
    sim.inventory()
        .iter()
        .filter(|i| {
            !i.resource_type
                .starts_with("Microsoft.MachineLearningServices")
        })
        .count()
}

fn net() -> String {
    format!("{}/providers/Microsoft.Network", rg())
}

fn vm_id(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{name}",
        rg()
    )
}

fn vm_body(size: &str) -> Value {
    json!({
        "location": "local",
        "properties": {
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "18.04-LTS", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "Standard_LRS"}}
            },
            "osProfile": {"computerName": "edge", "adminUsername": "azureuser",
                "linuxConfiguration": {"disablePasswordAuthentication": true,
                    "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": TEST_SSH_PUBLIC_KEY}]}}},
            "networkProfile": {"networkInterfaces": [{"id": format!("{}/networkInterfaces/nic1", net()), "properties": {"primary": true}}]}
        }
    })
}

/// vnet + subnet, NSG, static public IP, NIC — each an LRO waited on.
async fn create_network(arm: &Arm) {
    let n = net();
    let steps = [
        (
            format!("{n}/virtualNetworks/vnet1"),
            json!({"location": "local", "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.1.0/24"}}]}}),
        ),
        (
            format!("{n}/networkSecurityGroups/nsg1"),
            json!({"location": "local", "properties": {"securityRules": [
            {"name": "ssh", "properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 100,
             "sourceAddressPrefix": "203.0.113.0/24", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "22"}}]}}),
        ),
        (
            format!("{n}/publicIPAddresses/pip1"),
            json!({"location": "local", "sku": {"name": "Basic"},
            "properties": {"publicIPAllocationMethod": "Static"}}),
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
    for (id, body) in steps {
        let a = arm
            .put(&format!("{id}?api-version={NETWORK_API}"), &body)
            .await;
        assert_eq!(a.status, 201, "{id}: {}", a.body);
        let op = a
            .header("azure-asyncoperation")
            .expect("Azure-AsyncOperation");
        assert_eq!(arm.wait_async(&op).await, "Succeeded");
    }
}

#[tokio::test]
async fn metadata_and_token_endpoints() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let c = http();
    let meta: Value = c
        .get(format!(
            "{}/metadata/endpoints?api-version=2015-01-01",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["authentication"]["loginEndpoint"],
        format!("{}/", sim.base_url())
    );
    assert_eq!(
        meta["authentication"]["audiences"][0],
        sim.config().stack_hub_audience
    );

    // v1: numbers as strings, resource echoed.
    let v1 = c
        .post(format!("{}/{TENANT}/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("resource", sim.config().stack_hub_audience.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status(), 200);
    let v1: Value = v1.json().await.unwrap();
    assert_eq!(v1["token_type"], "Bearer");
    assert!(v1["expires_in"].is_string() && v1["expires_on"].is_string());
    assert_eq!(v1["resource"], sim.config().stack_hub_audience);

    let bad = c
        .post(format!("{}/{TENANT}/oauth2/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
            ("resource", sim.config().stack_hub_audience.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"], "invalid_client");
    assert_eq!(sim.counters().get("POST", "token"), 2);
}

#[tokio::test]
async fn adfs_stamp_issues_tokens_at_adfs() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Adfs).await;
    let c = http();
    let meta: Value = c
        .get(format!(
            "{}/metadata/endpoints?api-version=2015-01-01",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login = meta["authentication"]["loginEndpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(login, format!("{}/adfs/", sim.base_url()));
    let tok: Value = c
        .post(format!("{login}oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            (
                "resource",
                meta["authentication"]["audiences"][0].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tok["access_token"].as_str().unwrap();
    assert!(tok["expires_in"].is_number());
    let resp = c
        .get(format!(
            "{}{}?api-version={COMPUTE_API}",
            sim.base_url(),
            vm_id("missing")
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ResourceNotFound");
}

#[tokio::test]
async fn arm_rejects_missing_and_wrong_audience_tokens() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let resp = http()
        .get(format!(
            "{}{}?api-version={COMPUTE_API}",
            sim.base_url(),
            vm_id("vm1")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer authorization_uri="),
        "{challenge}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");

    // A public-ARM (Azure ML) token is not valid for Stack Hub ARM.
    let public = Arm::public(&sim).await;
    let a = public
        .get(&format!("{}?api-version={COMPUTE_API}", vm_id("vm1")))
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.code(), "InvalidAuthenticationTokenAudience");
}

#[tokio::test]
async fn unknown_versions_paths_and_resources_answer_like_arm() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let arm = Arm::stack_hub(&sim).await;
    // Public Azure's newer Compute api-version does not exist on the 2020-09-01-hybrid stamp.
    let a = arm
        .put(
            &format!("{}?api-version=2024-07-01", vm_id("vm1")),
            &vm_body("Standard_DS2_v2"),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "NoRegisteredProviderFound");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2020-06-01")
    );
    let a = arm
        .get(&format!(
            "{}/providers/Microsoft.Compute/toasters/t?api-version={COMPUTE_API}",
            rg()
        ))
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.code(), "InvalidResourceType");
    let a = arm
        .get(&format!("{}?api-version={COMPUTE_API}", vm_id("nope")))
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.code(), "ResourceNotFound");
    let a = arm
        .call(
            "DELETE",
            &format!("{}?api-version={COMPUTE_API}", vm_id("nope")),
            None,
        )
        .await;
    assert_eq!(a.status, 204);
    // A VM whose NIC does not exist is refused before anything is stored.
    let a = arm
        .put(
            &format!("{}?api-version={COMPUTE_API}", vm_id("vm1")),
            &vm_body("Standard_DS2_v2"),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.header("x-ms-request-id").is_some());
    assert_eq!(stack_hub_items(&sim), 0);
}

#[tokio::test]
async fn vm_create_survives_poller_restart_without_second_create() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let arm = Arm::stack_hub(&sim).await;
    create_network(&arm).await;

    let nic = arm
        .get(&format!(
            "{}/networkInterfaces/nic1?api-version={NETWORK_API}",
            net()
        ))
        .await;
    assert_eq!(
        nic.body["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"],
        "10.0.1.4"
    );
    let pip = arm
        .get(&format!(
            "{}/publicIPAddresses/pip1?api-version={NETWORK_API}",
            net()
        ))
        .await;
    assert_eq!(pip.body["properties"]["ipAddress"], "127.0.0.1");
    let vnet = arm
        .get(&format!(
            "{}/virtualNetworks/vnet1?api-version={NETWORK_API}",
            net()
        ))
        .await;
    assert_eq!(vnet.body["properties"]["subnets"][0]["name"], "default");

    let created = arm
        .put(
            &format!("{}?api-version={COMPUTE_API}", vm_id("edge-vm")),
            &vm_body("Standard_DS2_v2"),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["properties"]["provisioningState"], "Creating");
    assert!(created.header("retry-after").is_some());
    let saved_url = created.header("azure-asyncoperation").unwrap();
    let first = arm.get(&saved_url).await;
    assert_eq!(first.body["status"], "InProgress");
    drop(arm);

    // "Restart": a fresh client with a fresh token resumes from the stored operation URL.
    let resumed = Arm::stack_hub(&sim).await;
    assert_eq!(resumed.wait_async(&saved_url).await, "Succeeded");
    let vm = resumed
        .get(&format!(
            "{}?api-version={COMPUTE_API}&$expand=instanceView",
            vm_id("edge-vm")
        ))
        .await;
    assert_eq!(vm.body["properties"]["provisioningState"], "Succeeded");
    let codes: Vec<&str> = vm.body["properties"]["instanceView"]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"PowerState/running"), "{codes:?}");
    assert_eq!(sim.counters().get("PUT", "Microsoft.Compute"), 1);
    let vms: Vec<_> = sim
        .inventory()
        .into_iter()
        .filter(|i| i.resource_type == "Microsoft.Compute/virtualMachines")
        .collect();
    assert_eq!(vms.len(), 1);
    let nic = resumed
        .get(&format!(
            "{}/networkInterfaces/nic1?api-version={NETWORK_API}",
            net()
        ))
        .await;
    assert_eq!(
        nic.body["properties"]["virtualMachine"]["id"],
        vm_id("edge-vm")
    );
    // A NIC used by a VM cannot be deleted.
    let del = resumed
        .call(
            "DELETE",
            &format!("{}/networkInterfaces/nic1?api-version={NETWORK_API}", net()),
            None,
        )
        .await;
    assert_eq!(del.status, 400);
    assert_eq!(del.code(), "NicInUse");
}

async fn power(arm: &Arm, action: &str) -> (u16, Value) {
    let a = arm
        .post(
            &format!("{}/{action}?api-version={COMPUTE_API}", vm_id("edge-vm")),
            None,
        )
        .await;
    if a.status != 202 {
        return (a.status, a.body);
    }
    assert!(a.header("location").is_some());
    let op = a.header("azure-asyncoperation").unwrap();
    assert_eq!(arm.wait_async(&op).await, "Succeeded");
    let view = arm
        .get(&format!(
            "{}/instanceView?api-version={COMPUTE_API}",
            vm_id("edge-vm")
        ))
        .await;
    (202, view.body)
}

fn power_state(view: &Value) -> String {
    view["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["code"].as_str())
        .find(|c| c.starts_with("PowerState/"))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn power_actions_and_resize() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let arm = Arm::stack_hub(&sim).await;
    create_network(&arm).await;
    let path = format!("{}?api-version={COMPUTE_API}", vm_id("edge-vm"));
    let created = arm.put(&path, &vm_body("Standard_DS2_v2")).await;
    assert_eq!(
        arm.wait_async(&created.header("azure-asyncoperation").unwrap())
            .await,
        "Succeeded"
    );

    let (_, view) = power(&arm, "deallocate").await;
    assert_eq!(power_state(&view), "PowerState/deallocated");
    let (status, body) = power(&arm, "restart").await;
    assert_eq!(status, 409, "{body}");

    // Resize while deallocated: a size outside the stamp's list is refused, an allowed one works.
    let refused = arm.put(&path, &vm_body("Standard_NC6")).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.code(), "SkuNotAvailable");
    let resized = arm.put(&path, &vm_body("Standard_DS3_v2")).await;
    assert_eq!(resized.status, 200);
    assert_eq!(resized.body["properties"]["provisioningState"], "Updating");
    assert_eq!(
        arm.wait_async(&resized.header("azure-asyncoperation").unwrap())
            .await,
        "Succeeded"
    );
    let vm = arm.get(&path).await;
    assert_eq!(
        vm.body["properties"]["hardwareProfile"]["vmSize"],
        "Standard_DS3_v2"
    );

    let (_, view) = power(&arm, "start").await;
    assert_eq!(power_state(&view), "PowerState/running");
    let (_, view) = power(&arm, "powerOff").await;
    assert_eq!(power_state(&view), "PowerState/stopped");
    assert_eq!(sim.counters().get("POST", "Microsoft.Compute"), 4);
}

#[tokio::test]
async fn operations_configured_to_fail_end_failed() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let arm = Arm::stack_hub(&sim).await;
    create_network(&arm).await;
    let created = arm
        .put(
            &format!("{}?api-version={COMPUTE_API}", vm_id("doomed-vm")),
            &vm_body("Standard_DS2_v2"),
        )
        .await;
    assert_eq!(created.status, 201);
    let op = created.header("azure-asyncoperation").unwrap();
    assert_eq!(arm.wait_async(&op).await, "Failed");
    let status = arm.get(&op).await;
    assert_eq!(status.body["error"]["code"], "OperationFailed");
    let vm = arm
        .get(&format!("{}?api-version={COMPUTE_API}", vm_id("doomed-vm")))
        .await;
    assert_eq!(vm.body["properties"]["provisioningState"], "Failed");
}

#[tokio::test]
async fn delete_is_a_long_running_operation() {
    let (sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let arm = Arm::stack_hub(&sim).await;
    let pip = format!(
        "{}/publicIPAddresses/lonely?api-version={NETWORK_API}",
        net()
    );
    let a = arm
        .put(
            &pip,
            &json!({"location": "local", "properties": {"publicIPAllocationMethod": "Static"}}),
        )
        .await;
    arm.wait_async(&a.header("azure-asyncoperation").unwrap())
        .await;
    let d = arm.call("DELETE", &pip, None).await;
    assert_eq!(d.status, 202);
    let location = d.header("location").unwrap();
    let first = arm.get(&location).await;
    assert_eq!(first.status, 202);
    let mut last = first.status;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = arm.get(&location).await.status;
        if last != 202 {
            break;
        }
    }
    assert_eq!(last, 204);
    assert_eq!(arm.get(&pip).await.status, 404);
    assert_eq!(stack_hub_items(&sim), 0);
}

#[tokio::test]
async fn vm_keys_must_be_ssh_rsa_of_2048_bits_and_os_profile_cannot_change() {
    let (_sim, _dir) = start_stack_hub(IdentitySystem::Aad).await;
    let sim = &_sim;
    let arm = Arm::stack_hub(sim).await;
    create_network(&arm).await;
    let path = format!("{}?api-version={COMPUTE_API}", vm_id("edge-vm"));
    let keys = "/properties/osProfile/linuxConfiguration/ssh/publicKeys/0/keyData";

    // Compute 2020-06-01: keyData is ssh-rsa of at least 2048 bits.
    let mut ed25519 = vm_body("Standard_DS2_v2");
    *ed25519.pointer_mut(keys).unwrap() =
        json!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvgw6cb3UX68NcmWHJm+fE0J1oxH4HBnepqMT2YSGUR x");
    let refused = arm.put(&path, &ed25519).await;
    assert_eq!(
        (refused.status, refused.code()),
        (400, "InvalidParameter"),
        "{}",
        refused.body
    );

    let mut body = vm_body("Standard_DS2_v2");
    body["properties"]["osProfile"]["customData"] = json!("I2Nsb3VkLWNvbmZpZwo=");
    let created = arm.put(&path, &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    arm.wait_async(&created.header("azure-asyncoperation").unwrap())
        .await;

    // An update restating osProfile unchanged is fine; changing any of it is not.
    let same = arm.put(&path, &body).await;
    assert_eq!(same.status, 200, "{}", same.body);
    arm.wait_async(&same.header("azure-asyncoperation").unwrap())
        .await;
    for (pointer, value, target) in [
        (
            "/properties/osProfile/customData",
            json!("I2Nsb3VkLWNvbmZpZwpydW5jbWQ6IFtdCg=="),
            "customData",
        ),
        (
            "/properties/osProfile/computerName",
            json!("other"),
            "computerName",
        ),
    ] {
        let mut changed = body.clone();
        *changed.pointer_mut(pointer).unwrap() = value;
        let r = arm.put(&path, &changed).await;
        assert_eq!(
            (r.status, r.code()),
            (409, "PropertyChangeNotAllowed"),
            "{}",
            r.body
        );
        assert_eq!(r.body["error"]["target"], target);
    }

    // VirtualMachines_Update: a PATCH of the size alone works; the same rules apply to it.
    let patched = arm
        .call(
            "PATCH",
            &path,
            Some(&json!({"properties": {"hardwareProfile": {"vmSize": "Standard_DS3_v2"}}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    arm.wait_async(&patched.header("azure-asyncoperation").unwrap())
        .await;
    let vm = arm.get(&path).await;
    assert_eq!(
        vm.body["properties"]["hardwareProfile"]["vmSize"],
        "Standard_DS3_v2"
    );
    assert_eq!(vm.body["properties"]["osProfile"]["computerName"], "edge");
    let r = arm
        .call(
            "PATCH",
            &path,
            Some(&json!({"properties": {"osProfile": {"adminUsername": "root2"}}})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "PropertyChangeNotAllowed"),
        "{}",
        r.body
    );
    let r = arm
        .call(
            "PATCH",
            &path,
            Some(&json!({"properties": {"hardwareProfile": {"vmSize": "Standard_NC6"}}})),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "SkuNotAvailable"), "{}", r.body);
}
