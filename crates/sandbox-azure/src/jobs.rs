//! Runs Azure ML Command jobs on this machine, as the attached VM's job runtime would:
//! fresh working directory, code asset downloaded, inputs/outputs substituted, `sh -c` in its own
//! process group, log captured, outputs uploaded to the default datastore (Azurite).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    blob::{ContainerSas, SasFields, sign_service_sas},
    error::{Error, Result},
    ids,
    ml::{DEFAULT_DATASTORE, is_terminal},
    secret::Secret,
    shared::{Shared, Storage, lock},
    validate::parse_iso8601_duration,
};

/// Replace `${{inputs.X}}` and `${{outputs.Y}}`; an unknown name is an error.
pub fn substitute(
    command: &str,
    inputs: &HashMap<String, String>,
    outputs: &HashMap<String, String>,
) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z0-9_\-]+)\s*\}\}")
        .map_err(|e| e.to_string())?;
    let mut missing = Vec::new();
    let out = re.replace_all(command, |caps: &regex::Captures<'_>| {
        let map = if &caps[1] == "inputs" {
            inputs
        } else {
            outputs
        };
        match map.get(&caps[2]) {
            Some(v) => v.clone(),
            None => {
                missing.push(format!("{}.{}", &caps[1], &caps[2]));
                String::new()
            }
        }
    });
    if missing.is_empty() {
        Ok(out.into_owned())
    } else {
        Err(format!(
            "the command references undefined {}",
            missing.join(", ")
        ))
    }
}

/// Parse `outputs/metrics.json`: a flat JSON object of numbers.
pub fn parse_metrics(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    obj.iter()
        .map(|(k, v)| {
            v.as_f64()
                .map(|n| (k.clone(), n))
                .ok_or_else(|| format!("metric '{k}' is not a number"))
        })
        .collect()
}

