//! Stack Hub compute/network through the real clients against the simulator: the full network
//! for one training VM, a VM create whose poller token survives a client restart, and
//! deallocate → start read back through the instance view.

mod common;

use std::collections::BTreeMap;

use common::sim::{self, Options};
use edgetrain_azure::{
    arm::{LroStatus, LroToken, Started},
    stackhub::{self, PowerState, StackHubApi, StackHubClient, VmAction},
};
use edgetrain_sandbox_azure::{IdentitySystem, TEST_SSH_PUBLIC_KEY};

fn tags() -> BTreeMap<String, String> {
    BTreeMap::from([("edgetrain.dev/owner".into(), "ns.train1".into())])
}

async fn create(hub: &StackHubClient, started: Started) {
    let status = sim::complete(started, |t| async move { hub.poll(&t).await }).await;
    assert_eq!(status, LroStatus::Succeeded);
}

async fn power_state(hub: &StackHubClient, vm: &str) -> PowerState {
    let view = hub.get_vm_instance_view(vm).await.unwrap().unwrap();
    PowerState::from_instance_view(&view)
}

#[tokio::test]
async fn network_and_vm_created_with_a_poller_token_that_survives_a_restart() {
    let sim = sim::start(Options::default()).await;
    let rg = sim::stack_hub_rg();
    let hub = sim::stack_hub(&sim, IdentitySystem::Aad).await;

    // NSG with one rule per allowed SSH source.
    let nsg_id = rg.nsg_id("train1-nsg").unwrap();
    let sources = ["10.0.0.0/8".to_string(), "203.0.113.7".to_string()];
    let nsg = stackhub::ssh_nsg_body("local", &sources, 22, &tags()).unwrap();
    create(&hub, hub.put_nsg(&nsg_id, &nsg).await.unwrap()).await;
    let got = hub.get_nsg(&nsg_id).await.unwrap().unwrap();
    let mut prefixes: Vec<_> = got
        .properties
        .security_rules
        .iter()
        .filter_map(|r| r.properties.source_address_prefix.clone())
        .collect();
    prefixes.sort();
    assert_eq!(prefixes, ["10.0.0.0/8", "203.0.113.7"]);

    // Vnet with its subnet, then a second subnet as a child resource.
    let vnet_id = rg.vnet_id("train1-vnet").unwrap();
    let vnet = stackhub::vnet_body(
        "local",
        "10.10.0.0/16",
        "default",
        "10.10.1.0/24",
        Some(&nsg_id),
        &tags(),
    )
    .unwrap();
    create(&hub, hub.put_vnet(&vnet_id, &vnet).await.unwrap()).await;
    let extra = rg.subnet_id("train1-vnet", "extra").unwrap();
    let subnet = stackhub::subnet_body("10.10.2.0/24", None).unwrap();
    create(&hub, hub.put_subnet(&extra, &subnet).await.unwrap()).await;
    let default_subnet = rg.subnet_id("train1-vnet", "default").unwrap();
    let got = hub.get_subnet(&default_subnet).await.unwrap().unwrap();
    assert_eq!(
        got.properties.address_prefix.as_deref(),
        Some("10.10.1.0/24")
    );

    // Public IP and NIC.
    let pip_id = rg.public_ip_id("train1-pip").unwrap();
    let pip = stackhub::public_ip_body("local", Some("train1"), &tags()).unwrap();
    create(&hub, hub.put_public_ip(&pip_id, &pip).await.unwrap()).await;
    let got = hub.get_public_ip(&pip_id).await.unwrap().unwrap();
    assert_eq!(
        got.resource.properties.ip_address.as_deref(),
        Some(sim.config().public_ip.to_string().as_str())
    );
    let nic_id = rg.nic_id("train1-nic").unwrap();
    let nic = stackhub::nic_body("local", &default_subnet, Some(&pip_id), None, &tags()).unwrap();
    create(&hub, hub.put_nic(&nic_id, &nic).await.unwrap()).await;
    let got = hub.get_nic(&nic_id).await.unwrap().unwrap();
    let ip = got.properties.ip_configurations[0]
        .properties
        .private_ip_address
        .clone();
    assert_eq!(ip.as_deref(), Some("10.10.1.4"));

    // The VM: start the create, keep only the serialised token, drop the client.
    let vm_id = rg.vm_id("train1").unwrap();
    let vm = stackhub::vm_body(&stackhub::VmSpec {
        location: "local".into(),
        computer_name: "train1".into(),
        size: "Standard_DS2_v2".into(),
        image: stackhub::ImageReference {
            publisher: Some("Canonical".into()),
            offer: Some("0001-com-ubuntu-server-jammy".into()),
            sku: Some("22_04-lts".into()),
            version: Some("latest".into()),
        },
        os_disk_size_gb: Some(64),
        os_disk_storage_type: Some("Standard_LRS".into()),
        admin_username: "azureuser".into(),
        ssh_public_key: TEST_SSH_PUBLIC_KEY.into(),
        cloud_init: Some("#cloud-config\npackages: [docker.io]\n".into()),
        nic_id: nic_id.clone(),
        tags: tags(),
    })
    .unwrap();
    let saved = match hub.put_vm(&vm_id, &vm).await.unwrap() {
        Started::Pending { token, .. } => serde_json::to_string(&token).unwrap(),
        Started::Done { status, .. } => panic!("VM create finished synchronously ({status})"),
    };
    // `Pending` means the create was still running when the client went away; it never polled.
    let polls_before_restart = sim.counters().get("GET", "Microsoft.Compute");
    drop(hub);

    // "Operator restart": a new client (new token cache, new discovery) resumes from status.
    let hub = sim::stack_hub(&sim, IdentitySystem::Aad).await;
    let token: LroToken = serde_json::from_str(&saved).unwrap();
    let status = sim::finish(&token, |t| {
        let hub = &hub;
        async move { hub.poll(&t).await }
    })
    .await;
    assert_eq!(status, LroStatus::Succeeded);
    assert!(sim.counters().get("GET", "Microsoft.Compute") > polls_before_restart);

    let got = hub.get_vm(&vm_id, true).await.unwrap().unwrap();
    assert_eq!(
        got.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(power_state(&hub, &vm_id).await, PowerState::Running);
    assert_eq!(
        sim.counters().get("PUT", "Microsoft.Compute"),
        1,
        "no second create"
    );
    let vms: Vec<_> = sim
        .inventory()
        .into_iter()
        .filter(|i| {
            i.resource_type
                .eq_ignore_ascii_case("Microsoft.Compute/virtualMachines")
        })
        .collect();
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert!(vms[0].id.eq_ignore_ascii_case(&vm_id));

    // Deallocate, then start again; the power state is read back each time.
    let started = hub.vm_action(&vm_id, VmAction::Deallocate).await.unwrap();
    create(&hub, started).await;
    assert_eq!(power_state(&hub, &vm_id).await, PowerState::Deallocated);
    // Resize while deallocated: a PATCH of the size alone, the rest of the VM untouched.
    let started = hub.patch_vm_size(&vm_id, "Standard_DS3_v2").await.unwrap();
    create(&hub, started).await;
    let resized = hub.get_vm(&vm_id, false).await.unwrap().unwrap();
    assert_eq!(
        resized
            .properties
            .hardware_profile
            .unwrap()
            .vm_size
            .as_deref(),
        Some("Standard_DS3_v2")
    );
    assert_eq!(resized.properties.os_profile, got.properties.os_profile);
    assert_eq!(sim.counters().get("PATCH", "Microsoft.Compute"), 1);
    let started = hub.vm_action(&vm_id, VmAction::Start).await.unwrap();
    create(&hub, started).await;
    assert_eq!(power_state(&hub, &vm_id).await, PowerState::Running);
    assert_eq!(sim.counters().get("PUT", "Microsoft.Compute"), 1);
}
