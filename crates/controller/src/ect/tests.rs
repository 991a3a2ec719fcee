//! Table-driven tests of the pure decision: observed state in, actions and progress out.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use edgetrain_api::{
    EdgeComputeTarget, EdgeComputeTargetStatus, ReconcilePolicy, common::PendingOperation,
    conditions::Progress,
};
use edgetrain_azure::{
    ml::{Compute, ComputeResource, VirtualMachineSchemaProperties, VirtualMachineSshCredentials},
    stackhub::{InstanceViewStatus, VirtualMachine, VirtualMachineInstanceView},
};
use serde_json::json;

use crate::runtime::status::ConditionState;

use super::{
    decide::{Action, Cleanup, Input, Observed, Remaining, decide, decide_cleanup, idle_decision},
    desired::{Desired, desired},
};

fn ect() -> EdgeComputeTarget {
    serde_json::from_value(json!({
        "apiVersion": "edgetrain.dev/v1alpha1", "kind": "EdgeComputeTarget",
        "metadata": {"name": "edge", "namespace": "ml", "generation": 3},
        "spec": {
            "stackHub": {"armEndpoint": "https://management.local.azurestack.external", "location": "local",
                "subscriptionId": "00000000-0000-0000-0000-0000000000aa", "resourceGroup": "rg1",
                "credentialsSecretRef": {"name": "hub"}},
            "vm": {"size": "Standard_DS2_v2", "adminUsername": "azureuser", "publicIP": true,
                "image": {"publisher": "Canonical", "offer": "ubuntu", "sku": "22_04-lts", "version": "latest"},
                "network": {},
                "allowedSshSources": ["203.0.113.0/24"]},
            "azureML": {"armEndpoint": "https://management.azure.com", "subscriptionId": "00000000-0000-0000-0000-0000000000bb",
                "resourceGroup": "mlrg", "workspace": "ws1", "computeName": "edge", "credentialsSecretRef": {"name": "ml"}}
        }
    }))
    .unwrap()
}

fn want() -> Desired {
    desired(&ect(), "ssh-ed25519 AAAA test").unwrap()
}

fn vm(size: &str, power: &str, state: &str) -> VirtualMachine {
    let mut vm = want().vm_body().unwrap();
    vm.properties.hardware_profile.as_mut().unwrap().vm_size = Some(size.into());
    vm.properties.provisioning_state = Some(state.into());
    vm.properties.instance_view = Some(VirtualMachineInstanceView {
        computer_name: None,
        statuses: vec![InstanceViewStatus {
            code: Some(format!("PowerState/{power}")),
            ..Default::default()
        }],
    });
    vm
}

fn compute(address: &str, state: &str) -> ComputeResource {
    ComputeResource {
        id: None,
        name: None,
        location: None,
        tags: Some(want().tags),
        properties: Compute {
            compute_type: "VirtualMachine".into(),
            description: None,
            resource_id: None,
            provisioning_state: Some(state.into()),
            provisioning_errors: None,
            is_attached_compute: Some(true),
            properties: Some(VirtualMachineSchemaProperties {
                virtual_machine_size: None,
                ssh_port: Some(22),
                address: Some(address.into()),
                administrator_account: Some(VirtualMachineSshCredentials {
                    username: Some("azureuser".into()),
                    password: None,
                    public_key_data: None,
                    private_key_data: None,
                }),
            }),
        },
    }
}

/// Network pieces as Azure returns them after creation.
fn network() -> Observed {
    let d = want();
    let mut pip = d.public_ip.clone().unwrap();
    pip.resource.properties.ip_address = Some("192.0.2.10".into());
    let mut nic = d.nic.clone();
    nic.properties.ip_configurations[0]
        .properties
        .private_ip_address = Some("10.20.0.4".into());
    Observed {
        nsg: Some(d.nsg.clone()),
        vnet: d.vnet.clone(),
        public_ip: Some(pip),
        nic: Some(nic),
        ..Default::default()
    }
}

