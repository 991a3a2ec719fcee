//! Running one kind's controller: the [`Reconciler`] hooks a kind implements, the
//! finalizer-first [`reconcile`] wrapper and the [`error_policy`].

use std::{fmt::Debug, sync::Arc, time::Instant};

use async_trait::async_trait;
use edgetrain_api::conditions::Progress;
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        events::EventType,
        finalizer::{Event as Finalizer, finalizer},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{debug, warn};

use super::{
    events,
    failures::{ObjectKey, inputs_fingerprint, retry_delay, stalled_in_status},
    status::{ObjectStatus, stamp_progress, write_status_as_is},
    stores::{Shared, Wiring, changed_only, spec_or_metadata},
};
use crate::{
    Error, Handling, Result,
    context::{Context, ControllerSettings, Settings},
    metrics::Metrics,
};

/// The finalizer every kind puts on its objects.
pub const FINALIZER: &str = "edgetrain.dev/cleanup";

/// A kind's hooks into the runtime (see the module docs of [`crate::runtime`]).
#[async_trait]
pub trait Reconciler:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    type Status: ObjectStatus;

    fn status(&self) -> Option<&Self::Status>;

    /// This kind's resync and default deletion policy.
    fn settings(settings: &Settings) -> &ControllerSettings;

    /// The kind's shared watch (its primary stream and store).
    fn primary(wiring: &Wiring) -> &Shared<Self>;

    /// Adds the triggers besides the object itself: owned objects, referenced Secrets,
    /// neighbours whose change matters.
    fn watches(controller: Controller<Self>, wiring: &Wiring) -> Controller<Self>;

    /// Names of the Secrets (in the object's namespace) the object reads; a change of one of
    /// them lifts a stall.
    fn referenced_secrets(&self) -> Vec<String>;

    /// Move towards the spec. Never called while the object is stalled on unchanged inputs.
    async fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action>;

    /// Deletion: release or remove what the object holds; the finalizer goes when this
    /// returns `Ok`.
    async fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action>;
}

/// Runs the controller of kind `K` until shutdown. Call it before [`Wiring::start`]: it
/// subscribes to the shared watches here, and they must have every subscriber before they run.
pub fn run<K: Reconciler>(
    wiring: &Wiring,
    ctx: Arc<Context>,
) -> impl Future<Output = ()> + Send + use<K> {
    let primary = K::primary(wiring);
    // Status writes (ours included) change neither generation nor metadata: they do not
    // trigger a reconcile, so "wait for a change" holds and in-progress writes cannot race
    // the next decision.
    let trigger = changed_only(primary.subscribe(), spec_or_metadata::<K>);
    let concurrency = K::settings(&ctx.settings).max_concurrent_reconciles;
    let controller = Controller::for_shared_stream(trigger, primary.store())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    K::watches(controller, wiring)
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|r| async move {
            match r {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                    if matches!(e.handling(), Handling::Poll(_)) {
                        debug!(object = %obj, reason = %e.reason(), "{e}");
                    } else {
                        warn!(object = %obj, reason = %e.reason(), error = %e, "reconcile failed");
                    }
                }
                Err(e) => warn!(error = %e, "controller error"),
            }
        })
}

fn secret_versions<K: Reconciler>(obj: &K, ctx: &Context) -> Vec<(String, Option<String>)> {
    let ns = obj.namespace().unwrap_or_default();
    obj.referenced_secrets()
        .into_iter()
        .map(|name| {
            let v = ctx.stores.secret_version(&ns, &name);
            (name, v)
        })
        .collect()
}

/// Finalizer first; then the kind's `apply` or `cleanup`. Counts and times every reconcile.
pub async fn reconcile<K: Reconciler>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let key = ObjectKey::of(&*obj);
    let label = Metrics::kind(&key.kind);
    ctx.metrics.reconciles.get_or_create(&label).inc();
    let timer = Instant::now();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let obj = latest(obj, &api, &ctx, &key).await?;
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(o) => apply(o, &ctx, &key).await,
            Finalizer::Cleanup(o) => {
                let r = K::cleanup(o.clone(), ctx.clone()).await;
                if let Err(e) = &r {
                    report(&*o, e, &ctx, None).await;
                }
                r
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .duration
        .get_or_create(&label)
        .observe(timer.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.reset(&key);
    }
    result
}

