//! Thin reads: pending operations polled once, every resource read once, active TrainingRuns
//! counted.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use edgetrain_api::{TrainingRun, TrainingRunPhase, TrainingRunStatus, common::PendingOperation};
use edgetrain_azure::{
    arm::{LroStatus, LroToken},
    ml::MlApi,
    stackhub::StackHubApi,
};
use kube::{Api, api::ListParams};

use super::{
    decide::{Observed, OperationFailure, Remaining},
    desired::{Ids, owned_by},
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
    /// The Stack Hub ARM endpoint of the spec (pollers for another endpoint are stale).
    pub hub_endpoint: String,
    /// The Azure ML ARM endpoint of the spec.
    pub ml_endpoint: String,
}

/// Outcome of polling the operations kept in status.
#[derive(Debug, Default)]
pub struct Polled {
    pub still_pending: Vec<PendingOperation>,
    /// Operations that ended in failure (dropped; the next decision retries, bounded).
    pub failures: Vec<OperationFailure>,
    /// Pollers dropped as stale, with why; their resources are simply observed again.
    pub dropped: Vec<String>,
    /// Earliest time to look again, from the servers' Retry-After.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for OperationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} failed: {}: {}",
            self.action, self.resource_id, self.code, self.message
        )
    }
}

/// A poller older than this is dropped: ARM keeps operation URLs for hours, not days, and a
/// resource is observed directly anyway.
pub const POLLER_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

fn is_ml(id: &str) -> bool {
    id.to_ascii_lowercase()
        .contains("/providers/microsoft.machinelearningservices/")
}

fn origin(url: &str) -> Option<(String, String, u16)> {
    let u = url::Url::parse(url).ok()?;
    Some((
        u.scheme().to_string(),
        u.host_str()?.to_ascii_lowercase(),
        u.port_or_known_default()?,
    ))
}

/// The poller of `op` if it can still be polled at `endpoint`, else why it is stale: it does
/// not parse (an operator fault, not the user's), it points at another endpoint (the spec
/// changed), or it is older than [`POLLER_MAX_AGE`].
pub fn usable_poller(
    op: &PendingOperation,
    endpoint: &str,
    now: DateTime<Utc>,
) -> std::result::Result<LroToken, String> {
    let token: LroToken = serde_json::from_str(&op.poller)
        .map_err(|e| format!("the stored poller does not parse ({e})"))?;
    if origin(&token.url).is_none() || origin(&token.url) != origin(endpoint) {
        return Err("the poller is for another endpoint than the spec's".into());
    }
    let age = (now - token.started_at).to_std().unwrap_or_default();
    if age > POLLER_MAX_AGE {
        return Err(format!("the poller is older than {POLLER_MAX_AGE:?}"));
    }
    Ok(token)
}

/// Polls each pending operation once (no waiting in a loop). Stale pollers (see
/// [`usable_poller`], or answered 404: the operation expired) are dropped, never fatal.
pub async fn poll_pending(
    clients: &Clients,
    pending: &[PendingOperation],
    now: DateTime<Utc>,
) -> Result<Polled> {
    let mut out = Polled::default();
    for op in pending {
        let ml = is_ml(&op.resource_id);
        let endpoint = if ml {
            &clients.ml_endpoint
        } else {
            &clients.hub_endpoint
        };
        let token = match usable_poller(op, endpoint, now) {
            Ok(t) => t,
            Err(why) => {
                out.dropped
                    .push(format!("{} of {}: {why}", op.action, op.resource_id));
                continue;
            }
        };
        let status = if ml {
            clients.ml.poll(&token).await
        } else {
            clients.hub.poll(&token).await
        };
        let status = match status {
            Ok(s) => s,
            Err(edgetrain_azure::Error::Arm(e)) if e.is_not_found() => {
                out.dropped.push(format!(
                    "{} of {}: the operation is no longer known to Azure ({})",
                    op.action,
                    op.resource_id,
                    e.code()
                ));
                continue;
            }
            Err(e) => {
                return Err(Error::azure(
                    format!("polling {} {}", op.action, op.resource_id),
                    e,
                ));
            }
        };
        let fail = |code: &str, message: &str| OperationFailure {
            resource_id: op.resource_id.clone(),
            action: op.action.clone(),
            code: code.to_string(),
            message: message.to_string(),
        };
        match status {
            LroStatus::InProgress { retry_after } => {
                out.retry_after = min_opt(out.retry_after, retry_after);
                out.still_pending.push(op.clone());
            }
            LroStatus::Succeeded => {}
            LroStatus::Failed(e) => out.failures.push(fail(e.code(), &e.error.message)),
            LroStatus::Canceled => out
                .failures
                .push(fail("Canceled", "the operation was canceled")),
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
        failures: Vec::new(),
    })
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
