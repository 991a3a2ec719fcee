//! Azure ML (public ARM, api-version 2025-12-01): computes, code/environment/model versions,
//! Command jobs and datastores, behind the [`MlApi`] trait.

mod build;
mod types;

pub use build::*;
pub use types::*;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use serde::{Serialize, de::DeserializeOwned};
use url::Url;

use crate::{
    Error, Result,
    arm::{AZURE_ML_API_VERSION, ArmClient, LroStatus, LroToken, Page, Started, next_page_url},
    blob::{BlobApi, BlobClient},
    error::require_segment,
};

/// An Azure ML workspace: `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

impl Workspace {
    pub fn id(&self) -> Result<String> {
        for (what, v) in [
            ("subscription id", &self.subscription_id),
            ("resource group", &self.resource_group),
            ("workspace", &self.name),
        ] {
            require_segment(what, v)?;
        }
        Ok(format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription_id, self.resource_group, self.name
        ))
    }

    /// `{workspace id}/{child}` where every name in `child` has been validated by the caller.
    fn child(&self, child: &str) -> Result<String> {
        Ok(format!("{}/{child}", self.id()?))
    }

    pub fn compute_id(&self, name: &str) -> Result<String> {
        validate_name("compute name", name)?;
        self.child(&format!("computes/{name}"))
    }
    pub fn job_id(&self, name: &str) -> Result<String> {
        validate_name("job name", name)?;
        self.child(&format!("jobs/{name}"))
    }
    pub fn code_version_id(&self, name: &str, version: &str) -> Result<String> {
        validate_name("code name", name)?;
        validate_name("code version", version)?;
        self.child(&format!("codes/{name}/versions/{version}"))
    }
    pub fn environment_version_id(&self, name: &str, version: &str) -> Result<String> {
        validate_name("environment name", name)?;
        validate_name("environment version", version)?;
        self.child(&format!("environments/{name}/versions/{version}"))
    }
    pub fn model_versions_id(&self, name: &str) -> Result<String> {
        validate_name("model name", name)?;
        self.child(&format!("models/{name}/versions"))
    }
    pub fn model_version_id(&self, name: &str, version: &str) -> Result<String> {
        validate_name("model version", version)?;
        Ok(format!("{}/{version}", self.model_versions_id(name)?))
    }
    pub fn datastore_id(&self, name: &str) -> Result<String> {
        validate_name("datastore name", name)?;
        self.child(&format!("datastores/{name}"))
    }
}

pub type Job = Resource<JobProperties>;

/// Azure ML operations the operator uses. Getters return `None` for 404.
#[async_trait]
pub trait MlApi: Send + Sync {
    async fn get_compute(&self, name: &str) -> Result<Option<ComputeResource>>;
    /// PUT overwrites an existing compute: GET first.
    async fn attach_compute(&self, name: &str, body: &ComputeResource) -> Result<Started>;
    /// `DELETE ?underlyingResourceAction=Detach`: the VM itself is kept.
    async fn detach_compute(&self, name: &str) -> Result<Started>;

    async fn get_code_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Resource<CodeVersion>>>;
    async fn start_pending_upload(
        &self,
        name: &str,
        version: &str,
    ) -> Result<PendingUploadResponse>;
    async fn put_code_version(
        &self,
        name: &str,
        version: &str,
        body: &Resource<CodeVersion>,
    ) -> Result<Resource<CodeVersion>>;

    async fn get_environment_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Resource<EnvironmentVersion>>>;
    async fn put_environment_version(
        &self,
        name: &str,
        version: &str,
        body: &Resource<EnvironmentVersion>,
    ) -> Result<Resource<EnvironmentVersion>>;

    /// Creates and starts the job (a repeated PUT only updates tags).
    async fn create_job(&self, name: &str, body: &Job) -> Result<Job>;
    async fn get_job(&self, name: &str) -> Result<Option<Job>>;
    /// One page of the workspace's jobs: `next` is `None` for the first page, else the previous
    /// page's `nextLink`.
    async fn list_jobs_page(
        &self,
        next: Option<&str>,
        view: Option<ListViewType>,
    ) -> Result<Page<Job>>;
    async fn cancel_job(&self, name: &str) -> Result<Started>;

    async fn put_model_version(
        &self,
        name: &str,
        version: &str,
        body: &Resource<ModelVersion>,
    ) -> Result<Resource<ModelVersion>>;
    async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Resource<ModelVersion>>>;
    async fn list_model_versions_page(
        &self,
        name: &str,
        next: Option<&str>,
    ) -> Result<Page<Resource<ModelVersion>>>;

    /// `GET datastores?isDefault=true`.
    async fn default_datastore(&self) -> Result<Option<Resource<Datastore>>>;
    async fn datastore_secrets(&self, name: &str) -> Result<DatastoreSecrets>;

