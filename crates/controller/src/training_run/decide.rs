//! The decision: spec, status and what was observed in; the next step, actions and status
//! out. No I/O, no clock (`now` is an input).
//!
//! Expensive observations (the input fingerprint, the code/environment assets, the output
//! verification, a failed job's log) are read only when the decision asks for them:
//! [`decide`] returns [`Step::Need`], the caller fetches that one thing into [`Observed`] and
//! calls again. Everything else comes from caches: the EdgeComputeTarget from its store, the
//! job from the workspace's batched job listing.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use edgetrain_api::{
    TrainingRunPhase, TrainingRunSpec, TrainingRunStatus,
    conditions::{Progress, apply_progress},
    training_run::OutputPolicy,
};
use edgetrain_azure::ml::JobStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::desired;

/// The EdgeComputeTarget as the run sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// No EdgeComputeTarget of that name in the namespace.
    Missing,
    /// Exists but is not Ready for its generation (provisioning, idle, starting, failed).
    NotReady {
        reason: String,
        message: String,
    },
    Ready(ReadyTarget),
}

/// What a job on a Ready target needs from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadyTarget {
    /// ARM id of the Azure ML compute.
    pub compute_id: String,
    /// The address storage sees the VM connect from (the data SAS's `sip`).
    pub vm_address: String,
}

/// One job as the workspace's listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub status: JobStatus,
    pub studio_url: Option<String>,
    /// Output name → URI (includes `artifacts`: `./outputs` and the logs).
    pub outputs: BTreeMap<String, String>,
}

impl JobView {
    /// Running, queued or starting: a cancel is still needed to stop it.
    fn active(&self) -> bool {
        !self.status.is_terminal()
    }
}

/// One listing of a workspace's jobs (every page), shared by all its runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    pub jobs: BTreeMap<String, JobView>,
}

/// The input fingerprint, as recorded in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFingerprint {
    pub sha256: String,
    pub blob_count: i64,
    pub total_bytes: i64,
    pub unverifiable: i64,
}

/// The code and environment in Azure ML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    pub code_digest: String,
    pub code_id: String,
    pub environment_id: String,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// `{output name}/{path inside the output}`.
    pub path: String,
    pub size: u64,
    pub md5: String,
}

/// What a Completed job left behind, read before it may count as Succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub files: Vec<OutputFile>,
    /// An output file whose MD5 equals an input blob's: (output path, input blob name).
    pub copied_input: Option<(String, String)>,
    /// The job's MLflow run's latest metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// What one reconcile saw.
#[derive(Debug, Clone)]
pub struct Observed {
    pub now: DateTime<Utc>,
    pub target: Target,
    /// The workspace's latest job listing; `None` before the first one.
    pub jobs: Option<Arc<Snapshot>>,
    pub fingerprint: Option<DataFingerprint>,
    pub assets: Option<Assets>,
    pub verification: Option<Verification>,
    /// The tail of a failed job's log.
    pub failure_log: Option<String>,
}

/// Something the decision needs read (or, for assets, made idempotently) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// List the input blobs into a [`DataFingerprint`].
    Fingerprint,
    /// Upload the code (content-addressed) and find or create the environment.
    Assets,
    /// List the job's outputs, look for copied inputs, read its MLflow metrics.
    Verification {
        job: String,
        outputs: BTreeMap<String, String>,
    },
    /// The tail of the job's log (from its `artifacts` output).
    FailureLog {
        job: String,
        artifacts: Option<String>,
    },
}

/// An Azure or Kubernetes write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// PUT the job of `attempt` on `target` (a PUT on an existing name only updates tags).
    Submit {
        job: String,
        attempt: i32,
        target: ReadyTarget,
    },
    /// Start cancelling the job (a long-running operation: started, never awaited).
    Cancel { job: String },
    /// `ttlSecondsAfterFinished` has passed: delete the TrainingRun.
    Delete,
}

/// A Kubernetes Event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The outcome of a reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: TrainingRunStatus,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    /// Look again after this long (TTL or deadline moment, a listing still to come); `None`:
    /// the next job listing or a watch event brings the run back.
    pub requeue: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Need(Need),
    Plan(Box<Plan>),
}

/// Identity of the run.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
}

pub fn time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).expect("valid timestamp"))
}

/// Whether a listing begun at `taken_at` began after the submission recorded as `submitted`
/// (whole seconds, truncated: the PUT may have returned up to a second later than recorded).
/// Only such a listing proves a job missing.
fn listed_after(taken_at: DateTime<Utc>, submitted: Option<DateTime<Utc>>) -> bool {
    submitted.is_none_or(|t| taken_at >= t + chrono::Duration::seconds(1))
}

