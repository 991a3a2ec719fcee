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
use crate::{
    Error, Result,
    context::Context,
    runtime::{
        spec::{deletion_policy, reconcile_policy},
        stores::Stores,
    },
    ssh::KeyPair,
};

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
/// The action of a cleanup operation kept in status (a delete, or the compute's detach, which
/// is a DELETE too): the next reconcile follows its operation and its `Retry-After` rather
/// than re-reading every resource on a fixed beat.
pub const DELETE: &str = "delete";

/// Starts one cleanup step; the deletes Azure runs asynchronously come back as pollers.
pub async fn cleanup(clients: &Clients, step: &Cleanup, now: DateTime<Utc>) -> Result<Applied> {
    let mut applied = Applied::default();
    match step {
        Cleanup::DetachCompute => {
            let started = clients.compute.detach().await?;
            applied.record(started, &clients.compute.compute_id()?, DELETE, now)?;
        }
        Cleanup::Delete(ids) => {
            for id in ids {
                let started = clients
                    .hub
                    .delete(id)
                    .await
                    .map_err(|e| Error::azure(format!("DELETE {id}"), e))?;
                applied.record(started, id, DELETE, now)?;
            }
        }
        Cleanup::Wait(_) | Cleanup::Done => {}
    }
    Ok(applied)
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

/// Finalizer on the credentials Secrets of a target that deletes its Azure resources, so that
/// deleting its namespace (which deletes the Secrets too) cannot take the credentials away
/// before the cleanup has run.
pub const CREDENTIALS_FINALIZER: &str = "edgetrain.dev/credentials-in-use";

/// Whether `ect` makes the operator delete in Azure (policy `manage`, deletion `Delete`).
pub fn deletes_in_azure(ect: &edgetrain_api::EdgeComputeTarget, ctx: &Context) -> bool {
    use crate::runtime::Reconciler;
    use edgetrain_api::{DeletionPolicy, EdgeComputeTarget, ReconcilePolicy};
    let default = EdgeComputeTarget::settings(&ctx.settings).default_deletion_policy;
    reconcile_policy(ect).is_ok_and(|p| p == ReconcilePolicy::Manage)
        && deletion_policy(ect.spec.deletion_policy, default) == DeletionPolicy::Delete
}

fn credential_secrets(ect: &edgetrain_api::EdgeComputeTarget) -> Vec<String> {
    let mut names = vec![
        ect.spec.stack_hub.credentials_secret_ref.name.clone(),
        ect.spec.azure_ml.credentials_secret_ref.name.clone(),
    ];
    names.dedup();
    names
}

async fn set_finalizer(
    api: &kube::Api<k8s_openapi::api::core::v1::Secret>,
    secret: &k8s_openapi::api::core::v1::Secret,
    present: bool,
) -> Result<()> {
    use kube::{
        ResourceExt,
        api::{Patch, PatchParams},
    };
    let name = secret.name_any();
    let mut finalizers: Vec<String> = secret.finalizers().to_vec();
    let has = finalizers.iter().any(|f| f == CREDENTIALS_FINALIZER);
    if has == present {
        return Ok(());
    }
    if present {
        finalizers.push(CREDENTIALS_FINALIZER.to_string());
    } else {
        finalizers.retain(|f| f != CREDENTIALS_FINALIZER);
    }
    // The resourceVersion makes this a compare-and-swap with other writers of the list.
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": secret.resource_version(),
    }});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(format!("updating finalizers of Secret {name}"), e))?;
    Ok(())
}

/// Puts [`CREDENTIALS_FINALIZER`] on the target's credentials Secrets.
pub async fn hold_credentials(
    client: &kube::Client,
    ect: &edgetrain_api::EdgeComputeTarget,
) -> Result<()> {
    use kube::ResourceExt;
    let ns = ect.namespace().unwrap_or_default();
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), &ns);
    for name in credential_secrets(ect) {
        let secret = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?;
        if let Some(secret) = secret
            && secret.metadata.deletion_timestamp.is_none()
        {
            set_finalizer(&api, &secret, true).await?;
        }
    }
    Ok(())
}

/// Removes [`CREDENTIALS_FINALIZER`] from the target's credentials Secrets once no other target
/// that deletes in Azure still uses them.
pub async fn release_credentials(
    ctx: &Context,
    ect: &edgetrain_api::EdgeComputeTarget,
) -> Result<()> {
    use kube::ResourceExt;
    let ns = ect.namespace().unwrap_or_default();
    // Neighbours come from the watch cache, not a LIST per deletion.
    let others = Stores::select(&ctx.stores.edge_compute_targets, &ns, |_| true);
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(ctx.client.clone(), &ns);
    for name in credential_secrets(ect) {
        let still_used = others.iter().any(|o| {
            o.uid() != ect.uid()
                && deletes_in_azure(o, ctx)
                && credential_secrets(o).contains(&name)
        });
        if still_used {
            continue;
        }
        let secret = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?;
        if let Some(secret) = secret {
            set_finalizer(&api, &secret, false).await?;
        }
    }
    Ok(())
}
