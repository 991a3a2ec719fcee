//! Client factories, one small trait per Azure service, each with one real implementation
//! ([`AzureClients`]). Tests and future modes substitute a trait, not the whole context.
//! [`RegistryFactory`] is the container registry's (`edgetrain-registry`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use edgetrain_api::edge_compute_target::ApiProfile;
use edgetrain_azure::{
    arm::{ApiProfile as ArmProfile, ArmClient, Provider, RateLimiter, Started},
    blob::{AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint},
    identity::{ClientSecretCredential, TokenCache},
    ml::{MlApi, MlClient, Workspace},
    stackhub::{StackHubApi, StackHubClient},
    transport::HttpConfig,
};

use super::secrets::Credentials;
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

/// Azure ML (public ARM) for one workspace + service principal.
#[async_trait]
pub trait MlFactory: Send + Sync {
    async fn azure_ml(
        &self,
        arm_endpoint: &str,
        workspace: Workspace,
        creds: &Credentials,
    ) -> Result<Arc<dyn MlApi>>;
}

/// Stack Hub blob storage (Shared Key: Stack Hub has no Entra ID for storage).
pub trait BlobFactory: Send + Sync {
    fn blob(&self, endpoint: &str, key: AccountKey) -> Result<Arc<dyn BlobApi>>;
}

/// How the operator proves itself to a container registry, from a release's Secret. `Debug`
/// hides the password (and `Credentials` hides the client secret).
#[derive(Clone)]
pub enum RegistryCredentials {
    /// ACR with Azure AD: the service principal's token is exchanged for a registry token.
    /// `arm_endpoint` is where the login authority is discovered (the Azure ML cloud's ARM).
    AzureAd {
        arm_endpoint: String,
        principal: Credentials,
    },
    /// `username`/`password` (plain registries, ACR tokens or admin user).
    Basic { username: String, password: String },
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AzureAd {
                arm_endpoint,
                principal,
            } => f
                .debug_struct("AzureAd")
                .field("arm_endpoint", arm_endpoint)
                .field("principal", principal)
                .finish(),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"***")
                .finish(),
        }
    }
}

/// A container registry client for a login server + credential.
#[async_trait]
pub trait RegistryFactory: Send + Sync {
    async fn registry(
        &self,
        login_server: &str,
        creds: &RegistryCredentials,
    ) -> Result<edgetrain_registry::Registry>;
}

/// The factories a [`super::Context`] holds.
#[derive(Clone)]
pub struct Factories {
    pub stack_hub: Arc<dyn StackHubFactory>,
    pub ml: Arc<dyn MlFactory>,
    pub blob: Arc<dyn BlobFactory>,
    pub registry: Arc<dyn RegistryFactory>,
}

impl Factories {
    /// The real clients, sharing one HTTP client, token cache, rate limiter and metrics.
    pub fn real(metrics: &Metrics, http: HttpConfig) -> Result<Self> {
        let clients = Arc::new(AzureClients::new(metrics, http)?);
        Ok(Self {
            stack_hub: clients.clone(),
            ml: clients.clone(),
            blob: clients.clone(),
            registry: clients,
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
    /// Registry tokens, keyed by credential fingerprint + registry + scopes.
    registry_tokens: Arc<edgetrain_registry::TokenCache>,
}

impl AzureClients {
    pub fn new(metrics: &Metrics, http: HttpConfig) -> Result<Self> {
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
            registry_tokens: Arc::default(),
        })
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

    /// `principal`: the client id `cred` signs in as, which keys the rate-limit buckets.
    fn arm(
        &self,
        endpoint: url::Url,
        cred: ClientSecretCredential,
        audience: &str,
        principal: &str,
    ) -> ArmClient {
        let cred: Arc<dyn TokenCredential> = Arc::new(cred);
        ArmClient::new(self.http.clone(), endpoint, cred, audience)
            .with_limiter(self.limiter.clone(), principal)
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
            self.arm(endpoint, cred, &audience, &creds.client_id),
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
        creds: &Credentials,
    ) -> Result<Arc<dyn MlApi>> {
        let key = format!(
            "{}|{}",
            creds.cache_key(arm_endpoint, "ml"),
            workspace.id().unwrap_or_default()
        );
        if let Some(c) = self.ml.lock().expect("lock").get(&key) {
            return Ok(c.clone());
        }
        let endpoint = Self::url(arm_endpoint)?;
        // The login authority comes from metadata; the audience is public ARM's.
        let (cred, _) = self.credential(&endpoint, creds).await?;
        let client = Arc::new(MlClient::new(
            self.arm(endpoint, cred, PUBLIC_ARM_AUDIENCE, &creds.client_id),
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

/// The AAD scope ACR exchanges (`/oauth2/exchange` accepts an ARM token).
const ACR_AAD_SCOPE: &str = "https://management.azure.com/.default";

#[async_trait]
impl RegistryFactory for AzureClients {
    async fn registry(
        &self,
        login_server: &str,
        creds: &RegistryCredentials,
    ) -> Result<edgetrain_registry::Registry> {
        use edgetrain_registry::{Credential, Secret};
        let credential = match creds {
            RegistryCredentials::Basic { username, password } => Credential::Basic {
                username: username.clone(),
                password: Secret::new(password.clone()),
            },
            RegistryCredentials::AzureAd {
                arm_endpoint,
                principal,
            } => {
                let endpoint = Self::url(arm_endpoint)?;
                let (cred, _) = self.credential(&endpoint, principal).await?;
                Credential::AzureAd {
                    credential: Arc::new(cred),
                    aad_scope: ACR_AAD_SCOPE.into(),
                    tenant: Some(principal.tenant.clone()),
                    identity: format!("{}/{}", principal.tenant, principal.client_id),
                }
            }
        };
        // The login server comes from the spec, validated by the CRD as host[:port]: it
        // cannot carry a path or userinfo that would steer requests elsewhere. The registry
        // client refuses credentials over plain http except to loopback.
        let base = format!("https://{login_server}")
            .parse()
            .map_err(|e| Error::InvalidSpec(format!("registry {login_server:?}: {e}")))?;
        edgetrain_registry::Registry::new(
            base,
            self.http.clone(),
            credential,
            self.registry_tokens.clone(),
            edgetrain_registry::UploadPolicy::default(),
        )
        .map_err(|e| Error::registry(format!("registry client for {login_server}"), e))
    }
}
