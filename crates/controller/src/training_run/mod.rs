//! The TrainingRun controller: pure `desired`/`decide` (the decision asks for the expensive
//! observations it needs), thin `observe`/`apply`, the workspace-wide job listing shared by
//! every run (`listing`), and (here) its hooks into the runtime.

pub mod apply;
pub mod assets;
pub mod code;
pub mod datastores;
pub mod decide;
pub mod desired;
pub mod listing;
pub mod observe;

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use edgetrain_api::{
    EdgeComputeTarget, TrainingRun, TrainingRunPhase, TrainingRunStatus,
    conditions::{READY, find, is_true_for},
};
use edgetrain_azure::blob::AccountKey;
use kube::{
    Api, ResourceExt,
    api::DeleteParams,
    runtime::{Controller, controller::Action, events::EventType, reflector::ObjectRef},
};

use self::{
    apply::DataAccount,
    decide::{Cleanup, Meta, Need, Observed, ReadyTarget, Step, Target},
};
use crate::{
    Error, Result,
    context::{Context, ControllerSettings, Settings},
    runtime::{
        Reconciler, events,
        secrets::secret_value,
        status::write_status,
        stores::{Shared, Stores, Wiring, changed_only},
    },
};

#[async_trait]
impl Reconciler for TrainingRun {
    type Status = TrainingRunStatus;

    fn status(&self) -> Option<&TrainingRunStatus> {
        self.status.as_ref()
    }

    fn settings(settings: &Settings) -> &ControllerSettings {
        &settings.training_run
    }

    fn primary(wiring: &Wiring) -> &Shared<Self> {
        &wiring.training_runs
    }

    fn watches(controller: Controller<Self>, wiring: &Wiring) -> Controller<Self> {
        let runs = wiring.training_runs.store();
        let for_secrets = wiring.training_runs.store();
        // A target matters to its runs when it becomes (not) Ready or its address changes.
        let targets = changed_only(
            wiring.edge_compute_targets.subscribe(),
            |t: &EdgeComputeTarget| target_of(Some(t)),
        );
        controller
            .watches_shared_stream(targets, move |t| {
                let ns = t.namespace().unwrap_or_default();
                let name = t.name_any();
                Stores::select(&runs, &ns, |r| r.spec.compute_target_ref.name == name)
                    .iter()
                    .map(|r| ObjectRef::from_obj(&**r))
                    .collect::<Vec<_>>()
            })
            .watches_shared_stream(wiring.secrets.subscribe(), move |secret| {
                let ns = secret.namespace().unwrap_or_default();
                let name = secret.name_any();
                Stores::select(&for_secrets, &ns, |r| {
                    r.referenced_secrets().contains(&name)
                })
                .iter()
                .map(|r| ObjectRef::from_obj(&**r))
                .collect::<Vec<_>>()
            })
    }

    fn referenced_secrets(&self) -> Vec<String> {
        let mut names = vec![self.spec.data.credentials_secret_ref.name.clone()];
        names.extend(
            self.spec
                .code
                .credentials_secret_ref
                .as_ref()
                .map(|s| s.name.clone()),
        );
        names
    }

    async fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        reconcile(&obj, &ctx).await
    }

    async fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        cleanup(&obj, &ctx).await
    }
}

/// The target as a run sees it (from the watch cache).
fn target_of(ect: Option<&EdgeComputeTarget>) -> Target {
    let Some(ect) = ect else {
        return Target::Missing;
    };
    let status = ect.status.clone().unwrap_or_default();
    let ready = is_true_for(&status.conditions, READY, ect.metadata.generation);
    let address = status.public_ip.clone().or(status.private_ip.clone());
    match (ready, status.compute_id.clone(), address) {
        (true, Some(compute_id), Some(vm_address)) => Target::Ready(ReadyTarget {
            compute_id,
            vm_address,
        }),
        _ => {
            let c = find(&status.conditions, READY);
            Target::NotReady {
                reason: c.map_or("Pending".into(), |c| c.reason.clone()),
                message: c.map_or(String::new(), |c| c.message.clone()),
            }
        }
    }
}

fn target(run: &TrainingRun, ctx: &Context) -> Option<Arc<EdgeComputeTarget>> {
    let ns = run.namespace().unwrap_or_default();
    ctx.stores
        .edge_compute_targets
        .get(&ObjectRef::new(&run.spec.compute_target_ref.name).within(&ns))
}

/// Who opens the workspace's output datastores: the target's Azure ML credentials Secret at its
/// current version, and the workspace (see [`datastores`]).
async fn datastore_opener(
    ect: Option<&EdgeComputeTarget>,
    ctx: &Context,
) -> Result<datastores::Opener> {
    let ect = ect.ok_or_else(|| Error::Internal("no target for an Azure ML read".into()))?;
    let ns = ect.namespace().unwrap_or_default();
    let ml = &ect.spec.azure_ml;
    let secret = ctx.secret(&ns, &ml.credentials_secret_ref.name).await?;
    Ok(datastores::Opener {
        credentials: format!(
            "{ns}/{}@{}",
            ml.credentials_secret_ref.name,
            secret
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or_default()
        ),
        workspace: format!(
            "{}|/subscriptions/{}/resourceGroups/{}/workspaces/{}",
            ml.arm_endpoint, ml.subscription_id, ml.resource_group, ml.workspace
        )
        .to_ascii_lowercase(),
    })
}

