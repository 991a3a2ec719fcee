//! The decision: observed state in, next actions and status out. No I/O, no clock: `now` is an
//! input. Each reconcile runs it once; the actions are started (never awaited) and the next
//! reconcile sees their effect.

use std::time::Duration;

use chrono::{DateTime, Utc};
use edgetrain_api::{
    EdgeComputeTargetStatus, ReconcilePolicy,
    common::PendingOperation,
    conditions::Progress,
    edge_compute_target::{PowerState, ProvisioningFailure, ReachVia},
};
use edgetrain_azure::{
    ml::ComputeResource,
    stackhub::{
        self, NetworkInterface, NetworkSecurityGroup, PublicIpAddress, VirtualMachine,
        VirtualNetwork,
    },
};

use super::desired::{Desired, owned_by};
use crate::runtime::{
    operations::{FailedOperation, Resumed, from_time, to_time},
    status::ConditionState,
};

/// A single Azure write the controller starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    PutNsg,
    PutVnet,
    PutPublicIp,
    PutNic,
    PutVm,
    /// Change the size of the existing (deallocated) VM: a PATCH of `hardwareProfile.vmSize`
    /// only, so nothing else of the VM is restated (osProfile cannot change on update).
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
    /// Operations that ended `Failed` in this reconcile's poll.
    pub failures: Vec<FailedOperation>,
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
    /// Which VM address Azure ML connects to.
    pub reach_via: ReachVia,
    /// The adoption annotation: take over resources whose owner tags name someone else.
    pub adopt: bool,
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

/// Stalls the decision reaches that only a change of the spec, an annotation or a referenced
/// Secret can end (retries used up, a foreign owner, no address to attach, a failed attach):
/// the runtime's stall gate holds them, so a target stalled on one costs no Azure call at all.
/// Other stalls (`ObservedDrift`, a resource missing under `observe`) end by Azure-side change
/// and are read again at the resync interval.
pub const GATED_STALLS: [&str; 4] = [
    "ProvisioningFailed",
    "NotOwned",
    "NoPublicAddress",
    "AttachFailed",
];

/// Whether a pass may skip reading the target's resources: the status was written for this
/// generation and every operation it holds is still running (none ended, failed or expired).
/// A resource in the middle of a write decides nothing, so until one of the operations ends
/// only they are polled, as often as their `Retry-After` asks, and the status stays as it is.
pub fn only_operations_to_follow(
    generation: Option<i64>,
    status: &EdgeComputeTargetStatus,
    polled: &Resumed,
) -> bool {
    !status.pending_operations.is_empty()
        && polled.still_pending.len() == status.pending_operations.len()
        && status.observed_generation == generation
}

impl Plan {
    /// The stall reason and message when the plan is a stall for the gate: nothing to write,
    /// no operation to follow, and a reason from [`GATED_STALLS`].
    pub fn gated_stall(&self) -> Option<(&'static str, &str)> {
        let settled = self.actions.is_empty() && self.status.pending_operations.is_empty();
        match &self.progress {
            Progress::Stalled { reason, message } if settled => GATED_STALLS
                .iter()
                .find(|r| **r == reason.as_str())
                .map(|r| (*r, message.as_str())),
            _ => None,
        }
    }
}

/// `VMReady` reason of a VM deallocated by the idle timeout (a settled state, not progress).
pub const IDLE: &str = "Idle";

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

fn failed(state: Option<&str>) -> bool {
    state.is_some_and(|s| s.eq_ignore_ascii_case("Failed"))
}

/// A resource whose provisioning failed is written again at most this often...
pub const MAX_FAILED_RETRIES: u32 = 3;
/// ...waiting this long before the first retry, doubling for each further one.
pub const FAILED_RETRY_BASE: Duration = Duration::from_secs(2);

/// What to do about a resource whose provisioning state is `Failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Retry {
    /// Write it again now.
    Now,
    /// Wait for the backoff; the message says why.
    Later(String),
    /// Retries are used up: stalled with Azure's error.
    GiveUp(String),
}

fn failure_text(f: &ProvisioningFailure) -> String {
    match (&f.code, &f.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.clone(),
        (None, Some(message)) => message.clone(),
        (None, None) => "Azure reports provisioningState Failed".into(),
    }
}

