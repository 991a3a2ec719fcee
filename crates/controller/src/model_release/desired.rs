//! Pure: what a ModelRelease should register and push — the lineage read from its TrainingRun,
//! the Azure ML model version body, the version to use and the OCI tags.

use std::collections::BTreeMap;

use edgetrain_api::{
    ModelReleaseSpec, TrainingRun, TrainingRunPhase,
    model_release::{ModelSpec, ModelType},
};
use edgetrain_azure::ml::ModelVersion;
use kube::ResourceExt;

/// Failure reasons of a TrainingRun that forbid releasing its output (DESIGN.md §1: data
/// sovereignty checks on the job's outputs).
pub const NOT_RELEASABLE: [&str; 2] = ["DataExfiltration", "OutputPolicyViolation"];

/// Prefix of every property and tag the operator writes on a model version.
pub const PREFIX: &str = "edgetrain.dev/";

/// Where a release's TrainingRun stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Not found, or not (yet) Succeeded: wait.
    Waiting(String),
    /// Ended in a way no model may be released from: never retried.
    NotReleasable(String),
    /// Succeeded, but without the output or lineage a release needs.
    Incomplete(String),
    Releasable(Lineage),
}

/// What a model version records about where it came from. Immutable facts: they go into
/// the version's `properties`, which Azure ML never lets change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    pub run_namespace: String,
    pub run_name: String,
    pub run_uid: String,
    pub job_name: String,
    pub output_uri: String,
    pub code_digest: Option<String>,
    pub data_fingerprint: Option<String>,
    pub data_blob_count: Option<i64>,
    /// The model's time (Unix seconds): the run's completion. Every timestamp in the pushed
    /// artifact and image is this one, never the clock, so the same version always gives the
    /// same digests — also when released again later as an `existingModel`, which reads it
    /// back from the version's properties.
    pub model_time: i64,
}

impl Lineage {
    /// The lineage as `edgetrain.dev/…` entries (properties and tags of the model version).
    pub fn entries(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(format!("{PREFIX}{k}"), v);
            }
        };
        put(
            "training-run",
            Some(format!("{}/{}", self.run_namespace, self.run_name)),
        );
        put("training-run-uid", Some(self.run_uid.clone()));
        put("job-name", Some(self.job_name.clone()));
        put("code-digest", self.code_digest.clone());
        put("data-fingerprint", self.data_fingerprint.clone());
        put(
            "data-blob-count",
            self.data_blob_count.map(|n| n.to_string()),
        );
        m
    }
}

/// The version property holding [`Lineage::model_time`] (a property, not a tag: it is no label
/// for people, and properties are immutable).
pub const MODEL_TIME: &str = "model-time";

/// The digests a release is about to push (deterministic, known before any upload).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlannedDigests {
    pub artifact: String,
    pub image: Option<String>,
}

/// Reads the TrainingRun a release names. `run` is `None` when it does not exist.
pub fn run_state(run: Option<&TrainingRun>, output_name: &str) -> RunState {
    let Some(run) = run else {
        return RunState::Waiting("the TrainingRun does not exist".into());
    };
    let status = run.status.clone().unwrap_or_default();
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| NOT_RELEASABLE.contains(&c.reason.as_str()))
    {
        return RunState::NotReleasable(format!(
            "TrainingRun {} ended {}: {}",
            run.name_any(),
            c.reason,
            c.message
        ));
    }
    if status.phase != TrainingRunPhase::Succeeded {
        return RunState::Waiting(format!(
            "TrainingRun {} is {:?}",
            run.name_any(),
            status.phase
        ));
    }
    let Some(job_name) = status.job_name.clone() else {
        return RunState::Incomplete(format!("TrainingRun {} has no job name", run.name_any()));
    };
    let Some(output_uri) = status.outputs.get(output_name).cloned() else {
        return RunState::Incomplete(format!(
            "TrainingRun {} has no output {output_name:?} (outputs: {:?})",
            run.name_any(),
            status.outputs.keys().collect::<Vec<_>>()
        ));
    };
    RunState::Releasable(Lineage {
        run_namespace: run.namespace().unwrap_or_default(),
        run_name: run.name_any(),
        run_uid: run.uid().unwrap_or_default(),
        job_name,
        output_uri,
        code_digest: status.code_digest,
        data_fingerprint: status.data_fingerprint,
        data_blob_count: status.data_blob_count,
        model_time: status.completion_time.map_or(0, |t| t.0.as_second()),
    })
}

