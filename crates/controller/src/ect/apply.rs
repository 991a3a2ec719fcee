//! Thin writes: start each planned action once and keep its poller in status.

use chrono::{DateTime, Utc};
use edgetrain_azure::stackhub::{VirtualMachine, VmAction};

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
    observed_vm: Option<&VirtualMachine>,
    key: &KeyPair,
    attach_location: &str,
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
                let Some(vm) = observed_vm else { continue };
                let mut body = vm.clone();
                body.properties
                    .hardware_profile
                    .get_or_insert_with(Default::default)
                    .vm_size = Some(desired.vm.size.clone());
                let s = hub
                    .put_vm(&ids.vm, &body)
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
                        location: attach_location,
                        address,
                        username: &desired.vm.admin_username,
                        key,
                        vm_size: &desired.vm.size,
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