/// Records a retry of `id` in status (or decides to wait or give up).
fn retry_failed(status: &mut EdgeComputeTargetStatus, id: &str, now: DateTime<Utc>) -> Retry {
    let pos = match status
        .provisioning_failures
        .iter()
        .position(|f| f.resource_id.eq_ignore_ascii_case(id))
    {
        Some(p) => p,
        None => {
            status.provisioning_failures.push(ProvisioningFailure {
                resource_id: id.to_string(),
                ..Default::default()
            });
            status.provisioning_failures.len() - 1
        }
    };
    let f = &mut status.provisioning_failures[pos];
    let text = failure_text(f);
    if f.retries >= MAX_FAILED_RETRIES {
        return Retry::GiveUp(format!(
            "{id} failed to provision after {} retries: {text}",
            f.retries
        ));
    }
    let wait = FAILED_RETRY_BASE * 2u32.pow(f.retries);
    let since = f
        .last_retry
        .as_ref()
        .map(|t| (now - from_time(t)).to_std().unwrap_or_default());
    if since.is_some_and(|s| s < wait) {
        return Retry::Later(format!(
            "{id} failed to provision ({text}); retry {} of {MAX_FAILED_RETRIES} after {wait:?}",
            f.retries + 1
        ));
    }
    f.retries += 1;
    f.last_retry = Some(to_time(now));
    Retry::Now
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

/// The address Azure ML connects to, as `reachVia` names it (no fallback to the other one).
pub fn compute_address(reach_via: ReachVia, status: &EdgeComputeTargetStatus) -> Option<String> {
    match reach_via {
        ReachVia::Public => status.public_ip.clone(),
        ReachVia::Private => status.private_ip.clone(),
    }
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

/// Ready's reason while an operation on the VM runs, named after what it is for: an idle VM
/// being deallocated reads `Idle`, not a generic `ProvisioningVM`. (The status can already
/// show the new power state: the operation may finish between its poll and the VM's read.)
fn vm_busy_reason(
    pending: &[PendingOperation],
    vm_id: &str,
    idle: bool,
    size_ok: bool,
) -> &'static str {
    let action = pending
        .iter()
        .find(|p| p.resource_id.eq_ignore_ascii_case(vm_id))
        .map(|p| p.action.as_str());
    match action {
        Some("resize") => "Resizing",
        Some("deallocate") if !size_ok => "Resizing",
        Some("deallocate") if idle => "Idle",
        // Deallocated for a reason that is gone (a run arrived): it is started next.
        Some("deallocate" | "start") => "StartingVM",
        _ => "ProvisioningVM",
    }
}

fn wait(plan: &mut Plan, reason: &'static str, message: String) {
    plan.progress = Progress::in_progress(reason, message);
}

/// Provisioning state of each resource this target involves, by ARM id (`None`: 404).
fn observed_states(
    input: &Input<'_>,
    observed: &Observed,
) -> Vec<(String, Option<Option<String>>)> {
    let ids = &input.desired.ids;
    let mut out = vec![
        (
            input.compute_id.clone(),
            observed
                .compute
                .as_ref()
                .map(|c| c.properties.provisioning_state.clone()),
        ),
        (
            ids.nsg.clone(),
            observed
                .nsg
                .as_ref()
                .map(|n| n.properties.provisioning_state.clone()),
        ),
        (
            ids.nic.clone(),
            observed
                .nic
                .as_ref()
                .map(|n| n.properties.provisioning_state.clone()),
        ),
        (
            ids.vm.clone(),
            observed
                .vm
                .as_ref()
                .map(|v| v.properties.provisioning_state.clone()),
        ),
    ];
    if let Some(id) = &ids.vnet {
        out.push((
            id.clone(),
            observed
                .vnet
                .as_ref()
                .map(|v| v.properties.provisioning_state.clone()),
        ));
    }
    if let Some(id) = &ids.public_ip {
        out.push((
            id.clone(),
            observed
                .public_ip
                .as_ref()
                .map(|p| p.resource.properties.provisioning_state.clone()),
        ));
    }
    out
}

/// Keeps Azure's error of each failed operation, and forgets failures that are over.
fn track_failures(status: &mut EdgeComputeTargetStatus, input: &Input<'_>, observed: &Observed) {
    for f in &observed.failures {
        let entry = match status
            .provisioning_failures
            .iter_mut()
            .find(|p| p.resource_id.eq_ignore_ascii_case(&f.resource_id))
        {
            Some(e) => e,
            None => {
                status.provisioning_failures.push(ProvisioningFailure {
                    resource_id: f.resource_id.clone(),
                    ..Default::default()
                });
                status
                    .provisioning_failures
                    .last_mut()
                    .expect("just pushed")
            }
        };
        entry.code = Some(f.code().to_string());
        entry.message = Some(f.message().to_string());
    }
    let states = observed_states(input, observed);
    status.provisioning_failures.retain(|f| {
        if is_pending(&observed.pending, &f.resource_id) {
            return true;
        }
        match states
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(&f.resource_id))
        {
            // Over once the resource provisioned (or is gone and will be created afresh).
            Some((_, Some(state))) => !succeeded(state.as_deref()),
            Some((_, None)) => false,
            // An operation on something else (a VM extension of the key rotation): its error
            // is shown once; the rotation restarts at its own first step.
            None => !observed.failures.is_empty(),
        }
    });
}

