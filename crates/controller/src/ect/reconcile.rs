//! Finalizer-first reconcile of EdgeComputeTargets: read, decide, start writes, write status.

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
    api::{Patch, PatchParams, PostParams},
    runtime::{
        controller::Action as Requeue,
        events::{Event, EventType},
        finalizer::{Event as Finalizer, finalizer},
    },
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
    context::{Context, Credentials},
    error::{Handling, retry_delay},
    ssh::{self, KeyPair},
};

pub const FINALIZER: &str = "edgetrain.dev/cleanup";
pub const FIELD_MANAGER: &str = "edgetrain-controller";
pub const KIND: &str = "EdgeComputeTarget";
pub const VM_READY: &str = "VMReady";
pub const COMPUTE_ATTACHED: &str = "ComputeAttached";

/// While something is in flight, look again at least this often.
const PROGRESS_POLL: Duration = Duration::from_secs(5);

#[instrument(skip(ect, ctx), fields(namespace = ect.namespace().unwrap_or_default(), name = %ect.name_any()))]
pub async fn reconcile(ect: Arc<EdgeComputeTarget>, ctx: Arc<Context>) -> Result<Requeue> {
    ctx.metrics
        .reconciles
        .get_or_create(&crate::metrics::Metrics::kind(KIND))
        .inc();
    let timer = std::time::Instant::now();
    let ns = ect.namespace().unwrap_or_default();
    let api: Api<EdgeComputeTarget> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, ect.clone(), |event| async {
        match event {
            Finalizer::Apply(ect) => apply_with_status(&ect, &ctx).await,
            Finalizer::Cleanup(ect) => cleanup(&ect, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .duration
        .get_or_create(&crate::metrics::Metrics::kind(KIND))
        .observe(timer.elapsed().as_secs_f64());
    let key = format!("{ns}/{}", ect.name_any());
    if result.is_ok() {
        ctx.failures.lock().expect("lock").remove(&key);
    }
    result
}

/// Requeue policy for failures: stalled errors wait for a change, the rest back off.
pub fn error_policy(ect: Arc<EdgeComputeTarget>, err: &Error, ctx: Arc<Context>) -> Requeue {
    let label = err.metric_label();
    if label != "cleanup_pending" {
        ctx.metrics.error(KIND, label);
    }
    let key = format!("{}/{}", ect.namespace().unwrap_or_default(), ect.name_any());
    let failures = {
        let mut f = ctx.failures.lock().expect("lock");
        let n = f.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    match err.handling() {
        Handling::AwaitChange => Requeue::await_change(),
        Handling::Retry(Some(d)) if label == "cleanup_pending" => Requeue::requeue(d),
        Handling::Retry(after) => Requeue::requeue(retry_delay(after, failures)),
    }
}

fn reference(ect: &EdgeComputeTarget) -> k8s_openapi::api::core::v1::ObjectReference {
    ect.object_ref(&())
}

async fn event(
    ctx: &Context,
    ect: &EdgeComputeTarget,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &reference(ect)).await {
        warn!(error = %e, "could not publish event");
    }
}

/// Runs the apply branch; a failure that needs the user's attention becomes `Stalled` in
/// status; every failure becomes a Warning event.
async fn apply_with_status(ect: &EdgeComputeTarget, ctx: &Context) -> Result<Requeue> {
    match apply_branch(ect, ctx).await {
        Ok(a) => Ok(a),
        Err(e) => {
            if e.is_stalled() {
                let mut status = ect.status.clone().unwrap_or_default();
                let changed = conditions::apply_progress(
                    &mut status.conditions,
                    &Progress::stalled(e.reason(), e.to_string()),
                    ect.metadata.generation,
                    Timestamp::now(),
                );
                if changed {
                    status.observed_generation = ect.metadata.generation;
                    write_status(ctx, ect, &status).await?;
                }
            }
            if !matches!(e, Error::CleanupPending(_)) {
                event(ctx, ect, EventType::Warning, e.reason(), e.to_string()).await;
            }
            Err(e)
        }
    }
}

fn secret_value(secret: &Secret, ns: &str, name: &str, key: &str) -> Result<String> {
    let invalid = |reason: String| Error::SecretInvalid {
        namespace: ns.to_string(),
        name: name.to_string(),
        reason,
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| invalid(format!("key {key:?} is missing")))?;
    let text = String::from_utf8(bytes.0.clone())
        .map_err(|_| invalid(format!("key {key:?} is not UTF-8")))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(invalid(format!("key {key:?} is empty")));
    }
    Ok(text)
}

/// A service principal from a Secret with keys `tenantId`, `clientId`, `clientSecret`.
pub async fn credentials(ctx: &Context, ns: &str, name: &str) -> Result<Credentials> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?
        .ok_or_else(|| Error::SecretNotFound {
            namespace: ns.to_string(),
            name: name.to_string(),
        })?;
    Ok(Credentials {
        tenant: secret_value(&secret, ns, name, "tenantId")?,
        client_id: secret_value(&secret, ns, name, "clientId")?,
        client_secret: azure_core::credentials::Secret::new(secret_value(
            &secret,
            ns,
            name,
            "clientSecret",
        )?),
    })
}

async fn clients(ctx: &Context, ect: &EdgeComputeTarget) -> Result<Clients> {
    let ns = ect.namespace().unwrap_or_default();
    let spec = &ect.spec;
    let hub_creds = credentials(ctx, &ns, &spec.stack_hub.credentials_secret_ref.name).await?;
    let ml_creds = credentials(ctx, &ns, &spec.azure_ml.credentials_secret_ref.name).await?;
    let hub = ctx
        .azure
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
        .azure
        .azure_ml(&spec.azure_ml.arm_endpoint, workspace.clone(), &ml_creds)
        .await?;
    Ok(Clients {
        hub: hub.api,
        vm_access: hub.vm_access,
        hub_endpoint: spec.stack_hub.arm_endpoint.clone(),
        ml_endpoint: spec.azure_ml.arm_endpoint.clone(),
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
        KeyPair::from_private(&secret_value(s, &ns, &name, ssh::PRIVATE_KEY)?)
    };
    if let Some(s) = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?
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

/// Go-style duration (`90s`, `5m`, `1h30m`, `2h`), parsed by kube's `metav1.Duration`
/// implementation so every unit the CRD's `format: duration` admits is understood.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::InvalidSpec(format!("{s:?} is not a duration like 30m or 1h30m"));
    // Go rejects the empty string; kube's parser reads it as zero.
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    s.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|_| bad())
}

fn policy(ect: &EdgeComputeTarget) -> Result<ReconcilePolicy> {
    ReconcilePolicy::from_annotations(ect.metadata.annotations.as_ref())
        .map_err(|e| Error::InvalidSpec(e.to_string()))
}

async fn apply_branch(ect: &EdgeComputeTarget, ctx: &Context) -> Result<Requeue> {
    let policy = policy(ect)?;
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
    if apply::deletes_in_azure(ect, ctx.default_deletion_policy) {
        apply::hold_credentials(&ctx.client, ect).await?;
    }
    let key = key_pair(ctx, ect, policy == ReconcilePolicy::Manage).await?;
    let desired: Desired =
        desired::desired(ect, key.as_ref().map_or("", |k| k.public_openssh.as_str()))?;
    let old = ect.status.clone().unwrap_or_default();
    let now = ctx.clock.now();
    let polled = observe::poll_pending(&clients, &old.pending_operations, now).await?;
    for dropped in &polled.dropped {
        warn!(poller = %dropped, "dropped a stale poller; observing the resource instead");
    }
    let mut observed = observe::observe(&clients, &desired.ids).await?;
    observed.pending = polled.still_pending.clone();
    observed.failures = polled.failures.clone();
    let ns = ect.namespace().unwrap_or_default();
    observed.active_runs = observe::active_runs(&ctx.client, &ns, &ect.name_any()).await?;
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
        retry_after = observe::min_opt(retry_after, applied.retry_after);
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
        let secret = secrets
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?;
        if let Some(secret) = secret {
            let settled = plan.actions.is_empty()
                && status.pending_operations.is_empty()
                && matches!(plan.progress, Progress::Ready { .. });
            if !polled.failures.is_empty() {
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
                    retry_after = observe::min_opt(retry_after, advanced.applied.retry_after);
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
    if !polled.failures.is_empty() {
        let failures: Vec<String> = polled.failures.iter().map(|f| f.to_string()).collect();
        return Err(Error::OperationFailed {
            action: "operation".into(),
            resource_id: ect.name_any(),
            message: failures.join("; "),
        });
    }
    let busy = rotating || !plan.actions.is_empty() || !status.pending_operations.is_empty();
    Ok(if busy {
        Requeue::requeue(retry_after.unwrap_or(PROGRESS_POLL).min(PROGRESS_POLL * 6))
    } else if matches!(plan.progress, Progress::InProgress { .. }) && plan.vm_ready.1 != "Idle" {
        // Waiting on Azure-side state (provisioning, attach) without an operation to poll.
        Requeue::requeue(PROGRESS_POLL)
    } else {
        Requeue::requeue(ctx.resync)
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
    let (ok, reason, msg) = &plan.vm_ready;
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(VM_READY, *ok, reason, msg, generation, now),
    );
    let (ok, reason, msg) = &plan.compute_attached;
    conditions::set_condition(
        &mut status.conditions,
        conditions::condition(COMPUTE_ATTACHED, *ok, reason, msg, generation, now),
    );
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
    if old_ready != new_ready {
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

/// Server-side apply of the whole status under one field manager.
async fn write_status(
    ctx: &Context,
    ect: &EdgeComputeTarget,
    status: &EdgeComputeTargetStatus,
) -> Result<()> {
    let api: Api<EdgeComputeTarget> =
        Api::namespaced(ctx.client.clone(), &ect.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": EdgeComputeTarget::api_version(&()),
        "kind": KIND,
        "status": status,
    });
    api.patch_status(
        &ect.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::kube("writing status", e))?;
    Ok(())
}

/// Deletion. `Retain`, `observe` and `skip` leave Azure untouched; `Delete` removes what the
/// operator created and keeps the finalizer until every resource reads 404.
async fn cleanup(ect: &EdgeComputeTarget, ctx: &Context) -> Result<Requeue> {
    let done = cleanup_azure(ect, ctx).await?;
    apply::release_credentials(&ctx.client, ect, ctx.default_deletion_policy).await?;
    Ok(done)
}

async fn cleanup_azure(ect: &EdgeComputeTarget, ctx: &Context) -> Result<Requeue> {
    let deletion = ect
        .spec
        .deletion_policy
        .unwrap_or(ctx.default_deletion_policy);
    let policy = policy(ect).unwrap_or(ReconcilePolicy::Skip);
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
    let result = async {
        let clients = clients(ctx, ect).await?;
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
            Cleanup::Wait(what) => Err(Error::CleanupPending(what.clone())),
            step => {
                apply::cleanup(&clients, step).await?;
                event(ctx, ect, EventType::Normal, "Deleting", format!("{step:?}")).await;
                Err(Error::CleanupPending(format!("{step:?}")))
            }
        }
    }
    .await;
    if let Err(e) = &result
        && !matches!(e, Error::CleanupPending(_))
    {
        event(ctx, ect, EventType::Warning, e.reason(), e.to_string()).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        // Units the CRD pattern admits must parse too.
        assert_eq!(
            parse_duration("1500us").unwrap(),
            Duration::from_micros(1500)
        );
        for bad in ["", "5", "m", "5d", "1h5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