fn all_ready() -> Observed {
    Observed {
        vm: Some(vm("Standard_DS2_v2", "running", "Succeeded")),
        compute: Some(compute("192.0.2.10", "Succeeded")),
        ..network()
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn pending(id: &str) -> PendingOperation {
    PendingOperation {
        resource_id: id.into(),
        action: "put".into(),
        poller: "{}".into(),
        started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ),
    }
}

fn run(
    observed: Observed,
    policy: ReconcilePolicy,
    idle: Option<Duration>,
    status: EdgeComputeTargetStatus,
) -> (Vec<Action>, &'static str, String) {
    let d = want();
    let input = Input {
        generation: Some(3),
        policy,
        desired: &d,
        compute_id: "/ws/computes/edge".into(),
        admin_username: "azureuser",
        idle_timeout: idle,
        status: &status,
        now: now(),
        reach_via: Default::default(),
        adopt: false,
    };
    let plan = decide(&input, &observed);
    let (kind, reason) = match plan.progress {
        Progress::Ready { reason, .. } => ("Ready", reason),
        Progress::InProgress { reason, .. } => ("InProgress", reason),
        Progress::Stalled { reason, .. } => ("Stalled", reason),
    };
    (plan.actions, kind, reason)
}

/// (name, observed, policy, expected actions, progress kind, reason).
type Case = (
    &'static str,
    Observed,
    ReconcilePolicy,
    Vec<Action>,
    &'static str,
    &'static str,
);

#[test]
fn decisions_for_each_observed_state() {
    let d = want();
    let mut nsg_drift = all_ready();
    nsg_drift.nsg.as_mut().unwrap().properties.security_rules[0]
        .properties
        .source_address_prefix = Some("0.0.0.0/0".into());
    let mut no_nic = network();
    no_nic.nic = None;
    let mut vm_pending = network();
    vm_pending.pending = vec![pending(&d.ids.vm)];
    let mut creating = network();
    creating.vm = Some(vm("Standard_DS2_v2", "starting", "Creating"));
    let resize_running = Observed {
        vm: Some(vm("Standard_DS3_v2", "running", "Succeeded")),
        ..all_ready()
    };
    let resize_deallocated = Observed {
        vm: Some(vm("Standard_DS3_v2", "deallocated", "Succeeded")),
        ..all_ready()
    };
    let deallocated = Observed {
        vm: Some(vm("Standard_DS2_v2", "deallocated", "Succeeded")),
        ..all_ready()
    };
    let no_compute = Observed {
        compute: None,
        ..all_ready()
    };
    let moved = Observed {
        compute: Some(compute("192.0.2.99", "Succeeded")),
        ..all_ready()
    };
    let failed = Observed {
        compute: Some(compute("192.0.2.10", "Failed")),
        ..all_ready()
    };
    let attaching = Observed {
        compute: Some(compute("192.0.2.10", "Creating")),
        ..all_ready()
    };
    let manage = ReconcilePolicy::Manage;
    let observe = ReconcilePolicy::Observe;
    let none = EdgeComputeTargetStatus::default;
    let cases: Vec<Case> = vec![
        (
            "nothing exists",
            Observed::default(),
            manage,
            vec![Action::PutNsg, Action::PutVnet, Action::PutPublicIp],
            "InProgress",
            "ProvisioningNetwork",
        ),
        (
            "NSG drifted",
            nsg_drift,
            manage,
            vec![Action::PutNsg],
            "InProgress",
            "ProvisioningNetwork",
        ),
        (
            "NIC missing",
            no_nic,
            manage,
            vec![Action::PutNic],
            "InProgress",
            "ProvisioningNetwork",
        ),
        (
            "VM missing",
            network(),
            manage,
            vec![Action::PutVm],
            "InProgress",
            "ProvisioningVM",
        ),
        (
            "VM PUT pending",
            vm_pending,
            manage,
            vec![],
            "InProgress",
            "ProvisioningVM",
        ),
        (
            "VM creating",
            creating,
            manage,
            vec![],
            "InProgress",
            "ProvisioningVM",
        ),
        (
            "resize while running",
            resize_running,
            manage,
            vec![Action::DeallocateVm],
            "InProgress",
            "Resizing",
        ),
        (
            "resize when deallocated",
            resize_deallocated,
            manage,
            vec![Action::ResizeVm],
            "InProgress",
            "Resizing",
        ),
        (
            "deallocated without idle timeout",
            deallocated,
            manage,
            vec![Action::StartVm],
            "InProgress",
            "StartingVM",
        ),
        (
            "compute missing",
            no_compute.clone(),
            manage,
            vec![Action::AttachCompute {
                address: "192.0.2.10".into(),
            }],
            "InProgress",
            "AttachingCompute",
        ),
        (
            "compute at another address",
            moved,
            manage,
            vec![Action::AttachCompute {
                address: "192.0.2.10".into(),
            }],
            "InProgress",
            "AttachingCompute",
        ),
        (
            "compute attaching",
            attaching,
            manage,
            vec![],
            "InProgress",
            "AttachingCompute",
        ),
        (
            "compute failed: attached again (bounded, see the retry test)",
            failed,
            manage,
            vec![Action::AttachCompute {
                address: "192.0.2.10".into(),
            }],
            "InProgress",
            "AttachingCompute",
        ),
        (
            "everything in place",
            all_ready(),
            manage,
            vec![],
            "Ready",
            "Ready",
        ),
        (
            "observe: nothing exists",
            Observed::default(),
            observe,
            vec![],
            "Stalled",
            "ObservedDrift",
        ),
        (
            "observe: compute missing",
            no_compute,
            observe,
            vec![],
            "Stalled",
            "ComputeNotFound",
        ),
        (
            "observe: everything in place",
            all_ready(),
            observe,
            vec![],
            "Ready",
            "Ready",
        ),
    ];
    for (name, observed, policy, actions, kind, reason) in cases {
        let got = run(observed, policy, None, none());
        assert_eq!(got.0, actions, "{name}: actions");
        assert_eq!((got.1, got.2.as_str()), (kind, reason), "{name}: progress");
    }
}

#[test]
fn idle_timeout_deallocates_and_an_active_run_keeps_the_vm() {
    let hour_ago = now() - chrono::Duration::hours(1);
    let status = EdgeComputeTargetStatus {
        last_active_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(hour_ago.timestamp()).unwrap(),
        )),
        ..Default::default()
    };
    let idle = Some(Duration::from_secs(1800));
    let got = run(all_ready(), ReconcilePolicy::Manage, idle, status.clone());
    assert_eq!(got.0, vec![Action::DeallocateVm]);
    assert_eq!(got.2, "Idle");

    let busy = Observed {
        active_runs: 1,
        ..all_ready()
    };
    let got = run(busy, ReconcilePolicy::Manage, idle, status.clone());
    assert_eq!((got.0, got.1), (vec![], "Ready"));

    // A run arrives at a deallocated VM: start it.
    let woken = Observed {
        active_runs: 1,
        vm: Some(vm("Standard_DS2_v2", "deallocated", "Succeeded")),
        ..all_ready()
    };
    let got = run(woken, ReconcilePolicy::Manage, idle, status);
    assert_eq!(got.0, vec![Action::StartVm]);
}

