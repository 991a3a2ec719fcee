//! Client factories, one small trait per Azure service, each with one real implementation
//! ([`AzureClients`]). Tests and future modes substitute a trait, not the whole context.
//! [`RegistryFactory`] is the container registry's (`edgetrain-registry`).

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
    arm::{ApiProfile as ArmProfile, ArmClient, Provider, RateLimiter, RateLimits, Started},
    blob::{AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint},
    identity::{
        Authority, ClientSecretCredential, EndpointPolicy, TokenCache, WorkloadIdentityCredential,
    },
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

/// The factories a [`crate::context::Context`] holds.
#[derive(Clone)]
pub struct Factories {
    pub stack_hub: Arc<dyn StackHubFactory>,
    pub ml: Arc<dyn MlFactory>,
    pub blob: Arc<dyn BlobFactory>,
    pub registry: Arc<dyn RegistryFactory>,
}

/// How the real clients authenticate and pace themselves.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// Workload identity for Azure ML; `None`: service principals only.
    pub workload: Option<WorkloadIdentity>,
    /// Where credentials may go (checked before anything secret is sent).
    pub policy: EndpointPolicy,
    /// The client-side token buckets for Stack Hub stamps (Azure ML's public ARM keeps public
    /// Azure's published numbers).
    pub stack_hub_limits: RateLimits,
}

impl Factories {
    /// The real clients, sharing one HTTP client, token cache, rate limiters and metrics.
    pub fn real(metrics: &Metrics, http: HttpConfig, settings: ClientSettings) -> Result<Self> {
        Ok(Self::of(Arc::new(AzureClients::new(
            metrics, http, settings,
        )?)))
    }

    /// The real clients over a prepared HTTP client (tests add name-resolution overrides).
    pub fn over(metrics: &Metrics, http: reqwest::Client, settings: ClientSettings) -> Self {
        Self::of(Arc::new(AzureClients::from_client(metrics, http, settings)))
    }

    fn of(clients: Arc<AzureClients>) -> Self {
        Self {
            stack_hub: clients.clone(),
            ml: clients.clone(),
            blob: clients.clone(),
            registry: clients,
        }
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
    /// HTTP/1.1-only twin of `http` for registry blob bodies (see `Registry::with_blob_http`).
    blob_http: reqwest::Client,
    tokens: Arc<TokenCache>,
    /// Stack Hub stamps' budget and public Azure's differ by two orders of magnitude.
    stack_hub_limiter: Arc<RateLimiter>,
    public_limiter: Arc<RateLimiter>,
    metrics: edgetrain_azure::arm::RequestMetrics,
    stack_hub: Mutex<HashMap<String, Arc<StackHubClient>>>,
    ml: Mutex<HashMap<String, Arc<MlClient>>>,
    workload: Option<WorkloadIdentity>,
    policy: EndpointPolicy,
    /// Registry tokens, keyed by credential fingerprint + registry + scopes.
    registry_tokens: Arc<edgetrain_registry::TokenCache>,
}

impl AzureClients {
    pub fn new(metrics: &Metrics, http: HttpConfig, settings: ClientSettings) -> Result<Self> {
        edgetrain_azure::transport::install_crypto_provider();
        let blob_http = http
            .builder()
            .and_then(|b| {
                b.http1_only()
                    .build()
                    .map_err(|e| edgetrain_azure::Error::ClientSetup(e.to_string()))
            })
            .map_err(|e| Error::azure("building the HTTP client", e))?;
        let http = http
            .build()
            .map_err(|e| Error::azure("building the HTTP client", e))?;
        Ok(Self {
            blob_http,
            ..Self::from_client(metrics, http, settings)
        })
    }

    pub fn from_client(metrics: &Metrics, http: reqwest::Client, settings: ClientSettings) -> Self {
        let ClientSettings {
            workload,
            policy,
            stack_hub_limits,
        } = settings;
        Self {
            blob_http: http.clone(),
            http,
            tokens: Arc::new(TokenCache::new(Duration::from_secs(300))),
            stack_hub_limiter: Arc::new(RateLimiter::new(stack_hub_limits)),
            public_limiter: Arc::new(RateLimiter::new(RateLimits::public_azure())),
            metrics: metrics.azure.clone(),
            stack_hub: Mutex::default(),
            ml: Mutex::default(),
            workload,
            policy,
            registry_tokens: Arc::default(),
        }
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
        // The projected token is a credential too: it goes only where the policy allows.
        let discovered = async {
            self.policy.check_arm_endpoint(endpoint)?;
            let md = edgetrain_azure::identity::discover(&self.http, endpoint).await?;
            self.policy.check_authority(&md.login_endpoint)?;
            Ok::<_, edgetrain_azure::Error>(md)
        };
        let md = discovered
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

    /// `principal`: the client id `cred` signs in as, which keys the rate-limit buckets.
    fn arm(
        &self,
        endpoint: url::Url,
        cred: Arc<dyn TokenCredential>,
        audience: &str,
        (limiter, principal): (&Arc<RateLimiter>, &str),
    ) -> ArmClient {
        ArmClient::new(self.http.clone(), endpoint, cred, audience)
            .with_limiter(limiter.clone(), principal)
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
            self.arm(
                endpoint,
                Arc::new(cred),
                &audience,
                (&self.stack_hub_limiter, &creds.client_id),
            ),
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
        let (cred, principal): (Arc<dyn TokenCredential>, &str) = match identity {
            MlIdentity::ServicePrincipal(creds) => (
                Arc::new(self.credential(&endpoint, creds).await?.0),
                &creds.client_id,
            ),
            MlIdentity::Workload { tenant, client_id } => (
                self.workload_credential(&endpoint, tenant, client_id)
                    .await?,
                client_id,
            ),
        };
        let client = Arc::new(MlClient::new(
            self.arm(
                endpoint,
                cred,
                PUBLIC_ARM_AUDIENCE,
                (&self.public_limiter, principal),
            ),
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
                    secret_fingerprint: principal.cache_key(arm_endpoint, "acr"),
                }
            }
        };
        // The login server comes from the spec, validated by the CRD as host[:port]: it
        // cannot carry a path or userinfo that would steer requests elsewhere. The registry
        // client refuses credentials over plain http except to loopback.
        let base = format!("https://{login_server}")
            .parse()
            .map_err(|e| Error::InvalidSpec(format!("registry {login_server:?}: {e}")))?;
        edgetrain_registry::Registry::with_blob_http(
            base,
            self.http.clone(),
            self.blob_http.clone(),
            credential,
            self.registry_tokens.clone(),
            edgetrain_registry::UploadPolicy::default(),
        )
        .map_err(|e| Error::registry(format!("registry client for {login_server}"), e))
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
        let clients = AzureClients::new(
            &Metrics::default(),
            HttpConfig::default(),
            ClientSettings {
                workload: Some(workload),
                ..Default::default()
            },
        )
        .unwrap();
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
        let none = AzureClients::new(
            &Metrics::default(),
            HttpConfig::default(),
            Default::default(),
        )
        .unwrap();
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
