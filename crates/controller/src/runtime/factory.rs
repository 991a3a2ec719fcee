//! Client factories, one small trait per Azure service, each with one real implementation
//! ([`AzureClients`]). Tests and future modes substitute a trait, not the whole context.
//!
//! The container-registry factory joins these once `crates/registry` exists.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use edgetrain_api::edge_compute_target::ApiProfile;
use edgetrain_azure::{
    arm::{ApiProfile as ArmProfile, ArmClient, Provider, RateLimiter, Started},
    blob::{AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint},
    identity::{Authority, ClientSecretCredential, TokenCache, WorkloadIdentityCredential},
    ml::{MlApi, MlClient, Workspace},
    stackhub::{StackHubApi, StackHubClient},
    transport::HttpConfig,
};

use super::secrets::{Credentials, MlIdentity};
use crate::{Error, Result, metrics::Metrics};

/// Public Azure's ARM token audience (Azure ML lives there).
pub const PUBLIC_ARM_AUDIENCE: &str = "https://management.azure.com/";

/// Name of the VMAccess extension resource on the VM.
pub const VM_ACCESS_EXTENSION: &str = "enablevmaccess";

/// Sets the admin account's SSH key on a running Linux VM through the VMAccessForLinux
/// extension (Azure refuses changes to `osProfile` keys on an existing VM).
#[async_trait]
pub trait VmAccess: Send + Sync {
    /// `remove_prior_keys`: the key becomes the only one in authorized_keys.
    async fn set_ssh_key(
        &self,
        vm_id: &str,
        location: &str,
        username: &str,
        public_key: &str,
        remove_prior_keys: bool,
    ) -> Result<Started>;
}

/// Stack Hub clients of one stamp + credential.
#[derive(Clone)]
pub struct StackHub {
    pub api: Arc<dyn StackHubApi>,
    pub vm_access: Arc<dyn VmAccess>,
}

/// Stack Hub ARM (compute, network) for an endpoint + service principal.
#[async_trait]
pub trait StackHubFactory: Send + Sync {
    async fn stack_hub(
        &self,
        arm_endpoint: &str,
        profile: ApiProfile,
        creds: &Credentials,
    ) -> Result<StackHub>;
}

/// Azure ML (public ARM) for one workspace + identity.
#[async_trait]
pub trait MlFactory: Send + Sync {
    async fn azure_ml(
        &self,
        arm_endpoint: &str,
        workspace: Workspace,
        identity: &MlIdentity,
    ) -> Result<Arc<dyn MlApi>>;
}

/// Workload identity as the operator's deployment configures it: the projected token file,
/// and the client ids an object may name (an administrator's explicit opt-in per identity:
/// naming a client id is no secret, so without this list any namespace could borrow any
/// identity that trusts the operator's service account).
#[derive(Debug, Clone)]
pub struct WorkloadIdentity {
    pub token_file: PathBuf,
    pub allowed_client_ids: Vec<String>,
}

impl WorkloadIdentity {
    fn allows(&self, client_id: &str) -> bool {
        self.allowed_client_ids
            .iter()
            .any(|c| c.eq_ignore_ascii_case(client_id))
    }
}

/// Stack Hub blob storage (Shared Key: Stack Hub has no Entra ID for storage).
pub trait BlobFactory: Send + Sync {
    fn blob(&self, endpoint: &str, key: AccountKey) -> Result<Arc<dyn BlobApi>>;
}

/// The factories a [`crate::context::Context`] holds.
#[derive(Clone)]
pub struct Factories {
    pub stack_hub: Arc<dyn StackHubFactory>,
    pub ml: Arc<dyn MlFactory>,
    pub blob: Arc<dyn BlobFactory>,
}

impl Factories {
    /// The real clients, sharing one HTTP client, token cache, rate limiter and metrics.
    pub fn real(
        metrics: &Metrics,
        http: HttpConfig,
        workload: Option<WorkloadIdentity>,
    ) -> Result<Self> {
        let clients = Arc::new(AzureClients::new(metrics, http, workload)?);
        Ok(Self {
            stack_hub: clients.clone(),
            ml: clients.clone(),
            blob: clients,
        })
    }
}

/// The HTTP settings of a real deployment: `SSL_CERT_FILE` (set by the chart for private CAs,
/// e.g. Stack Hub's) adds trust anchors.
pub fn http_config_from_env() -> HttpConfig {
    let mut http = HttpConfig::default();
    if let Ok(path) = std::env::var("SSL_CERT_FILE") {
        http.extra_ca_bundle = Some(path.into());
    }
    http
}