/// Where a blob URL points: account, container and path inside the container.
pub fn parse_blob_url(url: &url::Url) -> Option<(String, String, String)> {
    let host = url.host_str()?;
    let path = url.path().trim_start_matches('/');
    let host_account = host
        .strip_suffix(".blob.localhost")
        .or_else(|| host.split_once(".blob.").map(|(a, _)| a));
    let (account, rest) = match host_account {
        Some(account) => (account.to_owned(), path),
        None => {
            let (account, rest) = path.split_once('/')?;
            (account.to_owned(), rest)
        }
    };
    let (container, blob) = rest.split_once('/').unwrap_or((rest, ""));
    (!container.is_empty()).then(|| (account, container.to_owned(), blob.to_owned()))
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub fn spawn(sh: Arc<Shared>, job_id: String) {
    let (tx, rx) = watch::channel(false);
    lock(&sh.job_cancel).insert(ids::key(&job_id), tx);
    tokio::spawn(async move {
        let outcome = run(&sh, &job_id, rx).await;
        if let Err(e) = outcome {
            tracing::warn!(job = %job_id, error = %e, "job failed in the runtime");
            set_status(&sh, &job_id, "Failed");
        }
        lock(&sh.job_cancel).remove(&ids::key(&job_id));
    });
}

pub fn request_cancel(sh: &Shared, job_id: &str) {
    if let Some(tx) = lock(&sh.job_cancel).get(&ids::key(job_id)) {
        let _ = tx.send(true);
    }
}

/// How often a running job's growing log is uploaded (Azure ML streams it; a few seconds).
const LOG_UPLOAD_INTERVAL: Duration = Duration::from_secs(1);

fn set_status(sh: &Shared, job_id: &str, status: &str) {
    let mut st = sh.state();
    if let Some(job) = st.get_mut(job_id) {
        let current = job.body["properties"]["status"]
            .as_str()
            .unwrap_or_default();
        if !is_terminal(current) {
            job.body["properties"]["status"] = Value::String(status.to_owned());
            // The job's MLflow run ends with the job.
            let run_status = match status {
                "Completed" => Some("FINISHED"),
                "Failed" => Some("FAILED"),
                "Canceled" => Some("KILLED"),
                _ => None,
            };
            if let (Some(run_status), Some(ws)) = (run_status, workspace_of(job_id)) {
                st.mlflow.end_job_run(&ws, ids::name_of(job_id), run_status);
            }
        }
    }
}

/// `.../workspaces/{ws}/jobs/{name}` → `.../workspaces/{ws}`.
fn workspace_of(job_id: &str) -> Option<String> {
    let (ws, _) = job_id.trim_end_matches('/').rsplit_once("/jobs/")?;
    Some(ws.to_owned())
}

/// What Azure ML gives a job's script for MLflow: the tracking URI, the run (id = job name,
/// created with the job), the experiment and a token for the workspace's services.
fn mlflow_env(sh: &Shared, job_id: &str, job: &Value, lifetime: Duration) -> Vec<(String, String)> {
    let Some(ws) = workspace_of(job_id) else {
        return Vec::new();
    };
    let name = ids::name_of(job_id);
    let experiment = job["properties"]["experimentName"]
        .as_str()
        .unwrap_or("Default")
        .to_owned();
    sh.state().mlflow.create_job_run(&ws, name, &experiment);
    let now = chrono::Utc::now().timestamp();
    let expires = now + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
    let subscription = ids::ArmPath::parse(&ws)
        .map(|a| a.subscription)
        .unwrap_or_default();
    let token = lock(&sh.tokens).issue_job_token(
        &sh.config.public_audience,
        &subscription,
        name,
        now,
        expires,
    );
    vec![
        (
            "MLFLOW_TRACKING_URI".into(),
            crate::mlflow::job_tracking_url(&sh.base_url, &ws),
        ),
        ("MLFLOW_RUN_ID".into(), name.to_owned()),
        ("MLFLOW_EXPERIMENT_NAME".into(), experiment),
        ("MLFLOW_TRACKING_TOKEN".into(), token.expose().to_owned()),
    ]
}

fn job_err(job: &str, message: impl Into<String>) -> Error {
    Error::Job {
        job: job.to_owned(),
        message: message.into(),
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// A container SAS for an account the simulator holds the key of.
fn signed_container(storage: &Storage, account: &str, container: &str) -> Result<ContainerSas> {
    let key = storage
        .azurite
        .key(account)
        .ok_or_else(|| Error::InvalidConfig(format!("no key for storage account '{account}'")))?;
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let sas = sign_service_sas(
        &SasFields {
            account,
            container,
            blob: None,
            permissions: "racwl",
            start: None,
            expiry: &expiry,
            ip: None,
            protocol: Some("https"),
        },
        key,
    )?;
    Ok(ContainerSas {
        container_url: format!("{}/{container}", storage.azurite.path_style_url(account)),
        sas,
    })
}

/// A container + prefix from an https blob URL (its own SAS if it carries one) or an
/// `azureml://datastores/{name}/paths/{path}` URI on the default datastore.
fn locate(storage: &Storage, uri: &str) -> Result<(ContainerSas, String)> {
    if let Some(rest) = uri.strip_prefix("azureml://datastores/") {
        let (ds, path) = rest
            .split_once("/paths/")
            .ok_or_else(|| Error::InvalidConfig(format!("unsupported azureml URI '{uri}'")))?;
        if ds != DEFAULT_DATASTORE {
            return Err(Error::InvalidConfig(format!(
                "the simulator resolves only the default datastore, not '{ds}'"
            )));
        }
        let container = signed_container(
            storage,
            &storage.datastore_account,
            &storage.datastore_container,
        )?;
        return Ok((container, path.to_owned()));
    }
    let url =
        url::Url::parse(uri).map_err(|e| Error::InvalidConfig(format!("bad URI '{uri}': {e}")))?;
    let (account, container, path) = parse_blob_url(&url)
        .ok_or_else(|| Error::InvalidConfig(format!("not a blob URL: '{uri}'")))?;
    let path = decode(&path);
    let has_sas = url.query_pairs().any(|(k, _)| k == "sig");
    let sas = if has_sas {
        ContainerSas {
            container_url: format!("{}/{container}", url_base(&url, &account)),
            sas: Secret::new(url.query().unwrap_or_default()),
        }
    } else {
        signed_container(storage, &account, &container)?
    };
    Ok((sas, path))
}

/// Scheme, host and port of a blob URL, plus the account segment for path-style URLs.
fn url_base(url: &url::Url, account: &str) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    if host.contains(".blob.") {
        format!("{}://{host}{port}", url.scheme())
    } else {
        format!("{}://{host}{port}/{account}", url.scheme())
    }
}

async fn download_prefix(
    sh: &Shared,
    container: &ContainerSas,
    prefix: &str,
    dest: &Path,
) -> Result<usize> {
    let folder = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    let names = container.list(&sh.http, &folder).await?;
    for name in &names {
        let rel = &name[folder.len()..];
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("create {}", parent.display())))?;
        }
        let data = container.get(&sh.http, name).await?;
        std::fs::write(&target, data).map_err(|source| Error::WriteFile {
            path: target.clone(),
            source,
        })?;
    }
    Ok(names.len())
}