#[test]
fn a_running_vm_operation_is_reported_by_what_it_is_for() {
    let hour_ago = now() - chrono::Duration::hours(1);
    let status = EdgeComputeTargetStatus {
        last_active_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(hour_ago.timestamp()).unwrap(),
        )),
        ..Default::default()
    };
    let idle = Some(Duration::from_secs(1800));
    let vm_id = want().ids.vm;
    let op = |action: &str| PendingOperation {
        action: action.into(),
        ..pending(&vm_id)
    };
    // The deallocation finished between its poll (still running) and the VM's read.
    let observed = |action: &str, runs: usize, size: &str, power: &str, state: &str| Observed {
        pending: vec![op(action)],
        active_runs: runs,
        vm: Some(vm(size, power, state)),
        ..all_ready()
    };
    let cases = [
        (
            observed(
                "deallocate",
                0,
                "Standard_DS2_v2",
                "deallocated",
                "Succeeded",
            ),
            "Idle",
        ),
        (
            observed(
                "deallocate",
                0,
                "Standard_DS2_v2",
                "deallocating",
                "Updating",
            ),
            "Idle",
        ),
        (
            observed(
                "deallocate",
                1,
                "Standard_DS2_v2",
                "deallocating",
                "Updating",
            ),
            "StartingVM",
        ),
        (
            observed(
                "deallocate",
                0,
                "Standard_DS3_v2",
                "deallocating",
                "Updating",
            ),
            "Resizing",
        ),
        (
            observed("resize", 0, "Standard_DS3_v2", "deallocated", "Updating"),
            "Resizing",
        ),
        (
            observed("start", 1, "Standard_DS2_v2", "starting", "Updating"),
            "StartingVM",
        ),
        (
            observed("put", 1, "Standard_DS2_v2", "running", "Creating"),
            "ProvisioningVM",
        ),
    ];
    for (obs, want_reason) in cases {
        let got = run(obs, ReconcilePolicy::Manage, idle, status.clone());
        assert_eq!(
            (got.0, got.1, got.2.as_str()),
            (vec![], "InProgress", want_reason)
        );
    }
}

