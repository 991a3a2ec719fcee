//! One EdgeComputeTarget reconcile, as the runtime calls it: read, decide, start writes, write
//! status (`apply`); and deletion (`cleanup`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use edgetrain_api::{
    DeletionPolicy, EdgeComputeTarget, EdgeComputeTargetStatus, ReconcilePolicy,
    conditions::{self, Progress},
};
use edgetrain_azure::ml::Workspace;
use k8s_openapi::{
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference, jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::PostParams,
    runtime::{controller::Action as Requeue, events::EventType},
};
use tracing::{info, instrument, warn};

use super::{
    apply,
    attach::VirtualMachineAttacher,
    decide::{self, Cleanup, Input, decide_cleanup},
    desired::{self, Desired},
    observe::{self, Clients},
    rotation,
};
use crate::{
    Error, Result,
    context::Context,
    runtime::{
        Reconciler, events,
        operations::min_opt,
        secrets::secret_value,
        spec::{deletion_policy, parse_duration, reconcile_policy},
        status::write_status,
    },
    ssh::{self, KeyPair},
};

pub const KIND: &str = "EdgeComputeTarget";
pub const VM_READY: &str = "VMReady";
pub const COMPUTE_ATTACHED: &str = "ComputeAttached";

/// While something is in flight, look again at least this often.
const PROGRESS_POLL: Duration = Duration::from_secs(5);

/// A stored operation older than this is dropped and the resource read afresh: no Stack Hub or
/// Azure ML operation this controller starts runs that long.
const OPERATION_MAX_AGE: Duration = Duration::from_secs(2 * 3600);

async fn event(
    ctx: &Context,
    ect: &EdgeComputeTarget,
    type_: EventType,
    reason: &str,
    note: String,
) {
    events::publish(&ctx.recorder, ect, type_, reason, note).await;
}

async fn clients(ctx: &Context, ect: &EdgeComputeTarget) -> Result<Clients> {
    let ns = ect.namespace().unwrap_or_default();
    let spec = &ect.spec;
    let hub_creds = ctx
        .credentials(&ns, &spec.stack_hub.credentials_secret_ref.name)
        .await?;
    let ml_identity = ctx
        .ml_identity(&ns, &spec.azure_ml.credentials_secret_ref.name)
        .await?;
    let hub = ctx
        .factories
        .stack_hub
        .stack_hub(
            &spec.stack_hub.arm_endpoint,
            spec.stack_hub.api_profile,
            &hub_creds,
        )
        .await?;
    let workspace = Workspace {
        subscription_id: spec.azure_ml.subscription_id.clone(),
        resource_group: spec.azure_ml.resource_group.clone(),
        name: spec.azure_ml.workspace.clone(),
    };
    let ml = ctx
        .factories
        .ml
        .azure_ml(&spec.azure_ml.arm_endpoint, workspace.clone(), &ml_identity)
        .await?;
    Ok(Clients {
        hub: hub.api,
        vm_access: hub.vm_access,
        ml: ml.clone(),
        compute: Arc::new(VirtualMachineAttacher {
            ml,
            workspace,
            compute_name: spec.azure_ml.compute_name.clone(),
        }),
    })
}

pub fn ssh_secret_name(ect: &EdgeComputeTarget) -> String {
    format!("{}-ssh", ect.name_any())
}

/// The target's key pair: read from its Secret, or generated and stored (owned by the target,
/// so Kubernetes garbage-collects it with the target). `create` false: read only.
async fn key_pair(ctx: &Context, ect: &EdgeComputeTarget, create: bool) -> Result<Option<KeyPair>> {
    let ns = ect.namespace().unwrap_or_default();
    let name = ssh_secret_name(ect);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let read = |s: &Secret| -> Result<KeyPair> {
        KeyPair::from_private(&secret_value(s, ssh::PRIVATE_KEY)?)
    };
    if let Some(s) = ctx
        .secrets
        .get(&ctx.client, &ctx.stores, &ns, &name)
        .await?
    {
        return read(&s).map(Some);
    }
    if !create {
        return Ok(None);
    }
    let key = KeyPair::generate_blocking().await?;
    let owner = OwnerReference {
        api_version: EdgeComputeTarget::api_version(&()).to_string(),
        kind: KIND.into(),
        name: ect.name_any(),
        uid: ect.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "edgetrain".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/ssh-auth".into()),
        string_data: Some(BTreeMap::from([
            (
                ssh::PRIVATE_KEY.to_string(),
                key.private_pem().secret().to_string(),
            ),
            (ssh::PUBLIC_KEY.to_string(), key.public_openssh.clone()),
        ])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(Some(key)),
        // Another writer got there first: use what is stored.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api
                .get(&name)
                .await
                .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?;
            read(&s).map(Some)
        }
        Err(e) => Err(Error::kube(format!("creating Secret {ns}/{name}"), e)),
    }
}

