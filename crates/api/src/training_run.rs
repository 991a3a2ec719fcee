//! `TrainingRun`: one Azure ML command job on an EdgeComputeTarget, reading its data from
//! Stack Hub blob storage. Immutable after creation except `suspend`, like a Kubernetes Job.

// `printcolumn(type_ = "string", ...)` repeats per column by design; clippy reads the
// repetition as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::common::{LocalObjectReference, SecretReference};

/// The rule every immutable field carries; `suspend` alone may change after creation.
macro_rules! immutable {
    () => {
        "self == oldSelf"
    };
}

/// One Azure ML command job on an EdgeComputeTarget.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(test, derive(Default))]
#[kube(
    group = "edgetrain.dev",
    version = "v1alpha1",
    kind = "TrainingRun",
    namespaced,
    status = "TrainingRunStatus",
    shortname = "tr",
    category = "edgetrain",
    doc = "An Azure ML command job run on an EdgeComputeTarget, reading training data that stays on premises.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Attempts", type_ = "integer", json_path = ".status.attempts"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.computeTargetRef.name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Job",
        type_ = "string",
        json_path = ".status.jobName",
        priority = 1
    ),
    printcolumn(
        name = "Fingerprint",
        type_ = "string",
        json_path = ".status.dataFingerprint",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.displayName) == has(oldSelf.displayName) && has(self.outputs) == has(oldSelf.outputs) && has(self.environmentVariables) == has(oldSelf.environmentVariables) && has(self.activeDeadlineSeconds) == has(oldSelf.activeDeadlineSeconds) && has(self.ttlSecondsAfterFinished) == has(oldSelf.ttlSecondsAfterFinished) && has(self.outputPolicy) == has(oldSelf.outputPolicy)").message("spec is immutable except suspend: create a new TrainingRun"))]
pub struct TrainingRunSpec {
    /// The EdgeComputeTarget (same namespace) to run on.
    #[x_kube(validation = Rule::new(immutable!()).message("computeTargetRef is immutable"))]
    pub compute_target_ref: LocalObjectReference,
    /// Azure ML experiment the job is filed under.
    #[serde(default = "default_experiment")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}$"))]
    #[x_kube(validation = Rule::new(immutable!()).message("experimentName is immutable"))]
    pub experiment_name: String,
    /// Display name in Azure ML Studio. Unset: the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new(immutable!()).message("displayName is immutable"))]
    pub display_name: Option<String>,
    /// Where the training code comes from; uploaded to Azure ML as a code asset named by its
    /// content hash.
    #[x_kube(validation = Rule::new(immutable!()).message("code is immutable"))]
    pub code: CodeSource,
    /// The software environment the command runs in.
    #[x_kube(validation = Rule::new(immutable!()).message("environment is immutable"))]
    pub environment: EnvironmentSource,
    /// Azure ML command line, e.g. `python train.py --data ${{inputs.training_data}} --out
    /// ${{outputs.model}}`.
    #[schemars(length(min = 1, max = 16384))]
    #[x_kube(validation = Rule::new(immutable!()).message("command is immutable"))]
    pub command: String,
    /// The on-premises training data. It is read straight from Stack Hub blob storage by the
    /// job on the VM, with a short-lived read-only SAS bound to the VM's address.
    #[x_kube(validation = Rule::new(immutable!()).message("data is immutable"))]
    pub data: DataSource,
    /// Job outputs (written to the workspace's default datastore). Unset: one `uri_folder`
    /// output named `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(immutable!()).message("outputs are immutable"))]
    pub outputs: Option<Vec<JobOutput>>,
    /// Environment variables for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))").message("environmentVariables names must be letters, digits and underscores, not starting with a digit"))]
    #[x_kube(validation = Rule::new(immutable!()).message("environmentVariables are immutable"))]
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// How many times a failed job is submitted again (0 to 10).
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    #[x_kube(validation = Rule::new(immutable!()).message("backoffLimit is immutable"))]
    pub backoff_limit: i32,
    /// Upper bound of the job's run time in seconds (60 to 2592000, i.e. 30 days); the job is
    /// cancelled when it is exceeded, and the data SAS expires shortly after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 2_592_000))]
    #[x_kube(validation = Rule::new(immutable!()).message("activeDeadlineSeconds is immutable"))]
    pub active_deadline_seconds: Option<i64>,
    /// Delete this TrainingRun that long after it finished. Unset: keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    #[x_kube(validation = Rule::new(immutable!()).message("ttlSecondsAfterFinished is immutable"))]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Do not submit the job (or cancel a running one) while true. Resuming submits the next
    /// attempt; a job cancelled by suspension does not count against `backoffLimit`.
    #[serde(default)]
    pub suspend: bool,
    /// Limits on what the job may write. Checked, with the data-exfiltration check, before the
    /// run may count as Succeeded; a violation fails the run with reason
    /// `OutputPolicyViolation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(immutable!()).message("outputPolicy is immutable"))]
    pub output_policy: Option<OutputPolicy>,
}

/// What a job may leave behind in its outputs (every named output and the `artifacts` folder
/// with `./outputs` and the logs).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OutputPolicy {
    /// Upper bound of the summed size of all output files, in bytes. Unset: no ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_total_bytes: Option<i64>,
    /// Glob patterns (`*` within a path segment, `**` any number of segments, `?` one
    /// character) matched against `{output name}/{path inside the output}` of every output
    /// file, e.g. `model/*.onnx`, `model/features.json`, `artifacts/**` (the job's
    /// `./outputs` and logs). A file no pattern matches is a violation. Unset or empty: any
    /// file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(p, size(p) > 0 && size(p) <= 256)").message("outputPolicy.allowedFiles: patterns must be 1 to 256 characters"))]
    pub allowed_files: Vec<String>,
}

