//! `ModelRelease`: register a trained model in Azure ML and ship it to a container registry as
//! an OCI model artifact and, optionally, a serving image.

// `printcolumn(type_ = "string", ...)` repeats per column by design; clippy reads the
// repetition as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::common::{DeletionPolicy, LocalObjectReference, SecretReference};

/// Registers the model a TrainingRun produced and pushes it to a registry.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, derive(Default))]
#[kube(
    group = "edgetrain.dev",
    version = "v1alpha1",
    kind = "ModelRelease",
    namespaced,
    status = "ModelReleaseStatus",
    shortname = "mr",
    category = "edgetrain",
    doc = "A trained model registered in Azure ML (versioned, tagged, with lineage) and pushed to a container registry as an OCI artifact and optional serving image.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.name"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.modelVersion"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Artifact",
        type_ = "string",
        json_path = ".status.artifactDigest",
        priority = 1
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".status.imageDigest",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.trainingRunRef) != has(self.existingModel)").message("set exactly one of trainingRunRef or existingModel"))]
#[x_kube(validation = Rule::new("has(self.trainingRunRef) == has(oldSelf.trainingRunRef)").message("the model source (trainingRunRef or existingModel) is immutable"))]
pub struct ModelReleaseSpec {
    /// The TrainingRun (same namespace) whose output is the model. It must have Succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("trainingRunRef is immutable"))]
    pub training_run_ref: Option<LocalObjectReference>,
    /// An already registered Azure ML model to ship instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("existingModel is immutable"))]
    pub existing_model: Option<ModelVersionRef>,
    /// How the model is registered in Azure ML.
    pub model: ModelSpec,
    /// Where it is pushed.
    pub registry: RegistrySpec,
    /// Build a serving image from a base image. Unset: only the model artifact is pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// What happens when this object is deleted: `Retain` keeps the model version
    /// and the pushed artifacts; `Delete` archives the model version and deletes the tags.
    /// Unset: the operator's configured default (`Retain` unless installed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// An existing Azure ML model version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionRef {
    /// Model name in the workspace.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}$"))]
    pub name: String,
    /// Model version.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,127}$"))]
    pub version: String,
    /// The EdgeComputeTarget whose Azure ML workspace holds the model.
    pub compute_target_ref: LocalObjectReference,
}

/// The Azure ML model version to register.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.version) || (has(self.version) && self.version == oldSelf.version)").message("model.version is immutable once set: model versions never change, release a new one"))]
pub struct ModelSpec {
    /// Model name in the workspace.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("model.name is immutable"))]
    pub name: String,
    /// Version to register. Unset: the next free integer version (written to status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,127}$"))]
    pub version: Option<String>,
    /// Azure ML model type.
    #[serde(default, rename = "type")]
    pub type_: ModelType,
    /// Which output of the TrainingRun holds the model.
    #[serde(default = "default_output")]
    #[schemars(regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]{0,254}$"))]
    pub output_name: String,
    /// Description shown in Azure ML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// Tags on the model version (lineage tags are added by the operator).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Azure ML model types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    #[default]
    CustomModel,
    MlflowModel,
    TritonModel,
}

/// Target registry (Azure Container Registry or any OCI distribution registry).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// Registry host, e.g. `myregistry.azurecr.io` (a port is allowed).
    #[schemars(regex(
        pattern = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$"
    ))]
    pub login_server: String,
    /// Repository, e.g. `models/churn`.
    #[schemars(regex(pattern = r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"))]
    #[schemars(length(max = 255))]
    pub repository: String,
    /// Extra tags for the serving image (the artifact is always tagged `{name}-{version}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 128)))]
    #[x_kube(validation = Rule::new("self.all(t, t.matches('^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'))").message("registry.tags must be valid OCI tags"))]
    pub tags: Vec<String>,
    /// Secret with registry credentials: `tenantId`, `clientId`, `clientSecret` (Azure AD token
    /// exchange) or `username`, `password`.
    pub credentials_secret_ref: SecretReference,
}

/// The serving image to assemble (without a Docker daemon).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Base image pinned by digest, e.g. `myregistry.azurecr.io/serving/onnx@sha256:...`; its
    /// layers are reused, never re-uploaded.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^[^@]+@sha256:[a-f0-9]{64}$')").message("image.base must be pinned by digest (…@sha256:<64 hex>)"))]
    pub base: String,
    /// Where the model files go inside the image.
    #[serde(default = "default_model_path")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('..')").message("image.modelPath must be an absolute path without '..'"))]
    pub model_path: String,
    /// Environment variables added to the image config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Replaces the base image's entrypoint when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
}

/// A referrer (e.g. provenance) attached to a pushed digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// Media type of the referrer, e.g. `application/vnd.in-toto+json`.
    pub artifact_type: String,
    /// Digest of the referrer manifest.
    pub digest: String,
    /// Digest of the manifest it refers to.
    pub subject: String,
}

/// Observed state of a ModelRelease.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelReleaseStatus {
    /// Conditions: `Registered`, `Pushed`, `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// While `Stalled`: a digest of the inputs it stalled on (generation, annotations,
    /// referenced Secrets' versions). Until one of them changes the controller makes no Azure
    /// call for this object, also after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_inputs: Option<String>,
    /// ARM id of the Azure ML model version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The registered version (chosen by the operator when spec.model.version is unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Digest of the model artifact manifest (deploy by digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_digest: Option<String>,
    /// Digest of the serving image manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Provenance and other referrers attached to the pushed digests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
    /// Bytes uploaded to the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_uploaded: Option<i64>,
    /// Bytes the registry already had (mounted or skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_reused: Option<i64>,
}

fn default_output() -> String {
    "model".to_string()
}
fn default_model_path() -> String {
    "/models".to_string()
}