#[test]
fn last_active_time_is_refreshed_coarsely() {
    let t0 = now();
    // Never active: counts from now, not idle.
    assert_eq!(
        idle_decision(0, None, Some(Duration::from_secs(300)), t0),
        (false, t0)
    );
    // Active 30 s after the last refresh: unchanged (no status churn).
    let t30 = t0 + chrono::Duration::seconds(30);
    assert_eq!(
        idle_decision(1, Some(t0), Some(Duration::from_secs(300)), t30),
        (false, t0)
    );
    // Active 2 min later: refreshed.
    let t120 = t0 + chrono::Duration::seconds(120);
    assert_eq!(
        idle_decision(1, Some(t0), Some(Duration::from_secs(300)), t120),
        (false, t120)
    );
    // Inactive past the timeout: idle.
    let t400 = t0 + chrono::Duration::seconds(400);
    assert_eq!(
        idle_decision(0, Some(t0), Some(Duration::from_secs(300)), t400),
        (true, t0)
    );
    // No idle timeout: never idle.
    assert!(!idle_decision(0, Some(t0), None, t400 + chrono::Duration::days(9)).0);
}

#[test]
fn cleanup_order_and_404_means_done() {
    let ids = want().ids;
    let ok = |id: &str| Some((id.to_string(), "Succeeded".to_string()));
    let leaves = |state: &str| {
        vec![
            (ids.public_ip.clone().unwrap(), state.to_string()),
            (ids.nsg.clone(), state.to_string()),
            (ids.vnet.clone().unwrap(), state.to_string()),
        ]
    };
    let cases = vec![
        (
            "compute first",
            Remaining {
                compute: Some("Succeeded".into()),
                vm: ok(&ids.vm),
                nic: ok(&ids.nic),
                leaves: leaves("Succeeded"),
                ..Default::default()
            },
            Cleanup::DetachCompute,
        ),
        (
            "detach in progress",
            Remaining {
                compute: Some("Deleting".into()),
                vm: ok(&ids.vm),
                nic: ok(&ids.nic),
                ..Default::default()
            },
            Cleanup::Wait("Azure ML compute".into()),
        ),
        (
            "then the VM",
            Remaining {
                vm: ok(&ids.vm),
                nic: ok(&ids.nic),
                leaves: leaves("Succeeded"),
                ..Default::default()
            },
            Cleanup::Delete(vec![ids.vm.clone()]),
        ),
        (
            "then the NIC",
            Remaining {
                nic: ok(&ids.nic),
                leaves: leaves("Succeeded"),
                ..Default::default()
            },
            Cleanup::Delete(vec![ids.nic.clone()]),
        ),
        (
            "then the rest together",
            Remaining {
                leaves: leaves("Succeeded"),
                ..Default::default()
            },
            Cleanup::Delete(vec![
                ids.public_ip.clone().unwrap(),
                ids.nsg.clone(),
                ids.vnet.clone().unwrap(),
            ]),
        ),
        (
            "waiting for deletes",
            Remaining {
                leaves: leaves("Deleting"),
                ..Default::default()
            },
            Cleanup::Wait(ids.public_ip.clone().unwrap()),
        ),
        (
            "what is not ours is never deleted",
            Remaining {
                foreign: vec![ids.vm.clone()],
                ..Default::default()
            },
            Cleanup::Done,
        ),
        ("all 404", Remaining::default(), Cleanup::Done),
    ];
    for (name, remaining, want) in cases {
        assert_eq!(decide_cleanup(&remaining), want, "{name}");
    }
}

