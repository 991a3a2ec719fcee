//! Simulator configuration (a TOML or JSON file, or built in Rust by tests).

use std::{net::IpAddr, path::Path, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    faults::FaultConfig,
    secret::Secret,
};

/// Which identity system the simulated Stack Hub stamp uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySystem {
    #[default]
    Aad,
    Adfs,
}

/// A service principal the token endpoints accept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServicePrincipal {
    /// Tenant id (or `adfs` for the AD FS endpoint).
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl ServicePrincipal {
    /// A principal of `tenant` signing in with a client secret.
    pub fn new(tenant: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: Secret::new(client_secret),
        }
    }
}

/// The subscription every configuration knows unless it lists its own `subscriptions`; the
/// tests, examples and demo defaults use it.
pub const DEFAULT_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-0000000000aa";

/// A subscription ARM knows, and the directory (tenant) it trusts tokens from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionConfig {
    pub id: String,
    /// Tenant whose tokens the subscription accepts; unset: the stamp's `tenant_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl SubscriptionConfig {
    /// A subscription in the stamp's own tenant.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            tenant: None,
        }
    }
}

/// An Azure ML workspace that exists from the start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    #[serde(default = "default_location")]
    pub location: String,
}

impl WorkspaceConfig {
    pub fn new(subscription_id: &str, resource_group: &str, name: &str, location: &str) -> Self {
        Self {
            subscription_id: subscription_id.into(),
            resource_group: resource_group.into(),
            name: name.into(),
            location: location.into(),
        }
    }
}

/// Long-running operation behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LroConfig {
    /// How long an operation stays InProgress.
    pub duration_ms: u64,
    /// `Retry-After` seconds sent with 201/202 and while polling.
    pub retry_after_secs: u64,
    /// Operations on resources with these names (case-insensitive) end Failed.
    pub fail_resource_names: Vec<String>,
}

impl Default for LroConfig {
    fn default() -> Self {
        Self {
            duration_ms: 2000,
            retry_after_secs: 1,
            fail_resource_names: Vec::new(),
        }
    }
}

impl LroConfig {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }
}

/// Storage accounts the simulator creates in Azurite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// The "Stack Hub" data account.
    pub stack_hub_account: String,
    /// The Azure ML workspace datastore account.
    pub datastore_account: String,
    /// Container of the default datastore `workspaceblobstore`.
    pub datastore_container: String,
    /// Account keys (base64). Generated when absent.
    pub stack_hub_key: Option<Secret>,
    pub datastore_key: Option<Secret>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            stack_hub_account: "stackhubdata".into(),
            datastore_account: "mlworkspacestore".into(),
            datastore_container: "azureml-blobstore".into(),
            stack_hub_key: None,
            datastore_key: None,
        }
    }
}

/// Everything the simulator needs, with defaults that work for a test.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on (port 0 = any free port).
    pub listen: String,
    /// Directory for certificates, Azurite data and job working directories.
    pub state_dir: std::path::PathBuf,
    pub identity: IdentitySystem,
    /// Tenant id the Stack Hub stamp reports.
    pub tenant_id: String,
    /// Audience of Stack Hub ARM tokens (the metadata endpoint's `audiences[0]`).
    pub stack_hub_audience: String,
    /// Audience of public ARM (Azure ML) tokens.
    pub public_audience: String,
    pub service_principals: Vec<ServicePrincipal>,
    /// Subscriptions ARM knows (any other is `404 SubscriptionNotFound`). The subscriptions of
    /// `workspaces` are known as well, in `tenant_id`. Default: [`DEFAULT_SUBSCRIPTION_ID`].
    pub subscriptions: Vec<SubscriptionConfig>,
    pub token_lifetime_secs: u64,
    pub lro: LroConfig,
    /// VM sizes the stamp can place; empty = every size of the spec's enum.
    pub allowed_vm_sizes: Vec<String>,
    /// Address given to public IPs; the sandbox's "VM" is this machine.
    pub public_ip: IpAddr,
    pub workspaces: Vec<WorkspaceConfig>,
    /// Page size of list operations (jobs, assets).
    pub list_page_size: usize,
    pub storage: StorageConfig,
    /// Run Azurite (needed for code uploads, datastores and jobs).
    pub azurite: bool,
    pub faults: FaultConfig,
    /// The sandbox container registry (ACR stand-in); off unless enabled.
    pub registry: crate::registry::RegistryConfig,
}