/// Reads, decides, starts the writes the plan names, writes status.
#[instrument(skip(ect, ctx), fields(namespace = ect.namespace().unwrap_or_default(), name = %ect.name_any()))]
pub async fn apply(ect: &EdgeComputeTarget, ctx: &Context) -> Result<Requeue> {
    let policy = reconcile_policy(ect)?;
    if policy == ReconcilePolicy::Skip {
        info!("reconcile-policy skip: paused");
        return Ok(Requeue::await_change());
    }
    let idle_timeout = ect
        .spec
        .idle_timeout
        .as_deref()
        .map(parse_duration)
        .transpose()?;
    let clients = clients(ctx, ect).await?;
    if apply::deletes_in_azure(ect, ctx) {
        apply::hold_credentials(&ctx.client, ect).await?;
    }
    let key = key_pair(ctx, ect, policy == ReconcilePolicy::Manage).await?;
    let desired: Desired =
        desired::desired(ect, key.as_ref().map_or("", |k| k.public_openssh.as_str()))?;
    let old = ect.status.clone().unwrap_or_default();
    let now = ctx.clock.now();
    let polled =
        observe::poll_pending(&clients, &old.pending_operations, OPERATION_MAX_AGE, now).await?;
    for (op, why) in &polled.expired {
        warn!(resource = %op.resource_id, action = %op.action, ?why, "dropped a stored operation; reading the resource afresh");
    }
    if decide::only_operations_to_follow(ect.metadata.generation, &old, &polled) {
        return Ok(Requeue::requeue(edgetrain_azure::arm::poll_delay(
            polled.retry_after,
            PROGRESS_POLL,
        )));
    }
    // Until a VM was seen, reads stop where provisioning has got to.
    let fresh = old.vm_resource_id.is_none();
    let mut observed =
        observe::observe(&clients, &desired.ids, &polled.still_pending, fresh).await?;
    observed.pending = polled.still_pending.clone();
    observed.failures = polled.failed.clone();
    let ns = ect.namespace().unwrap_or_default();
    observed.active_runs = observe::active_runs(&ctx.stores, &ns, &ect.name_any());
    let compute_id = clients.compute.compute_id()?;
    let input = Input {
        generation: ect.metadata.generation,
        policy,
        desired: &desired,
        compute_id,
        admin_username: &ect.spec.vm.admin_username,
        idle_timeout,
        status: &old,
        now,
        reach_via: ect.spec.azure_ml.reach_via,
        adopt: desired::adopts(ect),
    };
    let plan = decide::decide(&input, &observed);
    let mut status = plan.status.clone();
    let mut retry_after = polled.retry_after;
    if !plan.actions.is_empty() {
        let key = key
            .as_ref()
            .ok_or_else(|| Error::SshKey("no key pair to write with".into()))?;
        let applied = apply::apply(&clients, &desired, key, &plan.actions, now).await;
        let applied = match applied {
            Ok(a) => a,
            Err(e) => {
                // Keep what was started before the failure resumable.
                write_status_for(ctx, ect, &old, status, &plan, key_fields(ect, None)).await?;
                return Err(e);
            }
        };
        status.pending_operations.extend(applied.pending);
        retry_after = min_opt(retry_after, applied.retry_after);
        let names: Vec<String> = plan.actions.iter().map(|a| format!("{a:?}")).collect();
        info!(actions = ?names, "started Azure operations");
        event(
            ctx,
            ect,
            EventType::Normal,
            "AzureWrite",
            format!("started: {}", names.join(", ")),
        )
        .await;
    }
    // Key rotation runs only on a settled target, one Azure write per reconcile.
    let mut promoted = None;
    let mut rotating = false;
    if policy == ReconcilePolicy::Manage {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let name = ssh_secret_name(ect);
        let secret = ctx
            .secrets
            .get(&ctx.client, &ctx.stores, &ns, &name)
            .await?;
        if let Some(secret) = secret {
            let secret = Secret::clone(&secret);
            // Rotation rewrites the Secret: read it afresh next time.
            ctx.secrets.forget(&ns, &name);
            let settled = plan.actions.is_empty()
                && status.pending_operations.is_empty()
                && matches!(plan.progress, Progress::Ready { .. });
            if !polled.failed.is_empty() {
                rotation::restart(&secrets, secret).await?;
            } else if settled {
                let max_age = ect
                    .spec
                    .ssh_key_rotation
                    .as_ref()
                    .and_then(|r| r.max_age.as_deref())
                    .map(parse_duration)
                    .transpose()?;
                let is_due = rotation::due(ect.spec.ssh_key_rotation.as_ref(), &old, max_age, now);
                let step = rotation::next_step(is_due, rotation::stage(&secret).as_deref());
                let address = decide::compute_address(ect.spec.azure_ml.reach_via, &status);
                if let (true, Some(address)) = (step != rotation::Step::Idle, address) {
                    let advanced = rotation::advance(
                        &secrets,
                        secret,
                        step,
                        &clients,
                        &desired,
                        &ect.spec.stack_hub.location,
                        &address,
                        now,
                    )
                    .await?;
                    info!(?step, "SSH key rotation");
                    event(
                        ctx,
                        ect,
                        EventType::Normal,
                        "SSHKeyRotation",
                        format!("step {step:?}"),
                    )
                    .await;
                    status.pending_operations.extend(advanced.applied.pending);
                    retry_after = min_opt(retry_after, advanced.applied.retry_after);
                    promoted = advanced.promoted;
                    rotating = true;
                }
            }
        }
    }
    let current = promoted.as_ref().or(key.as_ref());
    let became_ready = write_status_for(
        ctx,
        ect,
        &old,
        status.clone(),
        &plan,
        key_fields(ect, current),
    )
    .await?;
    if became_ready && let Some(created) = ect.metadata.creation_timestamp.as_ref() {
        let secs = (Timestamp::now() - created.0).get_seconds().max(0) as f64;
        ctx.metrics
            .time_to_ready
            .get_or_create(&crate::metrics::Metrics::kind(KIND))
            .observe(secs);
    }
    if !polled.failed.is_empty() {
        let failures: Vec<String> = polled.failed.iter().map(|f| f.to_string()).collect();
        return Err(Error::OperationFailed {
            action: "operation".into(),
            resource_id: ect.name_any(),
            message: failures.join("; "),
        });
    }
    let busy = rotating || !plan.actions.is_empty() || !status.pending_operations.is_empty();
    if let Some((reason, message)) = plan.gated_stall() {
        // The runtime records the stall and the inputs it waits on in status (and sends the
        // Warning event): no Azure call until one of them changes, across restarts too.
        return Err(Error::Blocked {
            reason,
            message: message.to_string(),
        });
    }
    Ok(if busy {
        Requeue::requeue(edgetrain_azure::arm::poll_delay(retry_after, PROGRESS_POLL))
    } else if matches!(plan.progress, Progress::InProgress { .. })
        && plan.vm_ready.reason != decide::IDLE
    {
        // Waiting on Azure-side state (provisioning, attach) without an operation to poll.
        Requeue::requeue(PROGRESS_POLL)
    } else {
        Requeue::requeue(EdgeComputeTarget::settings(&ctx.settings).resync)
    })
}

