//! Thin writes: start each planned action once and keep its poller in status.

use chrono::{DateTime, Utc};
use edgetrain_azure::stackhub::VmAction;

use super::{
    attach::AttachTarget,
    decide::{Action, Cleanup},
    desired::Desired,
    observe::Clients,
};
pub use crate::runtime::operations::Applied;
use crate::{Error, Result, ssh::KeyPair};

/// Maps an ARM refusal of a VM size to the stalled error the user must act on.
fn vm_error(size: &str, context: String, e: edgetrain_azure::Error) -> Error {
    match e.as_arm() {
        Some(arm) if arm.code().eq_ignore_ascii_case("SkuNotAvailable") => Error::SkuNotAvailable {
            size: size.to_string(),
            message: arm.error.message.clone(),
        },
        _ => Error::azure(context, e),
    }
}

/// Starts every action; returns the new pending operations.
pub async fn apply(
    clients: &Clients,
    desired: &Desired,
    key: &KeyPair,
    actions: &[Action],
    now: DateTime<Utc>,
) -> Result<Applied> {
    let hub = &clients.hub;
    let ids = &desired.ids;
    let mut out = Applied::default();
    for action in actions {
        let ctx = |what: &str, id: &str| format!("{what} {id}");
        match action {
            Action::PutNsg => {
                let s = hub
                    .put_nsg(&ids.nsg, &desired.nsg)
                    .await
                    .map_err(|e| Error::azure(ctx("PUT NSG", &ids.nsg), e))?;
                out.record(s, &ids.nsg, "put", now)?;
            }
            Action::PutVnet => {
                let (Some(id), Some(body)) = (&ids.vnet, &desired.vnet) else {
                    continue;
                };
                let s = hub
                    .put_vnet(id, body)
                    .await
                    .map_err(|e| Error::azure(ctx("PUT vnet", id), e))?;
                out.record(s, id, "put", now)?;
            }
            Action::PutPublicIp => {
                let (Some(id), Some(body)) = (&ids.public_ip, &desired.public_ip) else {
                    continue;
                };
                let s = hub
                    .put_public_ip(id, body)
                    .await
                    .map_err(|e| Error::azure(ctx("PUT public IP", id), e))?;
                out.record(s, id, "put", now)?;
            }
            Action::PutNic => {
                let s = hub
                    .put_nic(&ids.nic, &desired.nic)
                    .await
                    .map_err(|e| Error::azure(ctx("PUT NIC", &ids.nic), e))?;
                out.record(s, &ids.nic, "put", now)?;
            }
            Action::PutVm => {
                let mut spec = desired.vm.clone();
                spec.ssh_public_key = key.public_openssh.clone();
                let body = edgetrain_azure::stackhub::vm_body(&spec)
                    .map_err(|e| Error::InvalidSpec(e.to_string()))?;
                let s = hub
                    .put_vm(&ids.vm, &body)
                    .await
                    .map_err(|e| vm_error(&spec.size, ctx("PUT VM", &ids.vm), e))?;
                out.record(s, &ids.vm, "put", now)?;
            }
            Action::ResizeVm => {
                let s = hub
                    .patch_vm_size(&ids.vm, &desired.vm.size)
                    .await
                    .map_err(|e| vm_error(&desired.vm.size, ctx("resize VM", &ids.vm), e))?;
                out.record(s, &ids.vm, "resize", now)?;
            }
            Action::StartVm | Action::DeallocateVm => {
                let (verb, a) = if *action == Action::StartVm {
                    ("start", VmAction::Start)
                } else {
                    ("deallocate", VmAction::Deallocate)
                };
                let s = hub
                    .vm_action(&ids.vm, a)
                    .await
                    .map_err(|e| Error::azure(ctx(verb, &ids.vm), e))?;
                out.record(s, &ids.vm, verb, now)?;
            }
            Action::AttachCompute { address } => {
                let s = clients
                    .compute
                    .attach(&AttachTarget {
                        address,
                        username: &desired.vm.admin_username,
                        key,
                        vm_size: &desired.vm.size,
                        tags: &desired.tags,
                    })
                    .await?;
                let id = clients.compute.compute_id()?;
                out.record(s, &id, "attach", now)?;
            }
        }
    }
    Ok(out)
}

/// Starts one cleanup step (deletes are not tracked in status: the next reconcile reads each
/// resource and sees `Deleting` or 404).
pub async fn cleanup(clients: &Clients, step: &Cleanup) -> Result<()> {
    match step {
        Cleanup::DetachCompute => {
            clients.compute.detach().await?;
        }
        Cleanup::Delete(ids) => {
            for id in ids {
                clients
                    .hub
                    .delete(id)
                    .await
                    .map_err(|e| Error::azure(format!("DELETE {id}"), e))?;
            }
        }
        Cleanup::Wait(_) | Cleanup::Done => {}
    }
    Ok(())
}

/// Removes this target's ownerReference from its SSH key Secret, so that Kubernetes does not
/// garbage-collect the key of a VM that stays (deletion policy `Retain`, or `observe`/`skip`).
pub async fn orphan_key_secret(
    client: &kube::Client,
    ect: &edgetrain_api::EdgeComputeTarget,
    name: &str,
) -> Result<()> {
    use kube::{
        Api, ResourceExt,
        api::{Patch, PatchParams},
    };
    let ns = ect.namespace().unwrap_or_default();
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let Some(secret) = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?
    else {
        return Ok(());
    };
    let uid = ect.uid().unwrap_or_default();
    let owners = secret.owner_references();
    if !owners.iter().any(|o| o.uid == uid) {
        return Ok(());
    }
    let kept: Vec<_> = owners.iter().filter(|o| o.uid != uid).cloned().collect();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"ownerReferences": kept}})),
    )
    .await
    .map_err(|e| Error::kube(format!("orphaning Secret {ns}/{name}"), e))?;
    Ok(())
}
