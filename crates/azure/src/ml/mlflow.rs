//! The workspace's MLflow tracking REST API (Azure ML v2 records a job's metrics there; the
//! job's MLflow run id is the job name). The API lives under the https form of the
//! workspace's `mlFlowTrackingUri` and takes the same ARM bearer token.

use std::collections::BTreeMap;

use async_trait::async_trait;
use http::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::{
    Error, Result,
    arm::{ArmClient, ArmError},
    error::parse_url,
};

/// `azureml://{host}/mlflow/...` (as `Workspaces_Get` advertises it) → `https://{host}/mlflow/...`,
/// the form the REST API is served at. `https://` URIs are taken as they are; plain `http://`
/// only on a loopback host (local development), like every other endpoint of this crate.
pub fn tracking_base(tracking_uri: &str) -> Result<Url> {
    let (scheme, rest) = tracking_uri
        .split_once("://")
        .ok_or_else(|| Error::InvalidInput(format!("MLflow tracking URI {tracking_uri:?}")))?;
    let loopback = |u: &Url| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let url = match scheme {
        "azureml" => {
            let https = parse_url(&format!("https://{rest}"))?;
            if loopback(&https) {
                parse_url(&format!("http://{rest}"))?
            } else {
                https
            }
        }
        "https" => parse_url(tracking_uri)?,
        "http" => {
            let u = parse_url(tracking_uri)?;
            if !loopback(&u) {
                return Err(Error::InvalidInput(format!(
                    "MLflow tracking URI {tracking_uri:?}: plain http only on loopback"
                )));
            }
            u
        }
        _ => {
            return Err(Error::InvalidInput(format!(
                "MLflow tracking URI {tracking_uri:?}: expected azureml:// or https://"
            )));
        }
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidInput(format!(
            "MLflow tracking URI {tracking_uri:?} carries a query or fragment"
        )));
    }
    Ok(url)
}

/// `Metric`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MlflowMetric {
    pub key: String,
    pub value: f64,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub step: i64,
}

/// `RunInfo` (the fields we read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MlflowRunInfo {
    pub run_id: String,
    #[serde(default)]
    pub experiment_id: Option<String>,
    /// RUNNING, SCHEDULED, FINISHED, FAILED, KILLED.
    #[serde(default)]
    pub status: Option<String>,
}

/// `RunData`: `metrics` holds the latest value of each key.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct MlflowRunData {
    #[serde(default)]
    pub metrics: Vec<MlflowMetric>,
}

/// `Run`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MlflowRun {
    pub info: MlflowRunInfo,
    #[serde(default)]
    pub data: MlflowRunData,
}

impl MlflowRun {
    /// The latest value of every metric (what `runs/get` reports per key).
    pub fn latest_metrics(&self) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, (i64, i64, f64)> = BTreeMap::new();
        for m in &self.data.metrics {
            let e = out
                .entry(m.key.clone())
                .or_insert((m.step, m.timestamp, m.value));
            // A server may report several; the highest (step, timestamp) is the latest.
            if (m.step, m.timestamp) >= (e.0, e.1) {
                *e = (m.step, m.timestamp, m.value);
            }
        }
        out.into_iter().map(|(k, (_, _, v))| (k, v)).collect()
    }
}

/// MLflow tracking reads the operator needs.
#[async_trait]
pub trait MlflowApi: Send + Sync {
    /// `GET runs/get?run_id=`; `None` when the run does not exist.
    async fn get_run(&self, run_id: &str) -> Result<Option<MlflowRun>>;
    /// Every value logged for `key`, following `next_page_token`.
    async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<MlflowMetric>>;
}

/// [`MlflowApi`] over HTTP with the workspace's ARM credential.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    arm: ArmClient,
}

impl MlflowClient {
    /// `arm`: the client of the workspace's ARM (its token is the one MLflow takes);
    /// `tracking_uri`: the workspace's `mlFlowTrackingUri`.
    pub fn new(arm: &ArmClient, tracking_uri: &str) -> Result<Self> {
        Ok(Self {
            arm: arm.with_endpoint(tracking_base(tracking_uri)?),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut u = self.arm.endpoint().clone();
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}/api/2.0/mlflow/{path}"));
        u.query_pairs_mut().extend_pairs(query);
        Ok(u)
    }

    /// GET `path`; `None` on MLflow's `RESOURCE_DOES_NOT_EXIST` (404).
    async fn get<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<Option<T>> {
        let ctx = format!("MLflow {}", url.path());
        let r = self.arm.execute(Method::GET, url, None).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status.is_success() {
            // MLflow's `{error_code, message}` body lands in the message; the status decides
            // whether it is retried, as for ARM.
            return Err(Box::new(ArmError::from_response(r.status, &r.headers, &r.body)).into());
        }
        r.json(&ctx).map(Some)
    }
}

#[async_trait]
impl MlflowApi for MlflowClient {
    async fn get_run(&self, run_id: &str) -> Result<Option<MlflowRun>> {
        #[derive(Deserialize)]
        struct Answer {
            run: MlflowRun,
        }
        let url = self.url("runs/get", &[("run_id", run_id)])?;
        Ok(self.get::<Answer>(url).await?.map(|a| a.run))
    }

    async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<MlflowMetric>> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            metrics: Vec<MlflowMetric>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("run_id", run_id), ("metric_key", key)];
            if let Some(t) = token.as_deref() {
                q.push(("page_token", t));
            }
            let Some(page) = self
                .get::<Answer>(self.url("metrics/get-history", &q)?)
                .await?
            else {
                return Ok(out);
            };
            out.extend(page.metrics);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_uri_forms() {
        assert_eq!(
            tracking_base("azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws")
                .unwrap()
                .as_str(),
            "https://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
        );
        assert_eq!(
            tracking_base("azureml://127.0.0.1:8080/mlflow/v1.0/x")
                .unwrap()
                .scheme(),
            "http"
        );
        assert!(tracking_base("http://example.com/mlflow").is_err());
        assert!(tracking_base("file:///tmp/mlruns").is_err());
        assert!(tracking_base("https://h/mlflow?x=1").is_err());
        assert!(tracking_base("no scheme").is_err());
    }

    #[test]
    fn latest_metric_per_key() {
        let run: MlflowRun = serde_json::from_value(serde_json::json!({
            "info": {"run_id": "job-1", "experiment_id": "1", "status": "FINISHED"},
            "data": {"metrics": [
                {"key": "loss", "value": 0.9, "timestamp": 1, "step": 0},
                {"key": "loss", "value": 0.2, "timestamp": 5, "step": 3},
                {"key": "accuracy", "value": 0.93, "timestamp": 6, "step": 0}
            ], "params": [{"key": "C", "value": "1.0"}]}
        }))
        .unwrap();
        let m = run.latest_metrics();
        assert_eq!(m.len(), 2);
        assert_eq!(m["loss"], 0.2);
        assert_eq!(m["accuracy"], 0.93);
    }
}
