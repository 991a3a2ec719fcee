//! Everything a reconcile needs, in one place; Azure clients come from a factory trait so that
//! tests (and a future second attach mode) can substitute them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use edgetrain_api::{DeletionPolicy, edge_compute_target::ApiProfile};
use edgetrain_azure::{
    arm::{ApiProfile as ArmProfile, ArmClient, Provider, RateLimiter, Started},
    identity::{ClientSecretCredential, EndpointPolicy, ServicePrincipal, TokenCache},
    ml::{MlApi, MlClient, Workspace},
    stackhub::{StackHubApi, StackHubClient},
    transport::HttpConfig,
};
use kube::{Client, runtime::events::Recorder};
use sha2::{Digest, Sha256};

use crate::{Error, Result, metrics::Metrics};

/// Public Azure's ARM token audience (Azure ML lives there).
pub const PUBLIC_ARM_AUDIENCE: &str = "https://management.azure.com/";

/// A service principal read from a Secret. `Debug` hides the secret.
#[derive(Clone)]
pub struct Credentials {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

impl Credentials {
    fn principal(&self) -> ServicePrincipal {
        ServicePrincipal {
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }

    /// Identifies the credential (incl. a digest of the secret, so rotation gives a new key)
    /// without holding the secret itself.
    fn cache_key(&self, endpoint: &str, profile: &str) -> String {
        let digest = Sha256::digest(self.client_secret.secret().as_bytes());
        format!(
            "{endpoint}|{profile}|{}|{}|{:x}",
            self.tenant, self.client_id, digest
        )
    }
}

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

/// Name of the VMAccess extension resource on the VM.
pub const VM_ACCESS_EXTENSION: &str = "enablevmaccess";

/// Stack Hub clients of one stamp + credential.
#[derive(Clone)]
pub struct StackHub {
    pub api: Arc<dyn StackHubApi>,
    pub vm_access: Arc<dyn VmAccess>,
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

/// Gives Azure clients for an endpoint + credentials.
#[async_trait]
pub trait AzureFactory: Send + Sync {
    async fn stack_hub(
        &self,
        arm_endpoint: &str,
        profile: ApiProfile,
        creds: &Credentials,
    ) -> Result<StackHub>;

    async fn azure_ml(
        &self,
        arm_endpoint: &str,
        workspace: Workspace,
        creds: &Credentials,
    ) -> Result<Arc<dyn MlApi>>;
}

/// The real factory: one shared HTTP client, token cache, rate limiter and request metrics;
/// clients cached per (endpoint, principal, secret digest) so discovery runs once per credential.
pub struct ArmFactory {
    http: reqwest::Client,
    policy: EndpointPolicy,
    tokens: Arc<TokenCache>,
    limiter: Arc<RateLimiter>,
    metrics: edgetrain_azure::arm::RequestMetrics,
    stack_hub: Mutex<HashMap<String, Arc<StackHubClient>>>,
    ml: Mutex<HashMap<String, Arc<MlClient>>>,
}

impl ArmFactory {
    /// `policy`: where credentials may go (checked at discovery, before any secret is sent).
    pub fn new(metrics: &Metrics, policy: EndpointPolicy) -> Result<Self> {
        edgetrain_azure::transport::install_crypto_provider();
        let mut http = HttpConfig::default();
        // SSL_CERT_FILE (set by the chart for private CAs, e.g. Stack Hub's) adds trust anchors.
        if let Ok(path) = std::env::var("SSL_CERT_FILE") {
            http.extra_ca_bundle = Some(path.into());
        }
        let http = http
            .build()
            .map_err(|e| Error::azure("building the HTTP client", e))?;
        Ok(Self {
            http,
            policy,
            tokens: Arc::new(TokenCache::new(Duration::from_secs(300))),
            limiter: Arc::new(RateLimiter::default()),
            metrics: metrics.azure.clone(),
            stack_hub: Mutex::default(),
            ml: Mutex::default(),
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
        ClientSecretCredential::discover_within(
            self.http.clone(),
            endpoint,
            creds.principal(),
            self.tokens.clone(),
            &self.policy,
        )
        .await
        .map_err(|e| Error::azure(format!("metadata discovery at {endpoint}"), e))
    }
}

#[async_trait]
impl AzureFactory for ArmFactory {
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
        let cred: Arc<dyn TokenCredential> = Arc::new(cred);
        let arm = ArmClient::new(self.http.clone(), endpoint, cred, &audience)
            .with_limiter(self.limiter.clone())
            .with_metrics(self.metrics.clone());
        let client = Arc::new(StackHubClient::new(arm, profile));
        self.stack_hub
            .lock()
            .expect("lock")
            .insert(key, client.clone());
        Ok(hub(client))
    }

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
        let cred: Arc<dyn TokenCredential> = Arc::new(cred);
        let arm = ArmClient::new(self.http.clone(), endpoint, cred, PUBLIC_ARM_AUDIENCE)
            .with_limiter(self.limiter.clone())
            .with_metrics(self.metrics.clone());
        let client = Arc::new(MlClient::new(arm, workspace));
        self.ml.lock().expect("lock").insert(key, client.clone());
        Ok(client)
    }
}

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

/// Shared state of the controllers.
pub struct Context {
    pub clock: Arc<dyn Clock>,
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub azure: Arc<dyn AzureFactory>,
    /// Used when `spec.deletionPolicy` is unset.
    pub default_deletion_policy: DeletionPolicy,
    /// Periodic re-check of a Ready target (drift detection, idle timeout).
    pub resync: Duration,
    /// Consecutive failures per object, for backoff.
    pub failures: Mutex<HashMap<String, u32>>,
}