/// Training code: a ConfigMap (small scripts; each key is a file) or a blob URI — exactly one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMapRef) != has(self.blobUri)").message("code: set exactly one of configMapRef or blobUri"))]
pub struct CodeSource {
    /// ConfigMap whose keys are file names and values are file contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectReference>,
    /// https URI of a blob folder with the code (Stack Hub storage); read with
    /// `credentialsSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("code.blobUri must be an https URL"))]
    pub blob_uri: Option<String>,
    /// Storage account credentials for `blobUri` (keys `accountName`, `accountKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

/// The job's environment: a container image (optionally with a conda file), or an existing
/// Azure ML environment — exactly one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.image) != has(self.environmentId)").message("environment: set exactly one of image or environmentId"))]
#[x_kube(validation = Rule::new("!has(self.condaFile) || has(self.image)").message("environment.condaFile requires environment.image"))]
pub struct EnvironmentSource {
    /// Container image, e.g. `mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
    ))]
    pub image: Option<String>,
    /// Conda environment file (YAML text) applied on top of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub conda_file: Option<String>,
    /// ARM id (`/subscriptions/.../workspaces/{ws}/environments/{name}/versions/{version}`),
    /// `azureml:name:version` or `azureml:name@latest` of an existing environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(regex(
        pattern = r"^(azureml:[A-Za-z0-9][A-Za-z0-9_.-]{0,254}(:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}|@latest)|/(?i:subscriptions)/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/(?i:resourceGroups)/[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]/(?i:providers/Microsoft\.MachineLearningServices/workspaces)/[A-Za-z0-9][A-Za-z0-9_-]{2,32}/(?i:environments)/[A-Za-z0-9][A-Za-z0-9_.-]{0,254}/(?i:versions)/[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$"
    ))]
    pub environment_id: Option<String>,
}

/// On-premises input data in Stack Hub blob storage. Never an Azure ML datastore: the data
/// must not be registered in, or copied to, the cloud.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Blob endpoint of the Stack Hub storage account, e.g.
    /// `https://mydata.blob.local.azurestack.external`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("data.endpoint must be an https URL: the SAS the job uses is https-only"))]
    pub endpoint: String,
    /// Container name.
    #[schemars(regex(pattern = r"^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$"))]
    pub container: String,
    /// Only blobs whose names start with this prefix are inputs.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub prefix: String,
    /// Secret with `accountName` and `accountKey`; used by the operator to list and fingerprint
    /// the data and to sign the job's SAS. The key itself never leaves the cluster.
    pub credentials_secret_ref: SecretReference,
    /// Input name the command refers to as `${{inputs.NAME}}` (the SAS URL of the folder).
    #[serde(default = "default_input_name")]
    #[schemars(regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]{0,254}$"))]
    pub input_name: String,
}

/// One job output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobOutput {
    /// Output name, referred to as `${{outputs.NAME}}`.
    #[schemars(regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]{0,254}$"))]
    pub name: String,
    /// Azure ML output type.
    #[serde(default, rename = "type")]
    pub type_: OutputType,
}

/// Azure ML job output types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    #[default]
    UriFolder,
    UriFile,
    CustomModel,
    MlflowModel,
    TritonModel,
}

/// Lifecycle of a TrainingRun.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TrainingRunPhase {
    #[default]
    Pending,
    Submitted,
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

/// Observed state of a TrainingRun.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRunStatus {
    /// Where the run is in its lifecycle.
    #[serde(default)]
    pub phase: TrainingRunPhase,
    /// Conditions: `Ready` (True once Succeeded; its reason says why not, e.g.
    /// `ComputeTargetNotReady`, `Running`, `DataExfiltration`), `Reconciling`, `Stalled`.
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
    /// Azure ML job name of the current attempt (deterministic per namespace, name, uid and
    /// attempt, so a lost response never submits a job twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Link to the job in Azure ML Studio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub studio_url: Option<String>,
    /// Jobs submitted so far (one Azure ML job per attempt).
    #[serde(default)]
    pub attempts: i32,
    /// Attempts that ended Failed (they count against `backoffLimit`; attempts cancelled by
    /// `suspend` do not).
    #[serde(default)]
    pub failed_attempts: i32,
    /// When the first job was submitted; `activeDeadlineSeconds` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the current attempt's job was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_time: Option<Time>,
    /// When the run finished (Succeeded, Failed or Canceled); `ttlSecondsAfterFinished`
    /// counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Latest value of each metric the job logged through MLflow.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// URIs of the job's outputs, by output name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// sha256 over the listing of every input blob (name, size, MD5, ETag) in name order:
    /// what the model was trained on, without the data leaving the premises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<String>,
    /// Number of input blobs in the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_blob_count: Option<i64>,
    /// Summed size of the input blobs, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_total_bytes: Option<i64>,
    /// Input blobs stored without a Content-MD5: they are in the fingerprint (name, size,
    /// ETag) but the exfiltration check cannot recognise their content in the outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_unverifiable_blobs: Option<i64>,
    /// sha256 of the code as uploaded to Azure ML (also the code asset's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_digest: Option<String>,
    /// ARM id of the Azure ML code version the jobs run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_id: Option<String>,
    /// ARM id (or `azureml:` reference) of the environment the jobs run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
}

fn default_experiment() -> String {
    "Default".to_string()
}
fn default_input_name() -> String {
    "training_data".to_string()
}
