//! Response fidelity: what the simulator answers matches what Azure answers (issue 13's
//! deviations, found by pointing Microsoft's Python SDKs at it; `sdk_contract.rs` runs those
//! SDKs, these tests pin each answer down without them).

mod common;

use common::*;
use edgetrain_sandbox_azure::{
    AzureSim, SasFields, Specs, SubscriptionConfig, WorkspaceConfig, sign_service_sas,
};
use serde_json::{Value, json};

/// Stack Hub resources live in their own subscription, apart from the ML workspace.
const HUB_SUB: &str = "00000000-0000-0000-0000-0000000000bb";

/// A real 2048-bit RSA public key (the VM's SSH key).
const SSH_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDCw2cRKBxHs/nrVIi2Qpk+uDKDIWB0m+IeruNmiuQZmbKpTciHu4TG80SYdyRswmJZG2gkqFX1UKweDZjtioJZ5kSNeKjw1Lnr5sBHHNxka+KDOHZQqL8Bj6U7RuQvL7Xz2rnLrBIXGnVRGhZtccHdc9jE2kC5cmOJtL9wRd2PSx+d0pTItn4V4RDdm/Hq6xXm6XnnUQZBwowElZzEITASdY7QwDEH1YiCSTGGkhiQB45QY5JPf5cDkPrYgjACCUqZ4PoC3OCqhAMG0oN3gGYLRo2Gyhs7HofdWiBe2IEzLaDAmnOS/vmz0/Bpfk/qN06YV04sZ+JVRvTthSbo8xWP";

/// A simulator (no Azurite) that also knows [`HUB_SUB`].
async fn start_with_hub() -> (AzureSim, tempfile::TempDir) {
    let (sim, dir) = start(false).await;
    sim.register_subscription(SubscriptionConfig::new(HUB_SUB));
    (sim, dir)
}

fn net() -> String {
    format!("/subscriptions/{HUB_SUB}/resourceGroups/hub/providers/Microsoft.Network")
}

fn vm_path() -> String {
    format!(
        "/subscriptions/{HUB_SUB}/resourceGroups/hub/providers/Microsoft.Compute/virtualMachines/vm1"
    )
}

/// Paths of every JSON `null` in a value: Azure leaves absent members out.
fn nulls(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Null => out.push(path.to_owned()),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| nulls(v, &format!("{path}.{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| nulls(v, &format!("{path}[{i}]"), out)),
        _ => {}
    }
}

fn assert_no_nulls(value: &Value) {
    let mut found = Vec::new();
    nulls(value, "", &mut found);
    assert!(found.is_empty(), "null members {found:?} in {value}");
}

/// PUT a long-running resource and wait for it.
async fn put_lro(arm: &Arm, path: &str, api: &str, body: Value) -> Value {
    let a = arm.put(&format!("{path}?api-version={api}"), &body).await;
    assert!(matches!(a.status, 200 | 201), "{path}: {}", a.body);
    let op = a
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation");
    assert_eq!(arm.wait_async(&op).await, "Succeeded");
    arm.get(&format!("{path}?api-version={api}")).await.body
}

async fn delete_lro(arm: &Arm, path: &str, api: &str) {
    let a = arm
        .call("DELETE", &format!("{path}?api-version={api}"), None)
        .await;
    assert!(matches!(a.status, 200 | 202 | 204), "{path}: {}", a.body);
    if let Some(op) = a.header("azure-asyncoperation") {
        assert_eq!(arm.wait_async(&op).await, "Succeeded");
    }
}

fn nic_body(n: &str, with_nsg: bool) -> Value {
    let mut body = json!({"location": "local", "properties": {"ipConfigurations": [{"name": "ipconfig1",
        "properties": {"subnet": {"id": format!("{n}/virtualNetworks/vnet1/subnets/default")}}}]}});
    if with_nsg {
        body["properties"]["networkSecurityGroup"] =
            json!({"id": format!("{n}/networkSecurityGroups/nsg1")});
    }
    body
}

/// vnet, NSG (one inline rule), public IP, NIC `nic1` in [`HUB_SUB`].
async fn network(arm: &Arm) {
    let n = net();
    put_lro(
        arm,
        &format!("{n}/virtualNetworks/vnet1"),
        NETWORK_API,
        json!({"location": "local",
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
        "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.1.0/24"}}]}}),
    )
    .await;
    put_lro(
        arm,
        &format!("{n}/networkSecurityGroups/nsg1"),
        NETWORK_API,
        nsg_body(true),
    )
    .await;
    put_lro(
        arm,
        &format!("{n}/publicIPAddresses/pip1"),
        NETWORK_API,
        json!({"location": "local", "properties": {"publicIPAllocationMethod": "Static"}}),
    )
    .await;
    let mut nic = nic_body(&n, true);
    nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"] =
        json!({"id": format!("{n}/publicIPAddresses/pip1")});
    put_lro(
        arm,
        &format!("{n}/networkInterfaces/nic1"),
        NETWORK_API,
        nic,
    )
    .await;
}