/// The object at least as new as the last version this controller wrote or read: a watch
/// cache that has not seen our own status write yet would hand over a status without the
/// operations the last reconcile started (and they would be started again).
async fn latest<K: Reconciler>(
    obj: Arc<K>,
    api: &Api<K>,
    ctx: &Context,
    key: &ObjectKey,
) -> Result<Arc<K>> {
    if !ctx
        .known
        .is_stale(key, obj.meta().resource_version.as_deref())
    {
        return Ok(obj);
    }
    match api
        .get_opt(&key.name)
        .await
        .map_err(|e| Error::kube(format!("reading {} {}", key.kind, key.name), e))?
    {
        Some(fresh) => {
            ctx.known
                .record(key, fresh.meta().resource_version.as_deref());
            Ok(Arc::new(fresh))
        }
        None => {
            ctx.known.forget(key);
            Ok(obj)
        }
    }
}

/// The apply branch behind the stall gate: an object that stalled is not reconciled again
/// (no Azure request at all) until its spec, annotations or a referenced Secret changes. The
/// gate is read from status (so a restarted controller keeps it) and from memory (so it holds
/// when the status write recording the stall failed).
async fn apply<K: Reconciler>(obj: Arc<K>, ctx: &Arc<Context>, key: &ObjectKey) -> Result<Action> {
    let inputs = inputs_fingerprint(&*obj, &secret_versions(&*obj, ctx));
    if ctx.stalls.holds(key, &inputs) {
        debug!("stalled: waiting for a change of the spec or a referenced Secret");
        return Ok(Action::await_change());
    }
    if stalled_in_status(obj.status(), obj.meta().generation, &inputs) {
        debug!(
            "stalled (recorded in status): waiting for a change of the spec or a referenced Secret"
        );
        // Held in memory too, so the stalled gauge counts it after a restart.
        ctx.stalls.stall(key, &inputs);
        count_stalled(ctx, key);
        return Ok(Action::await_change());
    }
    let result = K::apply(obj.clone(), ctx.clone()).await;
    match &result {
        Ok(_) => ctx.stalls.clear(key),
        Err(e) if e.handling() == Handling::AwaitChange => ctx.stalls.stall(key, &inputs),
        Err(_) => {}
    }
    count_stalled(ctx, key);
    if let Err(e) = &result {
        report(&*obj, e, ctx, Some(inputs)).await;
    }
    result
}

/// The `stalled_resources` gauge of the object's kind.
fn count_stalled(ctx: &Context, key: &ObjectKey) {
    ctx.metrics
        .stalled
        .get_or_create(&Metrics::kind(&key.kind))
        .set(ctx.stalls.count(&key.kind));
}

/// A failure into status (`Stalled` when it needs a change, with the `inputs` it waits on;
/// `Reconciling` with the reason while it is retried) and a Warning event. Expected waits
/// (deletion in progress) and Kubernetes API failures (the status write would likely fail too)
/// are not written.
async fn report<K: Reconciler>(obj: &K, e: &Error, ctx: &Context, inputs: Option<String>) {
    let handling = e.handling();
    if matches!(handling, Handling::Poll(_)) {
        return;
    }
    let reason = e.reason();
    let message = e.to_string();
    let (progress, stalled_on) = match handling {
        Handling::AwaitChange => (Some(Progress::stalled(reason.as_str(), &message)), inputs),
        Handling::Retry(_) if !matches!(e.inner(), Error::Kube { .. }) => {
            (Some(Progress::in_progress(reason.as_str(), &message)), None)
        }
        _ => (None, None),
    };
    if let Some(progress) = progress {
        // The kind may have written status earlier in this reconcile (operations it started):
        // stamp the conditions on what is stored now, not on the copy the reconcile began with.
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        match api.get_status(&obj.name_any()).await {
            Ok(latest) => {
                let mut status = latest.status().cloned().unwrap_or_default();
                let recorded = status.stalled_inputs() != stalled_on.as_deref();
                status.set_stalled_inputs(stalled_on);
                if (stamp_progress(&mut status, &progress, obj.meta().generation) || recorded)
                    && let Err(w) = write_status_as_is(ctx, obj, &status).await
                {
                    warn!(error = %w, "could not record the failure in status");
                }
            }
            Err(g) => warn!(error = %g, "could not read the status to record a failure"),
        }
    }
    events::publish(
        &ctx.recorder,
        obj,
        EventType::Warning,
        reason.as_str(),
        message,
    )
    .await;
}

/// Requeue after a failure: stalled errors wait for a change, the rest back off (Retry-After
/// wins), expected waits poll at their own pace without counting as failures.
pub fn error_policy<K: Reconciler>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectKey::of(&*obj);
    let failed = || {
        ctx.metrics.error(&key.kind, err.metric_label());
        ctx.failures.bump(&key)
    };
    match err.handling() {
        Handling::Poll(every) => Action::requeue(every),
        Handling::AwaitChange => {
            failed();
            Action::await_change()
        }
        Handling::Retry(after) => Action::requeue(retry_delay(after, failed())),
    }
}
