//! Azure ML 2025-12-01 shapes we use (mfe.json, machineLearningServices.json). Discriminators
//! (`jobType`, `computeType`, `jobInputType`, `jobOutputType`, `credentialsType`,
//! `secretsType`, `jobLimitsType`) are spelled as the spec spells them. Server-set fields are
//! read but never sent.

use std::{collections::BTreeMap, time::Duration};

use azure_core::credentials::Secret;
use serde::{Deserialize, Serialize};

/// The ARM envelope every Azure ML resource comes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource<P> {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    pub properties: P,
}

impl<P> Resource<P> {
    pub fn new(properties: P) -> Self {
        Self {
            id: None,
            name: None,
            properties,
        }
    }
}

type Map = BTreeMap<String, String>;

// ---------------------------------------------------------------- computes

/// `ComputeResource` (location and tags sit beside `properties`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeResource {
    #[serde(default, skip_serializing)]
    pub id: Option<String>,
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map>,
    pub properties: Compute,
}

/// `Compute` with `computeType: VirtualMachine` (the only type we attach).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compute {
    pub compute_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ARM id of the VM; a Stack Hub VM has none Azure ML can resolve, so we leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing)]
    pub provisioning_errors: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing)]
    pub is_attached_compute: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<VirtualMachineSchemaProperties>,
}

/// `VirtualMachineSchema.properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSchemaProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administrator_account: Option<VirtualMachineSshCredentials>,
}

/// `VirtualMachineSshCredentials`; key material never shows in Debug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSshCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_data: Option<Secret>,
}

// ---------------------------------------------------------------- jobs

/// `JobBase` fields plus the job-type specific part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_name: Option<String>,
    #[serde(default, skip_serializing)]
    pub status: Option<JobStatus>,
    #[serde(flatten)]
    pub job: JobType,
}

/// The `jobType` discriminator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "jobType")]
pub enum JobType {
    Command(Box<CommandJob>),
    /// AutoML, Sweep, Pipeline, Spark: listed but never created by us.
    #[serde(other)]
    Other,
}

/// `CommandJob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CommandJob {
    pub command: String,
    pub environment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<String, JobInput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, JobOutput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CommandJobLimits>,
}

/// `JobInput`, by `jobInputType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "jobInputType")]
pub enum JobInput {
    #[serde(rename = "literal")]
    Literal {
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    #[serde(rename = "uri_file")]
    UriFile(AssetJobInput),
    #[serde(rename = "uri_folder")]
    UriFolder(AssetJobInput),
    #[serde(rename = "mltable")]
    Mltable(AssetJobInput),
    #[serde(rename = "custom_model")]
    CustomModel(AssetJobInput),
    #[serde(rename = "mlflow_model")]
    MlflowModel(AssetJobInput),
    #[serde(rename = "triton_model")]
    TritonModel(AssetJobInput),
}

/// `AssetJobInput` (`uri` required; `mode` is an `InputDeliveryMode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetJobInput {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `JobOutput`, by `jobOutputType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "jobOutputType")]
pub enum JobOutput {
    #[serde(rename = "uri_file")]
    UriFile(AssetJobOutput),
    #[serde(rename = "uri_folder")]
    UriFolder(AssetJobOutput),
    #[serde(rename = "mltable")]
    Mltable(AssetJobOutput),
    #[serde(rename = "custom_model")]
    CustomModel(AssetJobOutput),
    #[serde(rename = "mlflow_model")]
    MlflowModel(AssetJobOutput),
    #[serde(rename = "triton_model")]
    TritonModel(AssetJobOutput),
}

/// `AssetJobOutput` (`mode` is an `OutputDeliveryMode`; the service picks `uri` when absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AssetJobOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `CommandJobLimits` (`jobLimitsType: Command`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandJobLimits {
    pub job_limits_type: String,
    /// ISO 8601 duration, seconds precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl CommandJobLimits {
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            job_limits_type: "Command".into(),
            timeout: Some(iso8601_duration(timeout)),
        }
    }
}

/// `PT{n}S` with whole seconds (at least 1).
pub fn iso8601_duration(d: Duration) -> String {
    format!("PT{}S", d.as_secs().max(1))
}

/// `JobStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    NotStarted,
    Starting,
    Provisioning,
    Preparing,
    Queued,
    Running,
    Finalizing,
    CancelRequested,
    Completed,
    Failed,
    Canceled,
    NotResponding,
    Paused,
    #[serde(other)]
    Unknown,
}

impl JobStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

/// `ListViewType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListViewType {
    ActiveOnly,
    ArchivedOnly,
    All,
}

impl ListViewType {
    pub fn as_str(self) -> &'static str {
        match self {
            ListViewType::ActiveOnly => "ActiveOnly",
            ListViewType::ArchivedOnly => "ArchivedOnly",
            ListViewType::All => "All",
        }
    }
}

// ---------------------------------------------------------------- assets

/// `CodeVersion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CodeVersion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_anonymous: Option<bool>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

/// `PendingUploadRequestDto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingUploadRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_upload_id: Option<String>,
    pub pending_upload_type: String,
}

/// `PendingUploadResponseDto`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingUploadResponse {
    #[serde(default)]
    pub blob_reference_for_consumption: Option<BlobReferenceForConsumption>,
    #[serde(default)]
    pub pending_upload_id: Option<String>,
    #[serde(default)]
    pub pending_upload_type: Option<String>,
}

/// `BlobReferenceForConsumptionDto`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobReferenceForConsumption {
    #[serde(default)]
    pub blob_uri: Option<String>,
    #[serde(default)]
    pub storage_account_arm_id: Option<String>,
    #[serde(default)]
    pub credential: Option<PendingUploadCredential>,
}