#[test]
fn desired_names_and_bodies() {
    let d = want();
    assert!(
        d.ids.vm.ends_with("/virtualMachines/ml-edge-vm"),
        "{}",
        d.ids.vm
    );
    assert!(
        d.ids
            .subnet
            .ends_with("/virtualNetworks/ml-edge-vnet/subnets/default")
    );
    let body = serde_json::to_value(d.vm_body().unwrap()).unwrap();
    let os = &body["properties"]["osProfile"];
    assert_eq!(
        os["linuxConfiguration"]["disablePasswordAuthentication"],
        true
    );
    assert_eq!(
        os["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"],
        "ssh-ed25519 AAAA test"
    );
    use base64::Engine;
    let ci = base64::engine::general_purpose::STANDARD
        .decode(os["customData"].as_str().unwrap())
        .unwrap();
    let ci = String::from_utf8(ci).unwrap();
    assert!(
        ci.starts_with("#cloud-config") && ci.contains("docker.io"),
        "{ci}"
    );

    let mut with_subnet = ect();
    with_subnet.spec.vm.network.subnet_id = Some(
        "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/shared/subnets/a".into(),
    );
    with_subnet.spec.vm.cloud_init = Some("#cloud-config\npackages: [htop]\n".into());
    let d = desired(&with_subnet, "k").unwrap();
    assert_eq!(d.ids.vnet, None, "no vnet of our own with a given subnet");
    assert!(
        d.vm.cloud_init
            .as_deref()
            .unwrap()
            .contains("multipart/mixed")
    );
    assert!(
        d.vm.cloud_init
            .as_deref()
            .unwrap()
            .contains("packages: [htop]")
    );

    let mut long = ect();
    long.metadata.name = Some("x".repeat(60));
    assert!(desired(&long, "k").is_err());
}

fn plan_with(
    observed: &Observed,
    status: &EdgeComputeTargetStatus,
    d: &Desired,
    tweak: impl FnOnce(&mut Input<'_>),
) -> super::decide::Plan {
    let mut input = Input {
        generation: Some(3),
        policy: ReconcilePolicy::Manage,
        desired: d,
        compute_id: "/ws/computes/edge".into(),
        admin_username: "azureuser",
        idle_timeout: None,
        status,
        now: now(),
        reach_via: Default::default(),
        adopt: false,
    };
    tweak(&mut input);
    decide(&input, observed)
}

fn reason(p: &Progress) -> (&'static str, &str, &str) {
    match p {
        Progress::Ready { reason, message } => ("Ready", reason, message),
        Progress::InProgress { reason, message } => ("InProgress", reason, message),
        Progress::Stalled { reason, message } => ("Stalled", reason, message),
    }
}

fn at(t: DateTime<Utc>) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    crate::runtime::operations::to_time(t)
}