struct Prepared {
    command: String,
    env: Vec<(String, String)>,
    outputs: Vec<(String, PathBuf, String)>,
    timeout: Option<Duration>,
}

async fn prepare(
    sh: &Shared,
    storage: &Storage,
    job: &Value,
    name: &str,
    wd: &Path,
) -> Result<Prepared> {
    let props = &job["properties"];
    // Code asset first: its folder becomes the working directory's content.
    if let Some(code_id) = props["codeId"].as_str() {
        let code_uri = {
            let st = sh.state();
            st.get(code_id)
                .and_then(|c| c.body["properties"]["codeUri"].as_str().map(str::to_owned))
        }
        .ok_or_else(|| job_err(name, format!("code asset '{code_id}' has no codeUri")))?;
        let (container, prefix) = locate(storage, &code_uri)?;
        download_prefix(sh, &container, &prefix, wd).await?;
    }
    let mut inputs = HashMap::new();
    for (key, input) in props["inputs"].as_object().cloned().unwrap_or_default() {
        let kind = input["jobInputType"].as_str().unwrap_or_default();
        let value = if kind == "literal" {
            input["value"].as_str().unwrap_or_default().to_owned()
        } else {
            let uri = input["uri"].as_str().unwrap_or_default().to_owned();
            let mode = input["mode"].as_str().unwrap_or("ReadOnlyMount");
            if mode == "Direct" {
                uri
            } else {
                // Mount modes have no FUSE here: they are served as downloads (README).
                let dest = wd.join("inputs").join(&key);
                std::fs::create_dir_all(&dest)
                    .map_err(io_err(format!("create {}", dest.display())))?;
                let (container, path) = locate(storage, &uri)?;
                if kind == "uri_file" {
                    let file_name = path.rsplit('/').next().unwrap_or("input").to_owned();
                    let data = container.get(&sh.http, &path).await?;
                    let target = dest.join(&file_name);
                    std::fs::write(&target, data).map_err(|source| Error::WriteFile {
                        path: target.clone(),
                        source,
                    })?;
                    target.to_string_lossy().into_owned()
                } else {
                    download_prefix(sh, &container, &path, &dest).await?;
                    dest.to_string_lossy().into_owned()
                }
            }
        };
        inputs.insert(key, value);
    }
    let mut outputs_map = HashMap::new();
    let mut outputs = Vec::new();
    for (key, output) in props["outputs"].as_object().cloned().unwrap_or_default() {
        let dir = wd.join("named-outputs").join(&key);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let datastore_path = output["uri"]
            .as_str()
            .and_then(|u| {
                u.strip_prefix(&format!("azureml://datastores/{DEFAULT_DATASTORE}/paths/"))
            })
            .map(|p| {
                if p.ends_with('/') {
                    p.to_owned()
                } else {
                    format!("{p}/")
                }
            })
            .unwrap_or_else(|| format!("azureml/{name}/{key}/"));
        outputs_map.insert(key.clone(), dir.to_string_lossy().into_owned());
        outputs.push((key, dir, datastore_path));
    }
    let command = substitute(
        props["command"].as_str().unwrap_or_default(),
        &inputs,
        &outputs_map,
    )
    .map_err(|m| job_err(name, m))?;
    let mut env: Vec<(String, String)> = props["environmentVariables"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let ca = storage
        .azurite
        .certs
        .ca_pem_path
        .to_string_lossy()
        .into_owned();
    env.push(("SSL_CERT_FILE".into(), ca.clone()));
    env.push(("REQUESTS_CA_BUNDLE".into(), ca));
    env.push(("AZUREML_RUN_ID".into(), name.to_owned()));
    let timeout = props["limits"]["timeout"]
        .as_str()
        .and_then(parse_iso8601_duration)
        .map(Duration::from_secs_f64);
    Ok(Prepared {
        command,
        env,
        outputs,
        timeout,
    })
}

enum Ending {
    Exited(i32),
    Canceled,
    TimedOut,
}

async fn run(sh: &Arc<Shared>, job_id: &str, mut cancel: watch::Receiver<bool>) -> Result<()> {
    let name = ids::name_of(job_id).to_owned();
    let storage = sh
        .storage
        .as_ref()
        .ok_or_else(|| job_err(&name, "the simulator runs without Azurite; jobs need it"))?;
    let job = sh
        .state()
        .get(job_id)
        .map(|j| j.body.clone())
        .ok_or_else(|| job_err(&name, "job vanished"))?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    set_status(sh, job_id, "Queued");
    let run_dir = sh
        .config
        .state_dir
        .join("jobs")
        .join(format!("{name}-{}", &uuid::Uuid::new_v4().to_string()[..8]));
    let wd = run_dir.join("wd");
    std::fs::create_dir_all(wd.join("outputs"))
        .map_err(io_err(format!("create {}", wd.display())))?;
    let log_path = run_dir.join("std_log.txt");
    let prepared = match prepare(sh, storage, &job, &name, &wd).await {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::write(&log_path, format!("job preparation failed: {e}\n"));
            finalize(sh, storage, job_id, &name, &wd, &log_path, &[]).await?;
            set_status(sh, job_id, "Failed");
            return Ok(());
        }
    };
    if *cancel.borrow() {
        set_status(sh, job_id, "Canceled");
        return Ok(());
    }
    let mut prepared = prepared;
    // The token outlives the job's time limit (or a day) by a margin, as a job token does.
    let lifetime =
        prepared.timeout.unwrap_or(Duration::from_secs(86_400)) + Duration::from_secs(600);
    prepared.env.extend(mlflow_env(sh, job_id, &job, lifetime));
    set_status(sh, job_id, "Running");
    if let Some(job) = sh.state().get_mut(job_id) {
        let outs = &mut job.body["properties"]["outputs"];
        if !outs.is_object() {
            *outs = json!({});
        }
        outs["artifacts"] = artifacts_output(&artifacts_prefix(&name));
    }
    let log = std::fs::File::create(&log_path).map_err(|source| Error::WriteFile {
        path: log_path.clone(),
        source,
    })?;
    let log_err = log.try_clone().map_err(io_err("clone log handle".into()))?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&prepared.command)
        .current_dir(&wd)
        .envs(prepared.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(io_err("spawn sh -c".into()))?;
    let pid = child.id();
    let deadline = async {
        match prepared.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        status = child.wait() => Ending::Exited(status.map(|s| s.code().unwrap_or(-1)).unwrap_or(-1)),
        _ = cancel.wait_for(|c| *c) => Ending::Canceled,
        _ = deadline => Ending::TimedOut,
        () = upload_log_while_running(sh, storage, &name, &log_path) => unreachable!("uploads until the job ends"),
    };
    if !matches!(ending, Ending::Exited(_)) {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            // The whole process group: the command's children die with it.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait().await;
    }
    let note = match &ending {
        Ending::Exited(0) => None,
        Ending::Exited(code) => Some(format!(
            "\n[edgetrain-sandbox] command exited with code {code}\n"
        )),
        Ending::Canceled => Some("\n[edgetrain-sandbox] job canceled\n".to_owned()),
        Ending::TimedOut => {
            Some("\n[edgetrain-sandbox] limits.timeout exceeded; job canceled\n".to_owned())
        }
    };
    if let Some(note) = note {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log_path) {
            let _ = f.write_all(note.as_bytes());
        }
    }
    set_status(sh, job_id, "Finalizing");
    finalize(
        sh,
        storage,
        job_id,
        &name,
        &wd,
        &log_path,
        &prepared.outputs,
    )
    .await?;
    let final_status = match ending {
        Ending::Exited(0) => "Completed",
        Ending::Exited(_) => "Failed",
        Ending::Canceled | Ending::TimedOut => "Canceled",
    };
    set_status(sh, job_id, final_status);
    Ok(())
}

