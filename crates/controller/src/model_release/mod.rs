//! The ModelRelease controller: pure `desired`/`decide`, thin `observe`/`apply`, and (here) the
//! reconcile steps and its hooks into the runtime.

pub mod apply;
pub mod decide;
pub mod desired;
pub mod observe;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use edgetrain_api::{
    DeletionPolicy, EdgeComputeTarget, ModelRelease, ModelReleaseStatus, TrainingRun,
    model_release::ModelSpec,
};
use edgetrain_azure::ml::MlApi;
use kube::{
    ResourceExt,
    runtime::{Controller, controller::Action, events::EventType, reflector::ObjectRef},
};

use self::{
    decide::{Gate, PUSHED, REGISTERED, Registration, Stage},
    desired::{Lineage, RunState},
};
use crate::{
    Error, Result,
    context::{Context, ControllerSettings, Settings},
    runtime::{
        Reconciler, events,
        spec::deletion_policy,
        status::{stamp_progress, write_status},
        stores::{Shared, Stores, Wiring, changed_only},
    },
};

#[async_trait]
impl Reconciler for ModelRelease {
    type Status = ModelReleaseStatus;

    fn status(&self) -> Option<&ModelReleaseStatus> {
        self.status.as_ref()
    }

    fn settings(settings: &Settings) -> &ControllerSettings {
        &settings.model_release
    }

    fn primary(wiring: &Wiring) -> &Shared<Self> {
        &wiring.model_releases
    }

    fn watches(controller: Controller<Self>, wiring: &Wiring) -> Controller<Self> {
        let releases = wiring.model_releases.store();
        let by_secret = releases.clone();
        // A run matters when its phase or outputs change, not on every status write.
        let runs = changed_only(wiring.training_runs.subscribe(), |run: &TrainingRun| {
            run.status
                .as_ref()
                .map(|s| (format!("{:?}", s.phase), s.outputs.clone()))
        });
        controller
            .watches_shared_stream(runs, move |run| {
                let ns = run.namespace().unwrap_or_default();
                let name = run.name_any();
                Stores::select(&releases, &ns, |r| {
                    r.spec.training_run_ref.as_ref().map(|t| &t.name) == Some(&name)
                })
                .iter()
                .map(|r| ObjectRef::from_obj(&**r))
                .collect::<Vec<_>>()
            })
            .watches_shared_stream(wiring.secrets.subscribe(), move |secret| {
                let name = secret.name_any();
                let ns = secret.namespace().unwrap_or_default();
                Stores::select(&by_secret, &ns, |r| r.referenced_secrets().contains(&name))
                    .iter()
                    .map(|r| ObjectRef::from_obj(&**r))
                    .collect::<Vec<_>>()
            })
    }

    fn referenced_secrets(&self) -> Vec<String> {
        vec![self.spec.registry.credentials_secret_ref.name.clone()]
    }

    async fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        apply_release(&obj, &ctx).await
    }

    async fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        cleanup_release(&obj, &ctx).await
    }
}

/// `namespace/name/uid`: the identity a release leaves on the versions it registers.
fn released_by(mr: &ModelRelease) -> String {
    format!(
        "{}/{}/{}",
        mr.namespace().unwrap_or_default(),
        mr.name_any(),
        mr.uid().unwrap_or_default()
    )
}

async fn event(ctx: &Context, mr: &ModelRelease, type_: EventType, reason: &str, note: String) {
    events::publish(&ctx.recorder, mr, type_, reason, note).await;
}