/// The data storage account from `spec.data.credentialsSecretRef`.
async fn data_account(run: &TrainingRun, ctx: &Context) -> Result<DataAccount> {
    storage_account(run, ctx, &run.spec.data.credentials_secret_ref.name).await
}

/// A storage account from a Secret with `accountName` and `accountKey` (data and code alike).
async fn storage_account(run: &TrainingRun, ctx: &Context, name: &str) -> Result<DataAccount> {
    let ns = run.namespace().unwrap_or_default();
    let secret = ctx.secret(&ns, name).await?;
    let account = secret_value(&secret, "accountName")?;
    let key = AccountKey::from_base64(&secret_value(&secret, "accountKey")?).map_err(|e| {
        Error::SecretInvalid {
            namespace: ns.clone(),
            name: name.to_string(),
            reason: format!("accountKey: {e}"),
        }
    })?;
    Ok(DataAccount { name: account, key })
}

/// The run's code files, from its ConfigMap or its blob folder.
async fn code_files(
    run: &TrainingRun,
    ctx: &Context,
) -> Result<Vec<edgetrain_azure::ml::CodeFile>> {
    let ns = run.namespace().unwrap_or_default();
    let source = &run.spec.code;
    match (&source.config_map_ref, &source.blob_uri) {
        (Some(cm), None) => observe::code_files(&ctx.client, &ns, &cm.name).await,
        (None, Some(uri)) => {
            let folder = code::blob_folder(uri)?;
            let secret = source.credentials_secret_ref.as_ref().ok_or_else(|| {
                Error::InvalidSpec("code.blobUri needs code.credentialsSecretRef".into())
            })?;
            let account = storage_account(run, ctx, &secret.name).await?;
            let blob = ctx.factories.blob.blob(&folder.endpoint, account.key)?;
            observe::blob_code_files(&*blob, &folder).await
        }
        _ => Err(Error::InvalidSpec(
            "code: set exactly one of configMapRef or blobUri".into(),
        )),
    }
}