fn model_type(t: ModelType) -> &'static str {
    match t {
        ModelType::CustomModel => "custom_model",
        ModelType::MlflowModel => "mlflow_model",
        ModelType::TritonModel => "triton_model",
    }
}

/// Tag naming the release (`namespace/name/uid`) that registered a version: only that release
/// archives it on deletion.
pub const RELEASED_BY: &str = "edgetrain.dev/released-by";

/// The model version to register: lineage and planned digests in the immutable `properties`,
/// the user's tags plus the lineage and `released_by` in the (mutable) `tags`.
pub fn model_version(
    spec: &ModelSpec,
    lineage: &Lineage,
    digests: &PlannedDigests,
    released_by: &str,
) -> ModelVersion {
    let mut properties = lineage.entries();
    properties.insert(
        format!("{PREFIX}{MODEL_TIME}"),
        lineage.model_time.to_string(),
    );
    properties.insert(format!("{PREFIX}artifact-digest"), digests.artifact.clone());
    if let Some(image) = &digests.image {
        properties.insert(format!("{PREFIX}image-digest"), image.clone());
    }
    let mut tags = spec.tags.clone();
    tags.extend(lineage.entries());
    tags.insert(RELEASED_BY.into(), released_by.into());
    ModelVersion {
        model_uri: Some(lineage.output_uri.clone()),
        model_type: Some(model_type(spec.type_).into()),
        job_name: Some(lineage.job_name.clone()),
        description: spec.description.clone(),
        tags: Some(tags),
        properties: Some(properties),
        is_archived: None,
        provisioning_state: None,
    }
}

/// Whether an existing version holds the same content and lineage as the one to register.
/// Only immutable fields count: tags and description may have been edited since.
pub fn same_content(existing: &ModelVersion, desired: &ModelVersion) -> Result<(), String> {
    let diff = |what: &str, a: &Option<String>, b: &Option<String>| {
        (a != b).then(|| format!("{what} is {a:?}, this release needs {b:?}"))
    };
    let err = diff("modelUri", &existing.model_uri, &desired.model_uri)
        .or_else(|| diff("modelType", &existing.model_type, &desired.model_type))
        .or_else(|| diff("jobName", &existing.job_name, &desired.job_name))
        .or_else(|| {
            let ours = |m: &Option<BTreeMap<String, String>>| {
                m.iter()
                    .flatten()
                    .filter(|(k, _)| k.starts_with(PREFIX))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>()
            };
            let (a, mut b) = (ours(&existing.properties), ours(&desired.properties));
            // Versions registered before the time was recorded lack it; their artifact digest
            // (compared too) already pins the time.
            let time = format!("{PREFIX}{MODEL_TIME}");
            if !a.contains_key(&time) {
                b.remove(&time);
            }
            (a != b).then(|| {
                let keys: Vec<_> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .cloned()
                    .collect();
                format!("lineage properties differ: {}", keys.join(", "))
            })
        });
    err.map_or(Ok(()), Err)
}

/// The next free integer version: one more than the highest integer version, `1` when none.
pub fn next_free_version<'a>(existing: impl IntoIterator<Item = &'a str>) -> String {
    let max = existing
        .into_iter()
        .filter_map(|v| v.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    (max + 1).to_string()
}

/// Longest OCI tag (distribution spec).
const MAX_TAG: usize = 128;

/// OCI tags: `{name}-{version}` (immutable identity, `:` is not allowed in a tag) first, then
/// the spec's moving tags.
pub fn oci_tags(spec: &ModelReleaseSpec, version: &str) -> Result<Vec<String>, String> {
    let identity = format!("{}-{}", spec.model.name, version);
    if identity.len() > MAX_TAG {
        return Err(format!(
            "the tag {identity:?} is longer than {MAX_TAG} characters: shorten model.name or the version"
        ));
    }
    let mut tags = vec![identity];
    for t in &spec.registry.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Ok(tags)
}

/// `repository@sha256:…` of a digest in the release's registry (the reference to deploy).
pub fn reference(spec: &ModelReleaseSpec, digest: &str) -> String {
    format!(
        "{}/{}@{}",
        spec.registry.login_server, spec.registry.repository, digest
    )
}

/// The digest part of a reference made by [`reference`].
pub fn digest_of(reference: &str) -> &str {
    reference.rsplit_once('@').map_or(reference, |(_, d)| d)
}