#[test]
fn failed_provisioning_is_retried_with_backoff_then_stalled_with_azures_error() {
    use super::decide::{FAILED_RETRY_BASE, MAX_FAILED_RETRIES};
    use crate::runtime::operations::FailedOperation;
    use edgetrain_api::edge_compute_target::ProvisioningFailure;
    let d = want();
    let failed_vm = Observed {
        vm: Some(vm("Standard_DS2_v2", "starting", "Failed")),
        failures: vec![FailedOperation {
            resource_id: d.ids.vm.clone(),
            action: "put".into(),
            error: Some(Box::new(edgetrain_azure::arm::ArmError::from_response(
                http::StatusCode::OK,
                &http::HeaderMap::new(),
                br#"{"error": {"code": "AllocationFailed", "message": "no capacity on the stamp"}}"#,
            ))),
        }],
        ..network()
    };
    // First sight of the failure: Azure's error is kept, the VM is written again at once.
    let plan = plan_with(&failed_vm, &Default::default(), &d, |_| {});
    assert_eq!(plan.actions, vec![Action::PutVm]);
    assert_eq!(reason(&plan.progress).0, "InProgress");
    let f = &plan.status.provisioning_failures[0];
    assert_eq!(
        (f.code.as_deref(), f.retries),
        (Some("AllocationFailed"), 1)
    );
    assert!(
        plan.vm_ready.message.contains("retrying"),
        "{:?}",
        plan.vm_ready
    );

    // Still Failed within the backoff: no write, not "busy" but a retry countdown.
    let record = |retries: u32, ago: chrono::Duration| EdgeComputeTargetStatus {
        provisioning_failures: vec![ProvisioningFailure {
            resource_id: d.ids.vm.clone(),
            code: Some("AllocationFailed".into()),
            message: Some("no capacity on the stamp".into()),
            retries,
            last_retry: Some(at(now() - ago)),
        }],
        observed_generation: Some(3),
        ..Default::default()
    };
    let still = Observed {
        failures: vec![],
        ..failed_vm.clone()
    };
    let plan = plan_with(&still, &record(1, chrono::Duration::seconds(1)), &d, |_| {});
    assert_eq!(plan.actions, vec![]);
    let (kind, _, msg) = reason(&plan.progress);
    assert_eq!(kind, "InProgress");
    assert!(msg.contains("AllocationFailed"), "{msg}");
    // After the backoff: the next retry.
    let waited = chrono::Duration::from_std(FAILED_RETRY_BASE * 2).unwrap();
    let plan = plan_with(&still, &record(1, waited), &d, |_| {});
    assert_eq!(plan.actions, vec![Action::PutVm]);
    assert_eq!(plan.status.provisioning_failures[0].retries, 2);
    // Retries used up: Stalled with Azure's code and message, and no write.
    let plan = plan_with(
        &still,
        &record(MAX_FAILED_RETRIES, chrono::Duration::hours(1)),
        &d,
        |_| {},
    );
    assert_eq!(plan.actions, vec![]);
    let (kind, reason_, msg) = reason(&plan.progress);
    assert_eq!((kind, reason_), ("Stalled", "ProvisioningFailed"));
    assert!(
        msg.contains("AllocationFailed") && msg.contains("no capacity"),
        "{msg}"
    );
    // A spec change (new generation) earns a fresh set of retries.
    let edited = EdgeComputeTargetStatus {
        observed_generation: Some(2),
        ..record(MAX_FAILED_RETRIES, chrono::Duration::hours(1))
    };
    let plan = plan_with(&still, &edited, &d, |_| {});
    assert_eq!(plan.actions, vec![Action::PutVm]);
    assert_eq!(plan.status.provisioning_failures[0].retries, 1);

    // A failed attach is bounded the same way, across reconciles without new failures.
    let failed_compute = Observed {
        compute: Some(compute("192.0.2.10", "Failed")),
        ..all_ready()
    };
    let exhausted = EdgeComputeTargetStatus {
        provisioning_failures: vec![ProvisioningFailure {
            resource_id: "/ws/computes/edge".into(),
            retries: MAX_FAILED_RETRIES,
            ..Default::default()
        }],
        observed_generation: Some(3),
        ..Default::default()
    };
    let plan = plan_with(&failed_compute, &exhausted, &d, |_| {});
    assert_eq!(plan.actions, vec![]);
    assert_eq!(reason(&plan.progress).1, "AttachFailed");
    assert_eq!(plan.status.provisioning_failures.len(), 1);

    // A failed network piece is written again too, and once it succeeds the record is gone.
    let mut nsg_failed = network();
    nsg_failed
        .nsg
        .as_mut()
        .unwrap()
        .properties
        .provisioning_state = Some("Failed".into());
    let plan = plan_with(&nsg_failed, &Default::default(), &d, |_| {});
    assert_eq!(plan.actions, vec![Action::PutNsg]);
    let plan = plan_with(
        &all_ready(),
        &record(2, chrono::Duration::hours(1)),
        &d,
        |_| {},
    );
    assert!(plan.status.provisioning_failures.is_empty());
    assert_eq!(reason(&plan.progress).0, "Ready");
}

