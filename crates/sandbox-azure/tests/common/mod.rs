//! Helpers shared by the integration tests: start a simulator, get tokens, call ARM.
#![allow(dead_code)]

use edgetrain_sandbox_azure::{AzureSim, Config, LroConfig, ServicePrincipal, WorkspaceConfig};
use serde_json::Value;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_ID: &str = "edgetrain-operator";
pub const CLIENT_SECRET: &str = "operator-secret";
pub const ML_API: &str = "2025-12-01";
pub const COMPUTE_API: &str = "2020-06-01";
pub const NETWORK_API: &str = "2018-11-01";

pub fn rg() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg1")
}

pub fn ws() -> String {
    format!(
        "{}/providers/Microsoft.MachineLearningServices/workspaces/ws1",
        rg()
    )
}

pub fn config(state_dir: &std::path::Path, azurite: bool) -> Config {
    Config {
        state_dir: state_dir.to_owned(),
        tenant_id: TENANT.into(),
        azurite,
        service_principals: vec![
            ServicePrincipal::new(TENANT, CLIENT_ID, CLIENT_SECRET),
            ServicePrincipal::new("adfs", CLIENT_ID, CLIENT_SECRET),
        ],
        lro: LroConfig {
            duration_ms: 300,
            retry_after_secs: 1,
            fail_resource_names: vec!["doomed-vm".into()],
        },
        workspaces: vec![WorkspaceConfig::new(SUB, "rg1", "ws1", "westeurope")],
        ..Config::default()
    }
}

pub async fn start(azurite: bool) -> (AzureSim, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sim = AzureSim::start(config(dir.path(), azurite)).await.unwrap();
    (sim, dir)
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A v2 token for `audience` (client-credentials).
pub async fn token(sim: &AzureSim, audience: &str) -> String {
    token_in(sim, TENANT, audience).await
}

/// A v2 token for `audience` from `tenant`'s token endpoint.
pub async fn token_in(sim: &AzureSim, tenant: &str, audience: &str) -> String {
    let resp = http()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            (
                "scope",
                &format!("{}/.default", audience.trim_end_matches('/')),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// An ARM client bound to one audience.
pub struct Arm {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl Arm {
    pub async fn stack_hub(sim: &AzureSim) -> Self {
        let audience = sim.config().stack_hub_audience.clone();
        Self::new(sim, &audience).await
    }

    pub async fn public(sim: &AzureSim) -> Self {
        Self::new(sim, "https://management.azure.com/").await
    }

    pub async fn new(sim: &AzureSim, audience: &str) -> Self {
        Self {
            base: sim.base_url().to_owned(),
            token: token(sim, audience).await,
            client: http(),
        }
    }

    /// `path_and_query` is relative to the base URL, or an absolute URL (operation URLs).
    pub async fn call(&self, method: &str, path_and_query: &str, body: Option<&Value>) -> Answer {
        let url = if path_and_query.starts_with("http") {
            path_and_query.to_owned()
        } else {
            format!("{}{path_and_query}", self.base)
        };
        let mut req = self
            .client
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path_and_query: &str) -> Answer {
        self.call("GET", path_and_query, None).await
    }

    pub async fn put(&self, path_and_query: &str, body: &Value) -> Answer {
        self.call("PUT", path_and_query, Some(body)).await
    }

    pub async fn post(&self, path_and_query: &str, body: Option<&Value>) -> Answer {
        self.call("POST", path_and_query, body).await
    }

    /// Poll an `Azure-AsyncOperation` URL until a terminal status (honouring Retry-After, capped).
    pub async fn wait_async(&self, url: &str) -> String {
        for _ in 0..100 {
            let a = self.get(url).await;
            assert_eq!(a.status, 200, "operation status: {:?}", a.body);
            let status = a.body["status"].as_str().unwrap().to_owned();
            if status != "InProgress" {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("operation {url} never finished");
    }
}