    async fn poll(&self, token: &LroToken) -> Result<LroStatus>;
}

/// [`MlApi`] over an [`ArmClient`] pointed at public ARM.
#[derive(Debug, Clone)]
pub struct MlClient {
    arm: ArmClient,
    workspace: Workspace,
}

impl MlClient {
    pub fn new(arm: ArmClient, workspace: Workspace) -> Self {
        Self { arm, workspace }
    }

    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    fn url(&self, id: &str, query: &[(&str, &str)]) -> Result<Url> {
        self.arm.url(id, AZURE_ML_API_VERSION, query)
    }

    async fn get<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>> {
        self.arm.get_json(self.url(id, &[])?).await
    }

    async fn put<B: Serialize + Sync, T: DeserializeOwned>(&self, id: &str, body: &B) -> Result<T> {
        let json = serde_json::to_value(body).map_err(|e| Error::decode("request body", e))?;
        self.arm
            .send_json(Method::PUT, self.url(id, &[])?, Some(&json))
            .await
    }

    async fn page<T: DeserializeOwned>(&self, first: Url, next: Option<&str>) -> Result<Page<T>> {
        let url = match next {
            None => first,
            Some(link) => next_page_url(self.arm.endpoint(), Some(link))?
                .ok_or_else(|| Error::InvalidInput("empty nextLink".into()))?,
        };
        self.arm.page(url).await
    }
}

#[async_trait]
impl MlApi for MlClient {
    async fn get_compute(&self, name: &str) -> Result<Option<ComputeResource>> {
        self.get(&self.workspace.compute_id(name)?).await
    }

    async fn attach_compute(&self, name: &str, body: &ComputeResource) -> Result<Started> {
        let id = self.workspace.compute_id(name)?;
        let json = serde_json::to_value(body).map_err(|e| Error::decode("request body", e))?;
        self.arm
            .begin(Method::PUT, self.url(&id, &[])?, &id, Some(&json))
            .await
    }

    async fn detach_compute(&self, name: &str) -> Result<Started> {
        let id = self.workspace.compute_id(name)?;
        let url = self.url(&id, &[("underlyingResourceAction", "Detach")])?;
        match self.arm.begin(Method::DELETE, url, &id, None).await {
            Err(Error::Arm(e)) if e.is_not_found() => Ok(Started::Done {
                status: 404,
                body: serde_json::Value::Null,
            }),
            other => other,
        }
    }

    async fn get_code_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Resource<CodeVersion>>> {
        self.get(&self.workspace.code_version_id(name, version)?)
            .await
    }

    async fn start_pending_upload(
        &self,
        name: &str,
        version: &str,
    ) -> Result<PendingUploadResponse> {
        let id = format!(
            "{}/startPendingUpload",
            self.workspace.code_version_id(name, version)?
        );
        let body = serde_json::to_value(PendingUploadRequest {
            pending_upload_id: None,
            pending_upload_type: "TemporaryBlobReference".into(),
        })
        .map_err(|e| Error::decode("request body", e))?;
        self.arm
            .send_json(Method::POST, self.url(&id, &[])?, Some(&body))
            .await
    }

    async fn put_code_version(
        &self,
        name: &str,
        version: &str,
        body: &Resource<CodeVersion>,
    ) -> Result<Resource<CodeVersion>> {
        self.put(&self.workspace.code_version_id(name, version)?, body)
            .await
    }

    async fn get_environment_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Resource<EnvironmentVersion>>> {
        self.get(&self.workspace.environment_version_id(name, version)?)
            .await
    }

    async fn put_environment_version(
        &self,
        name: &str,
        version: &str,
        body: &Resource<EnvironmentVersion>,
    ) -> Result<Resource<EnvironmentVersion>> {
        if body.properties.image.is_none() {
            return Err(Error::InvalidInput(
                "environment version needs an image".into(),
            ));
        }
        self.put(&self.workspace.environment_version_id(name, version)?, body)
            .await
    }

    async fn create_job(&self, name: &str, body: &Job) -> Result<Job> {
        self.put(&self.workspace.job_id(name)?, body).await
    }

    async fn get_job(&self, name: &str) -> Result<Option<Job>> {
        self.get(&self.workspace.job_id(name)?).await
    }

    async fn list_jobs_page(
        &self,
        next: Option<&str>,
        view: Option<ListViewType>,
    ) -> Result<Page<Job>> {
        let id = self.workspace.child("jobs")?;
        let q: Vec<(&str, &str)> = view
            .map(|v| ("listViewType", v.as_str()))
            .into_iter()
            .collect();
        self.page(self.url(&id, &q)?, next).await
    }

    async fn cancel_job(&self, name: &str) -> Result<Started> {
        let id = self.workspace.job_id(name)?;
        self.arm
            .begin(
                Method::POST,
                self.url(&format!("{id}/cancel"), &[])?,
                &id,
                None,
            )
            .await
    }

