//! The part of Azure ML's MLflow tracking REST API (MLflow REST API 2.0) that the `mlflow`
//! Python client and the operator use, per workspace, under
//! `/mlflow/v1.0/{workspace id}/api/2.0/mlflow/...` — the https form of the workspace's
//! `mlFlowTrackingUri` (here plain http on loopback, like the simulator's ARM).
//!
//! Azure ML creates one MLflow run per job, whose id is the job name, in the experiment named
//! by the job's `experimentName`; the job runner ([`crate::jobs`]) creates it and hands the
//! script `MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID`, `MLFLOW_EXPERIMENT_NAME` and a token.

use std::collections::{BTreeMap, HashMap};

use axum::{
    body::Body,
    extract::State as AxumState,
    http::{Method, Request, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{ids, shared::Shared};

/// Route prefix of the tracking API (`/mlflow/v1.0` + workspace id).
pub const PREFIX: &str = "/mlflow/v1.0";

/// What a job's script is given: the tracking API as a URL the plain `mlflow` client takes.
pub fn job_tracking_url(base_url: &str, workspace_id: &str) -> String {
    format!("{}{PREFIX}{workspace_id}", base_url.trim_end_matches('/'))
}

#[derive(Debug, Clone)]
struct Experiment {
    id: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Metric {
    key: String,
    value: f64,
    timestamp: i64,
    step: i64,
}

#[derive(Debug, Clone)]
struct Run {
    id: String,
    experiment_id: String,
    name: String,
    status: String,
    start_time: i64,
    end_time: Option<i64>,
    metrics: Vec<Metric>,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

/// Experiments and runs of every workspace, keyed by workspace id (lowercase).
#[derive(Debug, Default)]
pub struct Store {
    experiments: HashMap<String, Vec<Experiment>>,
    runs: HashMap<(String, String), Run>,
    seq: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    fn experiment_by_name(&mut self, ws: &str, name: &str, create: bool) -> Option<Experiment> {
        let list = self.experiments.entry(ws.to_owned()).or_default();
        if let Some(e) = list.iter().find(|e| e.name == name) {
            return Some(e.clone());
        }
        if !create {
            return None;
        }
        self.seq += 1;
        let e = Experiment {
            id: self.seq.to_string(),
            name: name.to_owned(),
        };
        list.push(e.clone());
        Some(e)
    }

    /// The run Azure ML keeps for a job (id = job name), created when the job starts.
    pub fn create_job_run(&mut self, workspace_id: &str, job_name: &str, experiment: &str) {
        let ws = ids::key(workspace_id);
        let Some(exp) = self.experiment_by_name(&ws, experiment, true) else {
            return;
        };
        self.runs
            .entry((ws, job_name.to_owned()))
            .or_insert_with(|| Run {
                id: job_name.to_owned(),
                experiment_id: exp.id,
                name: job_name.to_owned(),
                status: "SCHEDULED".into(),
                start_time: now_ms(),
                end_time: None,
                metrics: Vec::new(),
                params: BTreeMap::new(),
                tags: BTreeMap::new(),
            });
    }

    /// The job ended: the run ends with it (`FINISHED`, `FAILED` or `KILLED`) unless the script
    /// already closed it.
    pub fn end_job_run(&mut self, workspace_id: &str, job_name: &str, status: &str) {
        if let Some(run) = self
            .runs
            .get_mut(&(ids::key(workspace_id), job_name.to_owned()))
            && matches!(run.status.as_str(), "SCHEDULED" | "RUNNING")
        {
            run.status = status.to_owned();
            run.end_time = Some(now_ms());
        }
    }

    /// Latest value of each metric of a run (what `runs/get` reports).
    pub fn latest_metrics(&self, workspace_id: &str, run_id: &str) -> BTreeMap<String, f64> {
        self.runs
            .get(&(ids::key(workspace_id), run_id.to_owned()))
            .map(|r| {
                latest(&r.metrics)
                    .into_iter()
                    .map(|m| (m.key, m.value))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn latest(metrics: &[Metric]) -> Vec<Metric> {
    let mut by_key: BTreeMap<&str, &Metric> = BTreeMap::new();
    for m in metrics {
        let e = by_key.entry(&m.key).or_insert(m);
        if (m.step, m.timestamp) >= (e.step, e.timestamp) {
            *e = m;
        }
    }
    by_key.into_values().cloned().collect()
}

fn metric_json(m: &Metric) -> Value {
    json!({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step})
}

fn run_json(r: &Run) -> Value {
    let kv = |m: &BTreeMap<String, String>| -> Vec<Value> {
        m.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect()
    };
    let mut info = json!({
        "run_id": r.id, "run_uuid": r.id, "run_name": r.name,
        "experiment_id": r.experiment_id, "user_id": "",
        "status": r.status, "start_time": r.start_time,
        "artifact_uri": format!("azureml://experiments/{}/runs/{}/artifacts", r.experiment_id, r.id),
        "lifecycle_stage": "active",
    });
    if let Some(end) = r.end_time {
        info["end_time"] = json!(end);
    }
    json!({
        "info": info,
        "data": {
            "metrics": latest(&r.metrics).iter().map(metric_json).collect::<Vec<_>>(),
            "params": kv(&r.params),
            "tags": kv(&r.tags),
        },
        "inputs": {},
    })
}

/// MLflow's error answer (`{"error_code", "message"}`).
struct Fail {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error_code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Fail {
    Fail {
        status,
        code,
        message: message.into(),
    }
}

fn not_found(what: &str) -> Fail {
    error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", what)
}

fn bad(message: impl Into<String>) -> Fail {
    error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
}

/// Parameters of a call: the query string for GET (as the MLflow client sends them), the JSON
/// body otherwise.
fn params(method: &Method, query: Option<&str>, body: &[u8]) -> Result<Value, Fail> {
    if method == Method::GET {
        let mut m = serde_json::Map::new();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            m.insert(k.into_owned(), Value::String(v.into_owned()));
        }
        return Ok(Value::Object(m));
    }
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("malformed JSON body: {e}")))
}

fn str_of<'a>(p: &'a Value, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn int_of(p: &Value, key: &str) -> Option<i64> {
    match p.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn run_id(p: &Value) -> Result<String, Fail> {
    str_of(p, "run_id")
        .or_else(|| str_of(p, "run_uuid"))
        .map(str::to_owned)
        .ok_or_else(|| bad("Missing value for required parameter 'run_id'."))
}

fn parse_metric(m: &Value) -> Result<Metric, Fail> {
    let key = str_of(m, "key").ok_or_else(|| bad("metric without key"))?;
    let value = match m.get("value") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(format!("metric '{key}' has no numeric value")))?;
    Ok(Metric {
        key: key.to_owned(),
        value,
        timestamp: int_of(m, "timestamp").unwrap_or_else(now_ms),
        step: int_of(m, "step").unwrap_or(0),
    })
}

fn kv_pairs(p: &Value, field: &str) -> Vec<(String, String)> {
    p.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        str_of(t, "key")?.to_owned(),
                        t.get("value")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `/mlflow/v1.0/subscriptions/.../workspaces/{ws}/api/2.0/mlflow/{operation}`.
pub async fn handle(
    AxumState(sh): AxumState<std::sync::Arc<Shared>>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return bad("unreadable body").into_response();
    };
    sh.state().count(parts.method.as_str(), "mlflow");
    let path = parts.uri.path();
    let Some((workspace_id, operation)) = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once("/api/2.0/mlflow/"))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("{path} is not an MLflow API path"),
        )
        .into_response();
    };
    let subscription = ids::ArmPath::parse(workspace_id)
        .map(|a| a.subscription)
        .unwrap_or_default();
    if let Err(e) = crate::shared::lock(&sh.tokens).authorize(
        &parts.headers,
        &sh.config.public_audience,
        &subscription,
        &sh.login_endpoint(),
        chrono::Utc::now().timestamp(),
    ) {
        return e.into_response();
    }
    let ws = ids::key(workspace_id);
    if sh.state().get(&ws).is_none() {
        return not_found(&format!("workspace {workspace_id} does not exist")).into_response();
    }
    let p = match params(&parts.method, parts.uri.query(), &body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let mut st = sh.state();
    let store = &mut st.mlflow;
    match answer(store, &ws, &parts.method, operation, &p) {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r.into_response(),
    }
}

fn answer(
    store: &mut Store,
    ws: &str,
    method: &Method,
    operation: &str,
    p: &Value,
) -> Result<Value, Fail> {
    let get = method == Method::GET;
    match (get, operation) {
        (true, "experiments/get-by-name") => {
            let name =
                str_of(p, "experiment_name").ok_or_else(|| bad("experiment_name is required"))?;
            let e = store.experiment_by_name(ws, name, false).ok_or_else(|| {
                not_found(&format!("Could not find experiment with name '{name}'"))
            })?;
            Ok(
                json!({"experiment": {"experiment_id": e.id, "name": e.name, "lifecycle_stage": "active"}}),
            )
        }
        (true, "experiments/get") => {
            let id = str_of(p, "experiment_id").ok_or_else(|| bad("experiment_id is required"))?;
            let e = store
                .experiments
                .get(ws)
                .and_then(|l| l.iter().find(|e| e.id == id))
                .cloned()
                .ok_or_else(|| not_found(&format!("No Experiment with id={id} exists")))?;
            Ok(
                json!({"experiment": {"experiment_id": e.id, "name": e.name, "lifecycle_stage": "active"}}),
            )
        }
        (false, "experiments/create") => {
            let name = str_of(p, "name").ok_or_else(|| bad("name is required"))?;
            if store.experiment_by_name(ws, name, false).is_some() {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "RESOURCE_ALREADY_EXISTS",
                    format!("Experiment '{name}' already exists."),
                ));
            }
            let e = store
                .experiment_by_name(ws, name, true)
                .ok_or_else(|| bad("cannot create"))?;
            Ok(json!({"experiment_id": e.id}))
        }
        (false, "runs/create") => {
            let exp = str_of(p, "experiment_id").ok_or_else(|| bad("experiment_id is required"))?;
            if !store
                .experiments
                .get(ws)
                .is_some_and(|l| l.iter().any(|e| e.id == exp))
            {
                return Err(not_found(&format!("No Experiment with id={exp} exists")));
            }
            let id = uuid::Uuid::new_v4().simple().to_string();
            let run = Run {
                id: id.clone(),
                experiment_id: exp.to_owned(),
                name: str_of(p, "run_name").unwrap_or(&id).to_owned(),
                status: "RUNNING".into(),
                start_time: int_of(p, "start_time").unwrap_or_else(now_ms),
                end_time: None,
                metrics: Vec::new(),
                params: BTreeMap::new(),
                tags: kv_pairs(p, "tags").into_iter().collect(),
            };
            let body = json!({"run": run_json(&run)});
            store.runs.insert((ws.to_owned(), id), run);
            Ok(body)
        }
        (true, "runs/get") => {
            let id = run_id(p)?;
            let run = store
                .runs
                .get(&(ws.to_owned(), id.clone()))
                .ok_or_else(|| not_found(&format!("Run '{id}' not found")))?;
            Ok(json!({"run": run_json(run)}))
        }
        (true, "metrics/get-history") => {
            let id = run_id(p)?;
            let key = str_of(p, "metric_key").ok_or_else(|| bad("metric_key is required"))?;
            let run = store
                .runs
                .get(&(ws.to_owned(), id.clone()))
                .ok_or_else(|| not_found(&format!("Run '{id}' not found")))?;
            let metrics: Vec<Value> = run
                .metrics
                .iter()
                .filter(|m| m.key == key)
                .map(metric_json)
                .collect();
            Ok(json!({"metrics": metrics}))
        }
        (false, op) => {
            let id = run_id(p)?;
            let run = store
                .runs
                .get_mut(&(ws.to_owned(), id.clone()))
                .ok_or_else(|| not_found(&format!("Run '{id}' not found")))?;
            mutate(run, op, p)
        }
        (true, op) => Err(error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("The simulator does not serve GET {op}"),
        )),
    }
}

/// The run-changing calls.
fn mutate(run: &mut Run, op: &str, p: &Value) -> Result<Value, Fail> {
    match op {
        "runs/update" => {
            if let Some(status) = str_of(p, "status") {
                run.status = status.to_owned();
            }
            if let Some(end) = int_of(p, "end_time") {
                run.end_time = Some(end);
            }
            if let Some(name) = str_of(p, "run_name") {
                run.name = name.to_owned();
            }
            let info = run_json(run)["info"].clone();
            Ok(json!({"run_info": info}))
        }
        "runs/log-metric" => {
            run.metrics.push(parse_metric(p)?);
            Ok(json!({}))
        }
        "runs/log-parameter" => {
            let key = str_of(p, "key").ok_or_else(|| bad("key is required"))?;
            let value = p.get("value").and_then(Value::as_str).unwrap_or_default();
            run.params.insert(key.to_owned(), value.to_owned());
            Ok(json!({}))
        }
        "runs/set-tag" => {
            let key = str_of(p, "key").ok_or_else(|| bad("key is required"))?;
            let value = p.get("value").and_then(Value::as_str).unwrap_or_default();
            run.tags.insert(key.to_owned(), value.to_owned());
            Ok(json!({}))
        }
        "runs/log-batch" => {
            let metrics = p
                .get("metrics")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(parse_metric).collect::<Result<Vec<_>, _>>())
                .transpose()?
                .unwrap_or_default();
            run.metrics.extend(metrics);
            run.params.extend(kv_pairs(p, "params"));
            run.tags.extend(kv_pairs(p, "tags"));
            Ok(json!({}))
        }
        other => Err(error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("The simulator does not serve POST {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/ws";

    fn call(store: &mut Store, method: Method, op: &str, p: Value) -> Result<Value, StatusCode> {
        answer(store, WS, &method, op, &p).map_err(|r| r.status)
    }

    #[test]
    fn job_tracking_url_form() {
        assert_eq!(
            job_tracking_url("http://127.0.0.1:8080/", "/subscriptions/s/x"),
            "http://127.0.0.1:8080/mlflow/v1.0/subscriptions/s/x"
        );
    }

    #[test]
    fn job_run_metrics_latest_and_history() {
        let mut s = Store::default();
        s.create_job_run(WS, "job-1", "churn");
        for (v, step) in [(0.5, 0), (0.8, 1)] {
            call(
                &mut s,
                Method::POST,
                "runs/log-metric",
                json!({"run_id": "job-1", "key": "acc", "value": v, "timestamp": 10, "step": step}),
            )
            .unwrap();
        }
        call(
            &mut s,
            Method::POST,
            "runs/log-batch",
            json!({"run_id": "job-1",
            "metrics": [{"key": "loss", "value": 0.1, "timestamp": "11", "step": "0"}],
            "params": [{"key": "C", "value": "1"}], "tags": [{"key": "t", "value": "x"}]}),
        )
        .unwrap();
        let run = call(&mut s, Method::GET, "runs/get", json!({"run_id": "job-1"})).unwrap();
        let metrics = run["run"]["data"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(s.latest_metrics(WS, "job-1")["acc"], 0.8);
        let h = call(
            &mut s,
            Method::GET,
            "metrics/get-history",
            json!({"run_id": "job-1", "metric_key": "acc"}),
        )
        .unwrap();
        assert_eq!(h["metrics"].as_array().unwrap().len(), 2);
        s.end_job_run(WS, "job-1", "FINISHED");
        let run = call(&mut s, Method::GET, "runs/get", json!({"run_id": "job-1"})).unwrap();
        assert_eq!(run["run"]["info"]["status"], "FINISHED");
        let exp = call(
            &mut s,
            Method::GET,
            "experiments/get-by-name",
            json!({"experiment_name": "churn"}),
        )
        .unwrap();
        assert_eq!(
            exp["experiment"]["experiment_id"],
            run["run"]["info"]["experiment_id"]
        );
    }

    #[test]
    fn unknown_runs_and_experiments_are_404_and_bad_input_400() {
        let mut s = Store::default();
        assert_eq!(
            call(&mut s, Method::GET, "runs/get", json!({"run_id": "nope"})),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            call(
                &mut s,
                Method::GET,
                "experiments/get-by-name",
                json!({"experiment_name": "x"})
            ),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            call(&mut s, Method::POST, "runs/log-metric", json!({"key": "a"})),
            Err(StatusCode::BAD_REQUEST)
        );
        let e = call(
            &mut s,
            Method::POST,
            "experiments/create",
            json!({"name": "x"}),
        )
        .unwrap();
        let id = e["experiment_id"].as_str().unwrap().to_owned();
        assert_eq!(
            call(
                &mut s,
                Method::POST,
                "experiments/create",
                json!({"name": "x"})
            ),
            Err(StatusCode::BAD_REQUEST)
        );
        let r = call(
            &mut s,
            Method::POST,
            "runs/create",
            json!({"experiment_id": id, "run_name": "r"}),
        )
        .unwrap();
        let rid = r["run"]["info"]["run_id"].as_str().unwrap().to_owned();
        call(
            &mut s,
            Method::POST,
            "runs/log-metric",
            json!({"run_id": rid, "key": "a", "value": "x"}),
        )
        .unwrap_err();
        call(
            &mut s,
            Method::POST,
            "runs/update",
            json!({"run_id": rid, "status": "FINISHED", "end_time": 5}),
        )
        .unwrap();
        assert_eq!(
            call(
                &mut s,
                Method::POST,
                "runs/frobnicate",
                json!({"run_id": rid})
            ),
            Err(StatusCode::NOT_FOUND)
        );
    }
}