/// Writes the conditions of `stage` (and `fill`'s fields) on the stored status.
async fn record(
    ctx: &Context,
    mr: &ModelRelease,
    stage: &Stage,
    fill: impl FnOnce(&mut ModelReleaseStatus),
) -> Result<bool> {
    let mut status = mr.status.clone().unwrap_or_default();
    fill(&mut status);
    let (registered, pushed, progress) = decide::conditions(stage);
    let now = k8s_openapi::jiff::Timestamp::now();
    let generation = mr.metadata.generation;
    registered.set(&mut status.conditions, REGISTERED, generation, now);
    pushed.set(&mut status.conditions, PUSHED, generation, now);
    stamp_progress(&mut status, &progress, generation);
    let changed = Some(&status) != mr.status.as_ref();
    if changed {
        write_status(ctx, mr, &status).await?;
    }
    Ok(changed)
}

/// Where the model comes from: the workspace and the lineage.
async fn source(
    ctx: &Context,
    mr: &ModelRelease,
) -> Result<Option<(Arc<dyn MlApi>, Lineage, String)>> {
    let ns = mr.namespace().unwrap_or_default();
    if let Some(existing) = &mr.spec.existing_model {
        let ect = observe::compute_target(ctx, &ns, &existing.compute_target_ref.name)?;
        let ml = ctx.workspace_of(&ect).await?.0;
        let found = ml
            .get_model_version(&existing.name, &existing.version)
            .await
            .map_err(|e| Error::azure("reading the existing model", e))?
            .ok_or_else(|| Error::Blocked {
                reason: "ModelNotFound",
                message: format!(
                    "model {} version {} not found",
                    existing.name, existing.version
                ),
            })?;
        // The lineage it has: what our properties say, if it was registered by a release.
        let p = found.properties.properties.clone().unwrap_or_default();
        let get = |k: &str| p.get(&format!("{}{k}", desired::PREFIX)).cloned();
        // `training-run` is `namespace/name` (see `Lineage::entries`).
        let run = get("training-run").unwrap_or_default();
        let (run_namespace, run_name) = run.split_once('/').unwrap_or(("", &run));
        let lineage = Lineage {
            run_namespace: run_namespace.to_string(),
            run_name: run_name.to_string(),
            run_uid: get("training-run-uid").unwrap_or_default(),
            job_name: found.properties.job_name.clone().unwrap_or_default(),
            output_uri: found.properties.model_uri.clone().unwrap_or_default(),
            code_digest: get("code-digest"),
            data_fingerprint: get("data-fingerprint"),
            data_blob_count: get("data-blob-count").and_then(|n| n.parse().ok()),
            // A version registered elsewhere has no time of ours: 0, the same on every release.
            model_time: get(desired::MODEL_TIME)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        };
        return Ok(Some((ml, lineage, ect.spec.azure_ml.arm_endpoint.clone())));
    }
    let run = observe::training_run(ctx, mr);
    let state = desired::run_state(run.as_deref(), &mr.spec.model.output_name);
    match decide::run_gate(&state) {
        Some(gate @ Gate::Wait { .. }) => {
            // Not a failure: the TrainingRun watch brings the release back when the run moves.
            if record(ctx, mr, &Stage::Gated(gate.clone()), |_| {}).await? {
                let Gate::Wait { reason, message } = gate else {
                    unreachable!()
                };
                event(ctx, mr, EventType::Normal, reason, message).await;
            }
            Ok(None)
        }
        Some(gate @ Gate::Stall { .. }) => {
            record(ctx, mr, &Stage::Gated(gate.clone()), |_| {}).await?;
            let Gate::Stall { reason, message } = gate else {
                unreachable!()
            };
            Err(Error::Blocked { reason, message })
        }
        None => {
            let RunState::Releasable(lineage) = state else {
                unreachable!("run_gate passes only a releasable run")
            };
            let run = run.expect("releasable runs exist");
            let ect = observe::compute_target(ctx, &ns, &run.spec.compute_target_ref.name)?;
            let ml = ctx.workspace_of(&ect).await?.0;
            Ok(Some((ml, lineage, ect.spec.azure_ml.arm_endpoint.clone())))
        }
    }
}

