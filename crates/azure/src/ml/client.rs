//! The [`MlApi`] trait and its ARM implementation.

use async_trait::async_trait;
use http::Method;
use serde::{Serialize, de::DeserializeOwned};
use url::Url;

use super::{types::*, workspace::Workspace};
use crate::{
    Error, Result,
    arm::{AZURE_ML_API_VERSION, ArmClient, LroStatus, LroToken, Page, Started, next_page_url},
};

pub type Job = Resource<JobProperties>;

/// Azure ML operations the operator uses. Getters return `None` for 404.
#[async_trait]
pub trait MlApi: Send + Sync {
    /// `Workspaces_Get`: the workspace's region (where computes must live) and its
    /// `mlFlowTrackingUri`.
    async fn get_workspace(&self) -> Result<Option<WorkspaceResource>>;
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

    async fn get_datastore(&self, name: &str) -> Result<Option<Resource<Datastore>>>;

    /// The HTTP client for the data-plane requests Azure ML hands out (upload SAS URLs,
    /// datastores).
    fn http(&self) -> reqwest::Client;
    /// The workspace's MLflow tracking API (same credential) at its `mlFlowTrackingUri`.
    fn mlflow(&self, tracking_uri: &str) -> Result<std::sync::Arc<dyn super::MlflowApi>>;
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

    /// The ARM client (its credential also serves the workspace's MLflow endpoint).
    pub fn arm(&self) -> &ArmClient {
        &self.arm
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
    async fn get_workspace(&self) -> Result<Option<WorkspaceResource>> {
        self.get(&self.workspace.id()?).await
    }

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
        // Archived versions too: their numbers stay taken.
        let first = self.url(
            &self.workspace.model_versions_id(name)?,
            &[("listViewType", "All")],
        )?;
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

    async fn get_datastore(&self, name: &str) -> Result<Option<Resource<Datastore>>> {
        self.get(&self.workspace.datastore_id(name)?).await
    }

    fn http(&self) -> reqwest::Client {
        self.arm.http().clone()
    }

    fn mlflow(&self, tracking_uri: &str) -> Result<std::sync::Arc<dyn super::MlflowApi>> {
        Ok(std::sync::Arc::new(super::MlflowClient::new(
            &self.arm,
            tracking_uri,
        )?))
    }
}
