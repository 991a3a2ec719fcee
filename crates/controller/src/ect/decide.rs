//! The decision: observed state in, next actions and status out. No I/O, no clock: `now` is an
//! input. Each reconcile runs it once; the actions are started (never awaited) and the next
//! reconcile sees their effect.

use std::time::Duration;

use chrono::{DateTime, Utc};
use edgetrain_api::{
    EdgeComputeTargetStatus, ReconcilePolicy, common::PendingOperation, conditions::Progress,
    edge_compute_target::PowerState,
};
use edgetrain_azure::{
    ml::ComputeResource,
    stackhub::{
        self, NetworkInterface, NetworkSecurityGroup, PublicIpAddress, VirtualMachine,
        VirtualNetwork,
    },
};

use super::desired::Desired;
use crate::runtime::status::ConditionState;

/// A single Azure write the controller starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    PutNsg,
    PutVnet,
    PutPublicIp,
    PutNic,
    PutVm,
    /// Change the size of the existing (deallocated) VM: its own GET body with the new size, so
    /// that properties Azure refuses to change on update (osProfile) are sent back unchanged.
    ResizeVm,
    StartVm,
    DeallocateVm,
    /// Attach (or re-attach) the VM to Azure ML at this address.
    AttachCompute {
        address: String,
    },
}

impl Action {
    /// Name used in `PendingOperation.action` and events.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::PutNsg | Action::PutVnet | Action::PutPublicIp | Action::PutNic => "put",
            Action::PutVm => "put",
            Action::ResizeVm => "resize",
            Action::StartVm => "start",
            Action::DeallocateVm => "deallocate",
            Action::AttachCompute { .. } => "attach",
        }
    }
}

/// What was read from Azure and Kubernetes this reconcile.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub nsg: Option<NetworkSecurityGroup>,
    pub vnet: Option<VirtualNetwork>,
    pub public_ip: Option<PublicIpAddress>,
    pub nic: Option<NetworkInterface>,
    /// Read with its instance view (power state).
    pub vm: Option<VirtualMachine>,
    pub compute: Option<ComputeResource>,
    /// Operations still running after this reconcile's poll.
    pub pending: Vec<PendingOperation>,
    /// TrainingRuns referencing this target that are active (see docs/power-contract.md).
    pub active_runs: usize,
}

/// Inputs besides the observation.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub generation: Option<i64>,
    pub policy: ReconcilePolicy,
    pub desired: &'a Desired,
    pub compute_id: String,
    pub admin_username: &'a str,
    pub idle_timeout: Option<Duration>,
    pub status: &'a EdgeComputeTargetStatus,
    pub now: DateTime<Utc>,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub progress: Progress,
    /// `VMReady`.
    pub vm_ready: ConditionState,
    /// `ComputeAttached`.
    pub compute_attached: ConditionState,
    /// Status fields other than conditions (conditions are stamped by the caller).
    pub status: EdgeComputeTargetStatus,
}

/// `lastActiveTime` is refreshed at most this often, so an active run does not rewrite status
/// (and retrigger the watch) on every reconcile.
pub const ACTIVE_REFRESH: Duration = Duration::from_secs(60);