#[test]
fn resources_of_another_owner_are_never_taken_over() {
    let d = want();
    let mut foreign_vm = all_ready();
    let tags = &mut foreign_vm.vm.as_mut().unwrap().tags;
    tags.insert(super::desired::OWNER_TAG.into(), "other/edge".into());
    let plan = plan_with(&foreign_vm, &Default::default(), &d, |_| {});
    assert_eq!(plan.actions, vec![]);
    let (kind, r, msg) = reason(&plan.progress);
    assert_eq!((kind, r), ("Stalled", "NotOwned"));
    assert!(msg.contains("virtualMachines/ml-edge-vm"), "{msg}");
    // Explicit adoption takes it over.
    let plan = plan_with(&foreign_vm, &Default::default(), &d, |i| i.adopt = true);
    assert_eq!(reason(&plan.progress).0, "Ready");

    // A compute with our name but another owner (e.g. another namespace's target).
    let mut other = all_ready();
    other.compute.as_mut().unwrap().tags = None;
    other.vm = Some(vm("Standard_DS2_v2", "running", "Succeeded"));
    let plan = plan_with(&other, &Default::default(), &d, |_| {});
    assert_eq!(reason(&plan.progress).1, "NotOwned");
    assert_eq!(plan.actions, vec![]);
    // A compute of another type is never overwritten, adoption or not.
    let mut aks = all_ready();
    aks.compute.as_mut().unwrap().properties.compute_type = "AKS".into();
    let plan = plan_with(&aks, &Default::default(), &d, |i| i.adopt = true);
    assert_eq!(
        reason(&plan.progress),
        ("Stalled", "NotOwned", plan_msg(&plan))
    );
    assert_eq!(plan.actions, vec![]);
}

fn plan_msg(plan: &super::decide::Plan) -> &str {
    reason(&plan.progress).2
}

#[test]
fn the_compute_address_is_the_one_reach_via_names_never_a_fallback() {
    use edgetrain_api::edge_compute_target::ReachVia;
    let no_compute = Observed {
        compute: None,
        ..all_ready()
    };
    let d = want();
    let plan = plan_with(&no_compute, &Default::default(), &d, |_| {});
    assert_eq!(
        plan.actions,
        vec![Action::AttachCompute {
            address: "192.0.2.10".into()
        }]
    );
    let plan = plan_with(&no_compute, &Default::default(), &d, |i| {
        i.reach_via = ReachVia::Private
    });
    assert_eq!(
        plan.actions,
        vec![Action::AttachCompute {
            address: "10.20.0.4".into()
        }]
    );
    // No public IP in the spec and reachVia Public: a clear condition, not the private IP.
    let mut private_only = ect();
    private_only.spec.vm.public_ip = false;
    let d = desired(&private_only, "k").unwrap();
    let mut obs = no_compute.clone();
    obs.public_ip = None;
    obs.nic.as_mut().unwrap().properties.ip_configurations[0]
        .properties
        .public_ip_address = None;
    let plan = plan_with(&obs, &Default::default(), &d, |_| {});
    assert_eq!(plan.actions, vec![]);
    assert_eq!(reason(&plan.progress).1, "NoPublicAddress");
    let plan = plan_with(&obs, &Default::default(), &d, |i| {
        i.reach_via = ReachVia::Private
    });
    assert_eq!(
        plan.actions,
        vec![Action::AttachCompute {
            address: "10.20.0.4".into()
        }]
    );
}

#[test]
fn created_resources_are_recorded_and_drive_cleanup() {
    let d = want();
    // Creating records what is created.
    let plan = plan_with(&Observed::default(), &Default::default(), &d, |_| {});
    let pip = d.ids.public_ip.clone().unwrap();
    assert!(plan.status.created_resources.contains(&d.ids.nsg));
    assert!(plan.status.created_resources.contains(&pip));

    // Our VM's managed OS disk (as the VM reports it) is recorded: it outlives the VM.
    let disk = "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Compute/disks/vm_OsDisk_1_a";
    let mut with_disk = all_ready();
    let os = with_disk
        .vm
        .as_mut()
        .unwrap()
        .properties
        .storage_profile
        .as_mut();
    os.unwrap()
        .os_disk
        .as_mut()
        .unwrap()
        .managed_disk
        .get_or_insert_default()
        .id = Some(disk.into());
    let plan = plan_with(&with_disk, &Default::default(), &d, |_| {});
    assert!(plan.status.created_resources.iter().any(|c| c == disk));
    // A VM of another owner: its disk is not ours to record.
    let tags = &mut with_disk.vm.as_mut().unwrap().tags;
    tags.insert(super::desired::OWNER_TAG.into(), "other/edge".into());
    let plan = plan_with(&with_disk, &Default::default(), &d, |_| {});
    assert!(!plan.status.created_resources.iter().any(|c| c == disk));

    // A target whose spec never became valid (or that never created anything): nothing to do.
    let mut never = ect();
    never.metadata.name = Some("x".repeat(60));
    assert!(super::desired::cleanup_ids(&never).is_empty());
    assert!(super::desired::cleanup_ids(&ect()).is_empty());

    // Public IP created under an earlier spec, spec now without one: still deleted.
    let mut later = ect();
    later.spec.vm.public_ip = false;
    later.status = Some(EdgeComputeTargetStatus {
        created_resources: vec![d.ids.nsg.clone()],
        ..Default::default()
    });
    let ids = super::desired::cleanup_ids(&later);
    assert!(ids.contains(&pip), "{ids:?}");
    assert!(ids.contains(&d.ids.vm) && ids.contains(&d.ids.vnet.clone().unwrap()));
}