/// Existing resources with our names whose owner tags name someone else.
fn foreign(input: &Input<'_>, observed: &Observed) -> Vec<String> {
    let owner = &input.desired.tags;
    let ids = &input.desired.ids;
    let mut out = Vec::new();
    let mut check =
        |id: Option<&String>, tags: Option<&std::collections::BTreeMap<String, String>>| {
            if let (Some(id), Some(tags)) = (id, tags)
                && !owned_by(Some(tags), owner)
            {
                out.push(id.clone());
            }
        };
    check(Some(&ids.nsg), observed.nsg.as_ref().map(|n| &n.tags));
    check(ids.vnet.as_ref(), observed.vnet.as_ref().map(|v| &v.tags));
    check(
        ids.public_ip.as_ref(),
        observed.public_ip.as_ref().map(|p| &p.resource.tags),
    );
    check(Some(&ids.nic), observed.nic.as_ref().map(|n| &n.tags));
    check(Some(&ids.vm), observed.vm.as_ref().map(|v| &v.tags));
    if let Some(c) = &observed.compute
        && !owned_by(c.tags.as_ref(), owner)
    {
        out.push(input.compute_id.clone());
    }
    out
}

/// The id of the VM's managed OS disk, as the VM reports it.
fn os_disk_id(vm: &VirtualMachine) -> Option<&str> {
    vm.properties
        .storage_profile
        .as_ref()?
        .os_disk
        .as_ref()?
        .managed_disk
        .as_ref()?
        .id
        .as_deref()
}

