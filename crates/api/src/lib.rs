//! The edgetrain custom resources (`edgetrain.dev/v1alpha1`): their types, the validation that
//! lives in the CRDs themselves (OpenAPI schema + CEL), and the condition conventions every
//! controller follows.
//!
//! Validation belongs in the CRD so that `kubectl apply` and GitOps tools see bad input rejected
//! at admission, with a message, before any controller acts on it.

pub mod common;
pub mod conditions;
pub mod crdgen;
pub mod edge_compute_target;
pub mod model_release;
pub mod schema;
pub mod training_run;

pub use common::{DeletionPolicy, LocalObjectReference, ReconcilePolicy, SecretReference};
pub use edge_compute_target::{EdgeComputeTarget, EdgeComputeTargetSpec, EdgeComputeTargetStatus};
pub use model_release::{ModelRelease, ModelReleaseSpec, ModelReleaseStatus};
pub use training_run::{TrainingRun, TrainingRunPhase, TrainingRunSpec, TrainingRunStatus};

/// API group of every edgetrain resource.
pub const GROUP: &str = "edgetrain.dev";
/// The one served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// `kubectl get edgetrain` lists all three kinds.
pub const CATEGORY: &str = "edgetrain";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("annotation {annotation} has value {value:?}; expected one of: manage, observe, skip")]
    InvalidReconcilePolicy {
        annotation: &'static str,
        value: String,
    },
    #[error("could not render CRD {name} as YAML")]
    RenderCrd {
        name: String,
        #[source]
        source: serde_yaml::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