/// [`VmAccess`] over the stamp's ARM client.
struct ArmVmAccess {
    client: Arc<StackHubClient>,
    profile: ArmProfile,
}

#[async_trait]
impl VmAccess for ArmVmAccess {
    async fn set_ssh_key(
        &self,
        vm_id: &str,
        location: &str,
        username: &str,
        public_key: &str,
        remove_prior_keys: bool,
    ) -> Result<Started> {
        let id = format!("{vm_id}/extensions/{VM_ACCESS_EXTENSION}");
        let version = self.profile.api_version(Provider::Compute);
        let arm = self.client.arm();
        let url = arm
            .url(&id, version, &[])
            .map_err(|e| Error::azure(format!("VMAccess URL for {vm_id}"), e))?;
        let body = serde_json::json!({
            "location": location,
            "properties": {
                "publisher": "Microsoft.OSTCExtensions",
                "type": "VMAccessForLinux",
                "typeHandlerVersion": "1.5",
                "autoUpgradeMinorVersion": true,
                "settings": {},
                "protectedSettings": {
                    "username": username,
                    "ssh_key": public_key,
                    "remove_prior_keys": remove_prior_keys,
                },
            }
        });
        arm.begin(http::Method::PUT, url, &id, Some(&body))
            .await
            .map_err(|e| Error::azure(format!("PUT VMAccess extension on {vm_id}"), e))
    }
}

/// The real clients: one shared HTTP client, token cache, rate limiter and request metrics;
/// ARM clients cached per (endpoint, principal, secret digest) so metadata discovery runs once
/// per credential.
pub struct AzureClients {
    http: reqwest::Client,
    tokens: Arc<TokenCache>,
    limiter: Arc<RateLimiter>,
    metrics: edgetrain_azure::arm::RequestMetrics,
    stack_hub: Mutex<HashMap<String, Arc<StackHubClient>>>,
    ml: Mutex<HashMap<String, Arc<MlClient>>>,
    workload: Option<WorkloadIdentity>,
}

impl AzureClients {
    pub fn new(
        metrics: &Metrics,
        http: HttpConfig,
        workload: Option<WorkloadIdentity>,
    ) -> Result<Self> {
        edgetrain_azure::transport::install_crypto_provider();
        let http = http
            .build()
            .map_err(|e| Error::azure("building the HTTP client", e))?;
        Ok(Self {
            http,
            tokens: Arc::new(TokenCache::new(Duration::from_secs(300))),
            limiter: Arc::new(RateLimiter::default()),
            metrics: metrics.azure.clone(),
            stack_hub: Mutex::default(),
            ml: Mutex::default(),
            workload,
        })
    }

    async fn workload_credential(
        &self,
        endpoint: &url::Url,
        tenant: &str,
        client_id: &str,
    ) -> Result<Arc<dyn TokenCredential>> {
        let wi = self
            .workload
            .as_ref()
            .filter(|w| w.allows(client_id))
            .ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "the credentials Secret has no clientSecret, and workload identity for client \
                     {client_id} is not enabled in this operator (--workload-identity-client-ids)"
                ))
            })?;
        let md = edgetrain_azure::identity::discover(&self.http, endpoint)
            .await
            .map_err(|e| Error::azure(format!("metadata discovery at {endpoint}"), e))?;
        let authority = Authority::new(md.login_endpoint.clone(), tenant)
            .map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let cred = WorkloadIdentityCredential::new(
            self.http.clone(),
            authority,
            client_id,
            wi.token_file.clone(),
        )
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
        Ok(Arc::new(cred))
    }

    fn url(endpoint: &str) -> Result<url::Url> {
        endpoint
            .parse()
            .map_err(|e| Error::InvalidSpec(format!("ARM endpoint {endpoint:?}: {e}")))
    }

    async fn credential(
        &self,
        endpoint: &url::Url,
        creds: &Credentials,
    ) -> Result<(ClientSecretCredential, String)> {
        ClientSecretCredential::discover(
            self.http.clone(),
            endpoint,
            creds.principal(),
            self.tokens.clone(),
        )
        .await
        .map_err(|e| Error::azure(format!("metadata discovery at {endpoint}"), e))
    }

    fn arm(&self, endpoint: url::Url, cred: Arc<dyn TokenCredential>, audience: &str) -> ArmClient {
        ArmClient::new(self.http.clone(), endpoint, cred, audience)
            .with_limiter(self.limiter.clone())
            .with_metrics(self.metrics.clone())
    }
}