fn same_id(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

pub(super) fn succeeded(state: Option<&str>) -> bool {
    state.is_none_or(|s| s.eq_ignore_ascii_case("Succeeded"))
}

pub(super) fn is_pending(pending: &[PendingOperation], id: &str) -> bool {
    pending
        .iter()
        .any(|p| p.resource_id.eq_ignore_ascii_case(id))
}

/// NSG holds exactly the wanted SSH sources (rule names and priorities may differ).
pub fn nsg_matches(observed: &NetworkSecurityGroup, wanted_sources: &[String]) -> bool {
    let mut have: Vec<String> = observed
        .properties
        .security_rules
        .iter()
        .filter(|r| {
            r.properties.access.eq_ignore_ascii_case("Allow")
                && r.properties.direction.eq_ignore_ascii_case("Inbound")
        })
        .filter_map(|r| r.properties.source_address_prefix.clone())
        .collect();
    let mut want = wanted_sources.to_vec();
    have.sort();
    want.sort();
    have == want
}

pub fn vnet_matches(observed: &VirtualNetwork, prefix: &str) -> bool {
    let space_ok = observed
        .properties
        .address_space
        .as_ref()
        .is_some_and(|s| s.address_prefixes.iter().any(|p| p == prefix));
    let subnet_ok = observed.properties.subnets.iter().any(|s| {
        s.name.as_deref() == Some(super::desired::SUBNET_NAME)
            && s.properties.address_prefix.as_deref() == Some(prefix)
    });
    space_ok && subnet_ok
}

pub fn nic_matches(observed: &NetworkInterface, desired: &NetworkInterface) -> bool {
    let ipc = |n: &NetworkInterface| n.properties.ip_configurations.first().cloned();
    let (Some(o), Some(d)) = (ipc(observed), ipc(desired)) else {
        return false;
    };
    let id = |s: &Option<stackhub::SubResource>| s.as_ref().and_then(|s| s.id.clone());
    same_id(
        id(&o.properties.subnet).as_deref(),
        id(&d.properties.subnet).as_deref(),
    ) && same_id(
        id(&o.properties.public_ip_address).as_deref(),
        id(&d.properties.public_ip_address).as_deref(),
    ) && same_id(
        id(&observed.properties.network_security_group).as_deref(),
        id(&desired.properties.network_security_group).as_deref(),
    )
}

pub fn vm_size(vm: &VirtualMachine) -> Option<&str> {
    vm.properties
        .hardware_profile
        .as_ref()
        .and_then(|h| h.vm_size.as_deref())
}

pub fn power_state(vm: &VirtualMachine) -> PowerState {
    match vm.properties.instance_view.as_ref() {
        None => PowerState::Unknown,
        Some(iv) => match stackhub::PowerState::from_instance_view(iv) {
            stackhub::PowerState::Starting => PowerState::Starting,
            stackhub::PowerState::Running => PowerState::Running,
            stackhub::PowerState::Stopping => PowerState::Stopping,
            stackhub::PowerState::Stopped => PowerState::Stopped,
            stackhub::PowerState::Deallocating => PowerState::Deallocating,
            stackhub::PowerState::Deallocated => PowerState::Deallocated,
            stackhub::PowerState::Unknown(_) => PowerState::Unknown,
        },
    }
}

/// The NIC's private address, and the public IP's address.
fn addresses(observed: &Observed) -> (Option<String>, Option<String>) {
    let private = observed.nic.as_ref().and_then(|n| {
        n.properties
            .ip_configurations
            .first()
            .and_then(|c| c.properties.private_ip_address.clone())
    });
    let public = observed
        .public_ip
        .as_ref()
        .and_then(|p| p.resource.properties.ip_address.clone());
    (private, public)
}

/// Whether the idle timeout says the VM may be deallocated, and the new `lastActiveTime`.
pub fn idle_decision(
    active_runs: usize,
    last_active: Option<DateTime<Utc>>,
    idle_timeout: Option<Duration>,
    now: DateTime<Utc>,
) -> (bool, DateTime<Utc>) {
    // A target that never saw a run counts as active since it was first reconciled.
    let mut last = last_active.unwrap_or(now);
    if active_runs > 0 && (now - last).to_std().unwrap_or_default() >= ACTIVE_REFRESH {
        last = now;
    }
    let idle = match idle_timeout {
        None => false,
        Some(t) => active_runs == 0 && (now - last).to_std().unwrap_or_default() >= t,
    };
    (idle, last)
}

fn wait(plan: &mut Plan, reason: &'static str, message: String) {
    plan.progress = Progress::in_progress(reason, message);
}

/// Decides the next step towards the spec. Writes are never planned under `observe`.
pub fn decide(input: &Input<'_>, observed: &Observed) -> Plan {
    let d = input.desired;
    let ids = &d.ids;
    let mut status = input.status.clone();
    status.pending_operations = observed.pending.clone();
    let (private_ip, public_ip) = addresses(observed);
    status.private_ip = private_ip.clone();
    status.public_ip = public_ip.clone();
    status.vm_resource_id = observed.vm.as_ref().map(|_| ids.vm.clone());
    status.power_state = observed.vm.as_ref().map(power_state);
    status.vm_size = observed
        .vm
        .as_ref()
        .and_then(|v| vm_size(v).map(String::from));
    status.compute_id = observed.compute.as_ref().map(|_| input.compute_id.clone());
    status.compute_provisioning_state = observed
        .compute
        .as_ref()
        .and_then(|c| c.properties.provisioning_state.clone());
    let (idle, last_active) = idle_decision(
        observed.active_runs,
        input
            .status
            .last_active_time
            .as_ref()
            .map(|t| DateTime::<Utc>::from_timestamp_nanos(t.0.as_nanosecond() as i64)),
        input.idle_timeout,
        input.now,
    );
    status.last_active_time = input.idle_timeout.map(|_| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_nanosecond(
                last_active.timestamp_nanos_opt().unwrap_or_default() as i128,
            )
            .unwrap_or_default(),
        )
    });

    let mut plan = Plan {
        actions: Vec::new(),
        progress: Progress::in_progress("Provisioning", "creating network resources"),
        vm_ready: ConditionState::unmet("Provisioning", "VM not created yet"),
        compute_attached: ConditionState::unmet("WaitingForVM", "waiting for the VM"),
        status,
    };
    let manage = input.policy == ReconcilePolicy::Manage;

    // 1. Network pieces without dependencies between them.
    let mut network_ready = true;
    let mut missing = Vec::new();
    let mut step = |id: &str, ok: bool, exists: bool, state_ok: bool, action: Action, what| {
        if is_pending(&observed.pending, id) || (exists && !state_ok) {
            network_ready = false;
        } else if !ok {
            network_ready = false;
            missing.push(what);
            if manage {
                plan.actions.push(action);
            }
        }
    };
    let nsg = observed.nsg.as_ref();
    step(
        &ids.nsg,
        nsg.is_some_and(|n| nsg_matches(n, &d.nsg_sources)),
        nsg.is_some(),
        succeeded(nsg.and_then(|n| n.properties.provisioning_state.as_deref())),
        Action::PutNsg,
        "network security group",
    );
    if let (Some(vnet_id), Some(prefix)) = (&ids.vnet, &d.address_prefix) {
        let vnet = observed.vnet.as_ref();
        step(
            vnet_id,
            vnet.is_some_and(|v| vnet_matches(v, prefix)),
            vnet.is_some(),
            succeeded(vnet.and_then(|v| v.properties.provisioning_state.as_deref())),
            Action::PutVnet,
            "virtual network",
        );
    }
    if let Some(pip_id) = &ids.public_ip {
        let pip = observed.public_ip.as_ref();
        step(
            pip_id,
            pip.is_some(),
            pip.is_some(),
            succeeded(pip.and_then(|p| p.resource.properties.provisioning_state.as_deref())),
            Action::PutPublicIp,
            "public IP",
        );
    }
    if !network_ready {
        let msg = if missing.is_empty() {
            "waiting for network operations to finish".to_string()
        } else {
            format!("network differs from spec: {}", missing.join(", "))
        };
        if manage {
            wait(&mut plan, "ProvisioningNetwork", msg);
        } else {
            plan.progress = Progress::stalled("ObservedDrift", msg);
        }
        return plan;
    }

    // 2. NIC, which references the pieces above.
    let nic = observed.nic.as_ref();
    let nic_busy = is_pending(&observed.pending, &ids.nic)
        || nic.is_some_and(|n| !succeeded(n.properties.provisioning_state.as_deref()));
    if !nic_busy && !nic.is_some_and(|n| nic_matches(n, &d.nic)) {
        if manage {
            plan.actions.push(Action::PutNic);
            wait(
                &mut plan,
                "ProvisioningNetwork",
                "network interface differs from spec".into(),
            );
        } else {
            plan.progress = Progress::stalled(
                "ObservedDrift",
                "network interface differs from spec or is missing",
            );
        }
        return plan;
    }
    if nic_busy {
        wait(
            &mut plan,
            "ProvisioningNetwork",
            "waiting for the network interface".into(),
        );
        return plan;
    }

    // 3. VM: create, resize, power.
    let Some(vm) = observed.vm.as_ref() else {
        if is_pending(&observed.pending, &ids.vm) {
            wait(
                &mut plan,
                "ProvisioningVM",
                "VM creation in progress".into(),
            );
        } else if manage {
            plan.actions.push(Action::PutVm);
            wait(&mut plan, "ProvisioningVM", "creating the VM".into());
        } else {
            plan.progress =
                Progress::stalled("VMNotFound", format!("VM {} does not exist", ids.vm));
            plan.vm_ready = ConditionState::unmet("VMNotFound", "VM does not exist");
        }
        return plan;
    };
    let power = power_state(vm);
    let vm_busy = is_pending(&observed.pending, &ids.vm)
        || !succeeded(vm.properties.provisioning_state.as_deref());
    if vm_busy {
        plan.vm_ready = ConditionState::unmet("Provisioning", "VM operation in progress");
        wait(
            &mut plan,
            "ProvisioningVM",
            "VM operation in progress".into(),
        );
        return plan;
    }
    let size_ok = vm_size(vm) == Some(d.vm.size.as_str());
    if !size_ok {
        let msg = format!(
            "resizing the VM from {} to {}",
            vm_size(vm).unwrap_or("?"),
            d.vm.size
        );
        plan.vm_ready = ConditionState::unmet("Resizing", msg.clone());
        if !manage {
            plan.progress = Progress::stalled("ObservedDrift", msg);
        } else if power == PowerState::Deallocated {
            plan.actions.push(Action::ResizeVm);
            wait(&mut plan, "Resizing", msg);
        } else {
            plan.actions.push(Action::DeallocateVm);
            wait(&mut plan, "Resizing", msg);
        }
        return plan;
    }
    if idle {
        plan.vm_ready = ConditionState::unmet(
            "Idle",
            "VM deallocated: no active TrainingRun within idleTimeout",
        );
        plan.compute_attached =
            ConditionState::unmet("VMDeallocated", "the VM is deallocated while idle");
        if manage && !matches!(power, PowerState::Deallocated | PowerState::Deallocating) {
            plan.actions.push(Action::DeallocateVm);
        }
        wait(
            &mut plan,
            "Idle",
            "VM deallocated after idleTimeout; it starts when a TrainingRun becomes active".into(),
        );
        return plan;
    }
    if power != PowerState::Running {
        plan.vm_ready = ConditionState::unmet("NotRunning", format!("VM power state is {power:?}"));
        if manage && matches!(power, PowerState::Deallocated | PowerState::Stopped) {
            plan.actions.push(Action::StartVm);
        }
        if manage {
            wait(
                &mut plan,
                "StartingVM",
                format!("VM power state is {power:?}"),
            );
        } else {
            plan.progress =
                Progress::stalled("ObservedDrift", format!("VM power state is {power:?}"));
        }
        return plan;
    }
    plan.vm_ready = ConditionState::met("Running", "VM is provisioned and running");

    // 4. Azure ML compute at the VM's address.
    let Some(address) = public_ip.or(private_ip) else {
        wait(
            &mut plan,
            "WaitingForAddress",
            "the VM has no IP address yet".into(),
        );
        return plan;
    };
    let compute_pending = is_pending(&observed.pending, &input.compute_id);
    match observed.compute.as_ref() {
        _ if compute_pending => {
            plan.compute_attached = ConditionState::unmet("Attaching", "attach in progress");
            wait(&mut plan, "AttachingCompute", "attach in progress".into());
        }
        None => {
            plan.compute_attached = ConditionState::unmet("NotAttached", "compute not attached");
            if manage {
                plan.actions.push(Action::AttachCompute { address });
                wait(
                    &mut plan,
                    "AttachingCompute",
                    "attaching the VM to Azure ML".into(),
                );
            } else {
                plan.progress =
                    Progress::stalled("ComputeNotFound", "the Azure ML compute does not exist");
            }
        }
        Some(c) => {
            let props = c.properties.properties.as_ref();
            let same_target = props.is_some_and(|p| {
                p.address.as_deref() == Some(address.as_str())
                    && p.administrator_account
                        .as_ref()
                        .and_then(|a| a.username.as_deref())
                        .is_none_or(|u| u == input.admin_username)
            });
            let state = c
                .properties
                .provisioning_state
                .as_deref()
                .unwrap_or("Unknown");
            if !same_target {
                plan.compute_attached = ConditionState::unmet(
                    "AddressChanged",
                    format!("compute does not point at {address}"),
                );
                if manage {
                    plan.actions.push(Action::AttachCompute { address });
                    wait(
                        &mut plan,
                        "AttachingCompute",
                        "re-attaching at the VM's current address".into(),
                    );
                } else {
                    plan.progress = Progress::stalled("ObservedDrift", "compute points elsewhere");
                }
            } else if state.eq_ignore_ascii_case("Succeeded") {
                plan.compute_attached = ConditionState::met("Succeeded", "attached to Azure ML");
                plan.progress = Progress::ready("Ready", "VM running and attached to Azure ML");
            } else if state.eq_ignore_ascii_case("Failed") {
                let msg = format!(
                    "Azure ML reports the compute as Failed: {:?}",
                    c.properties.provisioning_errors
                );
                plan.compute_attached = ConditionState::unmet("AttachFailed", msg.clone());
                plan.progress = Progress::stalled("AttachFailed", msg);
            } else {
                plan.compute_attached =
                    ConditionState::unmet("Attaching", format!("compute is {state}"));
                wait(&mut plan, "AttachingCompute", format!("compute is {state}"));
            }
        }
    }
    plan
}

