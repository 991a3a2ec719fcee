//! Thin reads: pending operations polled once, every resource read once, active TrainingRuns
//! counted (from the watch cache).

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use edgetrain_api::{TrainingRunPhase, TrainingRunStatus, common::PendingOperation};
use edgetrain_azure::{ml::MlApi, stackhub::StackHubApi};

use super::{
    decide::{Observed, Remaining, is_pending, succeeded},
    desired::Ids,
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

/// Polls each pending operation once (no waiting in a loop), with the client of the service
/// that started it: Stack Hub for Compute/Network ids, Azure ML otherwise.
pub async fn poll_pending(
    clients: &Clients,
    pending: &[PendingOperation],
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Resumed> {
    let route = |op: &PendingOperation| -> &dyn OperationPoller {
        match edgetrain_azure::stackhub::provider_of(&op.resource_id) {
            Ok(_) => &clients.hub,
            Err(_) => &clients.ml,
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

/// What still exists during deletion.
pub async fn remaining(clients: &Clients, ids: &Ids) -> Result<Remaining> {
    let hub = &clients.hub;
    let state = |s: Option<&str>| s.unwrap_or("Succeeded").to_string();
    let compute = clients
        .compute
        .get()
        .await?
        .map(|c| state(c.properties.provisioning_state.as_deref()));
    let vm = hub
        .get_vm(&ids.vm, false)
        .await
        .map_err(read("VM", &ids.vm))?
        .map(|v| state(v.properties.provisioning_state.as_deref()));
    let nic = hub
        .get_nic(&ids.nic)
        .await
        .map_err(read("NIC", &ids.nic))?
        .map(|n| state(n.properties.provisioning_state.as_deref()));
    let mut leaves = Vec::new();
    if let Some(id) = &ids.public_ip
        && let Some(p) = hub.get_public_ip(id).await.map_err(read("public IP", id))?
    {
        leaves.push((
            id.clone(),
            state(p.resource.properties.provisioning_state.as_deref()),
        ));
    }
    if let Some(n) = hub.get_nsg(&ids.nsg).await.map_err(read("NSG", &ids.nsg))? {
        leaves.push((
            ids.nsg.clone(),
            state(n.properties.provisioning_state.as_deref()),
        ));
    }
    if let Some(id) = &ids.vnet
        && let Some(v) = hub.get_vnet(id).await.map_err(read("vnet", id))?
    {
        leaves.push((
            id.clone(),
            state(v.properties.provisioning_state.as_deref()),
        ));
    }
    Ok(Remaining {
        compute,
        vm,
        nic,
        leaves,
    })
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