/// The registry client of the release's `spec.registry`, with the credentials of its Secret
/// (an AAD principal is exchanged at the ARM endpoint of the workspace's cloud).
async fn registry_of(
    ctx: &Context,
    mr: &ModelRelease,
    arm_endpoint: &str,
) -> Result<edgetrain_registry::Registry> {
    let ns = mr.namespace().unwrap_or_default();
    let secret = ctx
        .secret(&ns, &mr.spec.registry.credentials_secret_ref.name)
        .await?;
    let creds = observe::registry_credentials(&secret, arm_endpoint)?;
    ctx.factories
        .registry
        .registry(&mr.spec.registry.login_server, &creds)
        .await
}

/// A failed registry DELETE. Refused, it is named as such: a credential with ACR's AcrPush
/// role pushes but may not delete (that takes AcrDelete), and "push denied" would send the
/// user to the wrong grant.
fn deleting(context: String, e: edgetrain_registry::Error) -> Error {
    match e {
        e @ edgetrain_registry::Error::Denied { .. } => Error::Blocked {
            reason: "RegistryDeleteDenied",
            message: format!(
                "{context}: {e} (deletionPolicy Delete needs a registry credential that may \
                 delete, e.g. the AcrDelete role; or set deletionPolicy Retain)"
            ),
        },
        e => Error::registry(context, e),
    }
}

async fn apply_release(mr: &ModelRelease, ctx: &Context) -> Result<Action> {
    // Released for this generation: version and digests are immutable, nothing to redo.
    if mr.status.as_ref().is_some_and(|s| {
        edgetrain_api::conditions::is_true_for(&s.conditions, "Ready", mr.metadata.generation)
    }) {
        return Ok(Action::await_change());
    }
    // `None`: waiting for the TrainingRun (recorded in status).
    let Some((ml, lineage, arm_endpoint)) = source(ctx, mr).await? else {
        return Ok(Action::await_change());
    };
    let registry = registry_of(ctx, mr, &arm_endpoint).await?;

    let (datastore, path) = observe::datastore_path(&lineage.output_uri)?;
    let (blob, container) = observe::datastore(ctx, &*ml, datastore).await?;
    // Listed afresh each time: the files are read from the datastore by both passes (digest,
    // push), pinned to this listing's ETags.
    let files = observe::model_files(blob, &container, path).await?;
    release(mr, ctx, &*ml, &registry, &files, &lineage).await
}