pub fn to_utc(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default()
}

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Phase of a job that has not ended.
fn phase_of(status: &JobStatus) -> TrainingRunPhase {
    match status {
        JobStatus::NotStarted => TrainingRunPhase::Submitted,
        JobStatus::Starting
        | JobStatus::Provisioning
        | JobStatus::Preparing
        | JobStatus::Queued => TrainingRunPhase::Queued,
        _ => TrainingRunPhase::Running,
    }
}

fn is_terminal(p: TrainingRunPhase) -> bool {
    matches!(
        p,
        TrainingRunPhase::Succeeded | TrainingRunPhase::Failed | TrainingRunPhase::Canceled
    )
}

/// Matches `path` against a glob: `*` and `?` within one segment, `**` across any number of
/// segments (pure).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn segment(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => segment(&p[1..], s) || (!s.is_empty() && segment(p, &s[1..])),
            (Some(b'?'), Some(_)) => segment(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => segment(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn segments(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => segments(&p[1..], s) || (!s.is_empty() && segments(p, &s[1..])),
            (Some(ps), Some(ss)) => {
                segment(ps.as_bytes(), ss.as_bytes()) && segments(&p[1..], &s[1..])
            }
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    segments(&p, &s)
}

/// The first way the outputs break the policy, as a message (pure).
pub fn policy_violation(policy: &OutputPolicy, files: &[OutputFile]) -> Option<String> {
    if let Some(max) = policy.max_total_bytes {
        let total: u64 = files.iter().map(|f| f.size).sum();
        if total > u64::try_from(max).unwrap_or(0) {
            return Some(format!(
                "outputs hold {total} bytes, more than outputPolicy.maxTotalBytes {max}"
            ));
        }
    }
    if !policy.allowed_files.is_empty()
        && let Some(f) = files
            .iter()
            .find(|f| !policy.allowed_files.iter().any(|p| glob_match(p, &f.path)))
    {
        return Some(format!(
            "output file {} matches none of outputPolicy.allowedFiles",
            f.path
        ));
    }
    None
}

/// The last lines of a log, for a condition message (bounded: conditions are small).
pub fn log_tail(log: &str, max_chars: usize) -> String {
    let trimmed = log.trim_end();
    let start = trimmed
        .char_indices()
        .rev()
        .nth(max_chars.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    trimmed[start..].to_string()
}

const LOG_TAIL_CHARS: usize = 1024;

/// Builds the plan's status and events from where the run ends up.
struct Outcome<'a> {
    before: &'a TrainingRunStatus,
    status: TrainingRunStatus,
    actions: Vec<Action>,
    events: Vec<Event>,
    requeue: Option<Duration>,
}

impl<'a> Outcome<'a> {
    fn new(before: &'a TrainingRunStatus) -> Self {
        Self {
            before,
            status: before.clone(),
            actions: Vec::new(),
            events: Vec::new(),
            requeue: None,
        }
    }

    fn event(&mut self, warning: bool, reason: &str, message: impl Into<String>) {
        self.events.push(Event {
            warning,
            reason: reason.into(),
            message: message.into(),
        });
    }

    fn requeue_within(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    /// Sets phase and conditions; a phase change is an Event (Warning for failures).
    fn finish(mut self, meta: &Meta<'_>, now: DateTime<Utc>, progress: Progress) -> Step {
        let now_ts = k8s_openapi::jiff::Timestamp::from_second(now.timestamp()).expect("valid");
        apply_progress(
            &mut self.status.conditions,
            &progress,
            meta.generation,
            now_ts,
        );
        self.status.observed_generation = meta.generation;
        if self.status.phase != self.before.phase {
            let (warning, reason, message) = match &progress {
                Progress::Ready { reason, message } => (false, reason, message),
                Progress::InProgress { reason, message } => (false, reason, message),
                Progress::Stalled { reason, message } => (
                    matches!(
                        self.status.phase,
                        TrainingRunPhase::Failed | TrainingRunPhase::Canceled
                    ),
                    reason,
                    message,
                ),
            };
            let msg = format!("{:?}: {message}", self.status.phase);
            let reason = reason.clone();
            self.event(warning, &reason, msg);
        }
        Step::Plan(Box::new(Plan {
            status: self.status,
            actions: self.actions,
            events: self.events,
            requeue: self.requeue,
        }))
    }
}

/// The current attempt's job in the listing.
fn current_job<'o>(status: &TrainingRunStatus, obs: &'o Observed) -> Option<&'o JobView> {
    let name = status.job_name.as_deref()?;
    obs.jobs.as_ref()?.jobs.get(name)
}

/// Decides the run's next step.
pub fn decide(
    spec: &TrainingRunSpec,
    meta: &Meta<'_>,
    before: &TrainingRunStatus,
    obs: &Observed,
) -> Step {
    let now = obs.now;
    let mut o = Outcome::new(before);
    let job = current_job(before, obs).cloned();
    let job_name = before.job_name.clone();

    // Finished runs: nothing may keep running, and the TTL deletes them on the dot.
    if is_terminal(before.phase) {
        if let (Some(j), Some(name)) = (&job, &job_name)
            && j.active()
            && j.status != JobStatus::CancelRequested
        {
            o.actions.push(Action::Cancel { job: name.clone() });
        }
        if let (Some(ttl), Some(done)) = (spec.ttl_seconds_after_finished, &before.completion_time)
        {
            let at = to_utc(done) + chrono::Duration::seconds(i64::from(ttl));
            if now >= at {
                o.actions.push(Action::Delete);
            } else {
                o.requeue_within(until(now, at));
            }
        }
        let progress = settled_progress(before);
        return o.finish(meta, now, progress);
    }

    // The deadline ends the run whatever the job is doing.
    let deadline = desired::deadline(spec, before.start_time.as_ref().map(to_utc));
    if let Some(d) = deadline {
        if now >= d {
            if let (Some(j), Some(name)) = (&job, &job_name)
                && j.active()
                && j.status != JobStatus::CancelRequested
            {
                o.actions.push(Action::Cancel { job: name.clone() });
            }
            o.status.phase = TrainingRunPhase::Failed;
            o.status.completion_time = Some(time(now));
            let msg = format!(
                "the run exceeded activeDeadlineSeconds ({}s)",
                spec.active_deadline_seconds.unwrap_or_default()
            );
            if let Some(ttl) = spec.ttl_seconds_after_finished {
                o.requeue_within(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
            }
            return o.finish(meta, now, Progress::stalled("DeadlineExceeded", msg));
        }
        o.requeue_within(until(now, d));
    }

    // The current attempt's job, while it has not been accounted for.
    if let Some(name) = &job_name {
        match &job {
            None => {
                if spec.suspend {
                    // Never seen: nothing to cancel yet; keep looking until it shows or the
                    // listing proves it absent.
                    o.status.phase = TrainingRunPhase::Pending;
                    return o.finish(meta, now, suspended_progress(Some(name)));
                }
                let submitted = before.submit_time.as_ref().map(to_utc);
                let listed_after = obs
                    .jobs
                    .as_ref()
                    .is_some_and(|s| listed_after(s.taken_at, submitted));
                if listed_after && let Target::Ready(t) = &obs.target {
                    // Listed after the submission and absent: the PUT did not create it (or it
                    // was deleted in Azure). The same name again: a PUT never makes a second
                    // job.
                    o.actions.push(Action::Submit {
                        job: name.clone(),
                        attempt: before.attempts,
                        target: t.clone(),
                    });
                }
                let progress = Progress::in_progress(
                    "JobSubmitted",
                    format!("job {name} submitted; waiting for the workspace's job listing"),
                );
                return o.finish(meta, now, progress);
            }
            Some(j) if j.active() => {
                o.status.studio_url = j.studio_url.clone().or(o.status.studio_url);
                if spec.suspend {
                    if j.status != JobStatus::CancelRequested {
                        o.actions.push(Action::Cancel { job: name.clone() });
                    }
                    o.status.phase = TrainingRunPhase::Pending;
                    return o.finish(meta, now, suspended_progress(Some(name)));
                }
                o.status.phase = phase_of(&j.status);
                let (reason, what) = match o.status.phase {
                    TrainingRunPhase::Submitted => ("JobSubmitted", "submitted"),
                    TrainingRunPhase::Queued => ("JobQueued", "queued"),
                    _ => ("JobRunning", "running"),
                };
                let progress = Progress::in_progress(
                    reason,
                    format!("job {name} is {what} (Azure ML status {:?})", j.status),
                );
                return o.finish(meta, now, progress);
            }
            Some(j) => match j.status {
                JobStatus::Completed => {
                    let Some(v) = &obs.verification else {
                        return Step::Need(Need::Verification {
                            job: name.clone(),
                            outputs: j.outputs.clone(),
                        });
                    };
                    return verified(spec, meta, o, name, j, v, now);
                }
                JobStatus::Failed => {
                    let Some(log) = &obs.failure_log else {
                        return Step::Need(Need::FailureLog {
                            job: name.clone(),
                            artifacts: j.outputs.get("artifacts").cloned(),
                        });
                    };
                    let tail = log_tail(log, LOG_TAIL_CHARS);
                    o.status.failed_attempts += 1;
                    o.status.studio_url = j.studio_url.clone().or(o.status.studio_url);
                    if o.status.failed_attempts > spec.backoff_limit {
                        o.status.phase = TrainingRunPhase::Failed;
                        o.status.completion_time = Some(time(now));
                        if let Some(ttl) = spec.ttl_seconds_after_finished {
                            o.requeue_within(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
                        }
                        let msg = format!(
                            "job {name} failed; {} of {} attempts failed (backoffLimit {}). Log tail:\n{tail}",
                            o.status.failed_attempts,
                            spec.backoff_limit + 1,
                            spec.backoff_limit
                        );
                        return o.finish(meta, now, Progress::stalled("BackoffLimitExceeded", msg));
                    }
                    o.event(
                        true,
                        "AttemptFailed",
                        format!(
                            "job {name} (attempt {}) failed; submitting the next attempt. Log tail:\n{tail}",
                            before.attempts
                        ),
                    );
                    o.status.job_name = None;
                    o.status.phase = TrainingRunPhase::Pending;
                }
                _ => {
                    // Canceled: by us for `suspend` (the attempt does not count), or by someone
                    // in Azure ML (the run ends Canceled).
                    if spec.suspend || before.phase == TrainingRunPhase::Pending {
                        o.status.job_name = None;
                        o.status.phase = TrainingRunPhase::Pending;
                    } else {
                        o.status.phase = TrainingRunPhase::Canceled;
                        o.status.completion_time = Some(time(now));
                        let msg = format!("job {name} was canceled in Azure ML");
                        return o.finish(meta, now, Progress::stalled("JobCanceled", msg));
                    }
                }
            },
        }
    }

    // No job in flight: the first attempt, or the next one.
    if spec.suspend {
        o.status.phase = TrainingRunPhase::Pending;
        return o.finish(meta, now, suspended_progress(None));
    }
    let target = match &obs.target {
        Target::Missing => {
            o.status.phase = TrainingRunPhase::Pending;
            let msg = format!(
                "EdgeComputeTarget {} does not exist in namespace {}",
                spec.compute_target_ref.name, meta.namespace
            );
            return o.finish(meta, now, Progress::stalled("ComputeTargetNotFound", msg));
        }
        Target::NotReady { reason, message } => {
            o.status.phase = TrainingRunPhase::Pending;
            let msg = format!(
                "EdgeComputeTarget {} is not Ready ({reason}: {message})",
                spec.compute_target_ref.name
            );
            return o.finish(
                meta,
                now,
                Progress::in_progress("ComputeTargetNotReady", msg),
            );
        }
        Target::Ready(t) => t.clone(),
    };
    if before.data_fingerprint.is_none() {
        let Some(fp) = &obs.fingerprint else {
            return Step::Need(Need::Fingerprint);
        };
        o.status.data_fingerprint = Some(fp.sha256.clone());
        o.status.data_blob_count = Some(fp.blob_count);
        o.status.data_total_bytes = Some(fp.total_bytes);
        o.status.data_unverifiable_blobs = Some(fp.unverifiable);
        if fp.blob_count == 0 {
            o.status.phase = TrainingRunPhase::Pending;
            let msg = format!(
                "no blobs under {}/{} (prefix {:?}): nothing to train on",
                spec.data.endpoint, spec.data.container, spec.data.prefix
            );
            // Not recorded: the next look lists again (data may still be arriving).
            o.status.data_fingerprint = None;
            return o.finish(meta, now, Progress::stalled("NoInputData", msg));
        }
    }
    if before.code_id.is_none() || before.environment_id.is_none() {
        let Some(a) = &obs.assets else {
            return Step::Need(Need::Assets);
        };
        o.status.code_digest = Some(a.code_digest.clone());
        o.status.code_id = Some(a.code_id.clone());
        o.status.environment_id = Some(a.environment_id.clone());
    }
    let attempt = o.status.attempts + 1;
    let name = desired::job_name(meta.namespace, meta.name, meta.uid, attempt);
    let existing = obs.jobs.as_ref().and_then(|s| s.jobs.get(&name));
    if existing.is_none() {
        o.actions.push(Action::Submit {
            job: name.clone(),
            attempt,
            target,
        });
    }
    o.status.attempts = attempt;
    o.status.job_name = Some(name.clone());
    o.status.submit_time = Some(time(now));
    o.status.start_time = o.status.start_time.or_else(|| Some(time(now)));
    o.status.phase = existing.map_or(TrainingRunPhase::Submitted, |j| {
        if j.active() {
            phase_of(&j.status)
        } else {
            TrainingRunPhase::Running
        }
    });
    if deadline.is_none()
        && let Some(secs) = spec.active_deadline_seconds
    {
        o.requeue_within(Duration::from_secs(u64::try_from(secs).unwrap_or(0)));
    }
    let verb = if existing.is_some() {
        "adopted"
    } else {
        "submitted"
    };
    let progress = Progress::in_progress(
        "JobSubmitted",
        format!("job {name} (attempt {attempt}) {verb}"),
    );
    o.finish(meta, now, progress)
}

fn suspended_progress(cancelling: Option<&str>) -> Progress {
    let msg = match cancelling {
        Some(job) => format!("spec.suspend is true; job {job} is being cancelled"),
        None => "spec.suspend is true; no job runs until it is false".to_string(),
    };
    Progress::in_progress("Suspended", msg)
}

/// A finished run keeps the conditions it finished with.
fn settled_progress(status: &TrainingRunStatus) -> Progress {
    let ready =
        edgetrain_api::conditions::find(&status.conditions, edgetrain_api::conditions::READY);
    let (reason, message) = ready
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_else(|| (format!("{:?}", status.phase), String::new()));
    if status.phase == TrainingRunPhase::Succeeded {
        Progress::ready(reason, message)
    } else {
        Progress::stalled(reason, message)
    }
}

/// A Completed job: Succeeded only when no input was copied out and the policy holds.
fn verified(
    spec: &TrainingRunSpec,
    meta: &Meta<'_>,
    mut o: Outcome<'_>,
    name: &str,
    job: &JobView,
    v: &Verification,
    now: DateTime<Utc>,
) -> Step {
    o.status.completion_time = Some(time(now));
    o.status.studio_url = job.studio_url.clone().or(o.status.studio_url);
    o.status.outputs = job.outputs.clone();
    if let Some(ttl) = spec.ttl_seconds_after_finished {
        o.requeue_within(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
    }
    if let Some((output, input)) = &v.copied_input {
        o.status.phase = TrainingRunPhase::Failed;
        let msg = format!(
            "job {name} wrote {output}, whose MD5 equals input blob {input}: training data would leave the premises; no model may be released from this run"
        );
        return o.finish(meta, now, Progress::stalled("DataExfiltration", msg));
    }
    if let Some(policy) = &spec.output_policy
        && let Some(why) = policy_violation(policy, &v.files)
    {
        o.status.phase = TrainingRunPhase::Failed;
        let msg = format!("job {name}: {why}");
        return o.finish(meta, now, Progress::stalled("OutputPolicyViolation", msg));
    }
    o.status.metrics = v.metrics.clone();
    o.status.phase = TrainingRunPhase::Succeeded;
    let shown: Vec<String> = v.metrics.iter().map(|(k, m)| format!("{k}={m}")).collect();
    let msg = format!(
        "job {name} completed; {} output files verified; metrics: {}",
        v.files.len(),
        if shown.is_empty() {
            "none".into()
        } else {
            shown.join(", ")
        }
    );
    o.finish(meta, now, Progress::ready("Succeeded", msg))
}

/// What deleting a TrainingRun must do first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// The job is still active: cancel it (started, not awaited) and look again.
    Cancel { job: String },
    /// A cancel is under way, or the job is not listed yet: look again.
    Wait,
    /// Nothing runs any more: the finalizer may go.
    Done,
}

/// Deletion: an active job is cancelled first (pure). `jobs` is `None` when the workspace
/// cannot be listed any more (its target is gone): nothing can be cancelled then.
pub fn decide_cleanup(status: &TrainingRunStatus, jobs: Option<&Snapshot>) -> Cleanup {
    let (Some(name), Some(jobs)) = (status.job_name.as_deref(), jobs) else {
        return Cleanup::Done;
    };
    match jobs.jobs.get(name) {
        Some(j) if j.status == JobStatus::CancelRequested => Cleanup::Wait,
        Some(j) if j.active() => Cleanup::Cancel {
            job: name.to_string(),
        },
        Some(_) => Cleanup::Done,
        None => {
            let submitted = status.submit_time.as_ref().map(to_utc);
            if !listed_after(jobs.taken_at, submitted) {
                Cleanup::Wait
            } else {
                Cleanup::Done
            }
        }
    }
}
