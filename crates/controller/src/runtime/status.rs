//! Status handling shared by the kinds: the small trait every status type implements, typed
//! condition values, and the server-side-apply status write.

use std::{borrow::Cow, fmt};

use edgetrain_api::{
    EdgeComputeTargetStatus, ModelReleaseStatus, TrainingRunStatus,
    conditions::{self, Progress},
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::Serialize;

use super::{Reconciler, failures::ObjectKey};
use crate::{Error, Result, context::Context};

/// The one field manager of every status write.
pub const FIELD_MANAGER: &str = "edgetrain-controller";

/// What every kind's status has: kstatus conditions and the generation they describe.
pub trait ObjectStatus: Default + Clone + PartialEq + Serialize + Send + Sync + 'static {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation(&self) -> Option<i64>;
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// The digest of the inputs a Stalled object waits on (see [`super::failures`]).
    fn stalled_inputs(&self) -> Option<&str>;
    fn set_stalled_inputs(&mut self, inputs: Option<String>);
}

macro_rules! object_status {
    ($($t:ty),*) => {$(
        impl ObjectStatus for $t {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
            fn stalled_inputs(&self) -> Option<&str> {
                self.stalled_inputs.as_deref()
            }
            fn set_stalled_inputs(&mut self, inputs: Option<String>) {
                self.stalled_inputs = inputs;
            }
        }
    )*};
}

object_status!(
    EdgeComputeTargetStatus,
    TrainingRunStatus,
    ModelReleaseStatus
);

/// A condition reason: PascalCase, as `metav1.Condition` requires
/// (`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reason(Cow<'static, str>);

impl Reason {
    pub const fn new(reason: &'static str) -> Self {
        Self(Cow::Borrowed(reason))
    }

    /// From an Azure error code (`QuotaExceeded`, `UserError.NotFound`): keeps letters and
    /// digits, so the code can be read in `kubectl get`; a code that leaves nothing usable
    /// becomes `fallback`.
    pub fn from_code(code: &str, fallback: &'static str) -> Self {
        let kept: String = code.chars().filter(char::is_ascii_alphanumeric).collect();
        if kept.starts_with(|c: char| c.is_ascii_alphabetic()) {
            Self(Cow::Owned(kept))
        } else {
            Self::new(fallback)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A domain condition (`VMReady`, `ComputeAttached`, `Registered`...): whether it holds, why,
/// and what a user should read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl ConditionState {
    pub fn met(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: true,
            reason: Reason::new(reason),
            message: message.into(),
        }
    }

    pub fn unmet(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: false,
            reason: Reason::new(reason),
            message: message.into(),
        }
    }

    /// Sets condition `type_` in `conditions` for `generation`; true when anything changed.
    pub fn set(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        generation: Option<i64>,
        now: Timestamp,
    ) -> bool {
        conditions::set_condition(
            conditions,
            conditions::condition(
                type_,
                self.status,
                self.reason.as_str(),
                &self.message,
                generation,
                now,
            ),
        )
    }
}

/// Stamps `progress` (Ready/Reconciling/Stalled) and `observedGeneration` on `status`; true
/// when anything changed.
pub fn stamp_progress<S: ObjectStatus>(
    status: &mut S,
    progress: &Progress,
    generation: Option<i64>,
) -> bool {
    let changed = conditions::apply_progress(
        status.conditions_mut(),
        progress,
        generation,
        Timestamp::now(),
    );
    let moved = status.observed_generation() != generation;
    status.set_observed_generation(generation);
    changed || moved
}

/// A kind's status write: server-side apply of the whole status (see [`write_status_as_is`]).
/// A kind does not know the inputs a stall waits on, so its writes never carry
/// `stalledInputs`: only the runtime records a stall (when it reports an error that awaits a
/// change), and a stale record never outlives the next write.
pub async fn write_status<K: Reconciler>(ctx: &Context, obj: &K, status: &K::Status) -> Result<()> {
    if status.stalled_inputs().is_none() {
        return write_status_as_is(ctx, obj, status).await;
    }
    let mut status = status.clone();
    status.set_stalled_inputs(None);
    write_status_as_is(ctx, obj, &status).await
}

/// Server-side apply of the whole status under [`FIELD_MANAGER`], to the status subresource.
/// The version written is remembered, so the next reconcile does not act on an older copy.
pub(crate) async fn write_status_as_is<K: Reconciler>(
    ctx: &Context,
    obj: &K,
    status: &K::Status,
) -> Result<()> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| Error::kube(format!("writing the status of {}", obj.name_any()), e))?;
    ctx.known.record(
        &ObjectKey::of(obj),
        written.meta().resource_version.as_deref(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_codes_become_valid_reasons() {
        assert_eq!(
            Reason::from_code("QuotaExceeded", "AzureError"),
            "QuotaExceeded"
        );
        assert_eq!(
            Reason::from_code("UserError.NotFound", "AzureError"),
            "UserErrorNotFound"
        );
        assert_eq!(Reason::from_code("", "AzureError"), "AzureError");
        assert_eq!(Reason::from_code("404", "AzureError"), "AzureError");
    }

    #[test]
    fn progress_stamps_the_generation() {
        let mut s = TrainingRunStatus::default();
        assert!(stamp_progress(
            &mut s,
            &Progress::stalled("SecretNotFound", "x"),
            Some(4)
        ));
        assert_eq!(s.observed_generation(), Some(4));
        assert!(!stamp_progress(
            &mut s,
            &Progress::stalled("SecretNotFound", "x"),
            Some(4)
        ));
        assert!(conditions::is_true_for(
            s.conditions(),
            conditions::STALLED,
            Some(4)
        ));
    }
}
