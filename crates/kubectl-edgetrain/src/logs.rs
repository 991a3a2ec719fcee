//! `logs <trainingrun>`: the job's `user_logs/std_log.txt` from the workspace datastore.
//!
//! The plugin signs in as the user would: it reads, with the user's kubeconfig, the Azure ML
//! Secret that the run's EdgeComputeTarget names (in the run's namespace), and builds the same
//! Azure ML client the operator builds from it (`edgetrain-controller`'s factory). A user who
//! may not read that Secret cannot read the log through the plugin.

use std::{sync::Arc, time::Duration};

use edgetrain_api::{EdgeComputeTarget, TrainingRun, TrainingRunPhase, TrainingRunStatus};
use edgetrain_azure::ml::{self, JobStatus, MlApi, Workspace};
use edgetrain_controller::{
    runtime::{factory::MlFactory, secrets::MlIdentity},
    training_run::observe::job_view,
};
use kube::Client;
use serde::Serialize;

use crate::{Error, Result, get};

/// Where Azure ML writes a job's standard output and error, under its `artifacts` output.
pub const STD_LOG: &str = "user_logs/std_log.txt";

/// The log blob under an output folder path (`azureml/job/artifacts/` or without the slash).
pub fn log_blob(artifacts_path: &str) -> String {
    if artifacts_path.is_empty() || artifacts_path.ends_with('/') {
        format!("{artifacts_path}{STD_LOG}")
    } else {
        format!("{artifacts_path}/{STD_LOG}")
    }
}

/// What `--follow` does after a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// Poll the same job again.
    Keep,
    /// The run moved on to another attempt: follow that job from its start.
    Switch(String),
    /// The run ended and its job's log is complete.
    Stop,
}

fn run_ended(phase: TrainingRunPhase) -> bool {
    matches!(
        phase,
        TrainingRunPhase::Succeeded | TrainingRunPhase::Failed | TrainingRunPhase::Canceled
    )
}

/// After reading `job`'s log (its status `job_status`, read before the log so the read saw
/// everything of a finished job), given the run's latest status. A finished job whose run is
/// still active is followed until the run either ends or submits the next attempt.
pub fn next(job: &str, job_status: &JobStatus, run: &TrainingRunStatus) -> Follow {
    match run.job_name.as_deref() {
        Some(current) if current != job => Follow::Switch(current.to_string()),
        _ if job_status.is_terminal() && run_ended(run.phase) => Follow::Stop,
        _ => Follow::Keep,
    }
}

/// `-o json|yaml` of `logs`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobLog {
    pub training_run: String,
    pub job: String,
    pub job_status: String,
    /// `azureml://datastores/{store}/paths/{artifacts}user_logs/std_log.txt`.
    pub log_uri: String,
    pub log: String,
}

/// A job's log location and the client to read it, resolved once per job.
struct LogSource {
    client: edgetrain_azure::blob::BlobClient,
    container: String,
    blob: String,
    uri: String,
}

/// The Azure ML client of a run's workspace, with the credentials its target names.
pub struct Workspaces<'a> {
    pub kube: &'a Client,
    pub factory: &'a dyn MlFactory,
}

impl Workspaces<'_> {
    async fn open(&self, ns: &str, run: &TrainingRun) -> Result<(Arc<dyn MlApi>, String)> {
        let target: EdgeComputeTarget =
            get(self.kube, ns, &run.spec.compute_target_ref.name).await?;
        let spec = &target.spec.azure_ml;
        let secret_name = &spec.credentials_secret_ref.name;
        let secret = crate::secret(self.kube, ns, secret_name).await?;
        let identity = MlIdentity::from_secret(&secret)?;
        if matches!(identity, MlIdentity::Workload { .. }) {
            return Err(Error::WorkloadIdentity {
                namespace: ns.into(),
                name: secret_name.clone(),
            });
        }
        let workspace = Workspace {
            subscription_id: spec.subscription_id.clone(),
            resource_group: spec.resource_group.clone(),
            name: spec.workspace.clone(),
        };
        let ws_id = workspace.id().map_err(Error::azure("workspace id"))?;
        let ml = self
            .factory
            .azure_ml(&spec.arm_endpoint, workspace, &identity)
            .await?;
        Ok((ml, ws_id))
    }
}

/// The job's status and its log source (`None` until the job has an artifacts output).
async fn job_state(
    ml: &dyn MlApi,
    ws_id: &str,
    job: &str,
    source: &mut Option<LogSource>,
) -> Result<JobStatus> {
    let found = ml
        .get_job(job)
        .await
        .map_err(Error::azure(format!("reading job {job}")))?
        .ok_or_else(|| Error::JobGone(job.to_string()))?;
    let (_, view) = job_view(&found, ws_id).ok_or_else(|| Error::JobGone(job.to_string()))?;
    if source.is_none()
        && let Some(uri) = view.outputs.get("artifacts")
    {
        let (store, path) =
            ml::parse_datastore_uri(uri).map_err(Error::azure("the job's artifacts output"))?;
        let (client, container) = ml::open_datastore(ml, ml.http(), &store)
            .await
            .map_err(Error::azure(format!("opening datastore {store}")))?;
        let blob = log_blob(&path);
        *source = Some(LogSource {
            client,
            container,
            uri: format!("azureml://datastores/{store}/paths/{blob}"),
            blob,
        });
    }
    Ok(view.status)
}

/// The log bytes past `offset`; `None` while the job has written no log.
async fn read_past(source: &LogSource, offset: u64) -> Result<Option<bytes::Bytes>> {
    source
        .client
        .read_from(&source.container, &source.blob, offset)
        .await
        .map_err(Error::azure("reading the job log"))
}

