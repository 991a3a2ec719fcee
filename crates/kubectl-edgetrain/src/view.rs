//! What the commands show, computed from the objects alone (no I/O), so each rule is tested
//! without a cluster.

use std::collections::BTreeMap;

use edgetrain_api::{
    EdgeComputeTarget, ModelRelease, TrainingRun, TrainingRunPhase, conditions,
    model_release::Referrer,
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `True`, `False` or `Unknown` (no Ready condition yet).
    pub ready: String,
    pub reason: String,
    /// TrainingRun phase, EdgeComputeTarget power state; empty for a ModelRelease.
    pub phase: String,
    pub age: String,
    /// The fields a user looks at first for this kind, in a fixed order.
    pub details: BTreeMap<String, String>,
}

fn ready_of(conds: &[Condition]) -> (String, String) {
    conditions::find(conds, conditions::READY).map_or_else(
        || ("Unknown".to_string(), String::new()),
        |c| (c.status.clone(), c.reason.clone()),
    )
}

fn creation(meta: &kube::api::ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

/// kubectl's short age: `45s`, `12m`, `5h`, `3d` (`<unknown>` without a timestamp).
pub fn age(created: Option<Timestamp>, now: Timestamp) -> String {
    let Some(created) = created else {
        return "<unknown>".into();
    };
    let secs = now.duration_since(created).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `sha256:0123456789ab` — enough to tell digests apart in a table.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => d.chars().take(19).collect(),
    }
}

fn put(details: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        details.insert(key.into(), v);
    }
}

pub fn ect_row(o: &EdgeComputeTarget, now: Timestamp) -> StatusRow {
    let st = o.status.clone().unwrap_or_default();
    let (ready, reason) = ready_of(&st.conditions);
    let mut details = BTreeMap::new();
    put(&mut details, "address", st.public_ip.or(st.private_ip));
    put(
        &mut details,
        "compute",
        Some(o.spec.azure_ml.compute_name.clone()),
    );
    put(&mut details, "size", st.vm_size);
    StatusRow {
        kind: "EdgeComputeTarget".into(),
        namespace: o.namespace().unwrap_or_default(),
        name: o.name_any(),
        ready,
        reason,
        phase: st.power_state.map(|p| format!("{p:?}")).unwrap_or_default(),
        age: age(creation(&o.metadata), now),
        details,
    }
}

pub fn tr_row(o: &TrainingRun, now: Timestamp) -> StatusRow {
    let st = o.status.clone().unwrap_or_default();
    let (ready, reason) = ready_of(&st.conditions);
    let mut details = BTreeMap::new();
    put(
        &mut details,
        "target",
        Some(o.spec.compute_target_ref.name.clone()),
    );
    put(&mut details, "job", st.job_name);
    put(&mut details, "attempts", Some(st.attempts.to_string()));
    put(
        &mut details,
        "data",
        st.data_fingerprint.as_deref().map(short_digest),
    );
    StatusRow {
        kind: "TrainingRun".into(),
        namespace: o.namespace().unwrap_or_default(),
        name: o.name_any(),
        ready,
        reason,
        phase: o
            .status
            .as_ref()
            .map(|s| format!("{:?}", s.phase))
            .unwrap_or_default(),
        age: age(creation(&o.metadata), now),
        details,
    }
}

pub fn mr_row(o: &ModelRelease, now: Timestamp) -> StatusRow {
    let st = o.status.clone().unwrap_or_default();
    let (ready, reason) = ready_of(&st.conditions);
    let mut details = BTreeMap::new();
    let version = st.model_version.or_else(|| o.spec.model.version.clone());
    put(
        &mut details,
        "model",
        Some(match version {
            Some(v) => format!("{}:{v}", o.spec.model.name),
            None => o.spec.model.name.clone(),
        }),
    );
    put(
        &mut details,
        "artifact",
        st.artifact_digest.as_deref().map(short_digest),
    );
    put(
        &mut details,
        "image",
        st.image_digest.as_deref().map(short_digest),
    );
    StatusRow {
        kind: "ModelRelease".into(),
        namespace: o.namespace().unwrap_or_default(),
        name: o.name_any(),
        ready,
        reason,
        phase: String::new(),
        age: age(creation(&o.metadata), now),
        details,
    }
}