fn default_location() -> String {
    "local".into()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            state_dir: std::env::temp_dir().join("edgetrain-sandbox-azure"),
            identity: IdentitySystem::Aad,
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            stack_hub_audience:
                "https://management.azurestack.local/8b6f4e4c-1f7c-4e0e-9a55-0c3c1d1e8f10".into(),
            public_audience: "https://management.azure.com/".into(),
            service_principals: Vec::new(),
            subscriptions: vec![SubscriptionConfig::new(DEFAULT_SUBSCRIPTION_ID)],
            token_lifetime_secs: 3600,
            lro: LroConfig::default(),
            allowed_vm_sizes: Vec::new(),
            public_ip: IpAddr::from([127, 0, 0, 1]),
            workspaces: Vec::new(),
            list_page_size: 20,
            storage: StorageConfig::default(),
            azurite: true,
            faults: FaultConfig::default(),
            registry: Default::default(),
        }
    }
}

impl Config {
    /// Read a `.toml` or `.json` file (by extension).
    pub fn from_file(path: &Path) -> Result<Self> {
        read_structured(path)
    }

    /// Every known subscription with its tenant: `subscriptions`, then the workspaces'
    /// subscriptions not listed there (a workspace cannot exist outside a subscription).
    pub fn known_subscriptions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let listed = self.subscriptions.iter().map(|s| {
            let tenant = s.tenant.clone().unwrap_or_else(|| self.tenant_id.clone());
            (s.id.clone(), tenant)
        });
        let implied = self
            .workspaces
            .iter()
            .map(|w| (w.subscription_id.clone(), self.tenant_id.clone()));
        for (id, tenant) in listed.chain(implied) {
            if !out.iter().any(|(known, _)| known.eq_ignore_ascii_case(&id)) {
                out.push((id, tenant));
            }
        }
        out
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(s) = self
            .subscriptions
            .iter()
            .find(|s| s.id.is_empty() || s.id.contains('/'))
        {
            return Err(Error::InvalidConfig(format!(
                "subscription id {:?} must be non-empty and contain no '/'",
                s.id
            )));
        }
        if self.list_page_size == 0 {
            return Err(Error::InvalidConfig(
                "list_page_size must be at least 1".into(),
            ));
        }
        if self.storage.stack_hub_account == self.storage.datastore_account {
            return Err(Error::InvalidConfig(
                "storage.stack_hub_account and storage.datastore_account must differ".into(),
            ));
        }
        for account in [
            &self.storage.stack_hub_account,
            &self.storage.datastore_account,
        ] {
            if account.len() < 3
                || account.len() > 24
                || !account
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(Error::InvalidConfig(format!(
                    "storage account name '{account}' must be 3-24 lower-case letters or digits"
                )));
            }
        }
        self.faults.validate()
    }
}

/// Parse a TOML or JSON file into `T`.
pub fn read_structured<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })
    } else {
        toml::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.toml");
        std::fs::write(
            &path,
            r#"
identity = "adfs"
allowed_vm_sizes = ["Standard_DS2_v2"]
[[service_principals]]
tenant = "adfs"
client_id = "app"
client_secret = "s3cret"
[lro]
duration_ms = 10
[faults]
seed = 7
"#,
        )
        .unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.identity, IdentitySystem::Adfs);
        assert_eq!(cfg.lro.duration_ms, 10);
        assert_eq!(cfg.lro.retry_after_secs, 1);
        assert_eq!(cfg.faults.seed, 7);
        assert!(!format!("{cfg:?}").contains("s3cret"));
        cfg.validate().unwrap();
    }

    #[test]
    fn subscriptions_default_and_include_the_workspaces() {
        let mut cfg = Config::default();
        assert_eq!(
            cfg.known_subscriptions(),
            vec![(DEFAULT_SUBSCRIPTION_ID.to_string(), cfg.tenant_id.clone())]
        );
        cfg.subscriptions = vec![SubscriptionConfig {
            id: "s1".into(),
            tenant: Some("other".into()),
        }];
        cfg.workspaces = vec![WorkspaceConfig::new("s2", "rg", "ws", "local")];
        assert_eq!(
            cfg.known_subscriptions(),
            vec![
                ("s1".to_string(), "other".to_string()),
                ("s2".to_string(), cfg.tenant_id.clone())
            ]
        );
        cfg.subscriptions.push(SubscriptionConfig::new(""));
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn subscriptions_parse_from_toml() {
        let cfg: Config = toml::from_str(
            r#"
tenant_id = "home"
[[subscriptions]]
id = "s1"
[[subscriptions]]
id = "s2"
tenant = "elsewhere"
"#,
        )
        .unwrap();
        assert_eq!(
            cfg.known_subscriptions(),
            vec![
                ("s1".to_string(), "home".to_string()),
                ("s2".to_string(), "elsewhere".to_string())
            ]
        );
    }

    #[test]
    fn rejects_bad_account_names() {
        let mut cfg = Config::default();
        cfg.storage.datastore_account = "Bad_Name".into();
        assert!(cfg.validate().is_err());
    }
}