async fn release(
    mr: &ModelRelease,
    ctx: &Context,
    ml: &dyn MlApi,
    registry: &edgetrain_registry::Registry,
    files: &[edgetrain_registry::ModelFile],
    lineage: &Lineage,
) -> Result<Action> {
    let spec: &ModelSpec = &mr.spec.model;
    let rel = released_by(mr);
    let existing = match &mr.spec.existing_model {
        Some(e) => vec![(e.version.clone(), Default::default())],
        None => observe::versions(ml, &spec.name).await?,
    };
    let mut annotations = lineage.entries();
    annotations.retain(|_, v| !v.is_empty());
    let name = mr
        .spec
        .existing_model
        .as_ref()
        .map_or(spec.name.as_str(), |e| e.name.as_str());
    // The version enters the artifact, so it is chosen before the digest pass.
    let version = match &mr.spec.existing_model {
        Some(e) => e.version.clone(),
        None => decide::choose_version(
            spec.version.as_deref(),
            mr.status.as_ref().and_then(|s| s.model_version.as_deref()),
            &existing,
            &rel,
        ),
    };
    let assembled = apply::assemble(
        &mr.spec,
        registry,
        files,
        &version,
        lineage.model_time,
        annotations,
    )
    .await?;
    let digests = assembled.digests();
    let model_id = if mr.spec.existing_model.is_some() {
        ml.get_model_version(name, &version)
            .await
            .map_err(|e| Error::azure("reading the existing model", e))?
            .and_then(|r| r.id)
            .unwrap_or_default()
    } else {
        let body = desired::model_version(spec, lineage, &digests, &rel);
        match decide::registration(&version, &body, &existing) {
            Registration::Conflict(message) => {
                record(ctx, mr, &Stage::VersionConflict(message.clone()), |_| {}).await?;
                return Err(Error::Blocked {
                    reason: "VersionConflict",
                    message,
                });
            }
            Registration::Adopt => {
                event(
                    ctx,
                    mr,
                    EventType::Normal,
                    "Adopted",
                    format!("model {name} version {version} exists with this content and lineage"),
                )
                .await;
                ml.get_model_version(name, &version)
                    .await
                    .map_err(|e| Error::azure("reading the model version", e))?
                    .and_then(|r| r.id)
                    .unwrap_or_default()
            }
            Registration::Create => {
                let id = apply::register(ml, name, &version, body).await?;
                event(
                    ctx,
                    mr,
                    EventType::Normal,
                    "Registered",
                    format!(
                        "model {name} version {version} registered from {} ({} files)",
                        lineage.output_uri,
                        files.len()
                    ),
                )
                .await;
                id.unwrap_or_default()
            }
        }
    };
    record(
        ctx,
        mr,
        &Stage::Registered {
            version: version.clone(),
        },
        |s| {
            s.model_id = Some(model_id.clone());
            s.model_version = Some(version.clone());
        },
    )
    .await?;
    let tags = desired::oci_tags(&mr.spec, &version).map_err(Error::InvalidSpec)?;
    let pushed = apply::push(&mr.spec, registry, &assembled, &tags, lineage, &model_id).await?;
    event(
        ctx,
        mr,
        EventType::Normal,
        "Pushed",
        format!(
            "artifact {}{}; {} bytes uploaded, {} reused",
            pushed.artifact,
            pushed
                .image
                .as_deref()
                .map(|i| format!(", image {i}"))
                .unwrap_or_default(),
            pushed.uploaded,
            pushed.reused
        ),
    )
    .await;
    let mut latest = mr.clone();
    latest.status = Some(ModelReleaseStatus {
        model_id: Some(model_id),
        model_version: Some(version.clone()),
        ..mr.status.clone().unwrap_or_default()
    });
    record(ctx, &latest, &Stage::Pushed { version }, |s| {
        s.artifact_digest = Some(pushed.artifact);
        s.image_digest = pushed.image;
        s.referrers = pushed.referrers;
        s.bytes_uploaded = Some(pushed.uploaded);
        s.bytes_reused = Some(pushed.reused);
    })
    .await?;
    Ok(Action::requeue(ctx.settings.model_release.resync))
}