/// Left-aligned columns separated by three spaces, like `kubectl get`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

pub fn status_table(rows: &[StatusRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.kind.clone(),
                format!("{}/{}", r.namespace, r.name),
                r.ready.clone(),
                r.reason.clone(),
                r.phase.clone(),
                r.age.clone(),
                r.details
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(
        &["KIND", "NAME", "READY", "REASON", "PHASE", "AGE", "DETAILS"],
        &cells,
    )
}

/// The chain from a pushed image back to the data, as both statuses record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub model_release: String,
    pub image_digest: Option<String>,
    pub artifact_digest: Option<String>,
    pub provenance: Vec<Referrer>,
    pub model_name: String,
    pub model_version: Option<String>,
    pub model_id: Option<String>,
    pub training_run: Option<String>,
    pub job_name: Option<String>,
    pub code_digest: Option<String>,
    pub data_fingerprint: Option<String>,
    /// The provenance statements read from the registry (empty when not read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registry_provenance: Vec<RegistryProvenance>,
    /// Every disagreement between the two statuses (and the registry's provenance, when
    /// read); empty when they tell one story.
    pub mismatches: Vec<String>,
}

/// The digest of a pushed reference: status records `host/repository@sha256:…`.
pub fn digest_of(reference: &str) -> &str {
    reference.rsplit_once('@').map_or(reference, |(_, d)| d)
}

/// The digests a release pushed (artifact, then image).
fn pushed_digests(st: &edgetrain_api::ModelReleaseStatus) -> Vec<&str> {
    [&st.artifact_digest, &st.image_digest]
        .into_iter()
        .flatten()
        .map(|r| digest_of(r))
        .collect()
}

/// Builds the lineage of `release` and cross-checks it against its TrainingRun (`run` is
/// `None` when the release names one that could not be found).
pub fn lineage(release: &ModelRelease, run: Option<&TrainingRun>) -> Lineage {
    let st = release.status.clone().unwrap_or_default();
    let mut mismatches = Vec::new();
    let model_name = release.spec.model.name.clone();
    let run_name = release
        .spec
        .training_run_ref
        .as_ref()
        .map(|r| r.name.clone());

    if let (Some(id), Some(version)) = (&st.model_id, &st.model_version) {
        let want = format!("/models/{model_name}/versions/{version}");
        if !id
            .to_ascii_lowercase()
            .ends_with(&want.to_ascii_lowercase())
        {
            mismatches.push(format!(
                "modelId {id} is not model {model_name} version {version}"
            ));
        }
    }
    if let Some(pinned) = &release.spec.model.version
        && st.model_version.as_ref().is_some_and(|v| v != pinned)
    {
        mismatches.push(format!(
            "spec pins model version {pinned} but status records {}",
            st.model_version.as_deref().unwrap_or_default()
        ));
    }
    let pushed = pushed_digests(&st);
    for r in &st.referrers {
        if !pushed.contains(&r.subject.as_str()) {
            mismatches.push(format!(
                "referrer {} ({}) refers to {}, which this release did not push",
                r.digest, r.artifact_type, r.subject
            ));
        }
    }

    let run_status = run.and_then(|r| r.status.clone());
    match (&run_name, run) {
        (Some(name), None) => mismatches.push(format!("TrainingRun {name} not found")),
        (Some(_), Some(r)) => {
            let phase = run_status.as_ref().map(|s| s.phase).unwrap_or_default();
            let released = st.model_id.is_some() || !pushed.is_empty();
            if released && phase != TrainingRunPhase::Succeeded {
                mismatches.push(format!(
                    "a model was released from TrainingRun {} whose phase is {phase:?}, not Succeeded",
                    r.name_any()
                ));
            }
            if released {
                let s = run_status.clone().unwrap_or_default();
                for (field, value) in [
                    ("jobName", &s.job_name),
                    ("codeDigest", &s.code_digest),
                    ("dataFingerprint", &s.data_fingerprint),
                ] {
                    if value.is_none() {
                        mismatches.push(format!(
                            "TrainingRun {} has no {field} although a model was released from it",
                            r.name_any()
                        ));
                    }
                }
            }
        }
        (None, _) => {}
    }
    let s = run_status.unwrap_or_default();
    Lineage {
        model_release: format!(
            "{}/{}",
            release.namespace().unwrap_or_default(),
            release.name_any()
        ),
        image_digest: st.image_digest,
        artifact_digest: st.artifact_digest,
        provenance: st.referrers,
        model_name,
        model_version: st.model_version,
        model_id: st.model_id,
        training_run: run_name,
        job_name: s.job_name,
        code_digest: s.code_digest,
        data_fingerprint: s.data_fingerprint,
        registry_provenance: Vec::new(),
        mismatches,
    }
}

