//! Everything a reconcile needs, in one place: Kubernetes client and event recorder, metrics,
//! the clock, the Azure client factories, the watch caches, and per-kind settings.

use std::{sync::Arc, time::Duration};

use edgetrain_api::DeletionPolicy;
use kube::{Client, runtime::events::Recorder};

use crate::{
    metrics::Metrics,
    runtime::{
        factory::Factories,
        failures::{Failures, KnownVersions, StallGate},
        secrets::SecretReader,
        stores::Stores,
    },
};

/// Wall clock for decisions (idle timeout, key age); replaceable so tests can move time.
pub trait Clock: Send + Sync {
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Settings of one kind's controller.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Periodic re-check of a settled object (drift detection, idle timeout).
    pub resync: Duration,
    /// Used when `spec.deletionPolicy` is unset.
    pub default_deletion_policy: DeletionPolicy,
    /// Reconciles of this kind running at once (0: unbounded). Bounded, a burst of thousands
    /// of objects queues instead of holding thousands of reconciles, requests and status
    /// writes in flight at the same time.
    pub max_concurrent_reconciles: u16,
}

/// Settings per kind.
#[derive(Debug, Clone)]
pub struct Settings {
    pub edge_compute_target: ControllerSettings,
    pub training_run: ControllerSettings,
    pub model_release: ControllerSettings,
    /// Azure ML job listing pages per minute per workspace (the TrainingRuns' read budget).
    pub azure_ml_list_pages_per_minute: u32,
}

impl Settings {
    /// The same settings for every kind, and the default Azure ML read budget.
    pub fn uniform(s: ControllerSettings) -> Self {
        Self {
            edge_compute_target: s.clone(),
            training_run: s.clone(),
            model_release: s,
            azure_ml_list_pages_per_minute: crate::training_run::listing::DEFAULT_PAGES_PER_MINUTE,
        }
    }
}

/// Shared state of the controllers of one watched scope.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    pub factories: Factories,
    pub settings: Settings,
    /// Watch caches of the three kinds and of Secrets' metadata.
    pub stores: Stores,
    /// Referenced Secrets' data, read once per version.
    pub secrets: SecretReader,
    /// Consecutive failures per object, for backoff.
    pub(crate) failures: Failures,
    /// Objects stalled on unchanged inputs.
    pub(crate) stalls: StallGate,
    /// Newest known version of each object (read-your-writes over the watch cache).
    pub(crate) known: KnownVersions,
    /// Each workspace's latest job listing, shared by its TrainingRuns.
    pub job_listings: crate::training_run::listing::JobListings,
    /// Azure ML code and environment versions known to exist, shared by the TrainingRuns.
    pub assets: crate::training_run::assets::KnownAssets,
    /// Output datastores opened for the TrainingRuns' verifications.
    pub datastores: crate::training_run::datastores::Datastores,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
        factories: Factories,
        settings: Settings,
        stores: Stores,
    ) -> Self {
        let job_listings =
            crate::training_run::listing::JobListings::new(settings.azure_ml_list_pages_per_minute);
        Self {
            client,
            recorder,
            metrics,
            clock,
            factories,
            settings,
            stores,
            secrets: SecretReader::default(),
            failures: Failures::default(),
            stalls: StallGate::default(),
            known: KnownVersions::default(),
            job_listings,
            assets: Default::default(),
            datastores: Default::default(),
        }
    }

    /// Secret `ns/name`, which must exist (see [`crate::runtime::secrets`] for where it is
    /// read from and when it is read afresh).
    pub async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::Result<std::sync::Arc<k8s_openapi::api::core::v1::Secret>> {
        self.secrets
            .require(&self.client, &self.stores, ns, name)
            .await
    }

    /// The service principal in Secret `ns/name` (keys `tenantId`, `clientId`,
    /// `clientSecret`).
    pub async fn credentials(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::Result<crate::runtime::secrets::Credentials> {
        crate::runtime::secrets::Credentials::from_secret(&*self.secret(ns, name).await?)
    }

    /// How to authenticate to Azure ML, from Secret `ns/name` (see
    /// [`crate::runtime::secrets::MlIdentity::from_secret`]).
    pub async fn ml_identity(
        &self,
        ns: &str,
        name: &str,
    ) -> crate::Result<crate::runtime::secrets::MlIdentity> {
        crate::runtime::secrets::MlIdentity::from_secret(&*self.secret(ns, name).await?)
    }

    /// The Azure ML workspace of `ect` and a client for it, with the target's Azure ML
    /// credentials: TrainingRuns and ModelReleases work in their target's workspace.
    pub async fn workspace_of(
        &self,
        ect: &edgetrain_api::EdgeComputeTarget,
    ) -> crate::Result<(
        Arc<dyn edgetrain_azure::ml::MlApi>,
        edgetrain_azure::ml::Workspace,
    )> {
        use kube::ResourceExt;
        let spec = &ect.spec.azure_ml;
        let workspace = edgetrain_azure::ml::Workspace {
            subscription_id: spec.subscription_id.clone(),
            resource_group: spec.resource_group.clone(),
            name: spec.workspace.clone(),
        };
        let identity = self
            .ml_identity(
                &ect.namespace().unwrap_or_default(),
                &spec.credentials_secret_ref.name,
            )
            .await?;
        let ml = self
            .factories
            .ml
            .azure_ml(&spec.arm_endpoint, workspace.clone(), &identity)
            .await?;
        Ok((ml, workspace))
    }
}