/// Records `id` as created by this target (deletion works from this list).
fn created(status: &mut EdgeComputeTargetStatus, id: &str) {
    if !status
        .created_resources
        .iter()
        .any(|c| c.eq_ignore_ascii_case(id))
    {
        status.created_resources.push(id.to_string());
    }
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
    track_failures(&mut status, input, observed);
    if input.generation != input.status.observed_generation {
        // A spec change is what a stalled failure waits for: it earns a fresh set of retries.
        for f in &mut status.provisioning_failures {
            f.retries = 0;
            f.last_retry = None;
        }
    }
    let (idle, last_active) = idle_decision(
        observed.active_runs,
        input.status.last_active_time.as_ref().map(from_time),
        input.idle_timeout,
        input.now,
    );
    status.last_active_time = input.idle_timeout.map(|_| to_time(last_active));

    let mut plan = Plan {
        actions: Vec::new(),
        progress: Progress::in_progress("Provisioning", "creating network resources"),
        vm_ready: ConditionState::unmet("Provisioning", "VM not created yet"),
        compute_attached: ConditionState::unmet("WaitingForVM", "waiting for the VM"),
        status,
    };
    let manage = input.policy == ReconcilePolicy::Manage;
    // The VM's managed OS disk outlives it (Compute 2020-06-01 has no `deleteOption`) and
    // carries no tags of ours: recorded from our own VM (also when something else stalls the
    // target), so deletion removes it after the VM.
    if let Some(vm) = &observed.vm
        && (input.adopt || owned_by(Some(&vm.tags), &d.tags))
        && let Some(disk) = os_disk_id(vm)
    {
        created(&mut plan.status, disk);
    }

    // 0. Never take over what another target (or a person) owns, unless told to adopt.
    if manage && !input.adopt {
        let foreign = foreign(input, observed);
        if !foreign.is_empty() {
            let msg = format!(
                "existing resources are not tagged as owned by this target ({} = {}): {}; annotate the target with {}=\"true\" to adopt them",
                super::desired::OWNER_TAG,
                d.tags
                    .get(super::desired::OWNER_TAG)
                    .cloned()
                    .unwrap_or_default(),
                foreign.join(", "),
                super::desired::ADOPT_ANNOTATION
            );
            plan.progress = Progress::stalled("NotOwned", msg.clone());
            plan.vm_ready = ConditionState::unmet("NotOwned", msg);
            return plan;
        }
    }
    if let Some(c) = &observed.compute
        && !c
            .properties
            .compute_type
            .eq_ignore_ascii_case("VirtualMachine")
    {
        // Attaching would overwrite a compute of another kind: never, adoption or not.
        let msg = format!(
            "the Azure ML compute {} exists with computeType {}; it is not overwritten",
            input.compute_id, c.properties.compute_type
        );
        plan.compute_attached = ConditionState::unmet("NotOwned", msg.clone());
        plan.progress = Progress::stalled("NotOwned", msg);
        return plan;
    }

    // 1. Network pieces without dependencies between them.
    let mut network_ready = true;
    let mut missing = Vec::new();
    let mut gave_up = None;
    let mut step = |plan: &mut Plan,
                    id: &str,
                    ok: bool,
                    state: Option<Option<&str>>,
                    action: Action,
                    what: &str| {
        let exists = state.is_some();
        let state = state.flatten();
        if is_pending(&observed.pending, id) {
            network_ready = false;
        } else if exists && failed(state) {
            network_ready = false;
            if manage {
                match retry_failed(&mut plan.status, id, input.now) {
                    Retry::Now => plan.actions.push(action),
                    Retry::Later(m) => missing.push(m),
                    Retry::GiveUp(m) => gave_up = Some(m),
                }
            } else {
                missing.push(format!("{what} failed to provision"));
            }
        } else if exists && !succeeded(state) {
            network_ready = false;
        } else if !ok {
            network_ready = false;
            missing.push(what.to_string());
            if manage {
                if !exists {
                    created(&mut plan.status, id);
                }
                plan.actions.push(action);
            }
        }
    };
    let nsg = observed.nsg.as_ref();
    step(
        &mut plan,
        &ids.nsg,
        nsg.is_some_and(|n| nsg_matches(n, &d.nsg_sources)),
        nsg.map(|n| n.properties.provisioning_state.as_deref()),
        Action::PutNsg,
        "network security group",
    );
    if let (Some(vnet_id), Some(prefix)) = (&ids.vnet, &d.address_prefix) {
        let vnet = observed.vnet.as_ref();
        step(
            &mut plan,
            vnet_id,
            vnet.is_some_and(|v| vnet_matches(v, prefix)),
            vnet.map(|v| v.properties.provisioning_state.as_deref()),
            Action::PutVnet,
            "virtual network",
        );
    }
    if let Some(pip_id) = &ids.public_ip {
        let pip = observed.public_ip.as_ref();
        step(
            &mut plan,
            pip_id,
            pip.is_some(),
            pip.map(|p| p.resource.properties.provisioning_state.as_deref()),
            Action::PutPublicIp,
            "public IP",
        );
    }
    if let Some(msg) = gave_up {
        plan.actions.clear();
        plan.progress = Progress::stalled("ProvisioningFailed", msg);
        return plan;
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
    let nic_state = nic.and_then(|n| n.properties.provisioning_state.as_deref());
    let nic_pending = is_pending(&observed.pending, &ids.nic);
    if manage && !nic_pending && nic.is_some() && failed(nic_state) {
        match retry_failed(&mut plan.status, &ids.nic, input.now) {
            Retry::Now => {
                plan.actions.push(Action::PutNic);
                wait(
                    &mut plan,
                    "ProvisioningNetwork",
                    "retrying the failed network interface".into(),
                );
            }
            Retry::Later(m) => wait(&mut plan, "ProvisioningNetwork", m),
            Retry::GiveUp(m) => plan.progress = Progress::stalled("ProvisioningFailed", m),
        }
        return plan;
    }
    let nic_busy = nic_pending || nic.is_some() && !succeeded(nic_state);
    if !nic_busy && !nic.is_some_and(|n| nic_matches(n, &d.nic)) {
        if manage {
            if nic.is_none() {
                created(&mut plan.status, &ids.nic);
            }
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
            created(&mut plan.status, &ids.vm);
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
    let vm_state = vm.properties.provisioning_state.as_deref();
    let vm_pending = is_pending(&observed.pending, &ids.vm);
    if manage && !vm_pending && failed(vm_state) {
        match retry_failed(&mut plan.status, &ids.vm, input.now) {
            Retry::Now => {
                let msg = "retrying the VM whose provisioning failed".to_string();
                plan.vm_ready = ConditionState::unmet("ProvisioningFailed", msg.clone());
                plan.actions.push(Action::PutVm);
                wait(&mut plan, "ProvisioningVM", msg);
            }
            Retry::Later(m) => {
                plan.vm_ready = ConditionState::unmet("ProvisioningFailed", m.clone());
                wait(&mut plan, "ProvisioningVM", m);
            }
            Retry::GiveUp(m) => {
                plan.vm_ready = ConditionState::unmet("ProvisioningFailed", m.clone());
                plan.progress = Progress::stalled("ProvisioningFailed", m);
            }
        }
        return plan;
    }
    if vm_pending || !succeeded(vm_state) {
        plan.vm_ready = ConditionState::unmet("Provisioning", "VM operation in progress");
        let size_ok = vm_size(vm) == Some(d.vm.size.as_str());
        let reason = vm_busy_reason(&observed.pending, &ids.vm, idle, size_ok);
        wait(&mut plan, reason, "VM operation in progress".into());
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
            IDLE,
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

    // 4. Azure ML compute at the address the spec names: never a silent fallback.
    let address = match input.reach_via {
        ReachVia::Public if ids.public_ip.is_none() => {
            let msg = "azureML.reachVia is Public but vm.publicIP is false: give the VM a public IP or set azureML.reachVia to Private".to_string();
            plan.compute_attached = ConditionState::unmet("NoPublicAddress", msg.clone());
            plan.progress = Progress::stalled("NoPublicAddress", msg);
            return plan;
        }
        ReachVia::Public => public_ip,
        ReachVia::Private => private_ip,
    };
    let Some(address) = address else {
        wait(
            &mut plan,
            "WaitingForAddress",
            format!("the VM has no {:?} IP address yet", input.reach_via),
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
                created(&mut plan.status, &input.compute_id);
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
            } else if state.eq_ignore_ascii_case("Failed") && manage {
                match retry_failed(&mut plan.status, &input.compute_id, input.now) {
                    Retry::Now => {
                        plan.compute_attached =
                            ConditionState::unmet("AttachFailed", "retrying the failed attach");
                        plan.actions.push(Action::AttachCompute { address });
                        wait(
                            &mut plan,
                            "AttachingCompute",
                            "retrying the failed attach".into(),
                        );
                    }
                    Retry::Later(m) => {
                        plan.compute_attached = ConditionState::unmet("AttachFailed", m.clone());
                        wait(&mut plan, "AttachingCompute", m);
                    }
                    Retry::GiveUp(m) => {
                        let m = format!(
                            "{m}; Azure ML provisioning errors: {:?}",
                            c.properties.provisioning_errors
                        );
                        plan.compute_attached = ConditionState::unmet("AttachFailed", m.clone());
                        plan.progress = Progress::stalled("AttachFailed", m);
                    }
                }
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

/// What still exists, for [`decide_cleanup`]. States are provisioning states.
#[derive(Debug, Clone, Default)]
pub struct Remaining {
    pub compute: Option<String>,
    /// (id, state) of the VM.
    pub vm: Option<(String, String)>,
    /// (id, state) of the NIC.
    pub nic: Option<(String, String)>,
    /// (id, state) of the public IPs, NSG and vnets that still exist.
    pub leaves: Vec<(String, String)>,
    /// Resources with our names that are not ours: left alone.
    pub foreign: Vec<String>,
}

fn deleting(state: &str) -> bool {
    state.eq_ignore_ascii_case("Deleting")
}

pub fn decide_cleanup(r: &Remaining) -> Cleanup {
    if let Some(state) = &r.compute {
        return if deleting(state) {
            Cleanup::Wait("Azure ML compute".into())
        } else {
            Cleanup::DetachCompute
        };
    }
    for (what, found) in [("VM", &r.vm), ("NIC", &r.nic)] {
        if let Some((id, state)) = found {
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