/// Upload outputs, `./outputs` (as `artifacts`) and the log; record metrics and output URIs.
async fn finalize(
    sh: &Shared,
    storage: &Storage,
    job_id: &str,
    name: &str,
    wd: &Path,
    log_path: &Path,
    outputs: &[(String, PathBuf, String)],
) -> Result<()> {
    let container = signed_container(
        storage,
        &storage.datastore_account,
        &storage.datastore_container,
    )?;
    let mut uris = serde_json::Map::new();
    for (key, dir, path) in outputs {
        container.upload_dir(&sh.http, dir, path).await?;
        uris.insert(
            key.clone(),
            Value::String(format!(
                "azureml://datastores/{DEFAULT_DATASTORE}/paths/{path}"
            )),
        );
    }
    let artifacts = artifacts_prefix(name);
    let outputs_dir = wd.join("outputs");
    if outputs_dir.is_dir() {
        container
            .upload_dir(&sh.http, &outputs_dir, &format!("{artifacts}outputs/"))
            .await?;
    }
    let log = std::fs::read(log_path).unwrap_or_default();
    container
        .put(&sh.http, &format!("{artifacts}user_logs/std_log.txt"), log)
        .await?;
    let metrics = match std::fs::read_to_string(outputs_dir.join("metrics.json")) {
        Ok(text) => match parse_metrics(&text) {
            Ok(m) => Some(m),
            Err(why) => {
                tracing::warn!(job = %name, %why, "outputs/metrics.json ignored");
                None
            }
        },
        Err(_) => None,
    };
    let mut st = sh.state();
    if let Some(metrics) = metrics {
        st.job_metrics.insert(ids::key(job_id), metrics);
    }
    if let Some(job) = st.get_mut(job_id) {
        let outs = &mut job.body["properties"]["outputs"];
        if !outs.is_object() {
            *outs = json!({});
        }
        for (key, uri) in uris {
            let entry = &mut outs[&key];
            entry["uri"] = uri;
        }
        outs["artifacts"] = artifacts_output(&artifacts);
    }
    Ok(())
}

