//! Pure: observed state in, the next step and the conditions out. No I/O.

use edgetrain_api::{DeletionPolicy, ModelReleaseStatus, conditions::Progress};
use edgetrain_azure::ml::ModelVersion;

use super::desired::{RELEASED_BY, RunState, next_free_version, same_content};
use crate::runtime::status::ConditionState;

pub const REGISTERED: &str = "Registered";
pub const PUSHED: &str = "Pushed";

/// Why a release cannot go on now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Waiting for something outside the release (the TrainingRun): not a failure.
    Wait {
        reason: &'static str,
        message: String,
    },
    /// Cannot go on until the spec changes.
    Stall {
        reason: &'static str,
        message: String,
    },
}

/// The TrainingRun's state as a gate; `None` when the release may go on.
pub fn run_gate(run: &RunState) -> Option<Gate> {
    match run {
        RunState::Waiting(m) => Some(Gate::Wait {
            reason: "TrainingRunNotSucceeded",
            message: m.clone(),
        }),
        RunState::NotReleasable(m) => Some(Gate::Stall {
            reason: "RunNotReleasable",
            message: format!("{m}; no model is released from this run"),
        }),
        // A Succeeded run without its output will not grow one: a wrong outputName.
        RunState::Incomplete(m) => Some(Gate::Stall {
            reason: "OutputNotFound",
            message: m.clone(),
        }),
        RunState::Releasable(_) => None,
    }
}

/// The version a release registers: the spec's; else the one status recorded; else the one
/// this release registered before a restart lost the status write (its `released_by` tag);
/// else the next free integer. So a restart never registers a second version.
pub fn choose_version(
    requested: Option<&str>,
    recorded: Option<&str>,
    existing: &[(String, ModelVersion)],
    released_by: &str,
) -> String {
    requested
        .or(recorded)
        .map(str::to_string)
        .or_else(|| {
            existing
                .iter()
                .find(|(_, v)| {
                    v.tags
                        .as_ref()
                        .and_then(|t| t.get(RELEASED_BY))
                        .map(String::as_str)
                        == Some(released_by)
                })
                .map(|(name, _)| name.clone())
        })
        .unwrap_or_else(|| next_free_version(existing.iter().map(|(v, _)| v.as_str())))
}

/// What to do about the Azure ML model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// It exists with this content and lineage: use it, register nothing.
    Adopt,
    /// Register it.
    Create,
    /// It exists with other content: versions are immutable.
    Conflict(String),
}

/// Whether `version` (among `existing`) can hold `desired`.
pub fn registration(
    version: &str,
    desired: &ModelVersion,
    existing: &[(String, ModelVersion)],
) -> Registration {
    match existing.iter().find(|(name, _)| name == version) {
        None => Registration::Create,
        Some((_, found)) => match same_content(found, desired) {
            Ok(()) => Registration::Adopt,
            Err(why) => Registration::Conflict(format!(
                "version {version} already exists with other content ({why}); versions are immutable: set another model.version"
            )),
        },
    }
}

/// How far a release got this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Gated(Gate),
    VersionConflict(String),
    /// Registered (or adopted); the push failed or has not run.
    Registered {
        version: String,
    },
    /// Registered and pushed: artifact (and image) and the provenance referrers.
    Pushed {
        version: String,
    },
}

/// The `Registered`, `Pushed` conditions and the kstatus progress for a stage.
pub fn conditions(stage: &Stage) -> (ConditionState, ConditionState, Progress) {
    let not_pushed = |m: &str| ConditionState::unmet("NotPushed", m);
    match stage {
        Stage::Gated(Gate::Wait { reason, message }) => (
            ConditionState::unmet(reason, message.clone()),
            not_pushed("waiting for the TrainingRun"),
            Progress::in_progress(*reason, message.clone()),
        ),
        Stage::Gated(Gate::Stall { reason, message }) => (
            ConditionState::unmet(reason, message.clone()),
            not_pushed("nothing is pushed from this release"),
            Progress::stalled(*reason, message.clone()),
        ),
        Stage::VersionConflict(message) => (
            ConditionState::unmet("VersionConflict", message.clone()),
            not_pushed("nothing is pushed under a conflicting version"),
            Progress::stalled("VersionConflict", message.clone()),
        ),
        Stage::Registered { version } => (
            ConditionState::met("Registered", format!("model version {version}")),
            not_pushed("pushing"),
            Progress::in_progress("Pushing", format!("version {version} registered, pushing")),
        ),
        Stage::Pushed { version } => (
            ConditionState::met("Registered", format!("model version {version}")),
            ConditionState::met("Pushed", "artifact, image and provenance pushed"),
            Progress::ready("Released", format!("model version {version} released")),
        ),
    }
}

/// One step of deleting a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupStep {
    /// Delete a provenance referrer this release pushed, and drop it from its subject's
    /// tag-schema index.
    DeleteReferrer { digest: String, subject: String },
    /// Delete a manifest this release pushed (by digest; its tags go with it).
    DeleteManifest(String),
    /// Archive the model version this release registered.
    Archive(String),
}

/// `Retain`: nothing. `Delete`: referrers first (they point at the others), then the image and
/// the artifact — only the digests status recorded as pushed by this release, and none that
/// another release of the same repository still lists (`in_use`: identical content gives
/// identical digests, so a second release of one version shares them). Then archive the
/// version — only if this release registered it (`released_by` tag), never one it adopted
/// from elsewhere or an `existingModel`, and not while another release ships it (its model
/// id in `in_use`).
pub fn cleanup_plan(
    policy: DeletionPolicy,
    status: &ModelReleaseStatus,
    version_tags: Option<&std::collections::BTreeMap<String, String>>,
    released_by: &str,
    in_use: &std::collections::BTreeSet<String>,
) -> Vec<CleanupStep> {
    if policy == DeletionPolicy::Retain {
        return vec![];
    }
    let free = |d: &str| !in_use.contains(d);
    let mut steps: Vec<CleanupStep> = status
        .referrers
        .iter()
        .filter(|r| free(&r.digest))
        .map(|r| CleanupStep::DeleteReferrer {
            digest: r.digest.clone(),
            subject: r.subject.clone(),
        })
        .collect();
    steps.extend(
        [&status.image_digest, &status.artifact_digest]
            .into_iter()
            .flatten()
            .map(|d| super::desired::digest_of(d).to_string())
            .filter(|d| free(d))
            .map(CleanupStep::DeleteManifest),
    );
    if let Some(v) = &status.model_version
        && status.model_id.as_deref().is_none_or(free)
        && version_tags
            .and_then(|t| t.get(RELEASED_BY))
            .map(String::as_str)
            == Some(released_by)
    {
        steps.push(CleanupStep::Archive(v.clone()));
    }
    steps
}

/// Whether the model version `model_id` (an ARM id) lives in the workspace
/// `subscription/resource_group/workspace` (ARM ids compare case-insensitively).
pub fn in_workspace(
    model_id: &str,
    subscription: &str,
    resource_group: &str,
    workspace: &str,
) -> bool {
    let prefix = format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.MachineLearningServices/workspaces/{workspace}/"
    );
    model_id.len() > prefix.len() && model_id[..prefix.len()].eq_ignore_ascii_case(&prefix)
}