    async fn put_model_version(
        &self,
        name: &str,
        version: &str,
        body: &Resource<ModelVersion>,
    ) -> Result<Resource<ModelVersion>> {
        self.put(&self.workspace.model_version_id(name, version)?, body)
            .await
    }

    async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Resource<ModelVersion>>> {
        self.get(&self.workspace.model_version_id(name, version)?)
            .await
    }

    async fn list_model_versions_page(
        &self,
        name: &str,
        next: Option<&str>,
    ) -> Result<Page<Resource<ModelVersion>>> {
        let first = self.url(&self.workspace.model_versions_id(name)?, &[])?;
        self.page(first, next).await
    }

    async fn default_datastore(&self) -> Result<Option<Resource<Datastore>>> {
        let url = self.url(
            &self.workspace.child("datastores")?,
            &[("isDefault", "true")],
        )?;
        let page: Page<Resource<Datastore>> = self.arm.page(url).await?;
        Ok(page.value.into_iter().next())
    }

    async fn datastore_secrets(&self, name: &str) -> Result<DatastoreSecrets> {
        let id = format!("{}/listSecrets", self.workspace.datastore_id(name)?);
        self.arm
            .send_json(Method::POST, self.url(&id, &[])?, None)
            .await
    }

    async fn poll(&self, token: &LroToken) -> Result<LroStatus> {
        self.arm.poll(token).await
    }
}

/// Where `blob_uri` points inside the SAS container: the path below the container, with a
/// trailing `/` when non-empty (pure).
pub fn upload_prefix(blob_uri: &str, container: &str) -> Result<String> {
    let u = crate::error::parse_url(blob_uri)?;
    let path = u.path();
    let marker = format!("/{container}");
    let idx = path.find(&marker).ok_or_else(|| {
        Error::decode(
            "startPendingUpload",
            format!("blobUri {blob_uri} is not inside container {container}"),
        )
    })?;
    let rest = path[idx + marker.len()..].trim_matches('/');
    Ok(if rest.is_empty() {
        String::new()
    } else {
        format!("{rest}/")
    })
}

/// Upload a code snapshot as a content-addressed code version (name = content hash, version
/// `1`) through the pending-upload flow, unless that version already exists. Returns the
/// version's ARM id, for a job's `codeId`.
pub async fn upload_code(
    ml: &dyn MlApi,
    workspace: &Workspace,
    http: reqwest::Client,
    files: &[CodeFile],
) -> Result<String> {
    let name = code_content_hash(files)?;
    let version = "1";
    if let Some(existing) = ml.get_code_version(&name, version).await?
        && existing.properties.code_uri.is_some()
    {
        return workspace.code_version_id(&name, version);
    }
    let pending = ml.start_pending_upload(&name, version).await?;
    let blob_ref = pending
        .blob_reference_for_consumption
        .ok_or_else(|| Error::decode("startPendingUpload", "no blobReferenceForConsumption"))?;
    let blob_uri = blob_ref
        .blob_uri
        .ok_or_else(|| Error::decode("startPendingUpload", "no blobUri"))?;
    let Some(PendingUploadCredential::Sas { sas_uri: Some(sas) }) = blob_ref.credential else {
        return Err(Error::decode("startPendingUpload", "no SAS credential"));
    };
    let (blob, container) = BlobClient::from_container_sas_url(http, sas.secret())?;
    let prefix = upload_prefix(&blob_uri, &container)?;
    for f in files {
        blob.put(
            &container,
            &format!("{prefix}{}", f.path),
            Bytes::clone(&f.content),
            None,
        )
        .await?;
    }
    let body = Resource::new(CodeVersion {
        code_uri: Some(blob_uri),
        is_anonymous: Some(false),
        properties: Some([("edgetrain.dev/content-sha256".to_string(), name.clone())].into()),
        ..Default::default()
    });
    ml.put_code_version(&name, version, &body).await?;
    workspace.code_version_id(&name, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids() {
        let ws = Workspace {
            subscription_id: "s".into(),
            resource_group: "rg".into(),
            name: "ws".into(),
        };
        assert_eq!(
            ws.job_id("j1").unwrap(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/jobs/j1"
        );
        assert!(
            ws.code_version_id("abc", "1")
                .unwrap()
                .ends_with("/codes/abc/versions/1")
        );
        assert!(ws.job_id("../x").is_err());
    }

    #[test]
    fn upload_prefix_from_blob_uri() {
        assert_eq!(
            upload_prefix("https://a.blob.core.windows.net/c1/LocalUpload/abc", "c1").unwrap(),
            "LocalUpload/abc/"
        );
        assert_eq!(
            upload_prefix("http://127.0.0.1:1/acct/c1", "c1").unwrap(),
            ""
        );
        assert!(upload_prefix("https://a.blob.core.windows.net/other/x", "c1").is_err());
    }
}