/// Where a job's logs and `./outputs` go: `azureml/{name}/artifacts/` in the default datastore.
fn artifacts_prefix(name: &str) -> String {
    format!("azureml/{name}/artifacts/")
}

/// The job's `artifacts` output, which Azure ML shows from the start of the run.
fn artifacts_output(prefix: &str) -> Value {
    json!({
        "jobOutputType": "uri_folder",
        "mode": "ReadWriteMount",
        "uri": format!("azureml://datastores/{DEFAULT_DATASTORE}/paths/{prefix}"),
    })
}

/// Azure ML uploads a running job's `std_log.txt` as it grows; the simulator re-uploads it
/// every [`LOG_UPLOAD_INTERVAL`] while it grows. Runs until dropped (the job's end), after
/// which the final upload in [`finalize`] has the last word.
async fn upload_log_while_running(sh: &Shared, storage: &Storage, name: &str, log_path: &Path) {
    let blob = format!("{}user_logs/std_log.txt", artifacts_prefix(name));
    let mut uploaded = 0;
    loop {
        tokio::time::sleep(LOG_UPLOAD_INTERVAL).await;
        let Ok(log) = std::fs::read(log_path) else {
            continue;
        };
        let len = log.len();
        if len <= uploaded {
            continue;
        }
        let container = signed_container(
            storage,
            &storage.datastore_account,
            &storage.datastore_container,
        );
        match container {
            Ok(c) => match c.put(&sh.http, &blob, log).await {
                Ok(()) => uploaded = len,
                Err(e) => tracing::debug!(job = %name, error = %e, "log upload failed; retried"),
            },
            Err(e) => tracing::debug!(job = %name, error = %e, "log upload not signed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_inputs_and_outputs() {
        let inputs = HashMap::from([("lr".to_owned(), "0.1".to_owned())]);
        let outputs = HashMap::from([("model".to_owned(), "/wd/o/model".to_owned())]);
        assert_eq!(
            substitute(
                "python t.py --lr ${{inputs.lr}} --out ${{ outputs.model }}",
                &inputs,
                &outputs
            )
            .unwrap(),
            "python t.py --lr 0.1 --out /wd/o/model"
        );
        let err = substitute("x ${{inputs.nope}}", &inputs, &outputs).unwrap_err();
        assert!(err.contains("inputs.nope"));
    }

    #[test]
    fn parses_metrics_convention() {
        let m = parse_metrics(r#"{"accuracy": 0.9, "epochs": 3}"#).unwrap();
        assert_eq!(m["accuracy"], 0.9);
        assert!(parse_metrics(r#"{"a": "x"}"#).is_err());
        assert!(parse_metrics("[1]").is_err());
    }

    #[test]
    fn parses_blob_urls_in_both_styles() {
        let u = url::Url::parse("https://acct.blob.localhost:1234/data/a/b.csv?sig=x").unwrap();
        assert_eq!(
            parse_blob_url(&u),
            Some(("acct".into(), "data".into(), "a/b.csv".into()))
        );
        let u = url::Url::parse("https://127.0.0.1:1234/acct/data/a/b.csv").unwrap();
        assert_eq!(
            parse_blob_url(&u),
            Some(("acct".into(), "data".into(), "a/b.csv".into()))
        );
        assert_eq!(url_base(&u, "acct"), "https://127.0.0.1:1234/acct");
    }
}
