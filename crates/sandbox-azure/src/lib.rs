//! Azure simulator for edgetrain's development and tests: Azure AD / AD FS token endpoints,
//! Stack Hub metadata and ARM (Compute, Network), public ARM for Azure ML, and Azurite for blobs.
//! Every ARM request body is validated against the official OpenAPI files in `azure-specs/`.
//!
//! The operator never links this crate; it only talks HTTP to it.

mod acr;
mod arm;
mod arm_error;
mod auth;
mod azurite;
mod blob;
mod blob_proxy;
mod compute;
mod config;
mod error;
mod example_data;
mod faults;
mod ids;
mod jobs;
mod ml;
mod ml_compute;
mod mlflow;
mod network;
mod registry;
mod secret;
mod server;
mod shared;
mod specs;
mod ssh_keys;
mod state;
mod upload;
mod validate;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use tokio::sync::watch;

pub use crate::{
    acr::RegistryUser,
    arm_error::{ArmError, ErrorDetail},
    blob::{SasFields, X_MS_VERSION, sign_account_sas, sign_service_sas},
    config::{
        Config, DEFAULT_SUBSCRIPTION_ID, IdentitySystem, LroConfig, ServicePrincipal,
        StorageConfig, SubscriptionConfig, WorkspaceConfig,
    },
    error::{Error, Result},
    example_data::{ExampleDataArgs, churn_csv, write_example_data},
    faults::{BucketConfig, BudgetConfig, FaultConfig, FaultRule},
    registry::{
        BaseImageSpec, RegistryConfig, RegistryEndpoints, TINY_BASE_REPOSITORY, TINY_BASE_TAG,
        load_image, tiny_base_differences, write_tiny_base_files,
    },
    secret::Secret,
    specs::Specs,
    ssh_keys::{TEST_SSH_PRIVATE_KEY_PEM, TEST_SSH_PUBLIC_KEY},
    state::{Counters, InventoryItem},
    upload::{ACCOUNT_KEY_ENV, UploadArgs, upload},
};
use crate::{
    auth::TokenAuthority,
    blob_proxy::BlobProxy,
    faults::FaultEngine,
    shared::{Shared, Storage, lock},
    state::State,
    validate::Strictness,
};

impl Specs {
    /// Check a request the way the simulator's ARM front door does (api-version, path, body
    /// schema) without serving it. `path_and_query` is e.g.
    /// `/subscriptions/s/.../virtualMachines/vm?api-version=2020-06-01`.
    pub fn check_request(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), ArmError> {
        self.check_with(method, path_and_query, body, Strictness::Arm)
    }

    /// [`Specs::check_request`] plus what a well-behaved client owes the contract, for contract
    /// tests of clients: no `readOnly` members in the body (detail code `ReadOnlyProperty`) and
    /// no query parameter the operation does not declare (`UnknownQueryParameter`).
    pub fn check_client_request(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), ArmError> {
        self.check_with(method, path_and_query, body, Strictness::Client)
    }

    fn check_with(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        strictness: Strictness,
    ) -> Result<(), ArmError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let method = axum::http::Method::from_bytes(method.as_bytes()).map_err(|_| {
            ArmError::bad_request("InvalidMethod", format!("Unknown method '{method}'."))
        })?;
        let query = arm::parse_query(Some(query));
        arm::check_request(
            self,
            &method,
            path.trim_end_matches('/'),
            &query,
            body,
            strictness,
        )
        .map(|_| ())
    }
}

/// `edgetrain-sandbox azure` command-line arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AzureArgs {
    /// Address to listen on (loopback; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Directory for certificates, Azurite data and job working directories.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Simulator configuration (TOML or JSON).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Fault configuration (TOML or JSON); replaces `faults` of the config file.
    #[arg(long)]
    pub faults: Option<PathBuf>,
}

/// File in the state directory that `run` writes the base URL to (one line), once it serves,
/// so scripts need not parse the log.
pub const ENDPOINT_FILE: &str = "endpoint";