fn status_name(s: &JobStatus) -> String {
    format!("{s:?}")
}

/// The run's job name, or the error a run without a job deserves.
fn job_of(ns: &str, name: &str, run: &TrainingRun) -> Result<String> {
    let st = run.status.clone().unwrap_or_default();
    st.job_name.ok_or_else(|| Error::NoJob {
        namespace: ns.into(),
        name: name.into(),
        phase: format!("{:?}", st.phase),
    })
}

fn failed(ns: &str, name: &str, run: &TrainingRun, job: &str) -> Option<Error> {
    let phase = run.status.as_ref().map(|s| s.phase)?;
    matches!(phase, TrainingRunPhase::Failed | TrainingRunPhase::Canceled).then(|| {
        Error::RunFailed {
            namespace: ns.into(),
            name: name.into(),
            phase: format!("{phase:?}"),
            job: job.into(),
        }
    })
}

/// The whole log of the run's current job, once.
pub async fn once(w: &Workspaces<'_>, ns: &str, name: &str) -> Result<(JobLog, Option<Error>)> {
    let run: TrainingRun = get(w.kube, ns, name).await?;
    let job = job_of(ns, name, &run)?;
    let (ml, ws_id) = w.open(ns, &run).await?;
    let mut source = None;
    let status = job_state(&*ml, &ws_id, &job, &mut source).await?;
    let no_log = |job: String| {
        let name = status_name(&status);
        if status.is_terminal() {
            Error::NoLog { job, status: name }
        } else {
            Error::NoLogYet { job, status: name }
        }
    };
    let Some(src) = &source else {
        return Err(no_log(job));
    };
    let Some(log) = read_past(src, 0).await? else {
        return Err(no_log(job));
    };
    let log = String::from_utf8_lossy(&log).into_owned();
    let failure = failed(ns, name, &run, &job);
    Ok((
        JobLog {
            training_run: format!("{ns}/{name}"),
            job,
            job_status: status_name(&status),
            log_uri: src.uri.clone(),
            log,
        },
        failure,
    ))
}

/// Follows the run's job log (and the next attempts') until the run ends, writing new bytes
/// to `out` as they appear. Returns the error a failed run deserves after its log.
pub async fn follow(
    w: &Workspaces<'_>,
    ns: &str,
    name: &str,
    poll: Duration,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Option<Error>> {
    let run: TrainingRun = get(w.kube, ns, name).await?;
    let mut job = job_of(ns, name, &run)?;
    let (ml, ws_id) = w.open(ns, &run).await?;
    let mut source = None;
    let mut offset = 0u64;
    loop {
        let status = job_state(&*ml, &ws_id, &job, &mut source).await?;
        if let Some(src) = &source {
            let new = read_past(src, offset).await?.unwrap_or_default();
            offset += new.len() as u64;
            out.write_all(&new).map_err(Error::Output)?;
            out.flush().map_err(Error::Output)?;
        }
        let run: TrainingRun = get(w.kube, ns, name).await?;
        match next(&job, &status, &run.status.clone().unwrap_or_default()) {
            Follow::Stop => return Ok(failed(ns, name, &run, &job)),
            Follow::Switch(other) => {
                writeln!(out, "--- {name}: next attempt, job {other} ---")
                    .map_err(Error::Output)?;
                job = other;
                source = None;
                offset = 0;
            }
            Follow::Keep => tokio::time::sleep(poll).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(phase: TrainingRunPhase, job: Option<&str>) -> TrainingRunStatus {
        TrainingRunStatus {
            phase,
            job_name: job.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn log_blob_sits_under_the_artifacts_folder() {
        assert_eq!(
            log_blob("azureml/j1/artifacts/"),
            "azureml/j1/artifacts/user_logs/std_log.txt"
        );
        assert_eq!(
            log_blob("azureml/j1/artifacts"),
            "azureml/j1/artifacts/user_logs/std_log.txt"
        );
        assert_eq!(log_blob(""), "user_logs/std_log.txt");
    }

    #[test]
    fn follow_keeps_going_while_the_job_or_the_run_is_active() {
        use TrainingRunPhase::*;
        // The job runs.
        assert_eq!(
            next("j1", &JobStatus::Running, &run(Running, Some("j1"))),
            Follow::Keep
        );
        // The job ended but the operator has not written the run's end yet (or will retry).
        assert_eq!(
            next("j1", &JobStatus::Failed, &run(Running, Some("j1"))),
            Follow::Keep
        );
        // The run was canceled; its job is still being canceled.
        assert_eq!(
            next(
                "j1",
                &JobStatus::CancelRequested,
                &run(Canceled, Some("j1"))
            ),
            Follow::Keep
        );
    }

    #[test]
    fn follow_stops_when_job_and_run_ended_and_switches_to_a_new_attempt() {
        use TrainingRunPhase::*;
        for (job, phase) in [
            (JobStatus::Completed, Succeeded),
            (JobStatus::Failed, Failed),
            (JobStatus::Canceled, Canceled),
        ] {
            assert_eq!(next("j1", &job, &run(phase, Some("j1"))), Follow::Stop);
        }
        assert_eq!(
            next("j1", &JobStatus::Failed, &run(Running, Some("j2"))),
            Follow::Switch("j2".into())
        );
        assert_eq!(
            next("j1", &JobStatus::Failed, &run(Submitted, Some("j2"))),
            Follow::Switch("j2".into())
        );
    }
}