fn nsg_body(with_rule: bool) -> Value {
    let rules = if with_rule {
        json!([{"name": "ssh", "properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound",
            "priority": 100, "sourceAddressPrefix": "*", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "22"}}])
    } else {
        json!([])
    };
    json!({"location": "local", "properties": {"securityRules": rules}})
}

fn vm_body() -> Value {
    json!({"location": "local", "properties": {
        "hardwareProfile": {"vmSize": "Standard_DS2_v2"},
        "storageProfile": {
            "imageReference": {"publisher": "Canonical", "offer": "UbuntuServer", "sku": "18.04-LTS", "version": "latest"},
            "osDisk": {"createOption": "FromImage"}},
        "osProfile": {"computerName": "edge", "adminUsername": "azureuser",
            "linuxConfiguration": {"disablePasswordAuthentication": true,
                "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": SSH_KEY}]}}},
        "networkProfile": {"networkInterfaces": [{"id": format!("{}/networkInterfaces/nic1", net())}]}}})
}

#[tokio::test]
async fn deleting_a_nic_changes_no_other_resource() {
    let (sim, _dir) = start_with_hub().await;
    let hub = Arm::stack_hub(&sim).await;
    network(&hub).await;
    put_lro(&hub, &vm_path(), COMPUTE_API, vm_body()).await;
    let n = net();
    put_lro(
        &hub,
        &format!("{n}/networkInterfaces/spare"),
        NETWORK_API,
        nic_body(&n, false),
    )
    .await;
    let before: Vec<(String, Value)> = sim
        .inventory()
        .into_iter()
        .filter(|i| !i.id.ends_with("/spare"))
        .map(|i| (i.id.clone(), sim.resource(&i.id).unwrap()))
        .collect();

    delete_lro(&hub, &format!("{n}/networkInterfaces/spare"), NETWORK_API).await;

    for (id, old) in &before {
        let now = sim.resource(id).unwrap_or_else(|| panic!("{id} vanished"));
        assert_no_nulls(&now);
        if id.contains("/subnets/") {
            // The subnet no longer lists the deleted NIC's configuration.
            assert_eq!(
                now["properties"]["ipConfigurations"]
                    .as_array()
                    .unwrap()
                    .len(),
                1,
                "{now}"
            );
        } else {
            assert_eq!(&now, old, "{id} changed");
        }
    }
    assert!(
        before.iter().any(|(id, _)| id == &ws()),
        "the workspace is part of the check"
    );
    assert_no_nulls(
        &hub.get(&format!("{}?api-version={COMPUTE_API}", vm_path()))
            .await
            .body,
    );
    assert_no_nulls(
        &hub.get(&format!(
            "{n}/networkSecurityGroups/nsg1?api-version={NETWORK_API}"
        ))
        .await
        .body,
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn workspace_get_answers_region_ids_and_tracking_uri() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), false);
    cfg.workspaces
        .push(WorkspaceConfig::new(SUB, "rg2", "east", "eastus"));
    let sim = AzureSim::start(cfg).await.unwrap();
    let ml = Arm::public(&sim).await;

    let a = ml.get(&format!("{}?api-version={ML_API}", ws())).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], ws());
    assert_eq!(a.body["name"], "ws1");
    assert_eq!(
        a.body["type"],
        "Microsoft.MachineLearningServices/workspaces"
    );
    assert_eq!(a.body["location"], "westeurope");
    let p = &a.body["properties"];
    assert!(
        uuid::Uuid::parse_str(p["workspaceId"].as_str().unwrap()).is_ok(),
        "{p}"
    );
    assert_eq!(p["provisioningState"], "Succeeded");
    assert_eq!(
        p["storageAccount"],
        format!(
            "{}/providers/Microsoft.Storage/storageAccounts/mlworkspacestore",
            rg()
        )
    );
    let authority = sim.base_url().trim_start_matches("http://");
    assert_eq!(
        p["mlFlowTrackingUri"],
        format!("azureml://{authority}/mlflow/v1.0{}", ws())
    );
    let discovery_url = p["discoveryUrl"].as_str().unwrap();
    let discovery: Value = http()
        .get(discovery_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["api"], sim.base_url());
    assert_no_nulls(&a.body);

    // Each workspace has its own region.
    let east = format!(
        "/subscriptions/{SUB}/resourceGroups/rg2/providers/Microsoft.MachineLearningServices/workspaces/east"
    );
    let a = ml.get(&format!("{east}?api-version={ML_API}")).await;
    assert_eq!(a.body["location"], "eastus", "{}", a.body);
    assert_ne!(a.body["properties"]["workspaceId"], p["workspaceId"]);

    let missing = ml
        .get(&format!(
            "{}/providers/Microsoft.MachineLearningServices/workspaces/nope?api-version={ML_API}",
            rg()
        ))
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "ResourceNotFound"),
        "{}",
        missing.body
    );
    let old = ml.get(&format!("{}?api-version=2023-04-01", ws())).await;
    assert_eq!((old.status, old.code()), (400, "NoRegisteredProviderFound"));
    let bare = ml.get(&ws()).await;
    assert_eq!(
        (bare.status, bare.code()),
        (400, "MissingApiVersionParameter")
    );
    // The Stack Hub token is not good for public ARM.
    let hub = Arm::stack_hub(&sim).await;
    assert_eq!(
        hub.get(&format!("{}?api-version={ML_API}", ws()))
            .await
            .status,
        401
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn model_versions_always_carry_flavors() {
    let (sim, _dir) = start(false).await;
    let ml = Arm::public(&sim).await;
    let v1 = format!("{}/models/churn/versions/1", ws());
    let a = ml
        .put(&format!("{v1}?api-version={ML_API}"), &json!({"properties": {"modelUri": "azureml://datastores/workspaceblobstore/paths/m/", "modelType": "custom_model"}}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["properties"]["flavors"], json!({}));
    assert_eq!(
        ml.get(&format!("{v1}?api-version={ML_API}")).await.body["properties"]["flavors"],
        json!({})
    );
    let v2 = format!("{}/models/churn/versions/2", ws());
    let flavors = json!({"python_function": {"data": {"loader_module": "mlflow.sklearn"}}});
    let a = ml
        .put(&format!("{v2}?api-version={ML_API}"), &json!({"properties": {"modelUri": "azureml://datastores/workspaceblobstore/paths/m/", "flavors": flavors}}))
        .await;
    assert_eq!(a.body["properties"]["flavors"], flavors);
    sim.shutdown().await;
}

#[tokio::test]
async fn versions_of_an_unregistered_code_or_model_list_empty() {
    let (sim, _dir) = start(false).await;
    let ml = Arm::public(&sim).await;
    for kind in ["codes", "models"] {
        let a = ml
            .get(&format!(
                "{}/{kind}/never/versions?api-version={ML_API}",
                ws()
            ))
            .await;
        assert_eq!(a.status, 200, "{kind}: {}", a.body);
        assert_eq!(a.body, json!({"value": []}));
    }
    // Only inside an existing workspace.
    let elsewhere = format!(
        "{}/providers/Microsoft.MachineLearningServices/workspaces/nope/codes/x/versions?api-version={ML_API}",
        rg()
    );
    assert_eq!(ml.get(&elsewhere).await.status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn nsg_rules_are_child_resources_next_to_the_six_defaults() {
    let (sim, _dir) = start_with_hub().await;
    let hub = Arm::stack_hub(&sim).await;
    network(&hub).await;
    let nsg = format!("{}/networkSecurityGroups/nsg1", net());
    let q = format!("api-version={NETWORK_API}");

    // What a client reads it can PUT back (inline children carry no `type` in 2018-11-01).
    let vnet = format!("{}/virtualNetworks/vnet1", net());
    let read = hub.get(&format!("{vnet}?{q}")).await.body;
    let rewritten = put_lro(&hub, &vnet, NETWORK_API, read.clone()).await;
    assert_eq!(
        rewritten["properties"]["subnets"][0]["name"], "default",
        "{rewritten}"
    );

    let rule = hub.get(&format!("{nsg}/securityRules/ssh?{q}")).await;
    assert_eq!(rule.status, 200, "{}", rule.body);
    assert_eq!(rule.body["id"], format!("{nsg}/securityRules/ssh"));
    assert_eq!(rule.body["properties"]["destinationPortRange"], "22");
    assert_eq!(rule.body["properties"]["provisioningState"], "Succeeded");
    let list = hub.get(&format!("{nsg}/securityRules?{q}")).await;
    assert_eq!(
        list.body["value"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );

    let body = hub.get(&format!("{nsg}?{q}")).await.body;
    let guid = body["properties"]["resourceGuid"].clone();
    assert!(
        uuid::Uuid::parse_str(guid.as_str().unwrap()).is_ok(),
        "{body}"
    );
    assert_eq!(body["properties"]["securityRules"][0]["name"], "ssh");
    let defaults = body["properties"]["defaultSecurityRules"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = defaults
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AllowVnetInBound",
            "AllowAzureLoadBalancerInBound",
            "DenyAllInBound",
            "AllowVnetOutBound",
            "AllowInternetOutBound",
            "DenyAllOutBound"
        ]
    );
    assert_eq!(
        body["properties"]["networkInterfaces"],
        json!([{"id": format!("{}/networkInterfaces/nic1", net())}])
    );
    let deny = hub
        .get(&format!("{nsg}/defaultSecurityRules/denyallinbound?{q}"))
        .await;
    assert_eq!(deny.status, 200, "{}", deny.body);
    assert_eq!(
        (
            deny.body["properties"]["access"].as_str(),
            deny.body["properties"]["priority"].as_u64()
        ),
        (Some("Deny"), Some(65500))
    );
    assert_eq!(
        hub.get(&format!("{nsg}/defaultSecurityRules?{q}"))
            .await
            .body["value"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        hub.get(&format!("{nsg}/defaultSecurityRules/nope?{q}"))
            .await
            .status,
        404
    );

    // A rule PUT on its own shows up in the NSG; an NSG PUT replaces the whole rule set; the
    // server-owned members a client sends back are ignored.
    put_lro(
        &hub,
        &format!("{nsg}/securityRules/https"),
        NETWORK_API,
        json!({"properties": {"protocol": "Tcp",
        "access": "Allow", "direction": "Inbound", "priority": 110, "sourceAddressPrefix": "*",
        "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "443"}}),
    )
    .await;
    let mut read_back = hub.get(&format!("{nsg}?{q}")).await.body;
    assert_eq!(
        read_back["properties"]["securityRules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let same = put_lro(&hub, &nsg, NETWORK_API, read_back.clone()).await;
    assert_eq!(
        same["properties"]["securityRules"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{same}"
    );
    read_back["properties"]["securityRules"] = json!([]);
    let updated = put_lro(&hub, &nsg, NETWORK_API, read_back).await;
    assert_eq!(updated["properties"]["securityRules"], json!([]));
    assert_eq!(
        updated["properties"]["defaultSecurityRules"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(updated["properties"]["resourceGuid"], guid);
    assert_eq!(
        hub.get(&format!("{nsg}/securityRules/ssh?{q}"))
            .await
            .status,
        404
    );
    assert!(
        sim.inventory()
            .iter()
            .all(|i| !i.id.contains("defaultSecurityRules")),
        "defaults are not stored"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_integer_hash_version_is_stored_as_a_string() {
    let (sim, _dir) = start(false).await;
    let ml = Arm::public(&sim).await;
    let code = format!("{}/codes/c1/versions/1", ws());
    // What azure-ai-ml sends for every local code upload.
    let body = json!({"properties": {"codeUri": "https://mlworkspacestore.blob.core.windows.net/azureml-blobstore/LocalUpload/x",
        "isAnonymous": true, "properties": {"hash_sha256": "abc", "hash_version": 202208}}});
    let a = ml.put(&format!("{code}?api-version={ML_API}"), &body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["properties"]["properties"]["hash_version"], "202208");
    assert_eq!(
        ml.get(&format!("{code}?api-version={ML_API}")).await.body["properties"]["properties"]["hash_version"],
        "202208"
    );
    // Our own clients are still held to the spec's string.
    let refused = Specs::load()
        .unwrap()
        .check_client_request(
            "PUT",
            &format!("{code}?api-version={ML_API}"),
            body.to_string().as_bytes(),
        )
        .unwrap_err();
    assert_eq!(refused.code(), "InvalidRequestContent");
    sim.shutdown().await;
}

#[tokio::test]
async fn azurite_accepts_newer_storage_api_versions() {
    let (sim, _dir) = start(true).await;
    let s = sim.storage_endpoints().unwrap();
    sim.seed_blob(&s.stack_hub_account, "data", "a.txt", b"hello".to_vec())
        .await
        .unwrap();
    let sas = sign_service_sas(
        &SasFields {
            account: &s.stack_hub_account,
            container: "data",
            blob: Some("a.txt"),
            permissions: "r",
            start: None,
            expiry: "2099-01-01T00:00:00Z",
            ip: None,
            protocol: Some("https"),
        },
        &s.stack_hub_key,
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&s.ca_pem).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "{}/data/a.txt?{}",
            s.path_style(&s.stack_hub_account),
            sas.expose()
        ))
        .header("x-ms-version", "2026-10-06")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello");
    sim.shutdown().await;
}

/// At most 7 fractional digits, UTC, RFC 3339 (what Azure's .NET services write).
fn assert_azure_time(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?(Z|\+00:00)$").unwrap();
    assert!(re.is_match(text), "{text}");
}

#[tokio::test]
async fn service_filled_members_of_vm_nic_public_ip_and_environment() {
    let (sim, _dir) = start_with_hub().await;
    let hub = Arm::stack_hub(&sim).await;
    network(&hub).await;
    let n = net();
    let q = format!("api-version={NETWORK_API}");

    let pip = hub
        .get(&format!("{n}/publicIPAddresses/pip1?{q}"))
        .await
        .body;
    assert_eq!(pip["properties"]["idleTimeoutInMinutes"], 4);
    assert!(pip["properties"]["resourceGuid"].is_string(), "{pip}");
    let nic = hub
        .get(&format!("{n}/networkInterfaces/nic1?{q}"))
        .await
        .body;
    let mac = nic["properties"]["macAddress"].as_str().unwrap();
    assert!(
        regex::Regex::new("^([0-9A-F]{2}-){5}[0-9A-F]{2}$")
            .unwrap()
            .is_match(mac),
        "{mac}"
    );
    assert_eq!(
        nic["properties"]["ipConfigurations"][0]["properties"]["primary"],
        true
    );
    assert!(
        nic["properties"].get("primary").is_none(),
        "not attached yet: {nic}"
    );

    let vm = put_lro(&hub, &vm_path(), COMPUTE_API, vm_body()).await;
    let disk = &vm["properties"]["storageProfile"]["osDisk"];
    assert_eq!(disk["osType"], "Linux");
    let disk_name = disk["name"].as_str().unwrap();
    assert!(disk_name.starts_with("vm1_OsDisk_1_"), "{disk}");
    assert_eq!(
        disk["managedDisk"]["id"],
        format!(
            "/subscriptions/{HUB_SUB}/resourceGroups/HUB/providers/Microsoft.Compute/disks/{disk_name}"
        )
    );
    // An update keeps what the service chose.
    let again = put_lro(&hub, &vm_path(), COMPUTE_API, vm_body()).await;
    assert_eq!(
        again["properties"]["storageProfile"]["osDisk"]["name"],
        disk_name
    );
    let nic = hub
        .get(&format!("{n}/networkInterfaces/nic1?{q}"))
        .await
        .body;
    assert_eq!(nic["properties"]["primary"], true);
    assert_eq!(nic["properties"]["macAddress"], mac);

    let view = hub
        .get(&format!(
            "{}/instanceView?api-version={COMPUTE_API}",
            vm_path()
        ))
        .await
        .body;
    assert_eq!(
        view["vmAgent"]["statuses"][0]["displayStatus"], "Ready",
        "{view}"
    );
    assert_eq!(view["disks"][0]["name"], disk_name);
    assert_azure_time(&view["statuses"][0]["time"]);

    let sizes = hub
        .get(&format!("{}/vmSizes?api-version={COMPUTE_API}", vm_path()))
        .await;
    assert_eq!(sizes.status, 200, "{}", sizes.body);
    let ds2 = sizes.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Standard_DS2_v2")
        .cloned();
    assert_eq!(
        ds2.map(|s| s["numberOfCores"].clone()),
        Some(json!(2)),
        "{}",
        sizes.body
    );
    let located = hub.get(&format!("/subscriptions/{HUB_SUB}/providers/Microsoft.Compute/locations/local/vmSizes?api-version={COMPUTE_API}")).await;
    assert_eq!(located.status, 200, "{}", located.body);
    assert!(!located.body["value"].as_array().unwrap().is_empty());
    assert!(located.body.get("nextLink").is_none());

    let ml = Arm::public(&sim).await;
    let env = format!("{}/environments/py/versions/1", ws());
    let a = ml
        .put(
            &format!("{env}?api-version={ML_API}"),
            &json!({"properties": {"image": "python:3.12-slim"}}),
        )
        .await;
    assert_eq!(
        (
            a.body["properties"]["osType"].as_str(),
            a.body["properties"]["autoRebuild"].as_str()
        ),
        (Some("Linux"), Some("Disabled")),
        "{}",
        a.body
    );
    assert_azure_time(&a.body["systemData"]["createdAt"]);
    let started = hub
        .call(
            "POST",
            &format!("{}/powerOff?api-version={COMPUTE_API}", vm_path()),
            None,
        )
        .await;
    let status = hub
        .get(&started.header("azure-asyncoperation").unwrap())
        .await
        .body;
    assert_azure_time(&status["startTime"]);
    sim.shutdown().await;
}

/// A VM's implicit managed OS disk is a `Microsoft.Compute/disks` resource (Disks_Get at the
/// profile's 2019-07-01): held by the VM (`managedBy`, not deletable: 409), left behind
/// unattached when the VM is deleted (Compute 2020-06-01 has no `deleteOption`), then
/// deletable.
#[tokio::test]
async fn the_os_disk_outlives_its_vm_and_is_deleted_on_its_own() {
    const DISKS_API: &str = "2019-07-01";
    let (sim, _dir) = start_with_hub().await;
    let hub = Arm::stack_hub(&sim).await;
    network(&hub).await;
    let vm = put_lro(&hub, &vm_path(), COMPUTE_API, vm_body()).await;
    let disk_id = vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = format!("api-version={DISKS_API}");
    let disk = hub.get(&format!("{disk_id}?{q}")).await;
    assert_eq!(disk.status, 200, "{}", disk.body);
    assert!(
        disk.body["managedBy"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case(&vm_path())),
        "{}",
        disk.body
    );
    assert_eq!(disk.body["properties"]["diskState"], "Attached");
    assert_eq!(
        disk.body["properties"]["creationData"]["createOption"],
        "FromImage"
    );
    let refused = hub.call("DELETE", &format!("{disk_id}?{q}"), None).await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "OperationNotAllowed")
    );

    delete_lro(&hub, &vm_path(), COMPUTE_API).await;
    let left = hub.get(&format!("{disk_id}?{q}")).await;
    assert_eq!(left.status, 200, "the disk outlives its VM");
    assert!(left.body.get("managedBy").is_none(), "{}", left.body);
    assert_eq!(left.body["properties"]["diskState"], "Unattached");
    delete_lro(&hub, &disk_id, DISKS_API).await;
    assert_eq!(hub.get(&format!("{disk_id}?{q}")).await.status, 404);
}