#[test]
fn only_stalls_that_wait_for_a_change_are_gated() {
    let d = want();
    // From the decision: a foreign owner is gated (no Azure call until a change)...
    let mut foreign_vm = all_ready();
    let tags = &mut foreign_vm.vm.as_mut().unwrap().tags;
    tags.insert(super::desired::OWNER_TAG.into(), "other/edge".into());
    let plan = plan_with(&foreign_vm, &Default::default(), &d, |_| {});
    assert_eq!(plan.gated_stall().map(|(r, _)| r), Some("NotOwned"));
    // ...a Ready target is not.
    let plan = plan_with(&all_ready(), &Default::default(), &d, |_| {});
    assert_eq!(plan.gated_stall(), None);

    let with = |progress: Progress, actions: Vec<Action>, busy: bool| super::decide::Plan {
        actions,
        progress,
        vm_ready: ConditionState::met("Running", ""),
        compute_attached: ConditionState::met("Attached", ""),
        status: EdgeComputeTargetStatus {
            pending_operations: if busy { vec![pending("vm")] } else { vec![] },
            ..Default::default()
        },
    };
    for (progress, actions, busy, gated) in [
        (
            Progress::stalled("ProvisioningFailed", "m"),
            vec![],
            false,
            Some("ProvisioningFailed"),
        ),
        (
            Progress::stalled("NoPublicAddress", "m"),
            vec![],
            false,
            Some("NoPublicAddress"),
        ),
        (
            Progress::stalled("AttachFailed", "m"),
            vec![],
            false,
            Some("AttachFailed"),
        ),
        // Ends by an Azure-side change: read again at the resync.
        (Progress::stalled("ObservedDrift", "m"), vec![], false, None),
        // Something still to write or to follow: not settled.
        (
            Progress::stalled("NotOwned", "m"),
            vec![Action::PutNsg],
            false,
            None,
        ),
        (Progress::stalled("NotOwned", "m"), vec![], true, None),
        (
            Progress::in_progress("ProvisioningFailed", "m"),
            vec![],
            false,
            None,
        ),
    ] {
        let plan = with(progress.clone(), actions, busy);
        assert_eq!(plan.gated_stall().map(|(r, _)| r), gated, "{progress:?}");
    }
}

#[test]
fn a_pass_only_follows_operations_while_all_of_them_run_for_this_generation() {
    use crate::runtime::operations::Resumed;
    let (nsg, vnet) = ("/subscriptions/s/nsg", "/subscriptions/s/vnet");
    let status = |generation: i64, ops: &[&str]| EdgeComputeTargetStatus {
        observed_generation: Some(generation),
        pending_operations: ops.iter().map(|id| pending(id)).collect(),
        ..Default::default()
    };
    let polled = |still: &[&str], succeeded: &[&str]| Resumed {
        still_pending: still.iter().map(|id| pending(id)).collect(),
        succeeded: succeeded.iter().map(|id| pending(id)).collect(),
        ..Default::default()
    };
    let follow = super::decide::only_operations_to_follow;
    // Both network writes still running, status of this generation: no resource reads.
    assert!(follow(
        Some(3),
        &status(3, &[nsg, vnet]),
        &polled(&[nsg, vnet], &[])
    ));
    // One of them ended: read everything (the next write may be due).
    assert!(!follow(
        Some(3),
        &status(3, &[nsg, vnet]),
        &polled(&[vnet], &[nsg])
    ));
    // The spec changed since the status was written: read everything.
    assert!(!follow(
        Some(4),
        &status(3, &[nsg, vnet]),
        &polled(&[nsg, vnet], &[])
    ));
    // Nothing in flight: the ordinary full pass.
    assert!(!follow(Some(3), &status(3, &[]), &polled(&[], &[])));
}