/// What one provenance statement in the registry says (the fields the operator writes into
/// the SLSA predicate's `externalParameters`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryProvenance {
    /// The digest the statement is attached to.
    pub attached_to: String,
    /// The referrer manifest's digest.
    pub referrer: String,
    /// `sha256:…` of every subject the statement names.
    pub subjects: Vec<String>,
    pub model_id: Option<String>,
    pub job_name: Option<String>,
    pub training_run: Option<String>,
    pub code_digest: Option<String>,
    pub data_fingerprint: Option<String>,
}

/// Reads the facts out of an in-toto statement attached to `attached_to`.
pub fn provenance_facts(
    attached_to: &str,
    referrer: &str,
    statement: &Value,
) -> RegistryProvenance {
    let params = &statement["predicate"]["buildDefinition"]["externalParameters"];
    let field = |k: &str| params[k].as_str().map(str::to_string);
    let subjects = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["digest"].as_object())
        .flat_map(|d| d.iter())
        .filter_map(|(alg, hex)| hex.as_str().map(|h| format!("{alg}:{h}")))
        .collect();
    RegistryProvenance {
        attached_to: attached_to.to_string(),
        referrer: referrer.to_string(),
        subjects,
        model_id: field("model"),
        job_name: field("job"),
        training_run: field("trainingRun"),
        code_digest: field("codeDigest"),
        data_fingerprint: field("dataFingerprint"),
    }
}