/// `Delete` takes back what this release shipped ([`decide::cleanup_plan`]): its referrers,
/// image and artifact manifests, and the model version it registered is archived. A failure
/// is returned (condition + event by the runtime) and the finalizer stays until a retry
/// succeeds; every step tolerates having been done already.
async fn cleanup_release(mr: &ModelRelease, ctx: &Context) -> Result<Action> {
    let policy = deletion_policy(
        mr.spec.deletion_policy,
        ctx.settings.model_release.default_deletion_policy,
    );
    let status = mr.status.clone().unwrap_or_default();
    let shipped = status.model_id.is_some()
        || !decide::cleanup_plan(policy, &status, None, "", &Default::default()).is_empty();
    if policy == DeletionPolicy::Retain || !shipped {
        return Ok(Action::await_change());
    }
    let ns = mr.namespace().unwrap_or_default();
    let in_use = in_use_elsewhere(ctx, mr);
    // The version's tags say who registered it: read them from its workspace.
    let workspace = match &status.model_id {
        Some(id) => Some(model_workspace(ctx, &ns, id).await?),
        None => None,
    };
    let tags = match (&workspace, &status.model_version) {
        (Some((_, ml, name)), Some(v)) => ml
            .get_model_version(name, v)
            .await
            .map_err(|e| Error::azure("reading the model version to archive", e))?
            .and_then(|r| r.properties.tags),
        _ => None,
    };
    let plan = decide::cleanup_plan(policy, &status, tags.as_ref(), &released_by(mr), &in_use);
    let arm_endpoint = workspace
        .as_ref()
        .map(|(ect, _, _)| ect.spec.azure_ml.arm_endpoint.clone())
        .unwrap_or_default();
    let registry = registry_of(ctx, mr, &arm_endpoint).await?;
    let repo = &mr.spec.registry.repository;
    let mut done = Vec::new();
    for step in &plan {
        match step {
            decide::CleanupStep::DeleteReferrer { digest, subject } => {
                registry
                    .delete_manifest(repo, digest)
                    .await
                    .map_err(|e| deleting(format!("deleting referrer {digest}"), e))?;
                registry
                    .unlist_referrer(repo, subject, digest)
                    .await
                    .map_err(|e| {
                        Error::registry(format!("unlisting referrer {digest} of {subject}"), e)
                    })?;
                done.push(digest.clone());
            }
            decide::CleanupStep::DeleteManifest(digest) => {
                registry
                    .delete_manifest(repo, digest)
                    .await
                    .map_err(|e| deleting(format!("deleting manifest {digest}"), e))?;
                done.push(digest.clone());
            }
            decide::CleanupStep::Archive(version) => {
                let (_, ml, name) = workspace
                    .as_ref()
                    .expect("archive is planned from the version read");
                apply::archive(&**ml, name, version).await?;
                event(
                    ctx,
                    mr,
                    EventType::Normal,
                    "Archived",
                    format!("model {name} version {version} archived"),
                )
                .await;
            }
        }
    }
    if !done.is_empty() {
        event(
            ctx,
            mr,
            EventType::Normal,
            "Deleted",
            format!(
                "deleted from {}/{repo}: {}",
                mr.spec.registry.login_server,
                done.join(", ")
            ),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Digests and model ids other releases of the same repository list in their status.
fn in_use_elsewhere(ctx: &Context, mr: &ModelRelease) -> std::collections::BTreeSet<String> {
    let ns = mr.namespace().unwrap_or_default();
    let reg = &mr.spec.registry;
    Stores::select(&ctx.stores.model_releases, &ns, |o| {
        o.uid() != mr.uid()
            && o.spec.registry.login_server == reg.login_server
            && o.spec.registry.repository == reg.repository
    })
    .iter()
    .filter_map(|o| o.status.clone())
    .flat_map(|s| {
        let mut v: Vec<String> = s.referrers.into_iter().map(|r| r.digest).collect();
        v.extend(
            [s.artifact_digest, s.image_digest]
                .into_iter()
                .flatten()
                .map(|d| desired::digest_of(&d).to_string()),
        );
        v.extend(s.model_id);
        v
    })
    .collect()
}

/// The EdgeComputeTarget (same namespace) whose workspace holds the model version `model_id`
/// (found by the id: the TrainingRun that named it may be gone by now), its workspace client
/// and the model name.
async fn model_workspace(
    ctx: &Context,
    ns: &str,
    model_id: &str,
) -> Result<(Arc<EdgeComputeTarget>, Arc<dyn MlApi>, String)> {
    let ect = Stores::select(&ctx.stores.edge_compute_targets, ns, |e| {
        let a = &e.spec.azure_ml;
        decide::in_workspace(model_id, &a.subscription_id, &a.resource_group, &a.workspace)
    })
    .into_iter()
    .next()
    .ok_or_else(|| Error::Blocked {
        reason: "ComputeTargetNotFound",
        message: format!(
            "no EdgeComputeTarget in {ns} reaches the workspace of {model_id}; the model version cannot be archived (set deletionPolicy Retain to delete without it)"
        ),
    })?;
    let name = model_id
        .split_once("/models/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    let ml = ctx.workspace_of(&ect).await?.0;
    Ok((ect, ml, name))
}
