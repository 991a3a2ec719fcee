//! Thin reads: pending operations polled once, every resource read once, active TrainingRuns
//! counted (from the watch cache).

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use edgetrain_api::{TrainingRunPhase, TrainingRunStatus, common::PendingOperation};
use edgetrain_azure::{ml::MlApi, stackhub::StackHubApi};

use super::{
    decide::{Observed, Remaining},
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

/// Reads every resource of the target once.
pub async fn observe(clients: &Clients, ids: &Ids) -> Result<Observed> {
    let hub = &clients.hub;
    let nsg = hub.get_nsg(&ids.nsg).await.map_err(read("NSG", &ids.nsg))?;
    let vnet = match &ids.vnet {
        Some(id) => hub.get_vnet(id).await.map_err(read("vnet", id))?,
        None => None,
    };
    let public_ip = match &ids.public_ip {
        Some(id) => hub.get_public_ip(id).await.map_err(read("public IP", id))?,
        None => None,
    };
    let nic = hub.get_nic(&ids.nic).await.map_err(read("NIC", &ids.nic))?;
    let vm = hub
        .get_vm(&ids.vm, true)
        .await
        .map_err(read("VM", &ids.vm))?;
    let compute = clients.compute.get().await?;
    Ok(Observed {
        nsg,
        vnet,
        public_ip,
        nic,
        vm,
        compute,
        pending: Vec::new(),
        active_runs: 0,
    })
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