struct KeyFields {
    secret_name: Option<String>,
    fingerprint: Option<String>,
}

fn key_fields(ect: &EdgeComputeTarget, key: Option<&KeyPair>) -> KeyFields {
    KeyFields {
        secret_name: key.map(|_| ssh_secret_name(ect)),
        fingerprint: key.map(|k| k.fingerprint.clone()),
    }
}

/// Stamps conditions, writes status when it changed, emits transition events. Returns true
/// when `Ready` became True for this generation.
async fn write_status_for(
    ctx: &Context,
    ect: &EdgeComputeTarget,
    old: &EdgeComputeTargetStatus,
    mut status: EdgeComputeTargetStatus,
    plan: &decide::Plan,
    key: KeyFields,
) -> Result<bool> {
    let generation = ect.metadata.generation;
    let now = Timestamp::now();
    if key.secret_name.is_some() {
        status.ssh_key_secret_name = key.secret_name;
        if status.ssh_key_fingerprint != key.fingerprint {
            status.ssh_key_fingerprint = key.fingerprint;
            status.ssh_key_rotated_at =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
            status.ssh_key_rotation_token = ect
                .spec
                .ssh_key_rotation
                .as_ref()
                .and_then(|r| r.token.clone());
        }
    }
    plan.vm_ready
        .set(&mut status.conditions, VM_READY, generation, now);
    plan.compute_attached
        .set(&mut status.conditions, COMPUTE_ATTACHED, generation, now);
    conditions::apply_progress(&mut status.conditions, &plan.progress, generation, now);
    status.observed_generation = generation;
    let was_ready = conditions::is_true_for(&old.conditions, conditions::READY, generation);
    let is_ready = conditions::is_true_for(&status.conditions, conditions::READY, generation);
    let old_ready = conditions::find(&old.conditions, conditions::READY).map(|c| c.reason.clone());
    let new_ready =
        conditions::find(&status.conditions, conditions::READY).map(|c| c.reason.clone());
    if &status != old {
        write_status(ctx, ect, &status).await?;
    }
    // A gated stall's Warning event comes from the runtime, with the stall's record.
    if old_ready != new_ready && plan.gated_stall().is_none() {
        let (type_, note) = match &plan.progress {
            Progress::Ready { message, .. } => (EventType::Normal, message.clone()),
            Progress::InProgress { message, .. } => (EventType::Normal, message.clone()),
            Progress::Stalled { message, .. } => (EventType::Warning, message.clone()),
        };
        event(
            ctx,
            ect,
            type_,
            new_ready.as_deref().unwrap_or("Unknown"),
            note,
        )
        .await;
    }
    Ok(is_ready && !was_ready)
}

