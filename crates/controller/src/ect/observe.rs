//! Thin reads: pending operations polled once, every resource read once, active TrainingRuns
//! counted.

use std::{sync::Arc, time::Duration};

use edgetrain_api::{TrainingRun, TrainingRunPhase, TrainingRunStatus, common::PendingOperation};
use edgetrain_azure::{
    arm::{LroStatus, LroToken},
    ml::MlApi,
    stackhub::StackHubApi,
};
use kube::{Api, api::ListParams};

use super::{
    decide::{Observed, Remaining},
    desired::Ids,
};
use crate::{Error, Result};

/// The Azure clients of one target.
#[derive(Clone)]
pub struct Clients {
    pub hub: Arc<dyn StackHubApi>,
    pub vm_access: Arc<dyn crate::context::VmAccess>,
    pub ml: Arc<dyn MlApi>,
    /// Used to poll Azure ML operations.
    pub compute: Arc<dyn super::attach::ComputeAttacher>,
}

/// Outcome of polling the operations kept in status.
#[derive(Debug, Default)]
pub struct Polled {
    pub still_pending: Vec<PendingOperation>,
    /// Human-readable failures (the operation is dropped; the next decision retries).
    pub failed: Vec<String>,
    /// Earliest time to look again, from the servers' Retry-After.
    pub retry_after: Option<Duration>,
}

fn is_ml(id: &str) -> bool {
    id.to_ascii_lowercase()
        .contains("/providers/microsoft.machinelearningservices/")
}

/// Polls each pending operation once (no waiting in a loop).
pub async fn poll_pending(clients: &Clients, pending: &[PendingOperation]) -> Result<Polled> {
    let mut out = Polled::default();
    for op in pending {
        let token: LroToken = serde_json::from_str(&op.poller).map_err(|e| {
            Error::InvalidSpec(format!(
                "status.pendingOperations poller for {} does not parse: {e}",
                op.resource_id
            ))
        })?;
        let status = if is_ml(&op.resource_id) {
            clients.ml.poll(&token).await
        } else {
            clients.hub.poll(&token).await
        }
        .map_err(|e| Error::azure(format!("polling {} {}", op.action, op.resource_id), e))?;
        match status {
            LroStatus::InProgress { retry_after } => {
                out.retry_after = min_opt(out.retry_after, retry_after);
                out.still_pending.push(op.clone());
            }
            LroStatus::Succeeded => {}
            LroStatus::Failed(e) => out.failed.push(format!(
                "{} of {} failed: {}: {}",
                op.action,
                op.resource_id,
                e.code(),
                e.error.message
            )),
            LroStatus::Canceled => out
                .failed
                .push(format!("{} of {} was canceled", op.action, op.resource_id)),
        }
    }
    Ok(out)
}

pub fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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
pub async fn active_runs(client: &kube::Client, namespace: &str, target: &str) -> Result<usize> {
    let api: Api<TrainingRun> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing TrainingRuns", e))?;
    Ok(list
        .items
        .iter()
        .filter(|r| r.spec.compute_target_ref.name == target)
        .filter(|r| is_active(r.spec.suspend, r.status.as_ref()))
        .count())
}
