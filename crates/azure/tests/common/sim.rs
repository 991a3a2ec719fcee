//! The REAL clients against the in-process Azure simulator (`edgetrain-sandbox-azure`): start
//! it, connect clients the way the operator does (metadata discovery, service principal), and
//! drive long-running operations to the end.

use std::{future::Future, sync::Arc, time::Duration};

use azure_core::credentials::Secret;
use edgetrain_azure::{
    arm::{ApiProfile, ArmClient, LroStatus, LroToken, Started},
    identity::{ClientSecretCredential, ServicePrincipal, TokenCache},
    ml::{MlClient, Workspace},
    stackhub::{ResourceGroup, StackHubClient},
    transport::HttpConfig,
};
use edgetrain_sandbox_azure::{
    AzureSim, Config, FaultConfig, IdentitySystem, LroConfig, WorkspaceConfig,
};
use url::Url;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_ID: &str = "edgetrain-operator";
pub const CLIENT_SECRET: &str = "operator-secret";
pub const PUBLIC_ARM_AUDIENCE: &str = "https://management.azure.com/";

/// Generous: the machine is slow and shared. Never asserted on, only a guard against hangs.
pub const PATIENCE: Duration = Duration::from_secs(180);

pub struct Sim {
    pub sim: AzureSim,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Sim {
    type Target = AzureSim;
    fn deref(&self) -> &AzureSim {
        &self.sim
    }
}

pub struct Options {
    pub identity: IdentitySystem,
    pub azurite: bool,
    pub faults: FaultConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            identity: IdentitySystem::Aad,
            azurite: false,
            faults: FaultConfig::default(),
        }
    }
}

/// The tenant a principal of this stamp logs in to (`adfs` on an AD FS stamp).
pub fn tenant_of(identity: IdentitySystem) -> &'static str {
    match identity {
        IdentitySystem::Aad => TENANT,
        IdentitySystem::Adfs => "adfs",
    }
}

pub async fn start(options: Options) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: dir.path().to_owned(),
        identity: options.identity,
        tenant_id: TENANT.into(),
        azurite: options.azurite,
        service_principals: vec![edgetrain_sandbox_azure::ServicePrincipal::new(
            tenant_of(options.identity),
            CLIENT_ID,
            CLIENT_SECRET,
        )],
        lro: LroConfig {
            duration_ms: 1500,
            retry_after_secs: 1,
            fail_resource_names: Vec::new(),
        },
        workspaces: vec![WorkspaceConfig::new(SUB, "ml-rg", "ws1", "westeurope")],
        list_page_size: 2,
        faults: options.faults,
        ..Config::default()
    };
    let sim = AzureSim::start(config).await.unwrap();
    Sim { sim, _dir: dir }
}

pub fn principal(identity: IdentitySystem, secret: &str) -> ServicePrincipal {
    ServicePrincipal {
        tenant: tenant_of(identity).into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(secret.to_owned()),
    }
}

pub fn arm_url(sim: &AzureSim) -> Url {
    Url::parse(sim.base_url()).unwrap()
}

/// The client's HTTP stack, trusting the sandbox CA and resolving the datastore's host-style
/// `{account}.blob.localhost` names to loopback (test configuration, not client code).
pub fn http(sim: &AzureSim) -> reqwest::Client {
    let Some(storage) = sim.storage_endpoints() else {
        return HttpConfig::default().build().unwrap();
    };
    let config = HttpConfig {
        extra_ca_bundle: Some(storage.ca_pem_path.clone()),
        ..HttpConfig::default()
    };
    storage
        .resolve_host_style(config.builder().unwrap())
        .build()
        .unwrap()
}

pub fn stack_hub_rg() -> ResourceGroup {
    ResourceGroup {
        subscription_id: SUB.into(),
        resource_group: "edge-rg".into(),
    }
}

/// A Stack Hub client as the operator builds it: metadata discovery, then the service principal.
pub async fn stack_hub(sim: &AzureSim, identity: IdentitySystem) -> StackHubClient {
    let arm = ArmClient::connect(
        http(sim),
        arm_url(sim),
        principal(identity, CLIENT_SECRET),
        Arc::new(TokenCache::new(Duration::from_secs(60))),
    )
    .await
    .unwrap();
    StackHubClient::new(arm, ApiProfile::default())
}

/// An Azure ML client on public ARM (here the same simulator), Azure AD principal.
pub async fn ml(sim: &AzureSim) -> MlClient {
    let http = http(sim);
    let (cred, _stack_hub_audience) = ClientSecretCredential::discover(
        http.clone(),
        &arm_url(sim),
        principal(IdentitySystem::Aad, CLIENT_SECRET),
        Arc::new(TokenCache::new(Duration::from_secs(60))),
    )
    .await
    .unwrap();
    let arm = ArmClient::new(http, arm_url(sim), Arc::new(cred), PUBLIC_ARM_AUDIENCE);
    MlClient::new(
        arm,
        Workspace {
            subscription_id: SUB.into(),
            resource_group: "ml-rg".into(),
            name: "ws1".into(),
        },
    )
}

/// Poll `token` with `poll` until the operation ends, sleeping what the server asked for.
pub async fn finish<F, Fut>(token: &LroToken, poll: F) -> LroStatus
where
    F: Fn(LroToken) -> Fut,
    Fut: Future<Output = edgetrain_azure::Result<LroStatus>>,
{
    let work = async {
        loop {
            match poll(token.clone()).await.unwrap() {
                LroStatus::InProgress { retry_after } => {
                    let wait = retry_after
                        .unwrap_or(Duration::from_millis(200))
                        .min(Duration::from_secs(2));
                    tokio::time::sleep(wait).await;
                }
                done => return done,
            }
        }
    };
    tokio::time::timeout(PATIENCE, work)
        .await
        .expect("operation did not finish")
}

/// [`finish`] for whatever an operation start returned; `Done` counts as succeeded.
pub async fn complete<F, Fut>(started: Started, poll: F) -> LroStatus
where
    F: Fn(LroToken) -> Fut,
    Fut: Future<Output = edgetrain_azure::Result<LroStatus>>,
{
    match started {
        Started::Done { .. } => LroStatus::Succeeded,
        Started::Pending { token, .. } => finish(&token, poll).await,
    }
}