/// Deletion. `Retain`, `observe` and `skip` leave Azure untouched; `Delete` removes what the
/// operator created and keeps the finalizer until every resource reads 404.
pub async fn cleanup(ect: &EdgeComputeTarget, ctx: &Context) -> Result<Requeue> {
    let done = cleanup_azure(ect, ctx).await?;
    apply::release_credentials(ctx, ect).await?;
    Ok(done)
}

async fn cleanup_azure(ect: &EdgeComputeTarget, ctx: &Context) -> Result<Requeue> {
    let deletion = deletion_policy(
        ect.spec.deletion_policy,
        EdgeComputeTarget::settings(&ctx.settings).default_deletion_policy,
    );
    // An unreadable policy annotation must not block deletion: treat it as hands-off.
    let policy = reconcile_policy(ect).unwrap_or(ReconcilePolicy::Skip);
    if deletion == DeletionPolicy::Retain || policy != ReconcilePolicy::Manage {
        info!(?deletion, ?policy, "deleting without touching Azure");
        // The retained VM is only reachable with its key: keep the Secret past the target.
        apply::orphan_key_secret(&ctx.client, ect, &ssh_secret_name(ect)).await?;
        event(
            ctx,
            ect,
            EventType::Normal,
            "Retained",
            "Azure resources left in place".into(),
        )
        .await;
        return Ok(Requeue::await_change());
    }
    let candidates = desired::cleanup_ids(ect);
    if candidates.is_empty() {
        info!("nothing was created in Azure; deleting without touching it");
        return Ok(Requeue::await_change());
    }
    let clients = clients(ctx, ect).await?;
    let now = ctx.clock.now();
    let old = ect.status.clone().unwrap_or_default();
    let deletes: Vec<_> = old
        .pending_operations
        .iter()
        .filter(|o| o.action == apply::DELETE)
        .cloned()
        .collect();
    if !deletes.is_empty() {
        // Follow the deletes already started: one poll each, then wait as long as Azure says.
        let resumed = observe::poll_pending(&clients, &deletes, OPERATION_MAX_AGE, now).await?;
        let running = resumed.still_pending.len();
        if running != old.pending_operations.len() {
            let status = EdgeComputeTargetStatus {
                pending_operations: resumed.still_pending,
                ..old.clone()
            };
            write_status(ctx, ect, &status).await?;
        }
        if running > 0 {
            return Err(Error::CleanupPending {
                what: format!("{running} delete operation(s)"),
                retry_after: resumed.retry_after,
            });
        }
        // Every delete ended (or can no longer be followed): read what remains afresh.
    }
    let remaining = observe::remaining(
        &clients,
        &candidates,
        &desired::owner_tags(ect),
        desired::adopts(ect),
    )
    .await?;
    if !remaining.foreign.is_empty() {
        info!(foreign = ?remaining.foreign, "leaving resources this target does not own");
    }
    let step = decide_cleanup(&remaining);
    match &step {
        Cleanup::Done => {
            event(
                ctx,
                ect,
                EventType::Normal,
                "Deleted",
                "Azure resources deleted".into(),
            )
            .await;
            Ok(Requeue::await_change())
        }
        Cleanup::Wait(what) => Err(Error::cleanup_pending(what.clone())),
        step => {
            let applied = apply::cleanup(&clients, step, now).await?;
            event(ctx, ect, EventType::Normal, "Deleting", format!("{step:?}")).await;
            if !applied.pending.is_empty() {
                let status = EdgeComputeTargetStatus {
                    pending_operations: applied.pending,
                    ..old
                };
                write_status(ctx, ect, &status).await?;
            }
            Err(Error::CleanupPending {
                what: format!("{step:?}"),
                retry_after: applied.retry_after,
            })
        }
    }
}