#[async_trait]
impl StackHubFactory for AzureClients {
    async fn stack_hub(
        &self,
        arm_endpoint: &str,
        profile: ApiProfile,
        creds: &Credentials,
    ) -> Result<StackHub> {
        let profile = match profile {
            ApiProfile::Hybrid20200901 => ArmProfile::V2020_09_01Hybrid,
            ApiProfile::Hybrid20190301 => ArmProfile::V2019_03_01Hybrid,
        };
        let key = creds.cache_key(arm_endpoint, profile.name());
        let hub = |client: Arc<StackHubClient>| StackHub {
            api: client.clone(),
            vm_access: Arc::new(ArmVmAccess { client, profile }),
        };
        if let Some(c) = self.stack_hub.lock().expect("lock").get(&key) {
            return Ok(hub(c.clone()));
        }
        let endpoint = Self::url(arm_endpoint)?;
        let (cred, audience) = self.credential(&endpoint, creds).await?;
        let client = Arc::new(StackHubClient::new(
            self.arm(endpoint, Arc::new(cred), &audience),
            profile,
        ));
        self.stack_hub
            .lock()
            .expect("lock")
            .insert(key, client.clone());
        Ok(hub(client))
    }
}

#[async_trait]
impl MlFactory for AzureClients {
    async fn azure_ml(
        &self,
        arm_endpoint: &str,
        workspace: Workspace,
        identity: &MlIdentity,
    ) -> Result<Arc<dyn MlApi>> {
        let key = format!(
            "{}|{}",
            identity.cache_key(arm_endpoint),
            workspace.id().unwrap_or_default()
        );
        if let Some(c) = self.ml.lock().expect("lock").get(&key) {
            return Ok(c.clone());
        }
        let endpoint = Self::url(arm_endpoint)?;
        // The login authority comes from metadata; the audience is public ARM's.
        let cred: Arc<dyn TokenCredential> = match identity {
            MlIdentity::ServicePrincipal(creds) => {
                Arc::new(self.credential(&endpoint, creds).await?.0)
            }
            MlIdentity::Workload { tenant, client_id } => {
                self.workload_credential(&endpoint, tenant, client_id)
                    .await?
            }
        };
        let client = Arc::new(MlClient::new(
            self.arm(endpoint, cred, PUBLIC_ARM_AUDIENCE),
            workspace,
        ));
        self.ml.lock().expect("lock").insert(key, client.clone());
        Ok(client)
    }
}

impl BlobFactory for AzureClients {
    fn blob(&self, endpoint: &str, key: AccountKey) -> Result<Arc<dyn BlobApi>> {
        let endpoint = BlobEndpoint::parse(endpoint)
            .map_err(|e| Error::InvalidSpec(format!("blob endpoint: {e}")))?;
        Ok(Arc::new(
            BlobClient::new(self.http.clone(), endpoint, BlobAuth::SharedKey(key))
                .with_metrics(self.metrics.clone()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workload_identity_only_for_client_ids_the_operator_allows() {
        let workload = WorkloadIdentity {
            token_file: "/var/run/secrets/azure/tokens/azure-identity-token".into(),
            allowed_client_ids: vec!["app-allowed".into()],
        };
        let clients =
            AzureClients::new(&Metrics::default(), HttpConfig::default(), Some(workload)).unwrap();
        let ws = Workspace {
            subscription_id: "00000000-0000-0000-0000-000000000001".into(),
            resource_group: "rg".into(),
            name: "ws".into(),
        };
        let borrowed = MlIdentity::Workload {
            tenant: "t".into(),
            client_id: "someone-elses-app".into(),
        };
        let e = match clients
            .azure_ml("https://management.azure.com", ws.clone(), &borrowed)
            .await
        {
            Err(e) => e,
            Ok(_) => panic!("an identity the operator does not allow was used"),
        };
        assert!(matches!(e, Error::InvalidSpec(_)), "{e}");
        assert!(e.to_string().contains("someone-elses-app"), "{e}");
        // Without any workload identity configured, nothing is allowed.
        let none = AzureClients::new(&Metrics::default(), HttpConfig::default(), None).unwrap();
        let allowed = MlIdentity::Workload {
            tenant: "t".into(),
            client_id: "app-allowed".into(),
        };
        assert!(
            none.azure_ml("https://management.azure.com", ws, &allowed)
                .await
                .is_err()
        );
    }
}