/// Cross-checks the registry's provenance against the chain read from status: every pushed
/// digest carries a statement, every referrer status records is in the registry, and each
/// statement names both pushed digests and the same model, job, run, code and data.
pub fn check_registry(
    l: &mut Lineage,
    release_status: &edgetrain_api::ModelReleaseStatus,
    found: Vec<RegistryProvenance>,
) {
    let pushed = pushed_digests(release_status);
    for d in &pushed {
        if !found.iter().any(|p| p.attached_to == *d) {
            l.mismatches
                .push(format!("the registry holds no provenance attached to {d}"));
        }
    }
    for r in &release_status.referrers {
        if !found
            .iter()
            .any(|p| p.referrer == r.digest && p.attached_to == r.subject)
        {
            l.mismatches.push(format!(
                "status records referrer {} of {}, which the registry does not list",
                r.digest, r.subject
            ));
        }
    }
    let run = l.training_run.as_ref().map(|n| {
        format!(
            "{}/{n}",
            l.model_release.split('/').next().unwrap_or_default()
        )
    });
    for p in &found {
        for d in &pushed {
            if !p.subjects.iter().any(|s| s == d) {
                l.mismatches.push(format!(
                    "provenance {} does not name {d} as a subject",
                    p.referrer
                ));
            }
        }
        for (field, status, registry) in [
            ("model", &l.model_id, &p.model_id),
            ("job", &l.job_name, &p.job_name),
            ("trainingRun", &run, &p.training_run),
            ("codeDigest", &l.code_digest, &p.code_digest),
            ("dataFingerprint", &l.data_fingerprint, &p.data_fingerprint),
        ] {
            if status.is_some() && status != registry {
                l.mismatches.push(format!(
                    "provenance {} says {field} {}, status says {}",
                    p.referrer,
                    registry.as_deref().unwrap_or("(none)"),
                    status.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    l.registry_provenance = found;
}

pub fn lineage_text(l: &Lineage) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut rows = vec![
        vec!["image".into(), or_dash(&l.image_digest)],
        vec!["artifact".into(), or_dash(&l.artifact_digest)],
    ];
    for r in &l.provenance {
        rows.push(vec![
            "referrer".into(),
            format!("{} {} -> {}", r.artifact_type, r.digest, r.subject),
        ]);
    }
    for p in &l.registry_provenance {
        rows.push(vec![
            "registry".into(),
            format!("provenance {} on {} (checked)", p.referrer, p.attached_to),
        ]);
    }
    rows.extend([
        vec![
            "model".into(),
            format!("{}:{}", l.model_name, or_dash(&l.model_version)),
        ],
        vec!["modelId".into(), or_dash(&l.model_id)],
        vec!["trainingRun".into(), or_dash(&l.training_run)],
        vec!["job".into(), or_dash(&l.job_name)],
        vec!["code".into(), or_dash(&l.code_digest)],
        vec!["data".into(), or_dash(&l.data_fingerprint)],
    ]);
    table(&["STEP", l.model_release.as_str()], &rows)
}

/// The failure `explain-failure` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub resource: String,
    pub phase: Option<String>,
    /// None when nothing is failing.
    pub condition: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub since: Option<String>,
    pub azure_code: Option<String>,
    pub request_id: Option<String>,
    pub hint: Option<String>,
}

/// A condition that says something is wrong: `Stalled=True`, or any other condition (not
/// `Reconciling`) that is `False`.
fn failing(c: &Condition) -> bool {
    match c.type_.as_str() {
        conditions::STALLED => c.status == "True",
        conditions::RECONCILING => false,
        _ => c.status == "False",
    }
}

/// The most recent failing condition; on equal times the most specific one (a sub-condition
/// such as `ComputeAttached` says more than `Ready`, which repeats the summary).
pub fn last_failure(conds: &[Condition]) -> Option<&Condition> {
    let rank = |c: &Condition| match c.type_.as_str() {
        conditions::READY => 0,
        conditions::STALLED => 1,
        _ => 2,
    };
    conds
        .iter()
        .filter(|c| failing(c))
        .max_by_key(|c| (c.last_transition_time.0, rank(c)))
}

/// The Azure error code in a condition message: the controllers write `HTTP 409: Code: text`
/// or `Code: text` for Azure failures.
pub fn azure_code(message: &str) -> Option<String> {
    let rest = match message.strip_prefix("HTTP ") {
        Some(r) => r.split_once(": ").map(|(_, r)| r)?,
        None => message,
    };
    let (code, _) = rest.split_once(": ")?;
    let looks_like_code = code.len() >= 3
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code.chars().all(|c| c.is_ascii_alphanumeric());
    looks_like_code.then(|| code.to_string())
}

/// A request or correlation id quoted in a message (`x-ms-request-id: …`, `request id …`).
pub fn request_id(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    for key in [
        "x-ms-correlation-request-id",
        "x-ms-request-id",
        "correlation id",
        "correlationid",
        "request id",
        "requestid",
    ] {
        if let Some(at) = lower.find(key) {
            let tail = &message[at + key.len()..];
            let id: String = tail
                .trim_start_matches([':', '=', ' ', '"'])
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
                .collect();
            if id.len() >= 8 {
                return Some(id);
            }
        }
    }
    None
}

/// What to do about each reason the controllers write into conditions
/// (`crates/controller/src`: `Progress::stalled`, `Reason::new`, `runtime/classify.rs`).
pub const HINTS: &[(&str, &str)] = &[
    (
        "SecretNotFound",
        "Create the Secret the spec names (same namespace), or fix the name in the spec.",
    ),
    (
        "SecretInvalid",
        "The Secret lacks a key or holds a bad value: check tenantId/clientId/clientSecret (or accountName/accountKey) in it.",
    ),
    (
        "InvalidSpec",
        "The spec cannot be acted on: read the message, fix the field, and apply again.",
    ),
    (
        "SkuNotAvailable",
        "The VM size is not offered on this Stack Hub stamp: pick a size from `az vm list-sizes` there.",
    ),
    (
        "CredentialsRejected",
        "Azure refused the service principal: check the client secret (expired? rotated?) and the tenant in the Secret.",
    ),
    (
        "AuthorizationFailed",
        "The service principal lacks a role: grant it Contributor (or the needed role) on the resource group or workspace.",
    ),
    (
        "EndpointUnreachable",
        "No answer from the endpoint: check the URL in the spec, DNS and the network path (proxies, NetworkPolicy egress).",
    ),
    (
        "TLSError",
        "TLS to the endpoint failed: Stack Hub's CA must be trusted by the operator (chart value for extra CA certificates).",
    ),
    (
        "InvalidEndpoint",
        "An endpoint in the spec is malformed or not https: fix the URL.",
    ),
    (
        "UntrustedEndpoint",
        "The operator's endpoint policy refuses this endpoint: use an allowed host or widen the policy in the chart.",
    ),
    (
        "AzureThrottled",
        "Azure is throttling requests (429); the operator backs off and retries. Lower concurrency if it persists.",
    ),
    (
        "AzureServerError",
        "Azure answered with a server error; the operator retries. Check the Azure status page if it persists.",
    ),
    (
        "AzureConflict",
        "Another operation is running on the resource; the operator retries when it finishes.",
    ),
    (
        "UnexpectedResponse",
        "Azure answered with something the operator could not read; retried. Report it with the message if it persists.",
    ),
    (
        "AzureOperationFailed",
        "An Azure long-running operation failed: read the Azure code in the message and the activity log.",
    ),
    (
        "AzureRequestRejected",
        "Azure rejected the request: read the Azure code and message, then fix the spec.",
    ),
    (
        "BlobRequestRejected",
        "Blob storage rejected the request: check the container, prefix and the storage credentials.",
    ),
    (
        "QuotaExceeded",
        "A quota is exhausted: free capacity or ask the Stack Hub operator for a higher quota.",
    ),
    (
        "OperationNotAllowed",
        "Azure does not allow this operation now (often a quota): read the message.",
    ),
    (
        "RequestDisallowedByPolicy",
        "An Azure Policy denies the request: ask for an exemption or change the spec to comply.",
    ),
    (
        "ResourceGroupNotFound",
        "The resource group does not exist: create it; the operator does not.",
    ),
    (
        "SubscriptionNotFound",
        "The subscription id is wrong or not visible to the service principal.",
    ),
    (
        "MissingSubscriptionRegistration",
        "Register the resource provider in the subscription (`az provider register`).",
    ),
    (
        "ObservedDrift",
        "The resource is in observe mode and Azure differs from the spec: change Azure or the spec, or switch the reconcile-policy annotation to manage.",
    ),
    (
        "VMNotFound",
        "The VM to observe does not exist: create it, or let the operator manage the resource.",
    ),
    (
        "ComputeNotFound",
        "The Azure ML compute to observe does not exist: attach it, or let the operator manage the resource.",
    ),
    (
        "AttachFailed",
        "Azure ML could not attach the VM: check SSH reachability from Azure ML to the VM address and the allowed SSH sources.",
    ),
    (
        "NotOwned",
        "Azure resources with the target's names exist but are not tagged as this target's: annotate the target as the message says to adopt them, or change the names.",
    ),
    (
        "ProvisioningFailed",
        "Stack Hub could not provision the VM: read the Azure code in the message; fix the spec (size, image, network) and apply again.",
    ),
    (
        "NoPublicAddress",
        "azureML.reachVia is Public but the VM has no public IP: set vm.publicIP, or reachVia Private with a route from Azure ML.",
    ),
    (
        "WorkspaceNotFound",
        "The Azure ML workspace in spec.azureML does not exist or the principal cannot see it: check subscription, resource group and name.",
    ),
    (
        "ComputeTargetNotReady",
        "The run waits for its EdgeComputeTarget: `kubectl edgetrain explain-failure ect/NAME` shows why the target is not Ready.",
    ),
    (
        "ComputeTargetNotFound",
        "The EdgeComputeTarget the spec names does not exist in this namespace: create it or fix computeTargetRef.",
    ),
    (
        "NoInputData",
        "No blobs under the data container and prefix: upload the data set, or fix spec.data.container/prefix.",
    ),
    (
        "BackoffLimitExceeded",
        "Every attempt's job failed: read the log tail in the message or `kubectl edgetrain logs tr/NAME`, fix the code or data, and create a new run.",
    ),
    (
        "DeadlineExceeded",
        "The run took longer than activeDeadlineSeconds and was canceled: raise the deadline or make the job faster.",
    ),
    (
        "JobCanceled",
        "Someone canceled the job in Azure ML: create a new run to train again.",
    ),
    (
        "DataExfiltration",
        "The job wrote a copy of an input blob to its outputs: training data must not leave the premises. Fix the script; no model is released from this run.",
    ),
    (
        "OutputPolicyViolation",
        "The job's outputs break spec.outputPolicy (size or allowed files): fix the script or the policy.",
    ),
    (
        "TrainingRunNotSucceeded",
        "The release waits for its TrainingRun to succeed: see `kubectl edgetrain explain-failure tr/NAME`.",
    ),
    (
        "RunNotReleasable",
        "The TrainingRun ended without a releasable model (failed, canceled or blocked): release from another run.",
    ),
    (
        "OutputNotFound",
        "The run succeeded but has no such output: check the release's spec.model.outputName against the run's outputs.",
    ),
    (
        "VersionConflict",
        "That model version already exists with other content: pick another version, or leave the version unset.",
    ),
    (
        "ModelNotFound",
        "The existing model version the release names does not exist in the workspace: fix spec.existingModel.",
    ),
    (
        "UnsupportedOutputUri",
        "The model's URI is not an azureml://datastores/.../paths/... URI the operator can read.",
    ),
    (
        "KubernetesError",
        "The Kubernetes API refused a request: check the operator's RBAC and API server health.",
    ),
    (
        "DeletionInProgress",
        "Azure resources are still being removed; the finalizer is released when they are gone.",
    ),
    (
        "ClientSetupFailed",
        "The operator could not build an Azure client: check its logs.",
    ),
    (
        "InternalError",
        "An operator bug: check its logs and report it.",
    ),
    (
        "ReconcileError",
        "Unclassified failure: read the message and the operator's logs.",
    ),
];

pub fn hint(reason: &str) -> Option<&'static str> {
    HINTS.iter().find(|(r, _)| *r == reason).map(|(_, h)| *h)
}

pub fn explain(resource: String, phase: Option<String>, conds: &[Condition]) -> Explanation {
    let Some(c) = last_failure(conds) else {
        return Explanation {
            resource,
            phase,
            condition: None,
            reason: None,
            message: None,
            since: None,
            azure_code: None,
            request_id: None,
            hint: None,
        };
    };
    Explanation {
        resource,
        phase,
        condition: Some(c.type_.clone()),
        reason: Some(c.reason.clone()),
        message: Some(c.message.clone()),
        since: Some(c.last_transition_time.0.to_string()),
        azure_code: azure_code(&c.message),
        request_id: request_id(&c.message),
        hint: Some(
            hint(&c.reason)
                .unwrap_or("No specific advice for this reason: read the message and `kubectl describe` events.")
                .to_string(),
        ),
    }
}

pub fn explanation_text(e: &Explanation) -> String {
    let Some(condition) = &e.condition else {
        return format!("{}: no failing condition\n", e.resource);
    };
    let mut rows = vec![vec!["resource".to_string(), e.resource.clone()]];
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            rows.push(vec![k.to_string(), v.clone()]);
        }
    };
    add("phase", &e.phase);
    add("condition", &Some(condition.clone()));
    add("reason", &e.reason);
    add("since", &e.since);
    add("message", &e.message);
    add("azureCode", &e.azure_code);
    add("requestId", &e.request_id);
    add("what to do", &e.hint);
    rows.iter()
        .map(|r| format!("{:<11} {}\n", format!("{}:", r[0]), r[1]))
        .collect()
}

#[cfg(test)]
mod tests;