/// `PendingUploadCredentialDto`, by `credentialType` (only `SAS` exists).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "credentialType")]
pub enum PendingUploadCredential {
    #[serde(rename = "SAS", rename_all = "camelCase")]
    Sas {
        #[serde(default)]
        sas_uri: Option<Secret>,
    },
}

/// `EnvironmentVersion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentVersion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Conda YAML text (not a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map>,
    #[serde(default, skip_serializing)]
    pub environment_type: Option<String>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

/// `ModelVersion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map>,
    /// Archived versions are hidden from default listings; with tags and description the
    /// only thing an update of a version may change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_archived: Option<bool>,
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<String>,
}

// ---------------------------------------------------------------- workspace

/// `Workspace` as read by `Workspaces_Get` (workspaceRP.json; only what we use).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkspaceResource {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The workspace's region, e.g. `westeurope` (ARM returns it for every tracked resource).
    pub location: String,
    #[serde(default)]
    pub properties: WorkspaceProperties,
}

/// `WorkspaceProperties` (the fields we read).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceProperties {
    /// `azureml://{region}.api.azureml.ms/mlflow/v1.0/subscriptions/...`.
    #[serde(default, rename = "mlFlowTrackingUri")]
    pub ml_flow_tracking_uri: Option<String>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub discovery_url: Option<String>,
}

// ---------------------------------------------------------------- datastores

/// `Datastore` as read (we never create datastores).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Datastore {
    pub datastore_type: String,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub container_name: Option<String>,
    /// Storage endpoint suffix, e.g. `core.windows.net`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub is_default: Option<bool>,
    #[serde(default)]
    pub credentials: Option<DatastoreCredentials>,
}

/// `DatastoreCredentials`, by `credentialsType` (secrets are omitted on GET).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "credentialsType")]
pub enum DatastoreCredentials {
    AccountKey,
    Sas,
    None,
    ServicePrincipal,
    Certificate,
}

/// `DatastoreSecrets` from `listSecrets`, by `secretsType`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "secretsType")]
pub enum DatastoreSecrets {
    AccountKey {
        #[serde(default)]
        key: Option<Secret>,
    },
    Sas {
        #[serde(default, rename = "sasToken")]
        sas_token: Option<Secret>,
    },
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_status_and_other_job_types_deserialise() {
        let j: Resource<JobProperties> = serde_json::from_value(json!({
            "id": "/x/jobs/j1", "name": "j1",
            "properties": {"jobType": "Sweep", "status": "Running", "experimentName": "e"}
        }))
        .unwrap();
        assert_eq!(j.properties.job, JobType::Other);
        assert_eq!(j.properties.status, Some(JobStatus::Running));
        let j: Resource<JobProperties> = serde_json::from_value(json!({
            "properties": {"jobType": "Command", "command": "python x.py", "environmentId": "env",
                "status": "SomethingNew", "inputs": {"n": {"jobInputType": "literal", "value": "3"}}}
        }))
        .unwrap();
        assert_eq!(j.properties.status, Some(JobStatus::Unknown));
        let JobType::Command(c) = &j.properties.job else {
            panic!()
        };
        assert_eq!(
            c.inputs.as_ref().unwrap()["n"],
            JobInput::Literal {
                value: "3".into(),
                description: None
            }
        );
        assert!(JobStatus::Canceled.is_terminal() && !JobStatus::Finalizing.is_terminal());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let creds: VirtualMachineSshCredentials = serde_json::from_value(json!({
            "username": "azureuser", "privateKeyData": "-----BEGIN OPENSSH PRIVATE KEY-----abc"
        }))
        .unwrap();
        assert!(!format!("{creds:?}").contains("BEGIN"));
        let s: DatastoreSecrets =
            serde_json::from_value(json!({"secretsType": "AccountKey", "key": "c2VjcmV0"}))
                .unwrap();
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        let DatastoreSecrets::AccountKey { key: Some(k) } = s else {
            panic!()
        };
        assert_eq!(k.secret(), "c2VjcmV0");
    }

    #[test]
    fn datastore_and_pending_upload_parse() {
        let d: Resource<Datastore> = serde_json::from_value(json!({
            "name": "workspaceblobstore",
            "properties": {"datastoreType": "AzureBlob", "accountName": "wsstore", "containerName": "azureml-blobstore-x",
                "endpoint": "core.windows.net", "protocol": "https", "isDefault": true,
                "credentials": {"credentialsType": "AccountKey"}, "serviceDataAccessAuthIdentity": "None"}
        }))
        .unwrap();
        assert_eq!(
            d.properties.credentials,
            Some(DatastoreCredentials::AccountKey)
        );
        let p: PendingUploadResponse = serde_json::from_value(json!({
            "blobReferenceForConsumption": {"blobUri": "https://a.blob.core.windows.net/c/LocalUpload/h",
                "storageAccountArmId": "/x", "credential": {"credentialType": "SAS", "sasUri": "https://a.blob.core.windows.net/c?sig=s"}},
            "pendingUploadId": "id", "pendingUploadType": "TemporaryBlobReference"
        }))
        .unwrap();
        let Some(PendingUploadCredential::Sas { sas_uri: Some(u) }) =
            p.blob_reference_for_consumption.unwrap().credential
        else {
            panic!()
        };
        assert!(u.secret().ends_with("sig=s"));
    }

    #[test]
    fn iso_durations() {
        assert_eq!(iso8601_duration(Duration::from_secs(7200)), "PT7200S");
        assert_eq!(iso8601_duration(Duration::from_millis(10)), "PT1S");
    }
}