async fn reconcile(run: &TrainingRun, ctx: &Context) -> Result<Action> {
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let uid = run.uid().unwrap_or_default();
    let spec = &run.spec;
    let before = run.status.clone().unwrap_or_default();
    let meta = Meta {
        namespace: &ns,
        name: &name,
        uid: &uid,
        generation: run.metadata.generation,
    };
    let now = ctx.clock.now();
    let ect = target(run, ctx);
    let target = target_of(ect.as_deref());
    // A run that never submitted and waits for its target costs Azure nothing: a Stalled
    // target's credentials are not tried again through its runs.
    let in_azure = matches!(target, Target::Ready(_)) || before.job_name.is_some();
    let ml = match &ect {
        Some(e) if in_azure => Some(ctx.workspace_of(e).await?),
        _ => None,
    };
    let jobs = match &ml {
        Some((ml, ws)) => Some(
            ctx.job_listings
                .get(&**ml, ws, now, listing::max_age(before.phase))
                .await?,
        ),
        None => None,
    };
    let mut obs = Observed {
        now,
        target,
        jobs,
        fingerprint: None,
        assets: None,
        verification: None,
        failure_log: None,
    };
    let need_ml = || {
        ml.clone()
            .ok_or_else(|| Error::Internal("no workspace client for an Azure ML read".into()))
    };
    let mut plan = None;
    // Each need fills one observation; four kinds exist, so this ends.
    for _ in 0..5 {
        match decide::decide(spec, &meta, &before, &obs) {
            Step::Plan(p) => {
                plan = Some(p);
                break;
            }
            Step::Need(Need::Fingerprint) => {
                let account = data_account(run, ctx).await?;
                let blob = ctx.factories.blob.blob(&spec.data.endpoint, account.key)?;
                obs.fingerprint = Some(observe::fingerprint(&*blob, &spec.data).await?);
            }
            Step::Need(Need::Assets) => {
                let (ml, ws) = need_ml()?;
                let files = code_files(run, ctx).await?;
                obs.assets =
                    Some(observe::assets(&*ml, &ws, ml.http(), &ctx.assets, spec, &files).await?);
            }
            Step::Need(Need::Verification { job, outputs }) => {
                let (ml, _) = need_ml()?;
                let tracking = ml
                    .get_workspace()
                    .await
                    .map_err(|e| Error::azure("reading the workspace", e))?
                    .and_then(|w| w.properties.ml_flow_tracking_uri)
                    .ok_or_else(|| {
                        Error::InvalidSpec("the workspace advertises no mlFlowTrackingUri".into())
                    })?;
                let mlflow = ml
                    .mlflow(&tracking)
                    .map_err(|e| Error::azure("the MLflow tracking URI", e))?;
                let account = data_account(run, ctx).await?;
                let blob = ctx.factories.blob.blob(&spec.data.endpoint, account.key)?;
                let opener = datastore_opener(ect.as_deref(), ctx).await?;
                let verified = observe::verification(
                    &*ml,
                    (&ctx.datastores, &opener),
                    &*blob,
                    &spec.data,
                    &*mlflow,
                    &job,
                    &outputs,
                )
                .await;
                if verified.is_err() {
                    ctx.datastores.forget(&opener);
                }
                obs.verification = Some(verified?);
            }
            Step::Need(Need::FailureLog { artifacts, .. }) => {
                let (ml, _) = need_ml()?;
                obs.failure_log =
                    Some(observe::failure_log(&*ml, ml.http(), artifacts.as_deref()).await?);
            }
        }
    }
    let mut plan =
        plan.ok_or_else(|| Error::InvalidSpec("internal: decision did not settle".into()))?;
    let mut deleted = false;
    for action in &plan.actions {
        match action {
            decide::Action::Submit { job, target, .. } => {
                let (ml, _) = need_ml()?;
                let account = data_account(run, ctx).await?;
                let submitted = apply::submit(
                    &*ml,
                    spec,
                    &plan.status,
                    (&ns, &name, &uid),
                    &account,
                    target,
                    job,
                    now,
                )
                .await;
                if submitted.is_err() {
                    // The ids may name versions deleted in Azure: look them up again.
                    let ids = [&plan.status.code_id, &plan.status.environment_id];
                    ctx.assets
                        .forget(&ids.iter().filter_map(|i| i.as_deref()).collect::<Vec<_>>());
                }
                submitted?;
                // The submission time is when the PUT returned, not when this reconcile began:
                // the PUT may have waited long for the client's write budget, and a listing
                // taken in between would not show the job yet and must not count as proof
                // that it is missing (a re-submission).
                plan.status.submit_time = Some(decide::time(ctx.clock.now()));
            }
            decide::Action::Cancel { job } => {
                let (ml, _) = need_ml()?;
                apply::cancel(&*ml, job).await?;
            }
            decide::Action::Delete => {
                let api: Api<TrainingRun> = Api::namespaced(ctx.client.clone(), &ns);
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map_err(|e| Error::kube(format!("deleting TrainingRun {ns}/{name}"), e))?;
                deleted = true;
            }
        }
    }
    if !deleted && plan.status != before {
        write_status(ctx, run, &plan.status).await?;
    }
    for e in plan.events {
        let t = if e.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        events::publish(&ctx.recorder, run, t, &e.reason, e.message).await;
    }
    if deleted {
        return Ok(Action::await_change());
    }
    let terminal = matches!(
        plan.status.phase,
        TrainingRunPhase::Succeeded | TrainingRunPhase::Failed | TrainingRunPhase::Canceled
    );
    // An unfinished run in Azure looks again when a listing newer than the one it acted on is
    // due (a job it waits for shows up there), or sooner when its plan asks. One that waits
    // for its target has nothing to poll: the target's watch wakes it, the resync is a
    // safety net (thousands of such runs must not reconcile every few seconds).
    let next_listing = match &ml {
        Some((_, ws)) => ctx
            .job_listings
            .interval(ws, listing::max_age(plan.status.phase)),
        None => TrainingRun::settings(&ctx.settings).resync,
    };
    Ok(match (plan.requeue, terminal) {
        // A finished run looks again only at its TTL moment.
        (Some(d), true) => Action::requeue(d.max(Duration::from_millis(200))),
        (Some(d), false) => Action::requeue(d.min(next_listing).max(Duration::from_millis(200))),
        (None, true) => Action::await_change(),
        (None, false) => Action::requeue(next_listing),
    })
}

/// Deletion: an active job is cancelled first; the cancel is started, not awaited.
async fn cleanup(run: &TrainingRun, ctx: &Context) -> Result<Action> {
    let status = run.status.clone().unwrap_or_default();
    if status.job_name.is_none() {
        return Ok(Action::await_change());
    }
    let Some(ect) = target(run, ctx) else {
        return Ok(Action::await_change());
    };
    let (ml, ws) = ctx.workspace_of(&ect).await?;
    let now = ctx.clock.now();
    // Deleting: the cancel is followed at the starting pace.
    let jobs = ctx
        .job_listings
        .get(&*ml, &ws, now, listing::STARTING)
        .await?;
    match decide::decide_cleanup(&status, Some(&jobs)) {
        Cleanup::Done => Ok(Action::await_change()),
        Cleanup::Wait => Err(Error::cleanup_pending(format!(
            "the cancellation of job {}",
            status.job_name.unwrap_or_default()
        ))),
        Cleanup::Cancel { job } => {
            apply::cancel(&*ml, &job).await?;
            Err(Error::cleanup_pending(format!(
                "the cancellation of job {job}"
            )))
        }
    }
}
