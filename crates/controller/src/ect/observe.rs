//! Thin reads: pending operations polled once, every resource read once, active TrainingRuns
//! counted (from the watch cache).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use edgetrain_api::{TrainingRunPhase, TrainingRunStatus, common::PendingOperation};
use edgetrain_azure::{ml::MlApi, stackhub::StackHubApi};

use super::{
    decide::{Observed, Remaining, is_pending, succeeded},
    desired::{Ids, owned_by},
};
pub use crate::runtime::operations::min_opt;
use crate::{
    Error, Result,
    runtime::{
        operations::{self, OperationPoller, Resumed},
        stores::Stores,
    },
};

/// The Azure clients of one target.
#[derive(Clone)]
pub struct Clients {
    pub hub: Arc<dyn StackHubApi>,
    pub vm_access: Arc<dyn crate::runtime::factory::VmAccess>,
    pub ml: Arc<dyn MlApi>,
    /// Used to poll Azure ML operations.
    pub compute: Arc<dyn super::attach::ComputeAttacher>,
}

/// Whether `id` is an Azure ML resource (anything that is not a Stack Hub Compute, Network or
/// Storage id).
fn is_ml(id: &str) -> bool {
    edgetrain_azure::stackhub::provider_of(id).is_err()
}

/// Polls each pending operation once (no waiting in a loop), with the client of the service
/// that started it: Stack Hub for Compute/Network ids, Azure ML otherwise.
pub async fn poll_pending(
    clients: &Clients,
    pending: &[PendingOperation],
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Resumed> {
    let route = |op: &PendingOperation| -> &dyn OperationPoller {
        if is_ml(&op.resource_id) {
            &clients.ml
        } else {
            &clients.hub
        }
    };
    operations::resume(pending, route, max_age, now).await
}

fn read<E>(what: &str, id: &str) -> impl FnOnce(E) -> Error
where
    edgetrain_azure::Error: From<E>,
{
    let context = format!("reading {what} {id}");
    move |e| Error::azure(context, e.into())
}

/// Reads every resource of the target once. While the target has never had a VM (`fresh`),
/// reads stop at the first dependency level that is not settled (missing, being written, or
/// not `Succeeded`): what depends on it cannot exist yet, since this controller creates it only
/// once that level is ready. That spares a provisioning the GETs Azure would answer with 404.
pub async fn observe(
    clients: &Clients,
    ids: &Ids,
    pending: &[PendingOperation],
    fresh: bool,
) -> Result<Observed> {
    let hub = &clients.hub;
    let settled = |id: &str, state: Option<Option<&str>>| {
        state.is_some_and(succeeded) && !is_pending(pending, id)
    };
    let mut out = Observed {
        nsg: hub.get_nsg(&ids.nsg).await.map_err(read("NSG", &ids.nsg))?,
        ..Default::default()
    };
    let mut network = settled(
        &ids.nsg,
        out.nsg
            .as_ref()
            .map(|n| n.properties.provisioning_state.as_deref()),
    );
    if let Some(id) = &ids.vnet {
        out.vnet = hub.get_vnet(id).await.map_err(read("vnet", id))?;
        network &= settled(
            id,
            out.vnet
                .as_ref()
                .map(|v| v.properties.provisioning_state.as_deref()),
        );
    }
    if let Some(id) = &ids.public_ip {
        out.public_ip = hub.get_public_ip(id).await.map_err(read("public IP", id))?;
        network &= settled(
            id,
            out.public_ip
                .as_ref()
                .map(|p| p.resource.properties.provisioning_state.as_deref()),
        );
    }
    if fresh && !network {
        return Ok(out);
    }
    out.nic = hub.get_nic(&ids.nic).await.map_err(read("NIC", &ids.nic))?;
    let nic = out
        .nic
        .as_ref()
        .map(|n| n.properties.provisioning_state.as_deref());
    if fresh && !settled(&ids.nic, nic) {
        return Ok(out);
    }
    out.vm = hub
        .get_vm(&ids.vm, true)
        .await
        .map_err(read("VM", &ids.vm))?;
    let vm = out
        .vm
        .as_ref()
        .map(|v| v.properties.provisioning_state.as_deref());
    if fresh && !settled(&ids.vm, vm) {
        return Ok(out);
    }
    out.compute = clients.compute.get().await?;
    Ok(out)
}

/// What still exists during deletion, among `candidates` (see
/// [`super::desired::cleanup_ids`]). A resource whose owner tags do not name this target is
/// left alone (listed in `foreign`) unless the target adopts.
pub async fn remaining(
    clients: &Clients,
    candidates: &[String],
    owner: &BTreeMap<String, String>,
    adopt: bool,
) -> Result<Remaining> {
    let hub = &clients.hub;
    let state = |s: Option<&str>| s.unwrap_or("Succeeded").to_string();
    let mut out = Remaining::default();
    for id in candidates {
        let lower = id.to_ascii_lowercase();
        let kind = |t: &str| lower.contains(&format!("/providers/{t}/"));
        // (owner tags, provisioning state) of what exists.
        let found: Option<(Option<BTreeMap<String, String>>, String)> = if is_ml(id) {
            match clients.compute.get().await? {
                // Never detach a compute of another kind, whoever tagged it.
                Some(c)
                    if !c
                        .properties
                        .compute_type
                        .eq_ignore_ascii_case("VirtualMachine") =>
                {
                    out.foreign.push(id.clone());
                    continue;
                }
                Some(c) => Some((c.tags, state(c.properties.provisioning_state.as_deref()))),
                None => None,
            }
        } else if kind("microsoft.compute/virtualmachines") {
            hub.get_vm(id, false)
                .await
                .map_err(read("VM", id))?
                .map(|v| {
                    (
                        Some(v.tags),
                        state(v.properties.provisioning_state.as_deref()),
                    )
                })
        } else if kind("microsoft.compute/disks") {
            // Our VM's OS disk: recorded from the VM, untagged (Azure does not tag implicit
            // disks). Deleted once no VM holds it; one held by a VM not ours is left alone.
            let Some(disk) = hub.get_disk(id).await.map_err(read("OS disk", id))? else {
                continue;
            };
            let held_by_another = disk
                .managed_by
                .as_deref()
                .is_some_and(|vm| !candidates.iter().any(|c| c.eq_ignore_ascii_case(vm)));
            if held_by_another {
                out.foreign.push(id.clone());
            } else {
                let st = state(disk.properties.provisioning_state.as_deref());
                out.leaves.push((id.clone(), st));
            }
            continue;
        } else if kind("microsoft.network/networkinterfaces") {
            hub.get_nic(id).await.map_err(read("NIC", id))?.map(|n| {
                (
                    Some(n.tags),
                    state(n.properties.provisioning_state.as_deref()),
                )
            })
        } else if kind("microsoft.network/networksecuritygroups") {
            hub.get_nsg(id).await.map_err(read("NSG", id))?.map(|n| {
                (
                    Some(n.tags),
                    state(n.properties.provisioning_state.as_deref()),
                )
            })
        } else if kind("microsoft.network/publicipaddresses") {
            hub.get_public_ip(id)
                .await
                .map_err(read("public IP", id))?
                .map(|p| {
                    let st = state(p.resource.properties.provisioning_state.as_deref());
                    (Some(p.resource.tags), st)
                })
        } else if kind("microsoft.network/virtualnetworks") {
            hub.get_vnet(id).await.map_err(read("vnet", id))?.map(|v| {
                (
                    Some(v.tags),
                    state(v.properties.provisioning_state.as_deref()),
                )
            })
        } else {
            continue;
        };
        let Some((tags, st)) = found else { continue };
        if !adopt && !owned_by(tags.as_ref(), owner) {
            out.foreign.push(id.clone());
            continue;
        }
        let entry = Some((id.clone(), st));
        if is_ml(id) {
            out.compute = entry.map(|(_, s)| s);
        } else if kind("microsoft.compute/virtualmachines") {
            out.vm = entry;
        } else if kind("microsoft.network/networkinterfaces") {
            out.nic = entry;
        } else if let Some(e) = entry {
            out.leaves.push(e);
        }
    }
    Ok(out)
}

/// The power contract: a run is active while its phase is Pending, Submitted, Queued or
/// Running and it is not suspended (see docs/power-contract.md).
pub fn is_active(spec_suspend: bool, status: Option<&TrainingRunStatus>) -> bool {
    let phase = status.map_or(TrainingRunPhase::Pending, |s| s.phase);
    !spec_suspend
        && matches!(
            phase,
            TrainingRunPhase::Pending
                | TrainingRunPhase::Submitted
                | TrainingRunPhase::Queued
                | TrainingRunPhase::Running
        )
}

/// Active TrainingRuns in `namespace` whose `computeTargetRef` is `target`.
pub fn active_runs(stores: &Stores, namespace: &str, target: &str) -> usize {
    Stores::select(&stores.training_runs, namespace, |r| {
        r.spec.compute_target_ref.name == target && is_active(r.spec.suspend, r.status.as_ref())
    })
    .len()
}
