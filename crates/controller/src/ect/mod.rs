//! The EdgeComputeTarget controller: pure `desired`/`decide`, thin `observe`/`apply`, the
//! reconcile steps in `reconcile`, and (here) its hooks into the runtime.

pub mod apply;
pub mod attach;
pub mod decide;
pub mod desired;
pub mod observe;
pub mod reconcile;
pub mod rotation;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use edgetrain_api::{EdgeComputeTarget, EdgeComputeTargetStatus, TrainingRun};
use kube::{
    ResourceExt,
    runtime::{Controller, controller::Action, reflector::ObjectRef},
};

use crate::{
    Result,
    context::{Context, ControllerSettings, Settings},
    runtime::{
        Reconciler,
        stores::{Shared, Wiring, changed_only},
    },
};

#[async_trait]
impl Reconciler for EdgeComputeTarget {
    type Status = EdgeComputeTargetStatus;

    fn status(&self) -> Option<&EdgeComputeTargetStatus> {
        self.status.as_ref()
    }

    fn settings(settings: &Settings) -> &ControllerSettings {
        &settings.edge_compute_target
    }

    fn primary(wiring: &Wiring) -> &Shared<Self> {
        &wiring.edge_compute_targets
    }

    fn watches(controller: Controller<Self>, wiring: &Wiring) -> Controller<Self> {
        let targets = wiring.edge_compute_targets.store();
        // A TrainingRun matters to its target only when it appears or becomes (in)active (the
        // power contract), not on every status write of the TrainingRun controller.
        let runs = changed_only(wiring.training_runs.subscribe(), |run: &TrainingRun| {
            (
                run.spec.compute_target_ref.name.clone(),
                observe::is_active(run.spec.suspend, run.status.as_ref()),
            )
        });
        controller
            // The SSH-key Secret: deleted or edited, it is recreated or re-read.
            .owns_shared_stream(wiring.secrets.subscribe())
            // A rotated or newly created credentials Secret re-reconciles the targets naming it.
            .watches_shared_stream(wiring.secrets.subscribe(), move |secret| {
                let name = secret.name_any();
                let ns = secret.namespace().unwrap_or_default();
                crate::runtime::stores::Stores::select(&targets, &ns, |t| {
                    t.referenced_secrets().contains(&name)
                })
                .iter()
                .map(|t| ObjectRef::from_obj(&**t))
                .collect::<Vec<_>>()
            })
            .watches_shared_stream(runs, |run| {
                let ns = run.namespace().unwrap_or_default();
                Some(ObjectRef::new(&run.spec.compute_target_ref.name).within(&ns))
            })
    }

    fn referenced_secrets(&self) -> Vec<String> {
        vec![
            self.spec.stack_hub.credentials_secret_ref.name.clone(),
            self.spec.azure_ml.credentials_secret_ref.name.clone(),
        ]
    }

    async fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        reconcile::apply(&obj, &ctx).await
    }

    async fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        reconcile::cleanup(&obj, &ctx).await
    }
}