/// One step of deletion with `Delete`: the next resources to delete (in dependency order), or
/// done when every one reads 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    DetachCompute,
    /// Delete these ARM ids (may run together).
    Delete(Vec<String>),
    /// Something is still being deleted; look again later.
    Wait(String),
    Done,
}

/// What still exists, for [`decide_cleanup`]. `Some(state)` = exists with that provisioning
/// state.
#[derive(Debug, Clone, Default)]
pub struct Remaining {
    pub compute: Option<String>,
    pub vm: Option<String>,
    pub nic: Option<String>,
    /// (id, state) of the public IP, NSG and vnet that still exist.
    pub leaves: Vec<(String, String)>,
}

fn deleting(state: &str) -> bool {
    state.eq_ignore_ascii_case("Deleting")
}

pub fn decide_cleanup(ids: &super::desired::Ids, r: &Remaining) -> Cleanup {
    if let Some(state) = &r.compute {
        return if deleting(state) {
            Cleanup::Wait("Azure ML compute".into())
        } else {
            Cleanup::DetachCompute
        };
    }
    for (what, id, state) in [("VM", &ids.vm, &r.vm), ("NIC", &ids.nic, &r.nic)] {
        if let Some(state) = state {
            return if deleting(state) {
                Cleanup::Wait(what.into())
            } else {
                Cleanup::Delete(vec![id.clone()])
            };
        }
    }
    let to_delete: Vec<String> = r
        .leaves
        .iter()
        .filter(|(_, s)| !deleting(s))
        .map(|(id, _)| id.clone())
        .collect();
    if !to_delete.is_empty() {
        Cleanup::Delete(to_delete)
    } else if let Some((id, _)) = r.leaves.first() {
        Cleanup::Wait(id.clone())
    } else {
        Cleanup::Done
    }
}