fn remove_if_exists(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::WriteFile {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Write then rename, so a reader never sees a half-written file.
fn write_atomically(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| Error::WriteFile {
            path: path.to_owned(),
            source,
        })
}

/// File in the state directory that `run` writes [`SandboxInfo`] to (JSON), before
/// [`ENDPOINT_FILE`]: a script that saw the endpoint can read it.
pub const INFO_FILE: &str = "sandbox.json";

/// Where a running simulator's parts are, for scripts and `edgetrain-sandbox upload`. No
/// secrets: account keys and client secrets stay in the configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    /// `http://127.0.0.1:PORT`: ARM, tokens, metadata, `/_sandbox/*`.
    pub base_url: String,
    pub storage: Option<StorageInfo>,
    /// `127.0.0.1:PORT` of the `*.blob.localhost` CONNECT proxy (see [`AzureSim::blob_proxy`]).
    pub blob_proxy: Option<String>,
    pub registry: Option<RegistryInfo>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageInfo {
    /// `https://127.0.0.1:PORT`: append `/{account}`.
    pub path_style: String,
    /// The sandbox CA (Azurite's and the registry's certificates).
    pub ca_pem_path: PathBuf,
    pub stack_hub_account: String,
    pub datastore_account: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryInfo {
    pub url: String,
    /// Login server / token `service`: `127.0.0.1:PORT`.
    pub host: String,
    /// For `skopeo --cert-dir`.
    pub cert_dir: PathBuf,
    pub storage_dir: PathBuf,
    pub log_path: PathBuf,
    pub base_images: Vec<BaseImageInfo>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaseImageInfo {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

impl SandboxInfo {
    fn of(sim: &AzureSim) -> Self {
        Self {
            base_url: sim.base_url().to_owned(),
            storage: sim.storage_endpoints().map(|s| StorageInfo {
                path_style: s.path_style,
                ca_pem_path: s.ca_pem_path,
                stack_hub_account: s.stack_hub_account,
                datastore_account: s.datastore_account,
            }),
            blob_proxy: sim.blob_proxy().map(|a| a.to_string()),
            registry: sim.registry().map(|r| RegistryInfo {
                url: r.url.clone(),
                host: r.host.clone(),
                cert_dir: r.cert_dir.clone(),
                storage_dir: r.storage_dir.clone(),
                log_path: r.log_path.clone(),
                base_images: r
                    .base_images
                    .iter()
                    .map(|(repository, tag, digest)| BaseImageInfo {
                        repository: repository.clone(),
                        tag: tag.clone(),
                        digest: digest.clone(),
                    })
                    .collect(),
            }),
        }
    }

    /// Read `<state-dir>/sandbox.json` of a running simulator.
    pub fn read(state_dir: &std::path::Path) -> Result<Self> {
        let path = state_dir.join(INFO_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadFile {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Config {
            path,
            message: e.to_string(),
        })
    }
}

/// Run the simulator in the foreground until SIGTERM or Ctrl-C. Once it serves, where its
/// parts are is in `<state-dir>/sandbox.json` (see [`SandboxInfo`]), then the base URL in
/// `<state-dir>/endpoint` (see [`ENDPOINT_FILE`]), also printed as
/// `azure simulator listening on URL`.
pub async fn run(args: AzureArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(path) = &args.faults {
        config.faults = config::read_structured(path)?;
    }
    config.listen = args.listen;
    config.state_dir = args.state_dir;
    let endpoint_file = config.state_dir.join(ENDPOINT_FILE);
    let info_file = config.state_dir.join(INFO_FILE);
    // Stale files from an earlier run must not be mistaken for this run's addresses.
    remove_if_exists(&endpoint_file)?;
    remove_if_exists(&info_file)?;
    let sim = AzureSim::start(config).await?;
    tracing::info!(base_url = %sim.base_url(), "Azure simulator listening");
    let info = serde_json::to_vec_pretty(&SandboxInfo::of(&sim))
        .map_err(|e| Error::InvalidConfig(format!("cannot encode {INFO_FILE}: {e}")))?;
    write_atomically(&info_file, &info)?;
    write_atomically(&endpoint_file, format!("{}\n", sim.base_url()).as_bytes())?;
    println!("azure simulator listening on {}", sim.base_url());
    if let Some(storage) = sim.storage_endpoints() {
        println!("azurite blob (path style): {}", storage.path_style);
        println!("sandbox CA: {}", storage.ca_pem_path.display());
    }
    if let Some(reg) = sim.registry() {
        println!(
            "container registry: {} (log {})",
            reg.url,
            reg.log_path.display()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.map_err(Error::Signal)?,
    }
    sim.shutdown().await;
    Ok(())
}

/// Where the simulator's blob storage is, for tests and the demo.
#[derive(Debug, Clone)]
pub struct StorageEndpoints {
    pub port: u16,
    /// `https://127.0.0.1:PORT` — append `/{account}`.
    pub path_style: String,
    /// CA that signed Azurite's certificate.
    pub ca_pem_path: PathBuf,
    pub ca_pem: Vec<u8>,
    pub stack_hub_account: String,
    pub stack_hub_key: Secret,
    pub datastore_account: String,
    pub datastore_key: Secret,
    pub datastore_container: String,
}

impl StorageEndpoints {
    /// `builder` resolving both accounts' host-style names (`{account}.blob.localhost`) to
    /// Azurite on loopback: a client's stand-in for the DNS a real deployment has.
    pub fn resolve_host_style(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        [&self.datastore_account, &self.stack_hub_account]
            .into_iter()
            .fold(builder, |b, account| {
                b.resolve(&format!("{account}.blob.localhost"), loopback)
            })
    }

    /// `https://{account}.blob.localhost:PORT` (needs `*.blob.localhost` to resolve to 127.0.0.1).
    pub fn host_style(&self, account: &str) -> String {
        format!("https://{account}.blob.localhost:{}", self.port)
    }

    /// `https://127.0.0.1:PORT/{account}`.
    pub fn path_style(&self, account: &str) -> String {
        format!("{}/{account}", self.path_style)
    }
}

/// A running simulator (in-process handle for tests).
#[derive(Debug)]
pub struct AzureSim {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    registry: Option<registry::RegistryProcess>,
    blob_proxy: Option<BlobProxy>,
}

/// Timestamp of the pre-loaded base images: fixed, so their digests never change.
const BASE_IMAGE_CREATED: i64 = 1_700_000_000;

impl AzureSim {
    /// Start Azurite (when configured), bind, and serve in the background.
    pub async fn start(config: Config) -> Result<Self> {
        config.validate()?;
        blob::install_crypto_provider();
        std::fs::create_dir_all(&config.state_dir).map_err(|source| Error::WriteFile {
            path: config.state_dir.clone(),
            source,
        })?;
        let specs = Specs::load()?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        let storage = if config.azurite {
            let s = &config.storage;
            let stack_key = s
                .stack_hub_key
                .clone()
                .unwrap_or_else(azurite::generate_account_key);
            let ds_key = s
                .datastore_key
                .clone()
                .unwrap_or_else(azurite::generate_account_key);
            let az = azurite::Azurite::start(
                &config.state_dir,
                vec![
                    (s.stack_hub_account.clone(), stack_key),
                    (s.datastore_account.clone(), ds_key.clone()),
                ],
            )
            .await?;
            Some(Storage {
                azurite: az,
                datastore_account: s.datastore_account.clone(),
                datastore_key: ds_key,
                datastore_container: s.datastore_container.clone(),
            })
        } else {
            None
        };
        let http = blob::http_client(storage.as_ref().map(|s| s.azurite.certs.ca_pem.as_slice()))?;
        // The token `service` is the registry's host:port, so the port is chosen first.
        let registry_port = match config.registry.enabled {
            true => Some(registry::reserve_port()?),
            false => None,
        };
        let acr = match registry_port {
            Some(port) => Some(acr::Acr::new(
                format!("127.0.0.1:{port}"),
                acr::SigningKey::generate()?,
                &config.registry,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            specs,
            base_url: format!("http://{addr}"),
            state: std::sync::Mutex::new(State::default()),
            tokens: std::sync::Mutex::new(TokenAuthority::new(
                config.service_principals.clone(),
                config.known_subscriptions(),
                &config.tenant_id,
            )),
            faults: std::sync::Mutex::new(FaultEngine::new(config.faults.clone())),
            storage,
            http,
            acr,
            job_cancel: std::sync::Mutex::new(Default::default()),
            config,
        });
        if let Some(storage) = &shared.storage {
            let account = &storage.datastore_account;
            let container = blob::ContainerSas::for_account_key(
                &storage.azurite.path_style_url(account),
                account,
                &storage.datastore_container,
                &storage.datastore_key,
            )?;
            container.create_container(&shared.http).await?;
        }
        {
            let mut st = shared.state();
            ml::seed(&shared, &mut st);
        }
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(server::serve(listener, shared.clone(), stop_rx));
        let registry = match (registry_port, &shared.acr) {
            (Some(port), Some(acr)) => {
                let certs = match &shared.storage {
                    Some(s) => s.azurite.certs.clone(),
                    None => azurite::generate_certificates(&shared.config.state_dir.join("certs"))?,
                };
                let launch = registry::Launch {
                    state_dir: &shared.config.state_dir,
                    certs: &certs,
                    sim_base_url: &shared.base_url,
                    token_cert_pem: &acr.signer.cert_pem,
                    config: &shared.config.registry,
                    created: BASE_IMAGE_CREATED,
                };
                Some(registry::start(launch, port).await?)
            }
            _ => None,
        };
        let blob_proxy = match &shared.storage {
            Some(_) => Some(BlobProxy::start().await?),
            None => None,
        };
        Ok(Self {
            shared,
            stop,
            server,
            registry,
            blob_proxy,
        })
    }

    /// `http://127.0.0.1:PORT` — ARM, token and metadata endpoints all live here.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn register_service_principal(&self, principal: ServicePrincipal) {
        lock(&self.shared.tokens).register(principal);
    }

    /// Make a subscription known to ARM, trusting `tenant` (unset: the stamp's `tenant_id`).
    pub fn register_subscription(&self, subscription: SubscriptionConfig) {
        let tenant = subscription
            .tenant
            .unwrap_or_else(|| self.shared.config.tenant_id.clone());
        lock(&self.shared.tokens).register_subscription(&subscription.id, &tenant);
    }

    /// Requests received by (method, provider); provider is the ARM namespace, `token` or `metadata`.
    pub fn counters(&self) -> Counters {
        self.shared.state().counters.clone()
    }

    /// Long-running operations started so far (each a 201/202 with `Retry-After`): what a
    /// request budget's minimum polling is computed from.
    pub fn operations_started(&self) -> usize {
        self.shared.state().operations.len()
    }

    /// Faults injected so far, by kind (`throttle`, `server_error`, `drop`, `budget`).
    pub fn faults_injected(&self) -> BTreeMap<String, u64> {
        self.shared.state().faults_injected.clone()
    }

    /// Every stored resource, oldest first.
    pub fn inventory(&self) -> Vec<InventoryItem> {
        self.shared.state().inventory()
    }

    /// The stored body of a resource (what GET returns, without computed parts).
    pub fn resource(&self, id: &str) -> Option<serde_json::Value> {
        self.shared.state().get(id).map(|r| r.body.clone())
    }

    /// Metrics a finished job wrote to `outputs/metrics.json`.
    pub fn job_metrics(&self, job_id: &str) -> Option<BTreeMap<String, f64>> {
        self.shared
            .state()
            .job_metrics
            .get(&ids::key(job_id))
            .cloned()
    }

    /// Latest value of each metric logged to a run of a workspace's MLflow tracking API (a job's
    /// run id is its name).
    pub fn mlflow_metrics(&self, workspace_id: &str, run_id: &str) -> BTreeMap<String, f64> {
        self.shared
            .state()
            .mlflow
            .latest_metrics(workspace_id, run_id)
    }

    /// The sandbox container registry, when `registry.enabled`.
    pub fn registry(&self) -> Option<&RegistryEndpoints> {
        self.registry.as_ref().map(|r| &r.endpoints)
    }

    /// With Azurite: a CONNECT proxy (`127.0.0.1:PORT`) that takes `*.blob.localhost:PORT` to
    /// loopback, for a separate process to reach host-style blob URLs (`ALL_PROXY=http://…`).
    pub fn blob_proxy(&self) -> Option<std::net::SocketAddr> {
        self.blob_proxy.as_ref().map(BlobProxy::addr)
    }

    pub fn storage_endpoints(&self) -> Option<StorageEndpoints> {
        let s = self.shared.storage.as_ref()?;
        let az = &s.azurite;
        let stack = &self.shared.config.storage.stack_hub_account;
        Some(StorageEndpoints {
            port: az.port,
            path_style: format!("https://127.0.0.1:{}", az.port),
            ca_pem_path: az.certs.ca_pem_path.clone(),
            ca_pem: az.certs.ca_pem.clone(),
            stack_hub_account: stack.clone(),
            stack_hub_key: az.key(stack)?.clone(),
            datastore_account: s.datastore_account.clone(),
            datastore_key: s.datastore_key.clone(),
            datastore_container: s.datastore_container.clone(),
        })
    }

    /// Put a blob into one of the simulator's storage accounts (creating the container when
    /// needed): data that "already lives on premises" for tests and the demo.
    pub async fn seed_blob(
        &self,
        account: &str,
        container: &str,
        name: &str,
        data: Vec<u8>,
    ) -> Result<()> {
        let storage = self.shared.storage.as_ref().ok_or_else(|| {
            Error::InvalidConfig("seed_blob needs the simulator started with azurite: true".into())
        })?;
        let key = storage
            .azurite
            .key(account)
            .ok_or_else(|| Error::InvalidConfig(format!("no storage account {account:?}")))?;
        let target = blob::ContainerSas::for_account_key(
            &storage.azurite.path_style_url(account),
            account,
            container,
            key,
        )?;
        target.create_container(&self.shared.http).await?;
        target.put(&self.shared.http, name, data).await
    }

    /// Stop serving, cancel running jobs and stop Azurite.
    pub async fn shutdown(self) {
        drop(self.blob_proxy);
        let _ = self.stop.send(true);
        for tx in lock(&self.shared.job_cancel).values() {
            let _ = tx.send(true);
        }
        let _ = self.server.await;
        if let Some(r) = &self.registry {
            r.shutdown();
        }
        if let Some(storage) = &self.shared.storage {
            storage.azurite.shutdown();
        }
    }
}
